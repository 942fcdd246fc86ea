// Several forwarders at once, and one killed mid-batch. Row locks only contend on a real server: these
// tests matter most with DATABASE_URL set (PG15); on PGlite they still check the bookkeeping.
import assert from "node:assert/strict";
import { dbTest, type TestDb } from "./_db.ts";
import { ok, startAgentSdk } from "./_agent_sdk.ts";
import {
  attemptsOf,
  closeSharedDb,
  fastSettings,
  freshForwardingDb,
  statusOf,
  storeSample,
} from "./_forwarding.ts";
import { connect, type Sql } from "../supabase/functions/_shared/db.ts";
import { drain } from "../supabase/functions/_shared/forwarder.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";

// PGlite is one session behind a socket multiplexer that interleaves the protocol messages of concurrent
// connections; there the "parallel" forwarders share one connection (still concurrent in JS).
const pools = (db: TestDb, n: number, max: number): Sql[] => {
  if (db.kind === "postgres") return Array.from({ length: n }, () => connect(db.url, { max }));
  const one = connect(db.url, { max: 1 });
  return Array.from({ length: n }, () => one);
};
const endAll = (list: Sql[]) => Promise.all([...new Set(list)].map((sql) => sql.end({ timeout: 1 })));

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `n` statements of this database's sessions that mention `text` wait on a lock (server only). */
async function lockWaits(sql: Sql, text: string, n: number) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const [{ waiting }] = await sql<{ waiting: number }[]>`
      select count(*)::int as waiting from pg_stat_activity
       where datname = current_database() and wait_event_type = 'Lock'
         and query like ${"%" + text + "%"}`;
    if (waiting >= n) return;
    assert.ok(Date.now() < deadline, `${n} statements (${text}) waiting on a lock`);
    await sleep(20);
  }
}

const ROOT = new URL("../", import.meta.url);

dbTest(
  "forwarding: four forwarders in parallel never double-deliver nor overlap a conversation",
  async () => {
    const db = await freshForwardingDb();
    await fastSettings(db.sql);
    const inFlight = new Set<string>();
    const overlaps: string[] = [];
    const sdk = startAgentSdk(async (r) => {
      const body = JSON.parse(r.text);
      const conversation = body.conversation?.id
        ? `${body.account?.id}:${body.conversation.id}`
        : `event:${r.eventId}`;
      if (inFlight.has(conversation)) overlaps.push(conversation);
      inFlight.add(conversation);
      await sleep(Math.random() * 15);
      inFlight.delete(conversation);
      return ok();
    });
    const forwarders = pools(db, 4, 2);
    try {
      const ids: number[] = [];
      for (let i = 0; i < 60; i++) {
        // 10 conversations of 5 events each, and 10 events without a conversation.
        const options = i < 50 ? { conversationId: 1000 + (i % 10) } : { contactId: 9000 + i };
        ids.push(await storeSample(db.sql, i < 50 ? "message_created" : "contact_created", options));
      }
      await db.sql`update public.relay_settings set forward_events = '{message_created,contact_created}'`;
      await db.sql`update public.webhook_events set status = 'pending' where status = 'skipped'`;
      const config = { agentSdkUrl: sdk.url, agentSdkSecret: null, agentSdkToken: null };
      // Each forwarder drains again while work remains (a drain ends when nothing is claimable for it, e.g.
      // while the other forwarders hold every conversation's head).
      const deadline = Date.now() + 30_000;
      let delivered = 0;
      await Promise.all(forwarders.map(async (sql, i) => {
        while (Date.now() < deadline) {
          const summary = await drain(sql, config, {
            budgetMs: 5_000,
            batchSize: 5,
            worker: `f${i}`,
            log: memoryLogger(),
          });
          delivered += summary.delivered;
          const [{ open }] = await sql`select count(*)::int as open from public.webhook_events
                                      where status in ('pending', 'delivering')`;
          if (open === 0) return;
          if (summary.claimed === 0) await sleep(10);
        }
      }));
      assert.equal(delivered, 60);
      const counts = new Map<number, number>();
      for (const r of sdk.received) counts.set(r.eventId, (counts.get(r.eventId) ?? 0) + 1);
      assert.deepEqual([...counts.values()].filter((n) => n !== 1), [], "each event exactly once");
      assert.equal(counts.size, 60);
      assert.deepEqual(overlaps, [], "never two events of one conversation at once");
      // Within a conversation, in the order received.
      for (let c = 0; c < 10; c++) {
        const expected = ids.slice(0, 50).filter((_, i) => i % 10 === c);
        assert.deepEqual(sdk.received.map((r) => r.eventId).filter((id) => expected.includes(id)), expected);
      }
    } finally {
      await endAll(forwarders);
      await sdk.close();
    }
  },
);

