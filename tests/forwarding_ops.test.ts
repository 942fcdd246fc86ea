// Operating the forwarder: kill switch, target override, replay (SQL and CLI), health, the forward-events
// function, the immediate attempt after ingest, the dev loop (NOTIFY) and the guarded pg_cron schedule.
import assert from "node:assert/strict";
import { dbTest, type TestDb } from "./_db.ts";
import { eventually } from "./_http.ts";
import { type DevProcess, runScript, startDev } from "./_dev.ts";
import { connect, type Sql } from "../supabase/functions/_shared/db.ts";
import { type AgentSdkStandIn, ok, startAgentSdk } from "./_agent_sdk.ts";
import {
  attemptsOf,
  closeSharedDb,
  fastSettings,
  statusOf,
  storeSample,
  webhookInstance,
  withBackgroundAwaited,
  withForwardingSetup,
} from "./_forwarding.ts";
import {
  chatwootWebhookApp,
  IMMEDIATE_DRAIN_BUDGET_MS,
} from "../supabase/functions/_shared/chatwoot_webhook.ts";
import { drain } from "../supabase/functions/_shared/forwarder.ts";
import { createForwardEventsApp } from "../supabase/functions/_shared/forward_events.ts";
import { forwardEventsAuthFromEnv } from "../supabase/functions/_shared/forwarder_config.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";
import { chatwootSignatureHeaders } from "../supabase/functions/_shared/signature.ts";
import { startForwarderLoop } from "../scripts/lib/forwarder_loop.ts";
import { samplePayload } from "../scripts/lib/samples.ts";

dbTest("forwarding: kill switch keeps events pending; resuming delivers them", async () => {
  await withForwardingSetup(async (db, sdk, config) => {
    await db.sql`update public.relay_settings set forwarding_paused = true`;
    const id = await storeSample(db.sql);
    const summary = await drain(db.sql, config, { log: memoryLogger() });
    assert.equal(summary.stopped, "paused");
    assert.equal(summary.claimed, 0);
    assert.equal(await statusOf(db.sql, id), "pending");
    const [health] = await db.sql`select paused, backlog from public.webhook_delivery_health`;
    assert.equal(health.paused, true);
    assert.equal(Number(health.backlog), 1);
    await db.sql`update public.relay_settings set forwarding_paused = false`;
    assert.equal((await drain(db.sql, config, { log: memoryLogger() })).delivered, 1);
    assert.equal(sdk.received.length, 1);
  });
});

dbTest(
  "forwarding: the target override in relay_settings wins over AGENT_SDK_URL, and can be cleared",
  async () => {
    await withForwardingSetup(async (db, sdk, config) => {
      const staging = startAgentSdk();
      try {
        await db.sql`update public.relay_settings set agent_sdk_url_override = ${staging.url}`;
        await storeSample(db.sql);
        await drain(db.sql, config, { log: memoryLogger() });
        assert.equal(staging.received.length, 1);
        assert.equal(sdk.received.length, 0);
        await db.sql`update public.relay_settings set agent_sdk_url_override = null`;
        await storeSample(db.sql);
        await drain(db.sql, config, { log: memoryLogger() });
        assert.equal(staging.received.length, 1);
        assert.equal(sdk.received.length, 1);
        // Neither set: nothing is claimed, the drain says why.
        await storeSample(db.sql);
        const summary = await drain(db.sql, { ...config, agentSdkUrl: null }, { log: memoryLogger() });
        assert.equal(summary.stopped, "not_configured");
        assert.equal(summary.claimed, 0);
      } finally {
        await staging.close();
      }
    });
  },
);

