// An Edge Function's worker is stopped at its wall-clock limit (Runtime.workerDeadline): a drain claims no
// batch it cannot deliver and write back by then, since the runtime would stop it mid-batch and its events be
// sent again once their leases expired (an attempt spent). Through the real functions, a real database and a
// real Agent SDK stand-in; the deadlines are set relative to now, nothing is asserted about durations.
import assert from "node:assert/strict";
import { dbTest } from "./_db.ts";
import { ok } from "./_agent_sdk.ts";
import {
  assertUntouched,
  closeSharedDb,
  fastSettings,
  statusOf,
  storeSample,
  withBackgroundAwaited,
  withForwardingSetup,
} from "./_forwarding.ts";
import type { DrainSummary } from "../supabase/functions/_shared/forwarder.ts";
import { WRITE_BACK_MIN_BUDGET_MS } from "../supabase/functions/_shared/runtime.ts";
import type { Sql } from "../supabase/functions/_shared/db.ts";
import { type Logger, memoryLogger } from "../supabase/functions/_shared/log.ts";
import { chatwootWebhookApp } from "../supabase/functions/_shared/chatwoot_webhook.ts";
import { createForwardEventsApp } from "../supabase/functions/_shared/forward_events.ts";
import {
  type ForwarderConfig,
  forwardEventsAuthFromEnv,
} from "../supabase/functions/_shared/forwarder_config.ts";
import { signedRequest, TEST_SECRET } from "./_http.ts";
import { samplePayload } from "../scripts/lib/samples.ts";

const TOKEN = "forwarder-token-0123456789abcdef";

/** forward-events as deployed in a worker whose wall-clock deadline is `deadline` (performance.now()). */
function forwardEvents(sql: Sql, config: ForwarderConfig, deadline: number, log: Logger = memoryLogger()) {
  const app = createForwardEventsApp({
    auth: forwardEventsAuthFromEnv({ FORWARDER_TOKEN: TOKEN }),
    forwarder: config,
    sql,
    log,
    writeBackDeadline: deadline,
  });
  return async (query: string): Promise<{ status: number; summary: DrainSummary }> => {
    const res = await app.fetch(
      new Request(`http://functions.local/forward-events${query}`, {
        method: "POST",
        headers: { Authorization: `Bearer ${TOKEN}` },
      }),
    );
    return { status: res.status, summary: await res.json() };
  };
}

const picked = (s: DrainSummary) => ({
  ok: s.ok,
  stopped: s.stopped,
  batches: s.batches,
  claimed: s.claimed,
  delivered: s.delivered,
});

/** Resolves once performance.now() is past `at`. */
async function until(at: number): Promise<void> {
  while (performance.now() <= at) {
    await new Promise((resolve) => setTimeout(resolve, Math.max(1, at - performance.now() + 1)));
  }
}

dbTest(
  "forwarding deadline: forward-events in a worker too near its deadline for one batch claims nothing",
  async () => {
    await withForwardingSetup(async (db, sdk, config) => {
      const requestTimeoutMs = 2_000;
      await fastSettings(db.sql, { request_timeout_ms: requestTimeoutMs });
      const ids = [
        await storeSample(db.sql, "message_created", { conversationId: 71 }),
        await storeSample(db.sql, "message_created", { conversationId: 72 }),
      ];
      // Past (a worker older than its limit), and ahead but short of one delivery plus its write-back.
      for (const deadline of [performance.now(), performance.now() + requestTimeoutMs + 2_000]) {
        const { status, summary } = await forwardEvents(db.sql, config, deadline)("?budget_ms=120000");
        assert.equal(status, 200);
        assert.deepEqual(picked(summary), {
          ok: true,
          stopped: "deadline",
          batches: 0,
          claimed: 0,
          delivered: 0,
        });
      }
      assert.equal(sdk.received.length, 0);
      for (const id of ids) await assertUntouched(db.sql, id);
      // The next worker (no deadline near) sends them.
      const { summary } = await forwardEvents(db.sql, config, performance.now() + 60_000)("");
      assert.deepEqual([summary.stopped, summary.delivered], ["idle", 2]);
    });
  },
);

