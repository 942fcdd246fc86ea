// Delivery semantics of the forwarder against a real Agent SDK stand-in and a real database.
import assert from "node:assert/strict";
import { sha256Hex } from "../supabase/functions/_shared/signature.ts";
import { samplePayload } from "../scripts/lib/samples.ts";
import { dbTest, lockWebhookEvents, type TestDb } from "./_db.ts";
import { type AgentSdkStandIn, ok } from "./_agent_sdk.ts";
import {
  attemptsOf,
  closeSharedDb,
  FAST_REQUEST_TIMEOUT_MS,
  fastSettings,
  statusOf,
  storeSample,
  withBackgroundAwaited,
  withForwardingSetup,
} from "./_forwarding.ts";
import { drain, parseRetryAfter } from "../supabase/functions/_shared/forwarder.ts";
import { WRITE_BACK_MIN_BUDGET_MS } from "../supabase/functions/_shared/runtime.ts";
import { connect } from "../supabase/functions/_shared/db.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";
import { startDbProxy } from "./_proxy.ts";
import { chatwootWebhookApp } from "../supabase/functions/_shared/chatwoot_webhook.ts";
import { createForwardEventsApp } from "../supabase/functions/_shared/forward_events.ts";
import {
  type ForwarderConfig,
  forwardEventsAuthFromEnv,
} from "../supabase/functions/_shared/forwarder_config.ts";
import { eventually, signedRequest, TEST_SECRET } from "./_http.ts";

/** What a forwarder reports for one claimed event (the JSON complete_webhook_deliveries reads). */
// deno-lint-ignore no-explicit-any
const report = (claimed: Record<string, any>, http_status: number) =>
  JSON.stringify([{
    id: claimed.id,
    attempt: claimed.attempt,
    version: claimed.version,
    started_at: new Date().toISOString(),
    duration_ms: 3,
    http_status,
    error: null,
    response_excerpt: null,
    retry_after_seconds: null,
  }]);

dbTest("forwarding: dead after the last attempt; the conversation's next event then goes", async () => {
  await withForwardingSetup(async (db, sdk, config) => {
    await fastSettings(db.sql, { max_attempts: 3 });
    const first = await storeSample(db.sql, "message_created", { conversationId: 41 });
    const second = await storeSample(db.sql, "message_created", { conversationId: 41 });
    sdk.behave((r) => r.eventId === first ? new Response("no", { status: 503 }) : ok());
    const summary = await drain(db.sql, config, { budgetMs: 10_000, log: memoryLogger() });
    assert.equal(summary.dead, 1);
    assert.equal(summary.retried, 2);
    assert.equal(summary.delivered, 1);
    assert.equal(await statusOf(db.sql, first), "dead");
    assert.equal(await statusOf(db.sql, second), "delivered");
    assert.deepEqual(sdk.received.map((r) => [r.eventId, r.attempt]), [[first, 1], [first, 2], [first, 3], [
      second,
      1,
    ]]);
    const [health] = await db.sql`select dead_count, backlog from public.webhook_delivery_health`;
    assert.equal(Number(health.dead_count), 1);
    assert.equal(Number(health.backlog), 0);
  });
});

dbTest(
  "forwarding: on a connection whose last statement failed after sending a row, a drain delivers and writes " +
    "back each event once (not sent again when its lease expires)",
  async () => {
    await withForwardingSetup(async (db, sdk, config) => {
      // One connection, as after a restart's fast shutdown or pg_terminate_backend ended a statement between
      // its rows: postgres.js (porsager/postgres#1119) put that many empty slots before the next result's rows.
      const poolSql = connect(db.url, { max: 1 });
      try {
        const ids = [];
        for (const conversationId of [51, 52, 53]) {
          ids.push(await storeSample(db.sql, "message_created", { conversationId }));
        }
        for (const settingsChecked of [true, false]) {
          await assert.rejects(poolSql.unsafe("select 1 / (2 - x) as n from generate_series(1, 2) x"));
          // Not checked by the caller: the drain reads relay_settings, where the only target is (no
          // AGENT_SDK_URL), and must find it there.
          if (!settingsChecked) {
            ids.push(await storeSample(db.sql, "message_created", { conversationId: 54 }));
            await db.sql`update public.relay_settings set agent_sdk_url_override = ${sdk.url}`;
          }
          const summary = await drain(poolSql, settingsChecked ? config : { ...config, agentSdkUrl: null }, {
            budgetMs: 10_000,
            log: memoryLogger(),
            settingsChecked,
          });
          assert.equal(summary.ok, true, JSON.stringify(summary));
        }
        for (const id of ids) assert.equal(await statusOf(db.sql, id), "delivered", `event ${id}`);
        assert.deepEqual(sdk.received.map((r) => r.eventId).sort(), [...ids].sort());
      } finally {
        await poolSql.end({ timeout: 1 });
      }
    });
  },
);