dbTest("forwarding: replay by ids, by time range and event (SQL), and with the CLI", async () => {
  await withForwardingSetup(async (db, sdk, config) => {
    sdk.behave(() => new Response("gone", { status: 410 }));
    const ids = [await storeSample(db.sql), await storeSample(db.sql), await storeSample(db.sql)];
    await db.sql`update public.relay_settings set forward_events = '{message_created,message_updated}'`;
    const updated = await storeSample(db.sql, "message_updated");
    await drain(db.sql, config, { log: memoryLogger() });
    assert.deepEqual(await Promise.all([...ids, updated].map((id) => statusOf(db.sql, id))), [
      "dead",
      "dead",
      "dead",
      "dead",
    ]);
    sdk.behave(() => new Response("ok"));
    const [{ n }] = await db.sql`select public.replay_webhook_events(${[ids[0], 999999]}::bigint[]) as n`;
    assert.equal(Number(n), 1);
    assert.equal(await statusOf(db.sql, ids[0]), "pending");
    const [{ m }] = await db.sql`
      select public.replay_webhook_events_between(now() - interval '1 hour', now(), 'message_updated') as m`;
    assert.equal(Number(m), 1);
    assert.equal(await statusOf(db.sql, ids[1]), "dead");
    // A window with its ends swapped, empty or open matches nothing: refused, not "0 replayed".
    for (
      const [since, until] of [["now()", "now() - interval '1 hour'"], ["now()", "now()"], ["null", "now()"]]
    ) {
      await assert.rejects(
        db.sql.unsafe(`select public.replay_webhook_events_between(${since}, ${until})`),
        (e: Error & { code?: string }) => e.code === "22023" && /must be after/.test(e.message),
        `${since} .. ${until}`,
      );
    }
    assert.equal(await statusOf(db.sql, ids[1]), "dead");
    await drain(db.sql, config, { log: memoryLogger() });
    assert.equal(await statusOf(db.sql, ids[0]), "delivered");
    assert.equal(await statusOf(db.sql, updated), "delivered");

    const cli = async (...args: string[]) => {
      const out = await runScript("scripts/replay.ts", args, db.url);
      return { code: out.code, text: out.stdout + out.stderr };
    };
    const dry = await cli("--since", "2000-01-01T00:00Z", "--event", "message_created", "--dry-run");
    assert.equal(dry.code, 0, dry.text);
    assert.match(dry.text, /"matched_dead":2,"requeued":0/);
    const run = await cli("--since", "2000-01-01T00:00Z", "--event", "message_created", "--chunk", "1");
    assert.equal(run.code, 0, run.text);
    assert.match(run.text, /requeued 1 \/ 2/);
    assert.match(run.text, /"matched_dead":2,"requeued":2/);
    assert.equal(await statusOf(db.sql, ids[1]), "pending");
    assert.equal((await cli()).code, 2, "usage error without a selection");
    await drain(db.sql, config, { log: memoryLogger() });
    assert.deepEqual(await Promise.all(ids.map((id) => statusOf(db.sql, id))), [
      "delivered",
      "delivered",
      "delivered",
    ]);
  });
});

dbTest(
  "forwarding: once the Agent SDK is back, retry_webhook_events_now() sends what waits for a retry at once",
  async () => {
    await withForwardingSetup(async (db, sdk, config) => {
      // An outage: the first attempt fails and the next one is an hour away; the conversation's next event
      // waits behind it (one in flight per conversation, in order).
      await fastSettings(db.sql, { retry_schedule_seconds: [3600] });
      const first = await storeSample(db.sql, "message_created", { conversationId: 501 });
      const next = await storeSample(db.sql, "message_created", { conversationId: 501 });
      const dead = await storeSample(db.sql, "message_created", { conversationId: 502 });
      sdk.behave((request) => new Response("down", { status: request.eventId === dead ? 410 : 503 }));
      await drain(db.sql, config, { log: memoryLogger() });
      assert.deepEqual(await Promise.all([first, next, dead].map((id) => statusOf(db.sql, id))), [
        "pending",
        "pending",
        "dead",
      ]);
      // The Agent SDK is back: nothing is due for an hour.
      sdk.behave(() => new Response("ok"));
      assert.equal((await drain(db.sql, config, { log: memoryLogger() })).claimed, 0);
      const [{ n }] = await db.sql`select public.retry_webhook_events_now() as n`;
      assert.equal(Number(n), 1, "only the event waiting for its retry; the dead one is replay's");
      await drain(db.sql, config, { log: memoryLogger() });
      await drain(db.sql, config, { log: memoryLogger() });
      assert.deepEqual(await Promise.all([first, next, dead].map((id) => statusOf(db.sql, id))), [
        "delivered",
        "delivered",
        "dead",
      ]);
      // Its attempts count on (the second one delivered it), and the conversation kept its order.
      assert.deepEqual((await attemptsOf(db.sql, first)).map((a) => a.attempt), [1, 2]);
      assert.deepEqual(sdk.accepted().map((r) => r.eventId), [first, next]);
    });
  },
);