dbTest(
  "forwarding: one drain with three lanes overlaps its batches, delivers each event once, in conversation order",
  async () => {
    const db = await freshForwardingDb();
    // Held requests must not time out (that would send them again): a timeout far beyond the hold.
    await fastSettings(db.sql, { request_timeout_ms: 25_000 });
    const inFlight = new Set<string>();
    const overlaps: string[] = [];
    let mostInFlight = 0;
    // The first requests are held until another batch's arrive: on a loaded machine the lanes' round trips to
    // Postgres can take longer than a quick answer, and batches then never meet at the sink. A held batch
    // leaves the other 4 conversations' heads for a second lane to claim. The hold ends after 20 s at the most,
    // so that lanes that never overlap fail the test rather than hang it; a shorter end (it was 1.5 s) failed
    // it when the second lane's claim or connection was that slow.
    let releaseHeld!: () => void;
    const held = new Promise<void>((resolve) => releaseHeld = resolve);
    let holdTimer: ReturnType<typeof setTimeout> | undefined;
    const sdk = startAgentSdk(async (r) => {
      holdTimer ??= setTimeout(releaseHeld, 20_000);
      const conversation = String(JSON.parse(r.text).conversation?.id);
      if (inFlight.has(conversation)) overlaps.push(conversation);
      inFlight.add(conversation);
      mostInFlight = Math.max(mostInFlight, inFlight.size);
      if (inFlight.size > 4) releaseHeld();
      await held;
      await sleep(Math.random() * 5);
      inFlight.delete(conversation);
      return ok();
    });
    const sql = pools(db, 1, 3)[0];
    try {
      const ids: number[] = [];
      for (let i = 0; i < 40; i++) {
        ids.push(await storeSample(db.sql, "message_created", { conversationId: 2000 + (i % 8) }));
      }
      const config = { agentSdkUrl: sdk.url, agentSdkSecret: null, agentSdkToken: null };
      const summary = await drain(sql, config, {
        budgetMs: 20_000,
        batchSize: 4,
        lanes: 3,
        worker: "laned",
        log: memoryLogger(),
      });
      // The last lane still working claims what the others left, so one drain empties the backlog.
      assert.equal(summary.stopped, "idle");
      assert.equal(summary.delivered, 40);
      assert.equal(summary.claimed, 40);
      const counts = new Map<number, number>();
      for (const r of sdk.received) counts.set(r.eventId, (counts.get(r.eventId) ?? 0) + 1);
      assert.equal(counts.size, 40);
      assert.deepEqual([...counts.values()].filter((n) => n !== 1), [], "each event exactly once");
      assert.deepEqual(overlaps, [], "never two events of one conversation at once");
      assert.ok(mostInFlight > 4, `batches of 4 overlapped (at most ${mostInFlight} in flight)`);
      for (let c = 0; c < 8; c++) {
        const expected = ids.filter((_, i) => i % 8 === c);
        assert.deepEqual(sdk.received.map((r) => r.eventId).filter((id) => expected.includes(id)), expected);
      }
      const [{ delivered }] = await db.sql`
        select count(*)::int as delivered from public.webhook_events where status = 'delivered'`;
      assert.equal(delivered, 40);
    } finally {
      clearTimeout(holdTimer);
      await sql.end({ timeout: 1 });
      await sdk.close();
    }
  },
);