dbTest("forwarding: 410 Gone is dead at once", async () => {
  await withForwardingSetup(async (db, sdk, config) => {
    const id = await storeSample(db.sql);
    sdk.behave(() => new Response("gone", { status: 410 }));
    const summary = await drain(db.sql, config, { budgetMs: 5_000, log: memoryLogger() });
    assert.equal(summary.dead, 1);
    assert.equal(sdk.received.length, 1);
    assert.equal(await statusOf(db.sql, id), "dead");
    assert.deepEqual((await attemptsOf(db.sql, id)).map((a) => a.outcome), ["dead"]);
  });
});

dbTest("forwarding: Retry-After is honoured over a shorter schedule", async () => {
  await withForwardingSetup(async (db, sdk, config) => {
    const id = await storeSample(db.sql);
    sdk.behave(() => new Response("slow down", { status: 429, headers: { "Retry-After": "120" } }));
    const before = Date.now();
    assert.equal((await drain(db.sql, config, { budgetMs: 5_000, log: memoryLogger() })).retried, 1);
    assert.equal(sdk.received.length, 1, "not retried inside the Retry-After window");
    const [row] = await db.sql<{ next_attempt_at: Date; status: string }[]>`
      select next_attempt_at, status from public.webhook_events where id = ${id}`;
    assert.equal(row.status, "pending");
    assert.ok(
      row.next_attempt_at.getTime() >= before + 119_000,
      `next attempt ${row.next_attempt_at.toISOString()}`,
    );
    assert.equal(parseRetryAfter("7"), 7);
    assert.ok((parseRetryAfter(new Date(Date.now() + 60_000).toUTCString()) ?? 0) >= 58);
    assert.equal(parseRetryAfter("soon"), null);
    // A date by the answer's own clock (an hour ahead of ours here): the delay is from its Date header.
    const sinkNow = new Date(Math.floor(Date.now() / 1000) * 1000 + 3600_000);
    const in90s = new Date(sinkNow.getTime() + 90_000).toUTCString();
    assert.equal(parseRetryAfter(in90s, sinkNow.toUTCString()), 90);
    assert.ok((parseRetryAfter(in90s, "not a date") ?? 0) >= 3600, "an unreadable Date: our clock");
  });
});

dbTest("forwarding: per-conversation order; a failing conversation holds back only itself", async () => {
  await withForwardingSetup(async (db, sdk, config) => {
    await fastSettings(db.sql, { max_attempts: 3 });
    const a: number[] = [], b: number[] = [];
    for (let i = 0; i < 3; i++) {
      a.push(await storeSample(db.sql, "message_created", { conversationId: 100 }));
      b.push(await storeSample(db.sql, "message_created", { conversationId: 200 }));
    }
    // Same display id in another account is another conversation.
    const otherAccount = await storeSample(db.sql, "message_created", { conversationId: 100, accountId: 2 });
    sdk.behave((r) => r.eventId === a[0] ? new Response("boom", { status: 500 }) : ok());
    await drain(db.sql, config, { budgetMs: 10_000, batchSize: 4, log: memoryLogger() });
    const order = sdk.received.map((r) => r.eventId);
    const lastA0 = order.lastIndexOf(a[0]);
    assert.equal(order.filter((x) => x === a[0]).length, 3);
    assert.ok(order.indexOf(a[1]) > lastA0, "a[1] waited for a[0] to be dead");
    assert.ok(order.indexOf(a[1]) < order.indexOf(a[2]));
    // The other conversations flowed while a[0] was failing.
    assert.ok(order.indexOf(b[0]) < lastA0 && order.indexOf(otherAccount) < lastA0);
    assert.deepEqual(order.filter((x) => b.includes(x)), b);
    assert.deepEqual(
      await Promise.all([...a, ...b, otherAccount].map((id) => statusOf(db.sql, id))),
      ["dead", "delivered", "delivered", "delivered", "delivered", "delivered", "delivered"],
    );
  });
});