dbTest(
  "forwarding: health view: failing_since and the 5-minute escalation from the attempts table",
  async () => {
    await withForwardingSetup(async (db) => {
      const id = await storeSample(db.sql);
      // Explicit times, a second apart at the least: PGlite's clock moves by milliseconds, so two inserts at
      // now() can share a timestamp on a fast machine, and the view needs the failure strictly after the success.
      const attempt = (secondsAgo: number, status: number, outcome: string) =>
        db.sql`insert into public.webhook_delivery_attempts
               (event_id, attempt, version, started_at, http_status, succeeded, outcome, recorded_at)
             values (${id}, 1, 1, now() - make_interval(secs => ${secondsAgo}), ${status},
                     ${status < 300}, ${outcome}, now() - make_interval(secs => ${secondsAgo}))`;
      const health = async () => (await db.sql`select * from public.webhook_delivery_health`)[0];
      let h = await health();
      assert.equal(h.failing_since, null);
      assert.equal(h.escalate, false);
      await attempt(20 * 60, 200, "delivered");
      await attempt(8 * 60, 500, "retry");
      await attempt(60, 502, "retry");
      h = await health();
      assert.ok(h.failing_since instanceof Date);
      assert.ok(Date.now() - h.failing_since.getTime() > 7 * 60_000);
      assert.equal(h.escalate, true);
      await attempt(2, 200, "delivered");
      h = await health();
      assert.equal(h.failing_since, null);
      assert.equal(h.escalate, false);
      await attempt(0, 500, "retry");
      h = await health();
      assert.ok(h.failing_since instanceof Date);
      assert.equal(h.escalate, false, "failing, but not for 5 minutes yet");
      assert.equal(Number((await db.sql`select count(*) from public.webhook_delivery_health`)[0].count), 1);
    });
  },
);

dbTest(
  "forwarding: health view: a 410 is the Agent SDK refusing an event, not failing: it neither starts, moves " +
    "nor ends failing_since",
  async () => {
    await withForwardingSetup(async (db) => {
      const id = await storeSample(db.sql);
      // Recorded as the write-back records them: a 410 that killed the event ('dead'), one that refused an
      // older version ('retry'), one reported after its lease was gone ('lease_lost').
      // Returns the attempt's recorded_at, as the view reads it back.
      const attempt = async (secondsAgo: number, status: number, outcome: string): Promise<number> =>
        (await db.sql`insert into public.webhook_delivery_attempts
               (event_id, attempt, version, started_at, http_status, succeeded, outcome, error, recorded_at)
             values (${id}, 1, 1, now() - make_interval(secs => ${secondsAgo}), ${status},
                     ${status < 300}, ${outcome}, ${status < 300 ? null : `HTTP ${status}`},
                     now() - make_interval(secs => ${secondsAgo}))
             returning recorded_at`)[0].recorded_at.getTime();
      const health = async () =>
        (await db.sql`select failing_since, last_failure_at, escalate from public.webhook_pipeline_health`)[
          0
        ];
      const reset = () => db.sql`delete from public.webhook_delivery_attempts`;

      // 410s alone, minutes old, no success since (an idle, healthy pipeline): nothing to escalate.
      await attempt(9 * 60, 410, "dead");
      await attempt(8 * 60, 410, "retry");
      await attempt(7 * 60, 410, "lease_lost");
      let h = await health();
      assert.deepEqual([h.failing_since, h.last_failure_at, h.escalate], [null, null, false]);

      // A 500, then a 410: still failing, since the 500 (the 410 ends nothing).
      await reset();
      await attempt(20 * 60, 200, "delivered");
      let first = await attempt(8 * 60, 500, "retry");
      await attempt(7 * 60, 410, "dead");
      h = await health();
      assert.equal(h.failing_since?.getTime(), first);
      assert.equal(h.last_failure_at?.getTime(), first);
      assert.equal(h.escalate, true);

      // A 410, then a 500: failing since the 500 (the 410 started nothing).
      await reset();
      await attempt(20 * 60, 200, "delivered");
      await attempt(8 * 60, 410, "dead");
      first = await attempt(7 * 60, 500, "retry");
      h = await health();
      assert.equal(h.failing_since?.getTime(), first);
      assert.equal(h.escalate, true);

      // 500s with 410s between them: failing since the first 500, whatever the 410s.
      await reset();
      await attempt(20 * 60, 200, "delivered");
      first = await attempt(10 * 60, 500, "retry");
      await attempt(9 * 60, 410, "dead");
      const last = await attempt(8 * 60, 500, "retry");
      await attempt(60, 410, "dead");
      h = await health();
      assert.equal(h.failing_since?.getTime(), first);
      assert.equal(h.last_failure_at?.getTime(), last);
      assert.equal(h.escalate, true);

      // A 500 a minute ago after a 410 long ago: failing, but not for 5 minutes yet.
      await reset();
      await attempt(10 * 60, 410, "dead");
      first = await attempt(60, 500, "retry");
      h = await health();
      assert.equal(h.failing_since?.getTime(), first);
      assert.equal(h.escalate, false);
    });
  },
);