dbTest("forwarding: racing claimers and replays never lease two events of one conversation", async () => {
  const db = await freshForwardingDb();
  const [a, b, c, replayer] = pools(db, 4, 1);
  try {
    for (let round = 0; round < 15; round++) {
      await db.sql`truncate public.webhook_delivery_attempts, public.webhook_events cascade`;
      const heads: number[] = [];
      for (let c = 0; c < 8; c++) {
        const conversationId = 500 + c;
        heads.push(await storeSample(db.sql, "message_created", { conversationId }));
        await storeSample(db.sql, "message_created", { conversationId });
        await storeSample(db.sql, "message_created", { conversationId });
      }
      await db.sql`update public.webhook_events set status = 'dead' where id = any(${heads})`;
      // Replaying the heads races with three claimers that see the second events as heads.
      await Promise.all([
        ...[a, b, c].map((sql, i) =>
          sql`select id from public.claim_webhook_events(${`w${round}.${i}`}, 20)`
        ),
        replayer`select public.replay_webhook_events(${heads}::bigint[])`,
      ]);
      const doubles = await db.sql`
        select conversation_id, count(*) from public.webhook_events where status = 'delivering'
         group by conversation_id having count(*) > 1`;
      assert.deepEqual([...doubles], [], `round ${round}`);
    }
  } finally {
    await endAll([a, b, c, replayer]);
  }
});

Deno.test({
  name: "forwarding: a claim still uncommitted keeps a replay-then-claim off its conversation (server only)",
  ignore: !Deno.env.get("DATABASE_URL"), // needs two real sessions; PGlite has one
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const db = await freshForwardingDb();
    const [first, other] = pools(db, 2, 1);
    try {
      const head = await storeSample(db.sql, "message_created", { conversationId: 71 });
      const next = await storeSample(db.sql, "message_created", { conversationId: 71 });
      await db.sql`update public.webhook_events set status = 'dead' where id = ${head}`;
      let racing: number[] = [];
      await first.begin(async (tx) => {
        const mine = await tx<{ id: string }[]>`select id from public.claim_webhook_events('first', 10)`;
        assert.deepEqual(mine.map((r) => Number(r.id)), [next]);
        // Meanwhile the head is replayed and another forwarder claims. Its snapshot cannot see the
        // uncommitted claim of `next`, so only the conversation lock keeps it from taking `head` too.
        await other`select public.replay_webhook_events(${[head]}::bigint[])`;
        const theirs = await other<{ id: string }[]>`select id from public.claim_webhook_events('other', 10)`;
        racing = theirs.map((r) => Number(r.id));
      });
      assert.deepEqual(racing, []);
      assert.equal(await statusOf(db.sql, next), "delivering");
      assert.equal(await statusOf(db.sql, head), "pending");
    } finally {
      await endAll([first, other]);
    }
  },
});

Deno.test({
  name:
    "forwarding: a replay by time range waits for a dead event another session holds locked (server only)",
  ignore: !Deno.env.get("DATABASE_URL"), // needs two real sessions; PGlite has one
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const db = await freshForwardingDb();
    const [holder, replayer] = pools(db, 2, 1);
    try {
      const held = await storeSample(db.sql, "message_created", { conversationId: 81 });
      const free = await storeSample(db.sql, "message_created", { conversationId: 82 });
      await db.sql`update public.webhook_events set status = 'dead' where id in ${db.sql([held, free])}`;
      let replayed: number | undefined;
      let replay: Promise<unknown> = Promise.resolve();
      await holder.begin(async (tx) => {
        // What a duplicate's ingest does to the row: counts it, holding the row lock until commit.
        await tx`update public.webhook_events set receive_count = receive_count + 1 where id = ${held}`;
        replay = replayer<{ n: string }[]>`
          select public.replay_webhook_events_between(now() - interval '1 hour', now() + interval '1 hour') as n`
          .then(([row]) => replayed = Number(row.n));
        // Skipping the locked row would answer at once; waiting shows up as a lock wait on the server.
        const deadline = Date.now() + 30_000;
        while (replayed === undefined) {
          const [{ waiting }] = await db.sql<{ waiting: number }[]>`
            select count(*)::int as waiting from pg_stat_activity
             where datname = current_database() and wait_event_type = 'Lock'
               and query like '%replay_webhook_events_between%'`;
          if (waiting > 0) break;
          assert.ok(Date.now() < deadline, "the replay either answers or waits for the lock");
          await sleep(20);
        }
        assert.equal(replayed, undefined, "the replay answered without the locked dead event");
      });
      await replay;
      assert.equal(replayed, 2);
      assert.equal(await statusOf(db.sql, held), "pending");
      assert.equal(await statusOf(db.sql, free), "pending");
    } finally {
      await endAll([holder, replayer]);
    }
  },
});