dbTest("forwarding: a conversation event without its account is ordered with its conversation", async () => {
  await withForwardingSetup(async (db) => {
    await db
      .sql`update public.relay_settings set forward_events = '{message_created,conversation_status_changed}'`;
    // The contract's fallback for a conversation event's account is messages[0].account_id; with no account
    // and no messages it is stored without one.
    const accountLess = (conversationId: number) => {
      const status = samplePayload("conversation_status_changed", { conversationId, accountId: 7 });
      delete status.account;
      status.messages = [];
      return storeSample(db.sql, "conversation_status_changed", { raw: JSON.stringify(status) });
    };
    const claimIds = async () =>
      (await db.sql<{ id: string }[]>`select id from public.claim_webhook_events('w', 10)`).map((r) =>
        Number(r.id)
      );

    // After a message of the conversation: held back until the message is out of the way.
    const message = await storeSample(db.sql, "message_created", { conversationId: 42, accountId: 7 });
    const status = await accountLess(42);
    const [{ account_id }] = await db.sql`select account_id from public.webhook_events where id = ${status}`;
    assert.equal(account_id, null);
    assert.deepEqual(await claimIds(), [message]);
    // Before a message of the conversation: the message waits for it.
    const first = await accountLess(43);
    const after = await storeSample(db.sql, "message_created", { conversationId: 43, accountId: 7 });
    assert.deepEqual(await claimIds(), [first]);
    assert.ok(!(await claimIds()).includes(after));
  });
});

dbTest("forwarding: a newer version arriving during delivery is delivered after the old one", async () => {
  await withForwardingSetup(async (db, sdk, config) => {
    await db.sql`update public.relay_settings set forward_events = '{message_created,message_updated}'`;
    const options = { messageId: 555, conversationId: 9, content: "first text" };
    const id = await storeSample(db.sql, "message_updated", options);
    sdk.behave((_r, i) => i === 0 ? { hold: true } : ok());
    const draining = drain(db.sql, config, { budgetMs: 0, log: memoryLogger() });
    await sdk.waitFor(() => sdk.received.length === 1, "first delivery in flight");
    const again = await storeSample(db.sql, "message_updated", { ...options, content: "edited text" });
    assert.equal(again, id);
    assert.equal(await statusOf(db.sql, id), "delivering");
    sdk.releaseHeld();
    assert.equal((await draining).superseded, 1);
    assert.equal(await statusOf(db.sql, id), "pending");
    assert.equal((await drain(db.sql, config, { log: memoryLogger() })).delivered, 1);
    assert.equal(await statusOf(db.sql, id), "delivered");
    assert.deepEqual(sdk.received.map((r) => JSON.parse(r.text).content), ["first text", "edited text"]);
    // Keyed by body: each edit its own key (a retry of one edit repeats its key).
    assert.deepEqual(
      sdk.received.map((r) => r.headers.get("idempotency-key")),
      sdk.received.map((r) => `message:555:message_updated:${sha256Hex(r.text).slice(0, 16)}`),
    );
    assert.notEqual(
      sdk.received[0].headers.get("idempotency-key"),
      sdk.received[1].headers.get("idempotency-key"),
    );
    assert.deepEqual((await attemptsOf(db.sql, id)).map((a) => [a.version, a.outcome]), [
      [1, "superseded"],
      [2, "delivered"],
    ]);
  });
});

/**
 * One message_created delivered through `viaProxy` while the database is cut, from the POST's answer until
 * `outageMs` later: the write-back must land once it is back, the event sent once and delivered.
 */