dbTest(
  "forwarding: health view: a forwarder answered 410 in the last 5 minutes is at work, not stalled",
  async () => {
    await withForwardingSetup(async (db) => {
      const gone = await storeSample(db.sql, "message_created", { conversationId: 601 });
      const due = await storeSample(db.sql, "message_created", { conversationId: 602 });
      await db
        .sql`update public.webhook_events set status = 'dead', next_attempt_at = null where id = ${gone}`;
      await db.sql`update public.webhook_events set next_attempt_at = now() - interval '10 minutes'
                    where id = ${due}`;
      // Its only sign of life: the 410 a minute ago (a drain working through events the Agent SDK refuses).
      await db.sql`insert into public.webhook_delivery_attempts
                     (event_id, attempt, version, started_at, http_status, succeeded, outcome, recorded_at)
                   values (${gone}, 1, 1, now() - interval '1 minute', 410, false, 'dead',
                           now() - interval '1 minute')`;
      let [h] = await db
        .sql`select escalate, stalled_since, failing_since from public.webhook_pipeline_health`;
      assert.deepEqual([h.escalate, h.stalled_since, h.failing_since], [false, null, null]);
      // That 410 six minutes ago, nothing since: stalled.
      await db.sql`update public.webhook_delivery_attempts set recorded_at = now() - interval '6 minutes'`;
      [h] = await db.sql`select escalate, stalled_since, failing_since from public.webhook_pipeline_health`;
      assert.equal(h.escalate, true);
      assert.ok(h.stalled_since instanceof Date);
      assert.equal(h.failing_since, null);
    });
  },
);

dbTest(
  "forwarding: health view: a forwarding that has stopped escalates after 5 minutes (stalled_since)",
  async () => {
    await withForwardingSetup(async (db, sdk, config) => {
      const health = async () =>
        (await db
          .sql`select backlog, escalate, failing_since, stalled_since from public.webhook_pipeline_health`)[
            0
          ];
      const head = await storeSample(db.sql, "message_created", { conversationId: 501 });
      const follower = await storeSample(db.sql, "message_created", { conversationId: 501 });
      const other = await storeSample(db.sql, "message_created", { conversationId: 502 });
      // Stored 4 minutes ago and never claimed: not yet 5 minutes.
      await db.sql`update public.webhook_events set next_attempt_at = now() - interval '4 minutes'`;
      let h = await health();
      assert.equal(h.escalate, false);
      assert.equal(h.stalled_since, null);

      // No forwarder for 10 minutes: stalled since the oldest claimable event became due. The follower (due
      // earlier still) is held back behind its conversation's head, so a claim would not take it.
      await db
        .sql`update public.webhook_events set next_attempt_at = now() - interval '10 minutes' where id = ${head}`;
      await db
        .sql`update public.webhook_events set next_attempt_at = now() - interval '30 minutes' where id = ${follower}`;
      await db
        .sql`update public.webhook_events set next_attempt_at = now() - interval '8 minutes' where id = ${other}`;
      h = await health();
      assert.equal(h.escalate, true);
      assert.equal(h.failing_since, null, "nothing failed: nothing was attempted");
      // The head's due time itself: read back, not measured against the clock (a slow run moves that on).
      const [{ due }] = await db
        .sql`select next_attempt_at as due from public.webhook_events where id = ${head}`;
      assert.equal(h.stalled_since.getTime(), due.getTime());
      const stats = await runScript("scripts/stats.ts", [], db.url);
      assert.equal(stats.code, 0, stats.stderr);
      assert.match(
        stats.stdout,
        new RegExp(`stalled since\\s+${due.toISOString()} \\(\\d+\\.\\d min ago\\)`),
      );
      assert.match(
        stats.stdout,
        /escalate\s+YES: events are due and no forwarder has claimed one for 5 minutes/,
      );

      // Paused on purpose: not stalled (readiness warns about the pause itself).
      await db.sql`update public.relay_settings set forwarding_paused = true`;
      h = await health();
      assert.deepEqual([h.escalate, h.stalled_since], [false, null]);
      await db.sql`update public.relay_settings set forwarding_paused = false`;

      // A forwarder at work in the last 5 minutes (here, a claim in flight): a slow drain, not a stall.
      await db.sql`update public.webhook_events
                      set status = 'delivering', attempts = 1, leased_by = 'w', leased_version = version,
                          leased_at = now() - interval '1 minute', lease_expires_at = now() + interval '1 minute'
                    where id = ${other}`;
      h = await health();
      assert.deepEqual([h.escalate, h.stalled_since], [false, null]);

      // That forwarder died: it claimed 7 minutes ago, its lease expired 6 minutes ago, and no claim has
      // reclaimed it since. Stalled since that claim, the last sign of a forwarder at work.
      await db.sql`update public.webhook_events
                      set leased_at = now() - interval '7 minutes', lease_expires_at = now() - interval '6 minutes'
                    where id = ${other}`;
      h = await health();
      assert.equal(h.escalate, true);
      const [{ claimed }] = await db
        .sql`select leased_at as claimed from public.webhook_events where id = ${other}`;
      assert.equal(h.stalled_since.getTime(), claimed.getTime());

      // A forwarder runs again: it reclaims the lease, delivers all three, and the stall is over.
      let delivered = 0;
      for (let i = 0; i < 5 && delivered < 3; i++) {
        delivered += (await drain(db.sql, config, { log: memoryLogger() })).delivered;
      }
      assert.equal(delivered, 3);
      assert.equal(sdk.received.length, 3);
      h = await health();
      assert.deepEqual([Number(h.backlog), h.escalate, h.stalled_since], [0, false, null]);

      // A follower waiting behind a head that retries later is not stalled, however long it has been due.
      const retrying = await storeSample(db.sql, "message_created", { conversationId: 503 });
      const behind = await storeSample(db.sql, "message_created", { conversationId: 503 });
      await db.sql`update public.webhook_events set attempts = 1, next_attempt_at = now() + interval '1 hour'
                    where id = ${retrying}`;
      await db
        .sql`update public.webhook_events set next_attempt_at = now() - interval '1 hour' where id = ${behind}`;
      await db.sql`update public.webhook_delivery_attempts set recorded_at = now() - interval '20 minutes'`;
      h = await health();
      assert.deepEqual([Number(h.backlog), h.escalate, h.stalled_since], [2, false, null]);
    });
  },
);

