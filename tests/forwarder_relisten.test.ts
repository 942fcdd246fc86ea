// The forwarder loop's LISTEN across a lost connection. postgres.js LISTENs again by itself once the
// database is back (after a pg_terminate_backend at once; after an outage with its reconnect backoff, up to
// 20 s later): a NOTIFY sent before that reaches no one, so the loop drains when it listens again.
import assert from "node:assert/strict";
import type { DrainSummary } from "../supabase/functions/_shared/forwarder.ts";
import { jsonLogger } from "../supabase/functions/_shared/log.ts";
import {
  connectForwarder,
  FORWARDER_APPLICATION_NAME,
  postgresSubscribe,
  startForwarderLoop,
} from "../scripts/lib/forwarder_loop.ts";
import { dbTest } from "./_db.ts";
import { closeSharedDb, storeSample, withForwardingSetup } from "./_forwarding.ts";
import { eventually } from "./_http.ts";
import { startDbProxy } from "./_proxy.ts";

// The sweep is parked (10 min): only a NOTIFY, or a drain on listening again, can deliver in time.
const PARKED_SWEEP_MS = 600_000;

dbTest(
  "forwarder loop: an event stored while its LISTEN connection was down goes out once it is back",
  async () => {
    await withForwardingSetup(async (db, sdk, config) => {
      // A server's LISTEN: PGlite's socket is one session, where a NOTIFY of one client does not reach
      // another's LISTEN (the dev server listens in-process there instead).
      if (db.kind !== "postgres") return;
      const proxy = startDbProxy(db.url);
      const sql = connectForwarder(proxy.url);
      const drains: DrainSummary[] = [];
      const loop = await startForwarderLoop({
        sql,
        config,
        log: jsonLogger,
        subscribe: postgresSubscribe(sql),
        sweepMs: PARKED_SWEEP_MS,
        onDrain: (summary) => drains.push(summary),
      });
      const drained = (what: string, check: () => boolean) =>
        eventually(() => Promise.resolve(check()), 30_000, what);
      try {
        // One drain at a time, none left to run: the one at start over before the first NOTIFY, and the one
        // that NOTIFY started over before the connections drop (either would find what is stored next).
        await drained("the drain at start", () => drains.length > 0);
        const first = await storeSample(db.sql);
        await sdk.waitFor(() => sdk.received.some((r) => r.eventId === first), "delivery woken by NOTIFY");
        await drained("the drain that delivered it", () => drains.some((d) => d.delivered > 0));
        // The forwarder's connections drop (a restart, a network cut); meanwhile an event is stored, and its
        // NOTIFY finds no listener.
        proxy.takeDown();
        const stored = await storeSample(db.sql);
        proxy.restore();
        await sdk.waitFor(
          () => sdk.received.some((r) => r.eventId === stored),
          "the event stored while not listening",
          60_000,
        );
        // Listening again, a NOTIFY wakes it as before.
        const after = await storeSample(db.sql);
        await sdk.waitFor(
          () => sdk.received.some((r) => r.eventId === after),
          "delivery woken by NOTIFY",
          60_000,
        );
        // Its backend terminated (pg_terminate_backend), it listens again at once, and events go out. Only in
        // this file's database: other test files' forwarders (`deno task forward`) listen on the same server.
        const [{ terminated }] = await db.sql`
          select count(pg_terminate_backend(pid))::int as terminated from pg_stat_activity
           where datname = current_database() and application_name = ${FORWARDER_APPLICATION_NAME}
             and query ilike 'listen%'`;
        assert.equal(terminated, 1);
        const afterTerminate = await storeSample(db.sql);
        await sdk.waitFor(
          () => sdk.received.some((r) => r.eventId === afterTerminate),
          "delivery after pg_terminate_backend",
          60_000,
        );
      } finally {
        await loop.stop();
        await sql.end({ timeout: 1 });
        await proxy.close();
      }
    });
  },
);

dbTest("forwarder loop: (close the shared database)", closeSharedDb);