async function deliverThroughOutage(
  db: TestDb,
  sdk: AgentSdkStandIn,
  config: ForwarderConfig,
  outageMs: number,
  log = memoryLogger(),
): Promise<void> {
  const id = await storeSample(db.sql, "message_created");
  const proxy = startDbProxy(db.url);
  const viaProxy = connect(proxy.url, { max: 1 });
  try {
    sdk.behave(() => ({ hold: true }));
    const draining = drain(viaProxy, config, { budgetMs: 0, log });
    await sdk.waitFor(() => sdk.received.length === 1, "delivery in flight");
    proxy.cut();
    sdk.releaseHeld();
    await new Promise((resolve) => setTimeout(resolve, outageMs));
    proxy.restore();
    const summary = await draining;
    assert.equal(summary.delivered, 1);
    assert.equal(await statusOf(db.sql, id), "delivered");
    assert.deepEqual((await attemptsOf(db.sql, id)).map((a) => a.outcome), ["delivered"]);
    assert.equal(sdk.received.length, 1);
  } finally {
    await viaProxy.end({ timeout: 1 });
    await proxy.close();
  }
}

dbTest("forwarding: a database restart between the POST and the write-back loses no outcome", async () => {
  await withForwardingSetup(async (db, sdk, config) => {
    // One attempt allowed: an outcome lost here would make a delivered event dead once its lease expired.
    await fastSettings(db.sql, { lease_seconds: 60, max_attempts: 1 });
    // Down for longer than the write-back's least budget: only the leases' own time bounds it.
    await deliverThroughOutage(db, sdk, config, WRITE_BACK_MIN_BUDGET_MS + 2_000);
  });
});

dbTest(
  "forwarding: a database down past the leases' expiry: the outcome lands when it is back, sent once",
  async () => {
    await withForwardingSetup(async (db, sdk, config) => {
      // A lease shorter than the outage and than the write-back's least budget: only the retries past the
      // lease's end keep the outcome (dropped, the event would be claimed and sent again; here, dead).
      await fastSettings(db.sql, { lease_seconds: 2, request_timeout_ms: 1000, max_attempts: 1 });
      const log = memoryLogger();
      await deliverThroughOutage(db, sdk, config, WRITE_BACK_MIN_BUDGET_MS + 3_000, log);
      assert.equal(
        (await drain(db.sql, config, { log: memoryLogger() })).claimed,
        0,
        "nothing to send again",
      );
      assert.equal(sdk.received.length, 1);
      assert.ok(!log.lines.some((l) => l.msg === "[Forwarder] Write-back gave up"));
    });
  },
);

dbTest("forwarding: a write-back still failing when the forwarder stops gives up, logged once", async () => {
  await withForwardingSetup(async (db, sdk, config) => {
    await storeSample(db.sql, "message_created");
    const proxy = startDbProxy(db.url);
    const viaProxy = connect(proxy.url, { max: 1 });
    const log = memoryLogger();
    const stopping = new AbortController();
    try {
      sdk.behave(() => ({ hold: true }));
      const draining = drain(viaProxy, config, { budgetMs: 0, log, signal: stopping.signal });
      await sdk.waitFor(() => sdk.received.length === 1, "delivery in flight");
      proxy.takeDown();
      sdk.releaseHeld();
      await new Promise((resolve) => setTimeout(resolve, 500));
      stopping.abort();
      await assert.rejects(draining);
      const gaveUp = log.lines.filter((l) => l.msg === "[Forwarder] Write-back gave up");
      assert.equal(gaveUp.length, 1);
      assert.equal(gaveUp[0].stopped, "aborted");
      assert.equal(gaveUp[0].delivered, 1);
      assert.equal(typeof gaveUp[0].code, "string");
    } finally {
      await viaProxy.end({ timeout: 1 });
      await proxy.close();
    }
  });
});

/**
 * An Edge Function's drain whose write-back meets a database that is gone: `run` starts it in a worker whose
 * deadline leaves time for one batch (its request timeout, fastSettings', and WRITE_BACK_MIN_BUDGET_MS). It
 * gives up at the deadline, logged, rather than retrying until 5 min past the leases, which the runtime's
 * wall-clock limit cuts off without a word. The database comes back once it has given up; a write-back that
 * retries on instead fails the wait (60 s).
 */