dbTest(
  "forwarding deadline: forward-events with time for one batch but not two delivers exactly one",
  async () => {
    await withForwardingSetup(async (db, sdk, config) => {
      // The first delivery is held past the point where another batch's timeout and write-back still fit.
      const requestTimeoutMs = 10_000;
      await fastSettings(db.sql, { request_timeout_ms: requestTimeoutMs });
      const first = await storeSample(db.sql, "message_created", { conversationId: 81 });
      const second = await storeSample(db.sql, "message_created", { conversationId: 82 });
      const deadline = performance.now() + requestTimeoutMs + WRITE_BACK_MIN_BUDGET_MS + 3_000;
      sdk.behave(() => ({ hold: true }));
      const answer = forwardEvents(db.sql, config, deadline)("?budget_ms=120000&batch_size=1");
      await sdk.waitFor(() => sdk.received.length === 1, "first batch in flight");
      await until(deadline - requestTimeoutMs - WRITE_BACK_MIN_BUDGET_MS);
      sdk.releaseHeld();
      const { status, summary } = await answer;
      assert.equal(status, 200);
      assert.deepEqual(picked(summary), {
        ok: true,
        stopped: "deadline",
        batches: 1,
        claimed: 1,
        delivered: 1,
      });
      assert.deepEqual(sdk.received.map((r) => r.eventId), [first]);
      assert.equal(await statusOf(db.sql, first), "delivered");
      await assertUntouched(db.sql, second);
    });
  },
);

dbTest(
  "forwarding deadline: a batch claimed with a longer request timeout than the drain knew of is handed back",
  async () => {
    await withForwardingSetup(async (db, sdk, config) => {
      await fastSettings(db.sql, { request_timeout_ms: 5_000 });
      const first = await storeSample(db.sql, "message_created", { conversationId: 91 });
      const second = await storeSample(db.sql, "message_created", { conversationId: 92 });
      // Room for batches of 5 s, not for one of 60 s.
      const deadline = performance.now() + 5_000 + WRITE_BACK_MIN_BUDGET_MS + 30_000;
      sdk.behave(() => ({ hold: true }));
      const answer = forwardEvents(db.sql, config, deadline)("?budget_ms=120000&batch_size=1");
      await sdk.waitFor(() => sdk.received.length === 1, "first batch in flight");
      // Raised by an operator while the first batch is out: the next claim carries it.
      await db.sql`update public.relay_settings set request_timeout_ms = 60000, lease_seconds = 90 where id`;
      sdk.behave(() => ok());
      sdk.releaseHeld();
      const { status, summary } = await answer;
      assert.equal(status, 200);
      assert.deepEqual(picked(summary), {
        ok: true,
        stopped: "deadline",
        batches: 1,
        claimed: 1,
        delivered: 1,
      });
      assert.deepEqual(sdk.received.map((r) => r.eventId), [first]);
      await assertUntouched(db.sql, second);
    });
  },
);

dbTest(
  "forwarding deadline: the webhook's immediate delivery in a worker near its deadline sends nothing",
  async () => {
    await withForwardingSetup(async (db, sdk, config) => {
      // It trusts the ingest's look at the settings (settingsChecked): the request timeout is first seen in
      // the claim, which is handed back.
      await fastSettings(db.sql, { request_timeout_ms: 2_000 });
      // Past; and ahead by a write-back but not by the delivery before it.
      for (const ahead of [0, WRITE_BACK_MIN_BUDGET_MS + 1_000]) {
        const log = memoryLogger();
        await withBackgroundAwaited(async () => {
          const app = chatwootWebhookApp({
            env: { CHATWOOT_WEBHOOK_SECRET: TEST_SECRET, AGENT_SDK_URL: config.agentSdkUrl! },
            sql: db.sql,
            log,
            workerDeadline: performance.now() + ahead,
          });
          const body = JSON.stringify(samplePayload("message_created", { messageId: 558_000 + ahead }));
          const res = await app.fetch(signedRequest("http://functions.local/chatwoot-webhook", body));
          assert.equal(res.status, 200);
          await res.body?.cancel();
        });
        const immediate = log.lines.filter((l) => l.msg === "[Chatwoot Webhook] Immediate delivery");
        assert.deepEqual(
          immediate.map((l) => [l.stopped, l.claimed]),
          [["deadline", 0]],
          `${ahead} ms ahead`,
        );
      }
      assert.equal(sdk.received.length, 0);
      const ids = await db.sql<{ id: string }[]>`select id from public.webhook_events order by id`;
      assert.equal(ids.length, 2);
      for (const { id } of ids) await assertUntouched(db.sql, Number(id));
    });
  },
);

dbTest("forwarding deadline: (close the shared database)", closeSharedDb);