Deno.test({
  name:
    "forwarding: a chunk of a replay by time range is full while dead events remain, even when a locked " +
    "candidate stops being dead meanwhile (server only)",
  ignore: !Deno.env.get("DATABASE_URL"), // needs two real sessions; PGlite has one
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const db = await freshForwardingDb();
    const [holder, replayer] = pools(db, 2, 1);
    try {
      const ids: number[] = [];
      for (let i = 0; i < 4; i++) {
        ids.push(await storeSample(db.sql, "message_created", { conversationId: 90 + i }));
      }
      await db.sql`update public.webhook_events set status = 'dead' where id in ${db.sql(ids)}`;
      const chunk = () =>
        replayer<{ n: string }[]>`
          select public.replay_webhook_events_between(now() - interval '1 hour', now() + interval '1 hour',
                                                      null, 2) as n`.then(([row]) => Number(row.n));
      let first: Promise<number> = Promise.resolve(-1);
      await holder.begin(async (tx) => {
        // A replay by id of the oldest candidate, not yet committed: the chunk waits for it, then finds that
        // event no longer dead. A short chunk here would read to a caller as "fewer than 2 left".
        await tx`select public.replay_webhook_events(${[ids[0]]}::bigint[])`;
        first = chunk();
        await lockWaits(db.sql, "replay_webhook_events_between", 1);
      });
      assert.equal(
        await first,
        2,
        "the chunk took the next dead events in place of the one replayed meanwhile",
      );
      assert.equal(await chunk(), 1);
      assert.equal(await chunk(), 0);
      for (const id of ids) assert.equal(await statusOf(db.sql, id), "pending");
    } finally {
      await endAll([holder, replayer]);
    }
  },
});

Deno.test({
  name: "forwarding: a write-back retried while the first call still runs is recorded once (server only)",
  ignore: !Deno.env.get("DATABASE_URL"), // needs separate sessions; PGlite has one
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const db = await freshForwardingDb();
    await fastSettings(db.sql);
    const [holder, firstSql, retrySql] = pools(db, 3, 1);
    try {
      const id = await storeSample(db.sql, "message_created");
      const [claimed] = await db.sql<{ id: string; attempt: number; version: number }[]>`
        select id, attempt, version from public.claim_webhook_events('w', 10)`;
      const results = JSON.stringify([{
        id: Number(claimed.id),
        attempt: claimed.attempt,
        version: claimed.version,
        started_at: new Date().toISOString(),
        duration_ms: 3,
        http_status: 200,
        error: null,
        response_excerpt: null,
        retry_after_seconds: null,
      }]);
      const writeBack = (sql: Sql) =>
        sql<{ outcome: string }[]>`
          select outcome from public.complete_webhook_deliveries('w', ${results}::text::jsonb)`.execute();
      let first: Promise<{ outcome: string }[]> = Promise.resolve([]);
      let second: Promise<{ outcome: string }[]> = Promise.resolve([]);
      await holder.begin(async (tx) => {
        // What an ingest of a duplicate does to the row: holds it locked until commit.
        await tx`update public.webhook_events set receive_count = receive_count + 1 where id = ${id}`;
        // The write-back queues behind it. Were its connection lost now, the server would go on with it.
        first = writeBack(firstSql);
        await lockWaits(db.sql, "complete_webhook_deliveries", 1);
        // The forwarder's retry, while the first call still waits.
        second = writeBack(retrySql);
        await lockWaits(db.sql, "complete_webhook_deliveries", 2);
      });
      const [[one], [two]] = await Promise.all([first, second]);
      assert.equal(await statusOf(db.sql, id), "delivered");
      assert.deepEqual(
        {
          first: one.outcome,
          retry: two.outcome,
          recorded: (await attemptsOf(db.sql, id)).map((a) => [a.attempt, a.outcome]),
        },
        { first: "delivered", retry: "delivered", recorded: [[1, "delivered"]] },
      );
    } finally {
      await endAll([holder, firstSql, retrySql]);
    }
  },
});