async function assertWriteBackCutByDeadline(
  run: (
    sql: ReturnType<typeof connect>,
    config: ForwarderConfig,
    deadline: number,
    log: ReturnType<typeof memoryLogger>,
  ) => Promise<unknown>,
) {
  await withForwardingSetup(async (db, sdk, config) => {
    const proxy = startDbProxy(db.url);
    const viaProxy = connect(proxy.url, { max: 2 });
    const log = memoryLogger();
    try {
      sdk.behave(() => ({ hold: true }));
      const deadline = performance.now() + FAST_REQUEST_TIMEOUT_MS + WRITE_BACK_MIN_BUDGET_MS + 3_000;
      const running = run(viaProxy, config, deadline, log);
      await sdk.waitFor(() => sdk.received.length === 1, "delivery in flight");
      proxy.takeDown();
      sdk.releaseHeld();
      const gaveUp = () => log.lines.filter((l) => l.msg === "[Forwarder] Write-back gave up");
      // Waited for, not slept on: a slow machine gives up later than WRITE_BACK_MIN_BUDGET_MS.
      await eventually(() => Promise.resolve(gaveUp().length > 0), 60_000, "the write-back to give up");
      proxy.restore();
      await running;
      assert.equal(gaveUp().length, 1, "given up before the database came back");
      assert.equal(gaveUp()[0].stopped, "deadline");
      assert.equal(gaveUp()[0].delivered, 1);
      assert.match(
        String(gaveUp()[0].code),
        /^(ECONNREFUSED|ECONNRESET|CONNECTION_(CLOSED|ENDED|DESTROYED))$/,
      );
    } finally {
      await viaProxy.end({ timeout: 1 });
      await proxy.close();
    }
  });
}

dbTest(
  "forwarding: forward-events bounds a failing write-back by its worker's wall-clock deadline",
  async () => {
    await assertWriteBackCutByDeadline(async (sql, config, deadline, log) => {
      await storeSample(sql, "message_created");
      const token = "forwarder-token-0123456789abcdef";
      const app = createForwardEventsApp({
        auth: forwardEventsAuthFromEnv({ FORWARDER_TOKEN: token }),
        forwarder: config,
        sql,
        log,
        writeBackDeadline: deadline,
      });
      const res = await app.fetch(
        new Request("http://functions.local/forward-events?budget_ms=0", {
          method: "POST",
          headers: { Authorization: `Bearer ${token}` },
        }),
      );
      // The database's failure, as the drain's last error says it: unavailable, not an error of ours.
      assert.equal(res.status, 503);
      assert.equal((await res.json()).error, "database_unavailable");
    });
  },
);

dbTest(
  "forwarding: forward-events answers 503 when its write-back got no answer at all by the deadline (a lock)",
  async () => {
    await withForwardingSetup(async (db, sdk, config) => {
      await storeSample(db.sql, "message_created");
      const token = "forwarder-token-0123456789abcdef";
      const log = memoryLogger();
      const sql = connect(db.url, { max: 2 });
      const app = createForwardEventsApp({
        auth: forwardEventsAuthFromEnv({ FORWARDER_TOKEN: token }),
        forwarder: config,
        sql,
        log,
        // Time for one batch: its write-back has what the delivery leaves of it.
        writeBackDeadline: performance.now() + FAST_REQUEST_TIMEOUT_MS + WRITE_BACK_MIN_BUDGET_MS + 3_000,
      });
      let lock: { release: () => Promise<void> } | null = null;
      try {
        sdk.behave(() => ({ hold: true }));
        const answer = app.fetch(
          new Request("http://functions.local/forward-events?budget_ms=0", {
            method: "POST",
            headers: { Authorization: `Bearer ${token}` },
          }),
        );
        await sdk.waitFor(() => sdk.received.length === 1, "delivery in flight");
        // The write-back waits on the lock: no error comes back, the budget just ends.
        lock = await lockWebhookEvents(db.sql);
        sdk.releaseHeld();
        const res = await answer;
        assert.equal(res.status, 503);
        assert.equal((await res.json()).error, "database_unavailable");
      } finally {
        await lock?.release();
        await sql.end({ timeout: 1 });
      }
    });
  },
);