dbTest(
  "forwarding: forward-events answers 503 unconfigured, 401 without the token, 200 with a summary",
  async () => {
    await withForwardingSetup(async (db, sdk, config) => {
      const call = (
        auth: { forwarderTokens: string[]; serviceRoleKey: string | null },
        header?: string,
        query = "",
      ) =>
        createForwardEventsApp({ auth, forwarder: config, sql: db.sql, log: memoryLogger() }).fetch(
          new Request(`http://functions.local/forward-events${query}`, {
            method: "POST",
            headers: header ? { Authorization: header } : {},
          }),
        );
      const none = await call({ forwarderTokens: [], serviceRoleKey: null }, "Bearer x");
      assert.equal(none.status, 503);
      assert.equal((await none.json()).error, "not_configured");
      const auth = {
        forwarderTokens: ["forwarder-token-0123456789"],
        serviceRoleKey: "service-role-key-abc",
      };
      assert.equal((await call(auth)).status, 401);
      const wrong = await call(auth, "Bearer forwarder-token-0123456788");
      assert.equal(wrong.status, 401);
      assert.deepEqual(Object.keys(await wrong.json()).sort(), ["error", "message", "ok"]);
      await storeSample(db.sql);
      const good = await call(auth, "Bearer forwarder-token-0123456789");
      assert.equal(good.status, 200);
      const summary = await good.json();
      assert.equal(summary.ok, true);
      assert.equal(summary.delivered, 1);
      assert.equal(sdk.received.length, 1);
      const byServiceRole = await call(auth, "Bearer service-role-key-abc");
      assert.equal(byServiceRole.status, 200);
      assert.equal((await byServiceRole.json()).claimed, 0);
      // Bounded by count (hosted Supabase's 2 s of CPU per request), not only by time.
      for (let i = 0; i < 4; i++) await storeSample(db.sql, "message_created", { conversationId: 4000 + i });
      const bounded = await call(auth, "Bearer forwarder-token-0123456789", "?max_events=3");
      const limited = await bounded.json();
      assert.deepEqual([bounded.status, limited.stopped, limited.claimed], [200, "limit", 3]);
      // Blank is unset (a URL template's unset variable), not 0 read as the minimum of 1 event.
      const blank = await call(
        auth,
        "Bearer forwarder-token-0123456789",
        "?max_events=&budget_ms=&batch_size=",
      );
      const rest = await blank.json();
      assert.deepEqual([blank.status, rest.stopped, rest.claimed], [200, "idle", 1]);
      // A rotation: both tokens while pg_cron's Vault secret changes over, then only the new one.
      const rotating = forwardEventsAuthFromEnv({
        FORWARDER_TOKEN: "forwarder-token-0123456789, forwarder-token-new-9876543210",
      });
      assert.equal((await call(rotating, "Bearer forwarder-token-0123456789")).status, 200);
      assert.equal((await call(rotating, "Bearer forwarder-token-new-9876543210")).status, 200);
      const rotated = forwardEventsAuthFromEnv({ FORWARDER_TOKEN: "forwarder-token-new-9876543210" });
      assert.equal((await call(rotated, "Bearer forwarder-token-0123456789")).status, 401);
      assert.equal((await call(rotated, "Bearer forwarder-token-new-9876543210")).status, 200);
      // A token short enough to guess is refused as a setting, even the right one, and even in a rotation.
      for (const value of ["letmein", "forwarder-token-new-9876543210,short"]) {
        const weak = await call(forwardEventsAuthFromEnv({ FORWARDER_TOKEN: value }), "Bearer letmein");
        assert.equal(weak.status, 503, value);
        const answer = await weak.json();
        assert.equal(answer.error, "not_configured");
        assert.match(answer.message, /FORWARDER_TOKEN must be at least 24 characters/);
      }
      const weakRotation = forwardEventsAuthFromEnv({
        FORWARDER_TOKEN: "forwarder-token-new-9876543210,short",
      });
      assert.equal((await call(weakRotation, "Bearer forwarder-token-new-9876543210")).status, 503);
    });
  },
);