Deno.test({
  name: "forwarding: once a pause or a new target has committed, no claim in progress leases under the old " +
    "settings (server only)",
  ignore: !Deno.env.get("DATABASE_URL"), // needs separate sessions; PGlite has one
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const changes = [
      "update public.relay_settings set forwarding_paused = true",
      "update public.relay_settings set agent_sdk_url_override = 'https://staging-agent.example.com'",
    ];
    for (const change of changes) {
      const db = await freshForwardingDb();
      const [holder, claimer, operator] = pools(db, 3, 1);
      try {
        const id = await storeSample(db.sql, "message_created", { conversationId: 95 });
        let claim: Promise<{ id: string }[]> = Promise.resolve([]);
        let changing: Promise<unknown> = Promise.resolve();
        let changed = false;
        await holder.begin(async (tx) => {
          // Stalls a claim after it read relay_settings and before it leases: its reclaim step writes
          // webhook_delivery_attempts, which this lock keeps it from (as a busy table or a slow disk might).
          await tx`lock table public.webhook_delivery_attempts in share mode`;
          claim = claimer<{ id: string }[]>`select id from public.claim_webhook_events('racing', 10)`
            .execute();
          await lockWaits(db.sql, "claim_webhook_events", 1);
          // The operator's change, while that claim is in progress: it returns at once, or waits for the claim.
          changing = operator.unsafe(change).execute().then(() => changed = true);
          const deadline = Date.now() + 30_000;
          while (!changed) {
            const [{ waiting }] = await db.sql<{ waiting: number }[]>`
              select count(*)::int as waiting from pg_stat_activity
               where datname = current_database() and wait_event_type = 'Lock'
                 and query = ${change}`;
            if (waiting > 0) break;
            assert.ok(Date.now() < deadline, `${change}: either commits or waits`);
            await sleep(20);
          }
        });
        // What the operator sees the moment the change has returned...
        await changing;
        const atChange = await statusOf(db.sql, id);
        await claim;
        // ...is what stays: nothing is claimed, and then sent, under the settings the change replaced.
        assert.equal(await statusOf(db.sql, id), atChange, `${change}: claimed after it had committed`);
      } finally {
        await endAll([holder, claimer, operator]);
      }
    }
  },
});

Deno.test({
  name: "forwarding: retry_webhook_events_now() and a late write-back wait for each other, never deadlock " +
    "(server only)",
  ignore: !Deno.env.get("DATABASE_URL"), // needs separate sessions; PGlite has one
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const db = await freshForwardingDb();
    await fastSettings(db.sql);
    const [holder, retrier, late] = pools(db, 3, 1);
    try {
      // A forwarder that outlived its leases (a write-back retried through an outage): another one reclaimed
      // its events, and the Agent SDK, still down, asked for a retry later. The late write-back locks its
      // events in id order, as every function that locks several does.
      const x = await storeSample(db.sql, "message_created", { conversationId: 601 });
      const y = await storeSample(db.sql, "message_created", { conversationId: 602 });
      const leased = await db.sql<{ id: string; attempt: number; version: number }[]>`
        select id, attempt, version from public.claim_webhook_events('late', 10, 0)`;
      assert.deepEqual(leased.map((e) => Number(e.id)), [x, y]);
      const z = await storeSample(db.sql, "message_created", { conversationId: 603 });
      const result = (id: number, attempt: number, status: number, retryAfter: number | null) => ({
        id,
        attempt,
        version: 1,
        started_at: new Date().toISOString(),
        duration_ms: 3,
        http_status: status,
        error: null,
        response_excerpt: null,
        retry_after_seconds: retryAfter,
      });
      const reclaimed = await db.sql<{ id: string; attempt: number }[]>`
        select id, attempt from public.claim_webhook_events('other', 10) order by id`;
      assert.deepEqual(reclaimed.map((e) => [Number(e.id), e.attempt]), [[x, 2], [y, 2], [z, 1]]);
      // Due again in the order y, z, x: the order retry_webhook_events_now() finds them in (due_idx).
      const retries = JSON.stringify([
        result(x, 2, 503, 3 * 3600),
        result(y, 2, 503, 3600),
        result(z, 1, 503, 7200),
      ]);
      const outcomes = await db.sql<{ outcome: string }[]>`
        select outcome from public.complete_webhook_deliveries('other', ${retries}::text::jsonb)`;
      assert.deepEqual(outcomes.map((o) => o.outcome), ["retry", "retry", "retry"]);
      // The plan any table of some size gets (a three-row one might be read in whatever order).
      await retrier.unsafe("set enable_seqscan = off; set enable_bitmapscan = off").simple();
      let retry: Promise<{ n: string }[]> = Promise.resolve([]);
      let writeBack: Promise<{ outcome: string }[]> = Promise.resolve([]);
      await holder.begin(async (tx) => {
        // What a duplicate's ingest does to z: holds it locked until commit.
        await tx`update public.webhook_events set receive_count = receive_count + 1 where id = ${z}`;
        retry = retrier<{ n: string }[]>`select public.retry_webhook_events_now() as n`.execute();
        await lockWaits(db.sql, "retry_webhook_events_now", 1);
        const report = JSON.stringify([result(x, 1, 200, null), result(y, 1, 200, null)]);
        writeBack = late<{ outcome: string }[]>`
          select outcome from public.complete_webhook_deliveries('late', ${report}::text::jsonb)`.execute();
        await lockWaits(db.sql, "complete_webhook_deliveries", 1);
      });
      const [settled, reported] = await Promise.allSettled([retry, writeBack]);
      assert.deepEqual(
        [settled.status, reported.status],
        ["fulfilled", "fulfilled"],
        `neither call failed: ${[settled, reported].map((r) => r.status === "rejected" ? r.reason : "ok")}`,
      );
      assert.equal(Number((await retry)[0].n), 3);
      assert.deepEqual((await writeBack).map((r) => r.outcome), ["lease_lost", "lease_lost"]);
      const [{ waiting }] = await db.sql<{ waiting: number }[]>`
        select count(*)::int as waiting from public.webhook_events
         where status = 'pending' and next_attempt_at > now()`;
      assert.equal(waiting, 0, "all three due now");
    } finally {
      await endAll([holder, retrier, late]);
    }
  },
});