dbTest(
  "forwarding: the webhook's immediate delivery bounds a failing write-back by the worker's deadline",
  async () => {
    await assertWriteBackCutByDeadline((sql, config, deadline, log) =>
      withBackgroundAwaited(async () => {
        const app = chatwootWebhookApp({
          env: { CHATWOOT_WEBHOOK_SECRET: TEST_SECRET, AGENT_SDK_URL: config.agentSdkUrl! },
          sql,
          log,
          workerDeadline: deadline,
        });
        const body = JSON.stringify(samplePayload("message_created", { messageId: 557_001 }));
        const res = await app.fetch(signedRequest("http://functions.local/chatwoot-webhook", body));
        assert.equal(res.status, 200);
        await res.body?.cancel();
      })
    );
  },
);

dbTest("forwarding: a newer version arriving during a failing last attempt is sent, not dead", async () => {
  await withForwardingSetup(async (db, sdk, config) => {
    await db.sql`update public.relay_settings set forward_events = '{message_created,message_updated}'`;
    await fastSettings(db.sql, { max_attempts: 1 });
    const options = { messageId: 556, conversationId: 10, content: "first text" };
    const id = await storeSample(db.sql, "message_updated", options);
    sdk.behave((_r, i) => i === 0 ? { hold: true, then: new Response("down", { status: 503 }) } : ok());
    const draining = drain(db.sql, config, { budgetMs: 0, log: memoryLogger() });
    await sdk.waitFor(() => sdk.received.length === 1, "first delivery in flight");
    await storeSample(db.sql, "message_updated", { ...options, content: "edited text" });
    sdk.releaseHeld();
    assert.equal((await draining).retried, 1);
    const [row] = await db.sql`select status, attempts, version from public.webhook_events where id = ${id}`;
    assert.deepEqual(
      { ...row },
      { status: "pending", attempts: 0, version: 2 },
      "the new version starts afresh",
    );
    assert.equal((await drain(db.sql, config, { log: memoryLogger() })).delivered, 1);
    assert.deepEqual(sdk.received.map((r) => JSON.parse(r.text).content), ["first text", "edited text"]);
    assert.deepEqual((await attemptsOf(db.sql, id)).map((a) => [a.version, a.outcome]), [
      [1, "retry"],
      [2, "delivered"],
    ]);
  });
});

dbTest("forwarding: a 410 for an older version leaves the newer one to be sent, not dead", async () => {
  await withForwardingSetup(async (db, sdk, config) => {
    await db.sql`update public.relay_settings set forward_events = '{message_created,message_updated}'`;
    const options = { messageId: 558, conversationId: 12, content: "first text" };
    const id = await storeSample(db.sql, "message_updated", options);
    // The Agent SDK refuses the first edit for good while the second arrives: the second was never sent.
    sdk.behave((_r, i) => i === 0 ? { hold: true, then: new Response("gone", { status: 410 }) } : ok());
    const draining = drain(db.sql, config, { budgetMs: 0, log: memoryLogger() });
    await sdk.waitFor(() => sdk.received.length === 1, "first delivery in flight");
    await storeSample(db.sql, "message_updated", { ...options, content: "edited text" });
    sdk.releaseHeld();
    const first = await draining;
    assert.deepEqual([first.dead, first.retried], [0, 1]);
    const [row] = await db.sql`select status, attempts, version from public.webhook_events where id = ${id}`;
    assert.deepEqual(
      { ...row },
      { status: "pending", attempts: 0, version: 2 },
      "the new version starts afresh",
    );
    assert.equal((await drain(db.sql, config, { log: memoryLogger() })).delivered, 1);
    assert.deepEqual(sdk.received.map((r) => JSON.parse(r.text).content), ["first text", "edited text"]);
    assert.deepEqual((await attemptsOf(db.sql, id)).map((a) => [a.version, a.http_status, a.outcome]), [
      [1, 410, "retry"],
      [2, 200, "delivered"],
    ]);
    // No death was recorded: nothing for an operator to acknowledge.
    const [health] = await db.sql`select dead_total, dead_unacknowledged from public.webhook_pipeline_health`;
    assert.deepEqual([Number(health.dead_total), Number(health.dead_unacknowledged)], [0, 0]);
  });
});