dbTest(
  "forwarding: chatwoot-webhook starts a delivery right after storing, without waiting for it",
  async () => {
    await withForwardingSetup(async (db, sdk) => {
      sdk.behave(() => ({ hold: true }));
      const secret = "chatwoot-webhook-secret-for-tests";
      const app = chatwootWebhookApp({
        env: { CHATWOOT_WEBHOOK_SECRET: secret, AGENT_SDK_URL: sdk.url },
        sql: db.sql,
        log: memoryLogger(),
      });
      const post = async (body: string) =>
        await app.fetch(
          new Request("http://functions.local/chatwoot-webhook", {
            method: "POST",
            headers: { "Content-Type": "application/json", ...chatwootSignatureHeaders(secret, body) },
            body,
          }),
        );
      const body = JSON.stringify(samplePayload("message_created", { messageId: 8801, conversationId: 61 }));
      const response = await post(body);
      assert.equal(response.status, 200);
      const { id } = await response.json();
      await sdk.waitFor(() => sdk.received.length === 1, "the immediate attempt");
      // The answer came back while the Agent SDK was still holding the delivery.
      assert.equal(sdk.accepted().length, 0);
      assert.equal(sdk.received[0].eventId, id);
      assert.equal(sdk.received[0].text, body);
      sdk.releaseHeld();
      await sdk.waitFor(() => sdk.accepted().length === 1, "the delivery answered");
      const deadline = Date.now() + 10_000;
      while ((await statusOf(db.sql, id)) !== "delivered") {
        assert.ok(Date.now() < deadline, "marked delivered");
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      // An event that is not forwarded starts nothing.
      const skipped = await post(
        JSON.stringify(samplePayload("conversation_created", { conversationId: 62 })),
      );
      assert.equal((await skipped.json()).status, "skipped");
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(sdk.received.length, 1);
    });
  },
);

// An Agent SDK slower than the immediate drain's 2 s budget (its timeout allows 10 s): what that delivery's
// write-back makes due must go out at once, not wait for forward-events' next call (30 s hosted).
const SLOWER_THAN_THE_BUDGET_MS = IMMEDIATE_DRAIN_BUDGET_MS + 500;

dbTest(
  "forwarding: an edit stored while the previous version is delivered slowly goes out right after it",
  async () => {
    await withForwardingSetup((db, sdk) =>
      withBackgroundAwaited(async () => {
        await fastSettings(db.sql, { request_timeout_ms: 10_000, lease_seconds: 60 });
        await db.sql`update public.relay_settings set forward_events = '{message_created,message_updated}'`;
        sdk.behave((_r, i) => i === 0 ? { delayMs: SLOWER_THAN_THE_BUDGET_MS, then: ok() } : ok());
        const post = webhookInstance(db.sql, sdk.url);
        const v1 = await post("message_updated", 55_001, 5_501, "first edit");
        await sdk.waitFor(() => sdk.received.length === 1, "version 1 in flight");
        const v2 = await post("message_updated", 55_001, 5_501, "second edit");
        assert.deepEqual([v2.id, v2.outcome, v2.status], [v1.id, "updated", "delivering"]);
        await sdk.waitFor(
          () => sdk.received.some((r) => r.text.includes("second edit")),
          "the second edit, without forward-events",
          10_000,
        );
      })
    );
  },
);

dbTest(
  "forwarding: a message stored on another instance behind a slow delivery of its conversation goes out after it",
  async () => {
    await withForwardingSetup((db, sdk) =>
      withBackgroundAwaited(async () => {
        await fastSettings(db.sql, { request_timeout_ms: 10_000, lease_seconds: 60 });
        sdk.behave((_r, i) => i === 0 ? { delayMs: SLOWER_THAN_THE_BUDGET_MS, then: ok() } : ok());
        const instanceA = webhookInstance(db.sql, sdk.url);
        const instanceB = webhookInstance(db.sql, sdk.url);
        await instanceA("message_created", 56_001, 5_601);
        await sdk.waitFor(() => sdk.received.length === 1, "the first message in flight");
        // B's own drain finds the conversation held by A's delivery and ends; A's drain, past its budget
        // when that delivery is written back, must take the next one.
        const second = await instanceB("message_created", 56_002, 5_601);
        await sdk.waitFor(
          () => sdk.accepted().some((r) => r.eventId === second.id),
          "the second message, without forward-events",
          10_000,
        );
      })
    );
  },
);

dbTest("forwarding: the loop delivers what was stored while it was stopped, then stops cleanly", async () => {
  await withForwardingSetup(async (db, sdk, config) => {
    const ids = [await storeSample(db.sql), await storeSample(db.sql)];
    // No NOTIFY subscription and a sweep far away: only the start-up drain can deliver these.
    const loop = await startForwarderLoop({ sql: db.sql, config, log: memoryLogger(), sweepMs: 60_000 });
    try {
      await sdk.waitFor(() => sdk.accepted().length === 2, "start-up drain");
    } finally {
      await loop.stop();
    }
    const deadline = Date.now() + 10_000;
    while ((await Promise.all(ids.map((id) => statusOf(db.sql, id)))).some((s) => s !== "delivered")) {
      assert.ok(Date.now() < deadline);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  });
});

/**
 * `deno task dev` forwarding to `sdk` with its sweep parked (10 min), so only NOTIFY can deliver in time: LISTEN
 * on a server (this test's database), the embedded database's in-process listener on PGlite (its own). `fn`
 * gets a connection to the dev server's database; the dev server must then stop cleanly.
 */
async function withParkedDevForwarder(
  db: TestDb,
  sdk: AgentSdkStandIn,
  fn: (devSql: Sql, dev: DevProcess) => Promise<void>,
) {
  const dataDir = await Deno.makeTempDir({ prefix: "relay-dev-" });
  const env: Record<string, string> = {
    RELAY_DATA_DIR: dataDir,
    AGENT_SDK_URL: sdk.url,
    FORWARDER_SWEEP_MS: "600000",
  };
  if (db.kind === "postgres") env.DATABASE_URL = db.url;
  const dev = await startDev(env);
  try {
    const devSql = db.kind === "postgres" ? db.sql : connect(dev.databaseUrl, { max: 1 });
    try {
      await fn(devSql, dev);
    } finally {
      if (devSql !== db.sql) await devSql.end({ timeout: 1 });
    }
  } finally {
    assert.equal((await dev.stop()).code, 0, "clean stop");
    await Deno.remove(dataDir, { recursive: true });
  }
}

dbTest(
  "forwarding: the dev server's forwarder is woken by NOTIFY and stops on SIGTERM",
  async () => {
    await withForwardingSetup(async (db, sdk) => {
      await withParkedDevForwarder(db, sdk, async (devSql) => {
        // Let the start-up drain finish first, so that only NOTIFY can explain a delivery.
        await new Promise((resolve) => setTimeout(resolve, 500));
        const id = await storeSample(devSql);
        await sdk.waitFor(
          () => sdk.received.some((r) => r.eventId === id),
          "delivery woken by NOTIFY",
          20_000,
        );
      });
    });
  },
);

dbTest(
  "forwarding: resuming wakes the dev server's forwarder, so what waited goes out without the sweep",
  async () => {
    await withForwardingSetup(async (db, sdk) => {
      await withParkedDevForwarder(db, sdk, async (devSql, dev) => {
        await devSql`update public.relay_settings set forwarding_paused = true`;
        // Its NOTIFY wakes the forwarder, whose drain finds forwarding paused (and says so once).
        const id = await storeSample(devSql);
        await eventually(
          () => Promise.resolve(dev.lines.join("\n").includes("[Forwarder] Paused")),
          20_000,
          "the forwarder saw the pause",
        );
        assert.equal(sdk.received.length, 0);
        await devSql`update public.relay_settings set forwarding_paused = false`;
        // The sweep is 10 min away: only the resume's NOTIFY can explain a delivery now.
        await sdk.waitFor(
          () => sdk.received.some((r) => r.eventId === id),
          "delivery woken by the resume",
          20_000,
        );
        // Said once, after the pause's line (logged once the drain is done: after the delivery).
        await eventually(
          () => Promise.resolve(dev.lines.join("\n").includes("[Forwarder] Resumed")),
          20_000,
          "the forwarder said it resumed",
        );
        const lines = dev.lines.join("\n");
        assert.equal(lines.split("[Forwarder] Resumed").length - 1, 1, lines);
        assert.ok(lines.indexOf("[Forwarder] Paused") < lines.indexOf("[Forwarder] Resumed"));
      });
    });
  },
);

dbTest(
  "forwarding: dead_unacknowledged counts deaths after the acknowledgement, not late reports of older ones",
  async () => {
    await withForwardingSetup(async (db) => {
      const { sql } = db;
      await fastSettings(sql, { max_attempts: 1 });
      const unacknowledged = async () =>
        Number((await sql`select dead_unacknowledged as n from public.webhook_delivery_health`)[0].n);
      const result = (id: number, status: number) =>
        JSON.stringify([{
          id: String(id),
          attempt: 1,
          version: 1,
          started_at: new Date().toISOString(),
          duration_ms: 5,
          http_status: status,
          error: null,
          response_excerpt: null,
          retry_after_seconds: null,
        }]);
      const id = await storeSample(sql);
      // Forwarder "slow" claims its last attempt and outlives the lease; a claim by "next" reclaims it: dead.
      assert.equal((await sql`select id from public.claim_webhook_events('slow', 10)`).length, 1);
      await sql`update public.webhook_events set lease_expires_at = now() - interval '1 second' where id = ${id}`;
      assert.equal((await sql`select id from public.claim_webhook_events('next', 10)`).length, 0);
      assert.equal(await statusOf(sql, id), "dead");
      // That was an hour ago; the operator looked at it and acknowledged it.
      await sql`update public.webhook_delivery_attempts set recorded_at = recorded_at - interval '1 hour'
                 where event_id = ${id}`;
      assert.equal(await unacknowledged(), 1);
      await sql`update public.relay_settings set dead_acknowledged_at = now() - interval '1 second'`;
      assert.equal(await unacknowledged(), 0);

      // "slow" reports at last: recorded as lease_lost, the event as dead as before. Nothing died.
      const [late] = await sql`
        select outcome from public.complete_webhook_deliveries('slow', ${result(id, 503)}::text::jsonb)`;
      assert.equal(late.outcome, "lease_lost");
      assert.equal(await statusOf(sql, id), "dead");
      assert.equal(await unacknowledged(), 0, "a late report of a death already acknowledged");

      // Replayed, it dies again (410): that death is after the acknowledgement, and counts.
      await sql`select public.replay_webhook_events(${[id]}::bigint[])`;
      assert.equal((await sql`select id from public.claim_webhook_events('again', 10)`).length, 1);
      const [died] = await sql`
        select outcome from public.complete_webhook_deliveries('again', ${result(id, 410)}::text::jsonb)`;
      assert.equal(died.outcome, "dead");
      assert.equal(await unacknowledged(), 1, "died again after the acknowledgement");

      // Acknowledged, replayed, and dead once more at a lease's expiry: counts too.
      await sql`update public.webhook_delivery_attempts set recorded_at = recorded_at - interval '1 hour'
                 where event_id = ${id}`;
      await sql`select public.replay_webhook_events(${[id]}::bigint[])`;
      assert.equal(await unacknowledged(), 0);
      assert.equal((await sql`select id from public.claim_webhook_events('gone', 10)`).length, 1);
      await sql`update public.webhook_events set lease_expires_at = now() - interval '1 second' where id = ${id}`;
      await sql`select id from public.claim_webhook_events('next', 10)`;
      assert.equal(await statusOf(sql, id), "dead");
      assert.equal(await unacknowledged(), 1, "died again, at a reclaim");
    });
  },
);

dbTest("forwarding: (close the shared database)", closeSharedDb);