dbTest(
  "forwarding: a forwarder killed mid-batch (SIGKILL) loses nothing; leases expire, events go once",
  async () => {
    const db = await freshForwardingDb();
    await fastSettings(db.sql, { request_timeout_ms: 3000, lease_seconds: 4 });
    const sdk = startAgentSdk(() => ({ hold: true }));
    try {
      const ids: number[] = [];
      for (let i = 0; i < 6; i++) {
        ids.push(
          await storeSample(db.sql, "message_created", { conversationId: 300 + i }),
        );
      }
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "scripts/forward.ts", "--batch", "10", "--sweep-ms", "200"],
        cwd: ROOT,
        env: { DATABASE_URL: db.url, AGENT_SDK_URL: sdk.url, NO_COLOR: "1" },
        clearEnv: true,
        stdout: "null",
        stderr: "null",
      }).spawn();
      try {
        await sdk.waitFor(() => sdk.received.length === 6, "the subprocess to send the whole batch", 60_000);
      } finally {
        child.kill("SIGKILL");
        await child.status;
      }
      assert.deepEqual(
        await Promise.all(ids.map((id) => statusOf(db.sql, id))),
        ids.map(() => "delivering"),
        "the killed forwarder's leases are still held",
      );
      sdk.behave(() => ok());
      const config = { agentSdkUrl: sdk.url, agentSdkSecret: null, agentSdkToken: null };
      const deadline = Date.now() + 30_000;
      while ((await db.sql`select 1 from public.webhook_events where status <> 'delivered'`).length > 0) {
        assert.ok(Date.now() < deadline, "all delivered after the leases expired");
        await drain(db.sql, config, { log: memoryLogger() });
        await sleep(250);
      }
      // From the Agent SDK's side: every event answered exactly once (the killed requests were never answered).
      assert.deepEqual(sdk.accepted().map((r) => r.eventId).sort((a, b) => a - b), ids);
      for (const id of ids) {
        assert.deepEqual((await attemptsOf(db.sql, id)).map((a) => [a.attempt, a.outcome]), [
          [1, "lease_expired"],
          [2, "delivered"],
        ]);
      }
    } finally {
      await sdk.close();
    }
  },
);

dbTest("forwarding: (close the shared database)", closeSharedDb);