dbTest(
  "forwarding: an expired lease on an older version leaves the newer one to be sent, not dead",
  async () => {
    await withForwardingSetup(async (db, sdk, config) => {
      await db.sql`update public.relay_settings set forward_events = '{message_created,message_updated}'`;
      await fastSettings(db.sql, { max_attempts: 1, lease_seconds: 3 });
      const options = { messageId: 557, conversationId: 11, content: "first text" };
      const id = await storeSample(db.sql, "message_updated", options);
      // A forwarder claims version 1 for a second, then is never heard of again.
      const [claimed] = await db.sql`select id, version from public.claim_webhook_events('crashed', 10, 1)`;
      assert.deepEqual([Number(claimed.id), claimed.version], [id, 1]);
      await storeSample(db.sql, "message_updated", { ...options, content: "edited text" });
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      assert.equal((await drain(db.sql, config, { log: memoryLogger() })).delivered, 1);
      assert.equal(await statusOf(db.sql, id), "delivered");
      assert.deepEqual(sdk.received.map((r) => JSON.parse(r.text).content), ["edited text"]);
      assert.deepEqual((await attemptsOf(db.sql, id)).map((a) => [a.version, a.outcome]), [
        [1, "lease_expired"],
        [2, "delivered"],
      ]);
    });
  },
);

dbTest("forwarding: a write-back sent again after its reply was lost records each attempt once", async () => {
  await withForwardingSetup(async (db) => {
    const id = await storeSample(db.sql, "message_created");
    const [claimed] = await db.sql`select id, attempt, version from public.claim_webhook_events('w', 10)`;
    const results = report(claimed, 200);
    const complete = () =>
      db.sql`select outcome, status from public.complete_webhook_deliveries('w', ${results}::text::jsonb)`;
    const [first] = await complete();
    const [again] = await complete();
    assert.deepEqual({ ...first }, { outcome: "delivered", status: "delivered" });
    assert.deepEqual({ ...again }, { outcome: "delivered", status: "delivered" }, "the recorded outcome");
    assert.deepEqual((await attemptsOf(db.sql, id)).map((a) => a.outcome), ["delivered"]);
  });
});

dbTest(
  "forwarding: a report arriving after its lease expired and was reclaimed is lease_lost, and recorded",
  async () => {
    await withForwardingSetup(async (db) => {
      const id = await storeSample(db.sql, "message_created");
      const [slow] = await db
        .sql`select id, attempt, version from public.claim_webhook_events('slow', 10, 1)`;
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      const [again] = await db.sql`select id, attempt from public.claim_webhook_events('next', 10)`;
      assert.deepEqual([Number(again.id), again.attempt], [id, 2]);
      const [late] = await db.sql`
      select outcome from public.complete_webhook_deliveries('slow', ${report(slow, 200)}::text::jsonb)`;
      assert.equal(late.outcome, "lease_lost");
      assert.deepEqual((await attemptsOf(db.sql, id)).map((a) => [a.attempt, a.outcome, a.http_status]), [
        [1, "lease_expired", null],
        [1, "lease_lost", 200],
      ]);
      assert.equal(await statusOf(db.sql, id), "delivering", "the new lease is untouched");
    });
  },
);

dbTest(
  "forwarding: a report of version 1 never settles the lease of version 2 at the same attempt number",
  async () => {
    await withForwardingSetup(async (db) => {
      await db.sql`update public.relay_settings set forward_events = '{message_created,message_updated}'`;
      const options = { messageId: 558, conversationId: 12, content: "first text" };
      const id = await storeSample(db.sql, "message_updated", options);
      const [v1] = await db.sql`select id, attempt, version from public.claim_webhook_events('w', 10)`;
      await storeSample(db.sql, "message_updated", { ...options, content: "edited text" });
      // Version 1 failed: version 2 starts afresh and is claimed by the same worker as attempt 1 again.
      await db.sql`select * from public.complete_webhook_deliveries('w', ${report(v1, 503)}::text::jsonb)`;
      const [v2] = await db.sql`select id, attempt, version from public.claim_webhook_events('w', 10)`;
      assert.deepEqual([v2.attempt, v2.version], [1, 2]);
      // Version 1's report once more (its reply was lost): it answers what was recorded and touches nothing.
      const [repeat] = await db.sql`
      select outcome from public.complete_webhook_deliveries('w', ${report(v1, 503)}::text::jsonb)`;
      assert.equal(repeat.outcome, "retry");
      const [row] = await db.sql`select status, leased_version from public.webhook_events where id = ${id}`;
      assert.deepEqual({ ...row }, { status: "delivering", leased_version: 2 });
      const [done] = await db.sql`
      select outcome from public.complete_webhook_deliveries('w', ${report(v2, 200)}::text::jsonb)`;
      assert.equal(done.outcome, "delivered");
    });
  },
);

dbTest(
  "forwarding: an edit after retention deleted its message's row is sent under a key of its own",
  async () => {
    await withForwardingSetup(async (db, sdk, config) => {
      await db.sql`update public.relay_settings set forward_events = '{message_created,message_updated}'`;
      const options = { messageId: 777, conversationId: 5, content: "first edit" };
      await storeSample(db.sql, "message_updated", options);
      assert.equal((await drain(db.sql, config, { log: memoryLogger() })).delivered, 1);
      // 31 days without a receipt of this event; the daily retention job deletes it.
      await db.sql`update public.webhook_events set last_received_at = now() - interval '31 days'`;
      await db.sql`call public.prune_webhook_events()`;
      assert.equal(Number((await db.sql`select count(*) from public.webhook_events`)[0].count), 0);
      // The next edit is a new row, version 1 again.
      await storeSample(db.sql, "message_updated", { ...options, content: "much later edit" });
      assert.equal((await drain(db.sql, config, { log: memoryLogger() })).delivered, 1);
      const sent = sdk.received.map((r) => [JSON.parse(r.text).content, r.headers.get("idempotency-key")]);
      assert.deepEqual(sent.map(([content]) => content), ["first edit", "much later edit"]);
      assert.notEqual(sent[0][1], sent[1][1], "two contents under one Idempotency-Key");
    });
  },
);

dbTest("forwarding: only configured events are forwarded; others are stored as skipped", async () => {
  await withForwardingSetup(async (db, sdk, config) => {
    const skipped = await storeSample(db.sql, "conversation_created", { conversationId: 77 });
    assert.equal(await statusOf(db.sql, skipped), "skipped");
    await db.sql`update public.relay_settings set forward_events = '{message_created,conversation_created}'`;
    const forwarded = await storeSample(db.sql, "conversation_created", { conversationId: 78 });
    assert.equal(await statusOf(db.sql, forwarded), "pending");
    await drain(db.sql, config, { log: memoryLogger() });
    assert.deepEqual(sdk.received.map((r) => r.eventId), [forwarded]);
  });
});

dbTest(
  "forwarding: maxEvents bounds a drain's claims, with one lane or several; the rest stays pending",
  async () => {
    await withForwardingSetup(async (db, sdk, config) => {
      for (let i = 0; i < 20; i++) await storeSample(db.sql, "message_created", { conversationId: 3000 + i });
      const pending = async () =>
        (await db.sql`select count(*)::int as n from public.webhook_events where status = 'pending'`)[0].n;
      const one = await drain(db.sql, config, {
        budgetMs: 10_000,
        batchSize: 5,
        maxEvents: 7,
        log: memoryLogger(),
      });
      assert.deepEqual([one.stopped, one.claimed, one.delivered, one.batches], ["limit", 7, 7, 2]);
      assert.equal(await pending(), 13);
      const laned = await drain(db.sql, config, {
        budgetMs: 10_000,
        batchSize: 4,
        lanes: 3,
        maxEvents: 10,
        log: memoryLogger(),
      });
      assert.equal(laned.stopped, "limit");
      assert.equal(laned.claimed, 10, "three lanes together claim no more than maxEvents");
      assert.equal(await pending(), 3);
      const rest = await drain(db.sql, config, {
        budgetMs: 10_000,
        batchSize: 5,
        maxEvents: 50,
        log: memoryLogger(),
      });
      assert.deepEqual([rest.stopped, rest.claimed], ["idle", 3]);
      assert.equal(sdk.accepted().length, 20);
    });
  },
);

dbTest("forwarding: (close the shared database)", closeSharedDb);
