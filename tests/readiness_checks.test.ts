// Live checks against a real Postgres and a real HTTP server standing in for Chatwoot.
import { closedPortUrl } from "./_closed_port.ts";
import assert from "node:assert/strict";
import postgres from "postgres";
import { dbIndependentTest, dbTest, HOLDS_DB, startTestDb, type TestDb } from "./_db.ts";
import { startDbProxy } from "./_proxy.ts";
import { connect, type Sql } from "../supabase/functions/_shared/db.ts";
import type { CheckResult } from "../supabase/functions/_shared/readiness_model.ts";
import {
  createDeliveryHealthView,
  ensureDeliveryHealthView,
  fullEnv,
  STAND_IN_ACCOUNT,
  STAND_IN_TOKEN,
  startChatwootStandIn,
  storeVerifiedWebhook,
} from "./_readiness.ts";
import {
  cachedChecks,
  checkChatwootApi,
  checkChatwootHealth,
  checkCredentials,
  checkDatabase,
  type CheckDeps,
  checkWebhookPipeline,
  DELIVERY_HEALTH_COLUMNS,
  readinessConfigFromEnv,
} from "../supabase/functions/_shared/readiness_checks.ts";

const db: TestDb = await startTestDb();
const chatwoot = startChatwootStandIn();
const CREDENTIALS = [
  "CHATWOOT_TOKEN_PROD",
  "CHATWOOT_ACCOUNT_ID_PROD",
  "CHATWOOT_WEBHOOK_SECRET",
  "CHATWOOT_BASE_URL_PROD",
];

/** A generous timeout by default (a loaded machine must not turn a pass into a timeout); short where tested. */
function deps(
  env: Record<string, string>,
  extra: Partial<CheckDeps> = {},
  checkTimeoutMs = 10_000,
): CheckDeps {
  // A forwarding target, as a deployment has (the webhook_pipeline check names a missing one); never called.
  env = { AGENT_SDK_URL: "http://agent-sdk.invalid", ...env };
  const config = readinessConfigFromEnv(env);
  config.checkTimeoutMs = checkTimeoutMs;
  return { sql: db.sql, env, config, now: () => new Date(), ...extra };
}

dbIndependentTest(
  "readiness check chatwoot_health: 200 passes and proves task 3; 503 fails; custom path",
  async () => {
    chatwoot.health = 200;
    chatwoot.requests.length = 0;
    const pass = await checkChatwootHealth(deps(fullEnv(chatwoot.url)));
    assert.equal(pass.status, "pass", pass.detail);
    assert.deepEqual(pass.proves, ["task-3", "validation-1", "blocker-2"]);
    assert.deepEqual(chatwoot.requests, [{ path: "/hc", token: null }]);
    assert.ok(!Number.isNaN(Date.parse(pass.checked_at)));
    assert.ok(Number.isInteger(pass.duration_ms) && pass.duration_ms >= 0);

    chatwoot.health = 503;
    const down = await checkChatwootHealth(deps(fullEnv(chatwoot.url)));
    assert.equal(down.status, "fail");
    assert.match(down.detail, /answered 503, expected 200/);
    assert.deepEqual(down.proves, []);

    chatwoot.requests.length = 0;
    const custom = await checkChatwootHealth(
      deps(fullEnv(`${chatwoot.url}/`, { CHATWOOT_HEALTH_PATH: "api/hc" })),
    );
    assert.equal(custom.status, "fail"); // the stand-in knows only /hc
    assert.deepEqual(chatwoot.requests.map((r) => r.path), ["/api/hc"]);
    chatwoot.health = 200;
  },
  HOLDS_DB,
);

dbIndependentTest(
  "readiness check chatwoot_health: an answer slower than the timeout fails with the timeout",
  async () => {
    chatwoot.health = "slow";
    try {
      const slow = await checkChatwootHealth(deps(fullEnv(chatwoot.url), {}, 300));
      assert.equal(slow.status, "fail");
      assert.equal(slow.detail, "no answer within 300 ms");
    } finally {
      chatwoot.health = 200;
    }
  },
  HOLDS_DB,
);

dbIndependentTest(
  "readiness check chatwoot_health and chatwoot_api: a Chatwoot out of reach fails saying why, not only " +
    '"fetch failed"',
  async () => {
    // A port nothing listens on: Chatwoot's host up, its server down.
    const downUrl = closedPortUrl();
    // A server that takes each connection and closes it unanswered (a proxy in front of a Chatwoot restarting).
    const hangUp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const hangUpUrl = `http://127.0.0.1:${(hangUp.addr as Deno.NetAddr).port}`;
    const accepting = (async () => {
      for await (const conn of hangUp) conn.close();
    })().catch(() => {});
    try {
      for (
        const [url, why] of [[downUrl, /connection refused/i], [hangUpUrl, /connection closed/i]] as const
      ) {
        for (const check of [checkChatwootHealth, checkChatwootApi]) {
          const result = await check(deps(fullEnv(url)));
          assert.equal(result.status, "fail", result.detail);
          assert.match(result.detail, why, `${result.name}: ${result.detail}`);
          assert.ok(!result.detail.includes(STAND_IN_TOKEN));
          // The function's own address (fetch names it, "from 127.0.0.1:<port>") is not for the public page.
          assert.doesNotMatch(result.detail, / from \S+ for /, result.detail);
        }
      }
    } finally {
      hangUp.close();
      await accepting;
    }
  },
  HOLDS_DB,
);

dbIndependentTest(
  "readiness check chatwoot_health: not configured warns; a malformed URL fails",
  async () => {
    const unset = await checkChatwootHealth(deps({}));
    assert.equal(unset.status, "warn");
    assert.match(unset.detail, /CHATWOOT_BASE_URL/);
    const bad = await checkChatwootHealth(deps({ CHATWOOT_BASE_URL: "ftp://chatwoot" }));
    assert.equal(bad.status, "fail");
  },
  HOLDS_DB,
);

dbIndependentTest(
  "readiness check chatwoot_health: the URL it shows (a public page) has no password or ?token=",
  async () => {
    const secret = "GatewaySecret0123456789";
    const bases = [
      chatwoot.url.replace("://", `://alice:${secret}@`), // basic auth in front of Chatwoot
      `${chatwoot.url}/?token=${secret}`, // a gateway's key in the query
      `${chatwoot.url}?region=eu&api_key=${secret}`,
    ];
    for (const base of bases) {
      const result = await checkChatwootHealth(deps({ CHATWOOT_BASE_URL: base }));
      assert.ok(!JSON.stringify(result).includes(secret), `${base}: ${JSON.stringify(result)}`);
      assert.match(String(result.data?.url), /^http:\/\/127\.0\.0\.1:\d+\//, base);
    }
  },
  HOLDS_DB,
);

dbIndependentTest(
  "readiness check chatwoot_api: the right token passes (proves task 5), a wrong one is a 401 fail",
  async () => {
    chatwoot.requests.length = 0;
    const ok = await checkChatwootApi(deps(fullEnv(chatwoot.url)));
    assert.equal(ok.status, "pass", ok.detail);
    assert.deepEqual(ok.proves, ["task-5", "validation-2"]);
    assert.deepEqual(chatwoot.requests, [{
      path: `/api/v1/accounts/${STAND_IN_ACCOUNT}`,
      token: STAND_IN_TOKEN,
    }]);

    const wrong = await checkChatwootApi(
      deps(fullEnv(chatwoot.url, { CHATWOOT_API_TOKEN: "not-the-token" })),
    );
    assert.equal(wrong.status, "fail");
    assert.match(wrong.detail, /answered 401: token rejected/);
    assert.deepEqual(wrong.proves, []);
    assert.ok(!JSON.stringify(wrong).includes("not-the-token"), "the token never appears in the result");

    const otherAccount = await checkChatwootApi(deps(fullEnv(chatwoot.url, { CHATWOOT_ACCOUNT_ID: "8" })));
    assert.match(otherAccount.detail, /answered 404: account not found/);

    chatwoot.api = "slow";
    try {
      const slow = await checkChatwootApi(deps(fullEnv(chatwoot.url), {}, 300));
      assert.equal(slow.status, "fail");
      assert.equal(slow.detail, "no answer within 300 ms");
    } finally {
      chatwoot.api = 200;
    }
  },
  HOLDS_DB,
);

dbIndependentTest(
  "readiness check chatwoot_api: falls back to the document's *_PROD names; unset warns",
  async () => {
    chatwoot.requests.length = 0;
    const env = {
      CHATWOOT_BASE_URL_PROD: chatwoot.url,
      CHATWOOT_TOKEN_PROD: STAND_IN_TOKEN,
      CHATWOOT_ACCOUNT_ID_PROD: STAND_IN_ACCOUNT,
    };
    const ok = await checkChatwootApi(deps(env));
    assert.equal(ok.status, "pass", ok.detail);
    assert.equal(chatwoot.requests[0].token, STAND_IN_TOKEN);
    // The generic names win over the *_PROD ones.
    const generic = await checkChatwootApi(deps({ ...env, CHATWOOT_API_TOKEN: "generic-wins" }));
    assert.equal(generic.status, "fail");

    const unset = await checkChatwootApi(deps({ CHATWOOT_BASE_URL: chatwoot.url }));
    assert.equal(unset.status, "warn");
    assert.match(unset.detail, /CHATWOOT_API_TOKEN, CHATWOOT_ACCOUNT_ID/);
  },
  HOLDS_DB,
);

dbIndependentTest(
  "readiness check chatwoot_credentials: presence by name (or its alias), never values",
  async () => {
    const env = fullEnv(chatwoot.url);
    delete (env as Record<string, string | undefined>).CHATWOOT_BASE_URL_PROD;
    const all = await checkCredentials(deps(env), CREDENTIALS);
    assert.equal(all.status, "pass", all.detail);
    assert.deepEqual(all.data?.present, {
      CHATWOOT_TOKEN_PROD: "CHATWOOT_API_TOKEN",
      CHATWOOT_ACCOUNT_ID_PROD: "CHATWOOT_ACCOUNT_ID",
      CHATWOOT_WEBHOOK_SECRET: "CHATWOOT_WEBHOOK_SECRET",
      CHATWOOT_BASE_URL_PROD: "CHATWOOT_BASE_URL",
    });
    for (const [name, value] of Object.entries(env)) {
      if (name !== "CHATWOOT_ACCOUNT_ID") {
        assert.ok(!JSON.stringify(all).includes(value), `${name}'s value leaked`);
      }
    }

    const some = await checkCredentials(
      deps({ CHATWOOT_TOKEN_PROD: "x", CHATWOOT_WEBHOOK_SECRET: " " }),
      CREDENTIALS,
    );
    assert.equal(some.status, "fail");
    // Named as the README and the other checks ask for them (CHATWOOT_ACCOUNT_ID), the document's name beside:
    // naming only the *_PROD name sent a user who had set neither to a name the deploy steps never mention.
    assert.equal(
      some.detail,
      "missing: CHATWOOT_ACCOUNT_ID (or CHATWOOT_ACCOUNT_ID_PROD), CHATWOOT_WEBHOOK_SECRET, " +
        "CHATWOOT_BASE_URL (or CHATWOOT_BASE_URL_PROD)",
    );
    // data.missing keeps the document's names: the keys of data.present, what a monitor reads.
    assert.deepEqual(some.data?.missing, [
      "CHATWOOT_ACCOUNT_ID_PROD",
      "CHATWOOT_WEBHOOK_SECRET",
      "CHATWOOT_BASE_URL_PROD",
    ]);
  },
  HOLDS_DB,
);

dbIndependentTest(
  "readiness check chatwoot_credentials: a URL token stands for the webhook secret when Chatwoot cannot sign",
  async () => {
    const env: Record<string, string> = fullEnv(chatwoot.url);
    delete env.CHATWOOT_WEBHOOK_SECRET;
    const token = "url-token-0123456789abcdefgh";
    const urlOnly = await checkCredentials(deps({ ...env, CHATWOOT_WEBHOOK_URL_TOKEN: token }), CREDENTIALS);
    assert.equal(urlOnly.status, "pass", urlOnly.detail);
    assert.equal(
      (urlOnly.data?.present as Record<string, string>).CHATWOOT_WEBHOOK_SECRET,
      "CHATWOOT_WEBHOOK_URL_TOKEN",
    );
    assert.match(urlOnly.detail, /CHATWOOT_WEBHOOK_SECRET as a URL token/);
    assert.ok(!JSON.stringify(urlOnly).includes(token), "the token is never shown");

    // A token the webhook refuses (under 24 characters: every request answered 503) supplies nothing, and
    // spoils a secret set beside it too.
    const beside: Record<string, string>[] = [{}, { CHATWOOT_WEBHOOK_SECRET: "webhook-secret-for-tests" }];
    for (const extra of beside) {
      const short = await checkCredentials(
        deps({ ...env, ...extra, CHATWOOT_WEBHOOK_URL_TOKEN: "short-token" }),
        CREDENTIALS,
      );
      assert.equal(short.status, "fail");
      assert.match(short.detail, /CHATWOOT_WEBHOOK_URL_TOKEN must be at least 24 characters/);
      assert.ok(!JSON.stringify(short).includes("short-token"));
    }

    // A rotation's two tokens (old,new) are present; one short value in the list is refused like a short token.
    const newer = "url-token-newer-0123456789abcd";
    const rotation = await checkCredentials(
      deps({ ...env, CHATWOOT_WEBHOOK_URL_TOKEN: `${token},${newer}` }),
      CREDENTIALS,
    );
    assert.equal(rotation.status, "pass", rotation.detail);
    const oneShort = await checkCredentials(
      deps({ ...env, CHATWOOT_WEBHOOK_URL_TOKEN: `${token},short-token` }),
      CREDENTIALS,
    );
    assert.equal(oneShort.status, "fail");
    assert.match(oneShort.detail, /CHATWOOT_WEBHOOK_URL_TOKEN must be at least 24 characters/);
    for (const value of [token, newer, "short-token"]) {
      assert.ok(![rotation, oneShort].some((r) => JSON.stringify(r).includes(value)), "never shown");
    }
  },
  HOLDS_DB,
);

dbTest(
  "readiness check database: passes when current, fails on a missing migration, warns on an unknown one",
  async () => {
    const ok = await checkDatabase(deps({}));
    assert.equal(ok.status, "pass", ok.detail);

    const [latest] = await db.sql<{ version: string; name: string; statements: string[] }[]>`
    delete from supabase_migrations.schema_migrations
     where version = (select max(version) from supabase_migrations.schema_migrations)
    returning version, name, statements`;
    try {
      const missing = await checkDatabase(deps({}));
      assert.equal(missing.status, "fail");
      assert.equal(missing.detail, `migrations not applied: ${latest.version}`);
    } finally {
      await db.sql`insert into supabase_migrations.schema_migrations (version, name, statements)
                 values (${latest.version}, ${latest.name}, ${latest.statements})`;
    }
    await db
      .sql`insert into supabase_migrations.schema_migrations (version, name) values ('29991231000000', 'future')`;
    try {
      const unknown = await checkDatabase(deps({}));
      assert.equal(unknown.status, "warn");
      assert.match(unknown.detail, /29991231000000/);
    } finally {
      await db.sql`delete from supabase_migrations.schema_migrations where version = '29991231000000'`;
    }
    const none = await checkDatabase(deps({}, { sql: null }));
    assert.equal(none.status, "fail");
  },
);

dbTest(
  "readiness check webhook_pipeline: no webhook yet warns and proves nothing; rejections by reason",
  async () => {
    await db.sql`select public.record_webhook_rejection('signature_invalid', 401)`;
    await db.sql`select public.record_webhook_rejection('signature_invalid', 401)`;
    await db.sql`select public.record_webhook_rejection('timestamp_stale', 401)`;
    const r = await checkWebhookPipeline(deps({}, { deliveryHealthView: "delivery_health_not_there" }));
    assert.equal(r.status, "warn");
    assert.deepEqual(r.proves, []);
    assert.match(r.detail, /no verified webhook received yet/);
    assert.match(r.detail, /forwarding not installed/);
    assert.deepEqual(r.data?.rejections_24h, { signature_invalid: 2, timestamp_stale: 1 });
    assert.equal(r.data?.events_24h, 0);
    assert.equal(r.data?.last_verified_webhook_at, null);

    // A message recovered from Chatwoot's API (deno task recover) came by no webhook: it proves nothing.
    const [{ id }] = await db.sql`select public.recover_webhook_event('message:424299:message_created',
      'message_created', 424299, 1, 1, 1, '{"event":"message_created","id":424299}', repeat('c', 64)) as id`;
    const recovered = await checkWebhookPipeline(
      deps({}, { deliveryHealthView: "delivery_health_not_there" }),
    );
    assert.deepEqual(recovered.proves, []);
    assert.match(recovered.detail, /no verified webhook received yet/);
    assert.equal(recovered.data?.events_24h, 1);
    await db.sql`delete from public.webhook_events where id = ${id}`;
  },
);

dbTest(
  "readiness check webhook_pipeline: a verified webhook proves task 9; delivery health drives the status",
  async () => {
    await storeVerifiedWebhook(db.sql, 101);
    await createDeliveryHealthView(db.sql, "test_health_ok", { backlog: 2 });
    await createDeliveryHealthView(db.sql, "test_health_escalate", {
      backlog: 40,
      escalate: true,
      failing_since: "2026-01-01T00:00:00Z",
    });
    await createDeliveryHealthView(db.sql, "test_health_stalled", {
      backlog: 7,
      escalate: true,
      stalled_since: "2026-01-01T00:00:00Z",
    });
    await createDeliveryHealthView(db.sql, "test_health_paused", { paused: true, dead_count: 3 });
    await db.sql.unsafe(`create view public.test_health_broken as select 1::bigint as backlog`);
    await db.sql.unsafe(`create view public.test_health_two_rows as
    select * from public.test_health_ok union all select * from public.test_health_ok`);

    const notInstalled = await checkWebhookPipeline(deps({}, { deliveryHealthView: "not_there" }));
    assert.equal(notInstalled.status, "warn");
    assert.deepEqual(notInstalled.proves, ["task-9", "inbox-4", "validation-3"]);
    assert.match(notInstalled.detail, /forwarding not installed/);
    assert.equal(notInstalled.data?.events_24h, 1);
    assert.ok(typeof notInstalled.data?.last_verified_webhook_at === "string");

    const ok = await checkWebhookPipeline(deps({}, { deliveryHealthView: "test_health_ok" }));
    assert.equal(ok.status, "pass", ok.detail);
    const delivery = ok.data?.delivery as Record<string, unknown>;
    assert.deepEqual(Object.keys(delivery).sort(), [...DELIVERY_HEALTH_COLUMNS].sort());
    assert.equal(delivery.backlog, 2);
    assert.equal(delivery.escalate, false);

    const escalate = await checkWebhookPipeline(deps({}, { deliveryHealthView: "test_health_escalate" }));
    assert.equal(escalate.status, "fail");
    assert.match(escalate.detail, /failing since 2026-01-01T00:00:00.000Z \(escalate per runbook\)/);
    assert.deepEqual(escalate.proves, ["task-9", "inbox-4", "validation-3"]);

    const stalled = await checkWebhookPipeline(deps({}, { deliveryHealthView: "test_health_stalled" }));
    assert.equal(stalled.status, "fail");
    assert.match(
      stalled.detail,
      /^forwarding stalled since 2026-01-01T00:00:00.000Z: events are due and no forwarder/,
    );
    assert.doesNotMatch(stalled.detail, /failing since/);

    const paused = await checkWebhookPipeline(deps({}, { deliveryHealthView: "test_health_paused" }));
    assert.equal(paused.status, "warn");
    assert.match(paused.detail, /forwarding is paused; 3 dead events/);

    const broken = await checkWebhookPipeline(deps({}, { deliveryHealthView: "test_health_broken" }));
    assert.equal(broken.status, "fail");
    assert.match(broken.detail, /lacks columns oldest_pending_at, oldest_pending_age_seconds, dead_count/);

    const twoRows = await checkWebhookPipeline(deps({}, { deliveryHealthView: "test_health_two_rows" }));
    assert.equal(twoRows.status, "fail");
    assert.match(twoRows.detail, /returned 2 rows, expected 1/);
  },
);

dbTest(
  "readiness check webhook_pipeline: a stored event no forwarder claimed for 5 minutes fails it (stalled)",
  async () => {
    await storeVerifiedWebhook(db.sql, 424301);
    try {
      const fresh = await checkWebhookPipeline(deps({}));
      assert.doesNotMatch(fresh.detail, /stalled/);
      assert.equal((fresh.data?.delivery as Record<string, unknown>).stalled_since, null);
      // No forwarder ran since it was stored, 6 minutes ago (nothing scheduled, or its token refused). In a
      // conversation of its own: behind an earlier open event of its conversation a claim would not take it.
      await db.sql`update public.webhook_events
                      set next_attempt_at = now() - interval '6 minutes', conversation_id = 424301
                    where message_id = 424301`;
      const stalled = await checkWebhookPipeline(deps({}));
      assert.equal(stalled.status, "fail");
      assert.match(
        stalled.detail,
        /^forwarding stalled since \S+: events are due and no forwarder has claimed/,
      );
      const delivery = stalled.data?.delivery as Record<string, unknown>;
      assert.equal(delivery.escalate, true);
      assert.equal(delivery.failing_since, null);
      assert.ok(typeof delivery.stalled_since === "string");
    } finally {
      await db.sql`delete from public.webhook_events where message_id = 424301`;
    }
  },
);

dbTest(
  "readiness check webhook_pipeline: events of every status count, read through indexes, not a table scan",
  async () => {
    // A day far ahead, so that only this test's rows fall in its 24 hours.
    const now = new Date("2100-01-02T00:00:00Z");
    const row = (key: string, status: string, at: string) =>
      db.sql`insert into public.webhook_events (event_key, event, payload, raw_body, body_sha256, verified_by,
               status, received_at, last_received_at, next_attempt_at)
             values (${key}, 'contact_updated', '{}', '{}', ${"b".repeat(64)}, 'signature', ${status},
               ${at}::timestamptz, ${at}::timestamptz, ${at}::timestamptz)`;
    await row("day:pending", "pending", "2100-01-01T01:00:00Z");
    await row("day:delivering", "delivering", "2100-01-01T02:00:00Z");
    await row("day:delivered", "delivered", "2100-01-01T03:00:00Z");
    await row("day:skipped", "skipped", "2100-01-01T04:00:00Z");
    await row("day:dead", "dead", "2100-01-01T05:00:00Z");
    await row("day:before", "delivered", "2099-12-31T23:00:00Z");
    if (db.kind === "postgres") {
      // Enough delivered history that a scan of the table would be the planner's choice for a term over it.
      await db.sql.unsafe(`
        insert into public.webhook_events (event_key, event, payload, raw_body, body_sha256, verified_by, status,
          received_at, last_received_at, next_attempt_at)
        select 'history:' || g, 'contact_updated', '{}', '{}', md5(g::text) || md5(g::text), 'signature',
          'delivered', now(), now(), now()
        from generate_series(1, 20000) g;
        analyze public.webhook_events;`);
    }
    try {
      // In one transaction, on one connection. pg_stat_xact_user_tables counts that connection's scans not yet
      // flushed to the server's totals, which since PostgreSQL 15 include those of its earlier transactions
      // (flushed when idle, at most once a second): so the check's own scans are the difference across it.
      await db.sql.begin(async (tx) => {
        const seqScans = async () => {
          const [{ n }] = await tx<{ n: string }[]>`
            select coalesce(sum(seq_scan), 0)::text as n from pg_stat_xact_user_tables
             where relid = 'public.webhook_events'::regclass`;
          return Number(n);
        };
        const before = db.kind === "postgres" ? await seqScans() : 0;
        const r = await checkWebhookPipeline(deps({}, { sql: tx as unknown as Sql, now: () => now }));
        assert.equal(r.data?.events_24h, 5);
        assert.equal(r.data?.last_verified_webhook_at, "2100-01-01T05:00:00.000Z");
        if (db.kind === "postgres") {
          assert.equal(await seqScans() - before, 0, "webhook_events was scanned");
        }
      });
    } finally {
      await db
        .sql`delete from public.webhook_events where event_key like 'day:%' or event_key like 'history:%'`;
    }
  },
);

dbTest(
  "readiness checks given a transaction run in a savepoint of it: a check that fails rolls back to it, and " +
    "the caller's transaction goes on, its own work kept",
  async () => {
    await db.sql.begin(async (tx) => {
      await tx.unsafe(`create view public.test_health_fails as select (1 / 0)::bigint as backlog`);
      const failed = await checkWebhookPipeline(
        deps({}, { sql: tx as unknown as Sql, deliveryHealthView: "test_health_fails" }),
      );
      assert.equal(failed.status, "fail");
      assert.match(failed.detail, /^error: division by zero/);
      // A check that ended the caller's transaction (or left it aborted) fails this read.
      const [{ kept }] = await tx<{ kept: boolean }[]>`
        select to_regclass('public.test_health_fails') is not null as kept`;
      assert.equal(kept, true);
      await tx`drop view public.test_health_fails`;
    });
  },
);

dbTest(
  "readiness checks: a refused tuning knob warns (ready false), naming it and the default, never its value",
  async () => {
    // The functions run on the default (a webhook is not lost for a typo), but the typo must not go unseen.
    const knobs: [string, string][] = [
      ["CHATWOOT_WEBHOOK_TOLERANCE_SECONDS", "must be an integer from 1 to 86400; using the default 300"],
      ["CHATWOOT_WEBHOOK_MAX_BODY_BYTES", "must be an integer from 1 to 67108864; using the default 6291456"],
      ["CHATWOOT_WEBHOOK_LATE_STORE_SECONDS", "must be an integer >= 0; using the default 120"],
    ];
    for (const [name, says] of knobs) {
      const r = await checkWebhookPipeline(deps({ ...fullEnv(chatwoot.url), [name]: "0x10" }));
      assert.equal(r.status, "warn", r.detail);
      assert.ok(r.detail.includes(`${name} ${says}`), r.detail);
      assert.ok(!JSON.stringify(r).includes("0x10"));
    }
    const pool = await checkDatabase(deps({ DATABASE_POOL_SIZE: "0x10" }));
    assert.equal(pool.status, "warn", pool.detail);
    assert.ok(
      pool.detail.startsWith("DATABASE_POOL_SIZE must be an integer from 1 to 100; using the default 5; "),
    );
    assert.ok(!JSON.stringify(pool).includes("0x10"));
    assert.equal((await checkDatabase(deps({ DATABASE_POOL_SIZE: "8" }))).status, "pass");
  },
);

dbTest("readiness check webhook_pipeline: public.webhook_delivery_health honours the contract", async () => {
  // Before the forwarding migration is merged this creates a stand-in with the contract's columns; after it,
  // the real view is read and must have them (ensureDeliveryHealthView throws otherwise).
  const which = await ensureDeliveryHealthView(db.sql);
  const r = await checkWebhookPipeline(deps({}));
  assert.notEqual(r.data?.forwarding_installed, false);
  const delivery = r.data?.delivery as Record<string, unknown> | null;
  assert.ok(delivery, `no delivery health read from the ${which} view: ${r.detail}`);
  assert.deepEqual(Object.keys(delivery).sort(), [...DELIVERY_HEALTH_COLUMNS].sort());
  assert.equal(typeof delivery.escalate, "boolean");
  assert.equal(typeof delivery.backlog, "number");
});

dbTest("readiness checks: one run per cache period (injected clock), all five checks", async () => {
  let clock = Date.parse("2026-03-01T12:00:00Z");
  const env = fullEnv(chatwoot.url);
  const d = deps(env, { now: () => new Date(clock) });
  d.config.cacheMs = 30_000;
  const run = cachedChecks(d);
  chatwoot.requests.length = 0;
  const first = await run()(CREDENTIALS);
  assert.deepEqual(first.map((c) => c.name), [
    "database",
    "chatwoot_health",
    "chatwoot_credentials",
    "chatwoot_api",
    "webhook_pipeline",
  ]);
  assert.equal(first[0].checked_at, "2026-03-01T12:00:00.000Z");
  assert.equal(chatwoot.requests.length, 2); // /hc and the account
  clock += 29_000;
  assert.equal(await run()(CREDENTIALS), first);
  assert.equal(chatwoot.requests.length, 2);
  clock += 2_000;
  const second = await run()(CREDENTIALS);
  assert.notEqual(second, first);
  assert.equal(second[0].checked_at, "2026-03-01T12:00:31.000Z");
  assert.equal(chatwoot.requests.length, 4);
});

dbTest("readiness checks: a cached run stamped in the future (clock stepped back) is stale", async () => {
  let clock = Date.parse("2026-03-01T12:00:00Z");
  const d = deps(fullEnv(chatwoot.url), { now: () => new Date(clock) });
  d.config.cacheMs = 30_000;
  const run = cachedChecks(d);
  chatwoot.requests.length = 0;
  const first = await run()(CREDENTIALS);
  assert.equal(chatwoot.requests.length, 2);
  clock -= 3600_000; // NTP steps the clock back an hour: the cached run is not an hour fresh
  const second = await run()(CREDENTIALS);
  assert.notEqual(second, first);
  assert.equal(second[0].checked_at, "2026-03-01T11:00:00.000Z");
  assert.equal(chatwoot.requests.length, 4);
  clock += 1_000; // the new run, stamped by the new clock, is cached as usual
  assert.equal(await run()(CREDENTIALS), second);
  assert.equal(chatwoot.requests.length, 4);
});

/** Sessions of this database waiting on a lock: polled for up to 5 s until there are none. */
async function lockWaitsAfterAWhile(): Promise<number> {
  let waiting = -1;
  for (let i = 0; i < 50 && waiting !== 0; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 100));
    [{ waiting }] = await db.sql<{ waiting: number }[]>`
      select count(*)::int as waiting from pg_stat_activity
       where datname = current_database() and wait_event_type = 'Lock'`;
  }
  return waiting;
}

Deno.test({
  name: "readiness checks: a database check that times out cancels its query, so it holds no connection",
  ignore: !Deno.env.get("DATABASE_URL"), // another session holds the locks; PGlite has one session
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const locker = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      await locker.begin(async (tx) => {
        await tx`lock table supabase_migrations.schema_migrations, public.webhook_events in access exclusive mode`;
        const [database, pipeline] = await Promise.all([
          checkDatabase(deps({}, {}, 300)),
          checkWebhookPipeline(deps({}, {}, 300)),
        ]);
        assert.equal(database.detail, "no answer within 300 ms");
        assert.equal(pipeline.detail, "no answer within 300 ms");
        // Ended on the server, the two queries leave the lock queue; left alone, they waited for the commit.
        assert.equal(await lockWaitsAfterAWhile(), 0, "a timed-out check's query still waits on the lock");
      });
    } finally {
      await locker.end({ timeout: 1 });
    }
  },
});

Deno.test({
  name:
    "readiness checks: a timed-out database check frees its query even when no new connection can be made",
  ignore: !Deno.env.get("DATABASE_URL"), // another session holds the lock; PGlite has one session
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    // The checks' one connection goes through a proxy that then refuses every new one: a database reachable
    // only over the connections it already has (its host going away, a full pooler). Cancelling with
    // query.cancel() opened a connection of its own, and its failure was a promise rejection no one could
    // catch: the process (the dev server, the function's worker) ended with "Uncaught (in promise)".
    const proxy = startDbProxy(db.url);
    const checksSql = connect(proxy.url, { max: 1 });
    const unhandled: unknown[] = [];
    const onUnhandled = (event: PromiseRejectionEvent) => {
      event.preventDefault();
      unhandled.push(event.reason);
    };
    globalThis.addEventListener("unhandledrejection", onUnhandled);
    const locker = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      await checksSql`select 1`; // the checks' one connection
      proxy.refuseNew();
      await locker.begin(async (tx) => {
        await tx`lock table supabase_migrations.schema_migrations in access exclusive mode`;
        const database = await checkDatabase(deps({}, { sql: checksSql }, 300));
        assert.equal(database.detail, "no answer within 300 ms");
        assert.equal(await lockWaitsAfterAWhile(), 0, "the timed-out check's query still waits on the lock");
      });
      // Its connection is usable again (the next check does not queue behind the old query).
      const again = await checkDatabase(deps({}, { sql: checksSql }, 10_000));
      assert.doesNotMatch(again.detail, /no answer|error/);
      assert.equal(proxy.accepted, 1);
      assert.deepEqual(unhandled.map(String), []);
    } finally {
      globalThis.removeEventListener("unhandledrejection", onUnhandled);
      await locker.end({ timeout: 1 });
      await checksSql.end({ timeout: 1 });
      await proxy.close();
    }
  },
});

Deno.test({
  name:
    "readiness checks: on a pool of one held by a query waiting on a lock, the database checks say they got " +
    "no connection and are not cached: the next call runs them again, Chatwoot's staying cached",
  ignore: !Deno.env.get("DATABASE_URL"), // another session holds the lock; PGlite has one session
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const pool = connect(db.url, { max: 1 }); // DATABASE_POOL_SIZE=1
    const locker = postgres(db.url, { max: 1, onnotice: () => {} });
    let clock = Date.parse("2026-03-01T12:00:00Z");
    const d = deps(fullEnv(chatwoot.url), { sql: pool, now: () => new Date(clock) }, 300);
    d.config.cacheMs = 60_000;
    const run = cachedChecks(d);
    const check = (checks: CheckResult[], name: string) => checks.find((c) => c.name === name)!;
    let held = null as Promise<unknown> | null;
    try {
      chatwoot.requests.length = 0;
      const first = await locker.begin(async (tx) => {
        // A migration's lock on a readiness table; the pool's one connection waits on it, as the GET's shared
        // read (or a PATCH) does, so the checks' transactions queue behind it until the lock is let go.
        await tx`lock table public.readiness_tasks in access exclusive mode`;
        held = pool`select count(*) from public.readiness_tasks`.execute();
        await untilLockWaits(1, "the pool's connection waiting on the lock");
        return await run()(CREDENTIALS);
      });
      for (const name of ["database", "webhook_pipeline"]) {
        const { status, detail } = check(first, name);
        assert.equal(status, "fail", name);
        assert.match(detail, /^no database connection within 300 ms \(every pooled connection busy/, name);
      }
      assert.equal(check(first, "chatwoot_health").status, "pass");
      assert.equal(chatwoot.requests.length, 2);
      await held;
      // The same cache period: the database checks run again (and pass), Chatwoot is not asked again. Given
      // time to pass: a loaded machine's check took more than 300 ms ("no answer within 300 ms" failed it).
      d.config.checkTimeoutMs = 30_000;
      clock += 1000;
      const second = await run()(CREDENTIALS);
      for (const name of ["database", "webhook_pipeline"]) {
        assert.equal(check(second, name).checked_at, new Date(clock).toISOString(), name);
        assert.doesNotMatch(check(second, name).detail, /no database connection|no answer/, name);
      }
      assert.equal(check(second, "database").status, "pass", check(second, "database").detail);
      assert.equal(check(second, "chatwoot_health"), check(first, "chatwoot_health"));
      assert.equal(chatwoot.requests.length, 2);
      // A result that may stand is cached as usual.
      clock += 1000;
      assert.equal(await run()(CREDENTIALS), second);
    } finally {
      await held?.catch(() => {});
      await locker.end({ timeout: 1 });
      await pool.end({ timeout: 1 });
    }
  },
});

/** Polls until at least `n` sessions of this database wait on a lock; fails after 20 s, so a failing run ends. */
async function untilLockWaits(n: number, what: string): Promise<void> {
  const deadline = performance.now() + 20_000;
  for (;;) {
    const [{ waiting }] = await db.sql<{ waiting: number }[]>`
      select count(*)::int as waiting from pg_stat_activity
       where datname = current_database() and wait_event_type = 'Lock'`;
    if (waiting >= n) return;
    assert.ok(performance.now() < deadline, `${what}: not within 20 s`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

dbTest(
  "readiness check webhook_pipeline: a forwarding target or token no request can use fails it, naming the setting",
  async () => {
    await storeVerifiedWebhook(db.sql, 9201);
    await createDeliveryHealthView(db.sql, "test_health_target", { backlog: 1 });
    const check = (env: Record<string, string>) =>
      checkWebhookPipeline(deps(env, { deliveryHealthView: "test_health_target" }));
    try {
      assert.equal((await check({})).status, "pass");
      const none = await check({ AGENT_SDK_URL: "" });
      assert.equal(none.status, "warn");
      assert.match(
        none.detail,
        /^forwarding has no Agent SDK URL: set AGENT_SDK_URL or public\.relay_settings/,
      );
      const cases: [Record<string, string>, string][] = [
        [{ AGENT_SDK_URL: "agent.internal:8080" }, "AGENT_SDK_URL is not an http(s) URL"],
        [
          { AGENT_SDK_TOKEN: "sdk token SECRET-tail-7731" },
          "AGENT_SDK_TOKEN holds characters an HTTP header cannot carry (a line break, a space, or a character " +
          "past ASCII)",
        ],
      ];
      for (const [env, problem] of cases) {
        const r = await check(env);
        assert.equal(r.status, "fail");
        assert.ok(r.detail.startsWith(`forwarding cannot send: ${problem}; `), r.detail);
        assert.ok(!JSON.stringify(r).includes("SECRET-tail-7731"));
      }
      // relay_settings' override is the target when set, for better and for worse.
      await db.sql`update public.relay_settings set agent_sdk_url_override = 'http://agent .internal'`;
      assert.match(
        (await check({})).detail,
        /^forwarding cannot send: public\.relay_settings\.agent_sdk_url_override is not an http\(s\) URL/,
      );
      await db.sql`update public.relay_settings set agent_sdk_url_override = 'http://agent.internal'`;
      assert.equal((await check({ AGENT_SDK_URL: "agent.internal:8080" })).status, "pass");
    } finally {
      await db.sql`update public.relay_settings set agent_sdk_url_override = null`;
      await db.sql`delete from public.webhook_events where event_key = 'message:9201:message_created'`;
      await db.sql.unsafe(`drop view public.test_health_target`);
    }
  },
);

dbTest(
  "readiness check webhook_pipeline: forward_events naming no known event, or none at all, warns naming them",
  async () => {
    // A typo in relay_settings.forward_events stored every event 'skipped', and replays take only dead ones.
    await storeVerifiedWebhook(db.sql, 9301);
    await createDeliveryHealthView(db.sql, "test_health_events", { backlog: 0 });
    const check = () => checkWebhookPipeline(deps({}, { deliveryHealthView: "test_health_events" }));
    const set = (events: string[]) => db.sql`update public.relay_settings set forward_events = ${events}`;
    try {
      await set(["message_created", "message_updated", "contact_created"]);
      const ok = await check();
      assert.equal(ok.status, "pass", ok.detail);

      await set(["message_create", "message_updated", "conversation.created"]);
      const typo = await check();
      assert.equal(typo.status, "warn");
      assert.match(
        typo.detail,
        /^public\.relay_settings\.forward_events lists "message_create", "conversation\.created", no event the webhook knows \(it knows message_created, message_updated, conversation_created, /,
      );
      assert.doesNotMatch(typo.detail, /forwards no known event/);

      for (const events of [[], ["message_create"]]) {
        await set(events);
        const none = await check();
        assert.equal(none.status, "warn");
        assert.match(
          none.detail,
          /^public\.relay_settings\.forward_events forwards no known event: every webhook is stored 'skipped'/,
        );
      }
    } finally {
      await set(["message_created"]);
      await db.sql`delete from public.webhook_events where event_key = 'message:9301:message_created'`;
      await db.sql.unsafe(`drop view public.test_health_events`);
    }
  },
);

dbTest(
  "readiness check webhook_pipeline: a request_timeout_ms no Edge Function's drain can fit warns, naming it",
  async () => {
    // Over 135 s, with 5 s of write-back a batch never fits a worker's 140 s: forward-events and the webhook's
    // immediate delivery claimed nothing, and the only sign was a stall 5 minutes later, naming no cause.
    await storeVerifiedWebhook(db.sql, 9302);
    await createDeliveryHealthView(db.sql, "test_health_timeout", { backlog: 0 });
    const check = () => checkWebhookPipeline(deps({}, { deliveryHealthView: "test_health_timeout" }));
    const set = (ms: number, lease: number) =>
      db.sql`update public.relay_settings set lease_seconds = ${lease}, request_timeout_ms = ${ms}`;
    try {
      await set(135_000, 200);
      const fits = await check();
      assert.equal(fits.status, "pass", fits.detail);
      await set(135_001, 200);
      const never = await check();
      assert.equal(never.status, "warn", never.detail);
      assert.match(
        never.detail,
        /^public\.relay_settings\.request_timeout_ms is over 135000: a delivery and its write-back cannot fit/,
      );
    } finally {
      await db.sql`update public.relay_settings set request_timeout_ms = 10000, lease_seconds = 60`;
      await db.sql`delete from public.webhook_events where event_key = 'message:9302:message_created'`;
      await db.sql.unsafe(`drop view public.test_health_timeout`);
    }
  },
);

dbTest(
  "readiness check webhook_pipeline: dead events warn until acknowledged, and again when one dies after that",
  async () => {
    await ensureDeliveryHealthView(db.sql);
    // Event 9101 died (the Agent SDK answered 410: a replay would die again); traffic went on: 9102 delivered.
    await storeVerifiedWebhook(db.sql, 9101);
    await storeVerifiedWebhook(db.sql, 9102);
    const [{ id: deadId }] = await db.sql<{ id: number }[]>`
      update public.webhook_events set status = 'dead', attempts = 1, next_attempt_at = null, last_error = '410'
       where event_key = 'message:9101:message_created' returning id`;
    const [{ id: deliveredId }] = await db.sql<{ id: number }[]>`
      update public.webhook_events set status = 'delivered', attempts = 1, delivered_at = now() - interval '1 hour'
       where event_key = 'message:9102:message_created' returning id`;
    const attempt = (id: number, outcome: string, ago: string) =>
      db.sql`insert into public.webhook_delivery_attempts
               (event_id, attempt, version, started_at, http_status, succeeded, outcome, recorded_at)
             values (${id}, 1, 1, now() - ${ago}::interval, ${outcome === "dead" ? 410 : 200},
                     ${outcome === "delivered"}, ${outcome}, now() - ${ago}::interval)`;
    await attempt(deadId, "dead", "2 hours");
    await attempt(deliveredId, "delivered", "1 hour");
    try {
      const dead = await checkWebhookPipeline(deps({}));
      assert.equal(dead.status, "warn");
      assert.match(dead.detail, /^1 dead events \(replay, or acknowledge them\)/);

      // The operator looked at it and let it go: the check (and so the probe) can pass again.
      await db.sql`update public.relay_settings set dead_acknowledged_at = now() - interval '1 minute'`;
      const acknowledged = await checkWebhookPipeline(deps({}));
      assert.equal(acknowledged.status, "pass", acknowledged.detail);
      assert.match(acknowledged.detail, /dead 1 \(acknowledged\)/);

      // Replayed, it died once more, after the acknowledgement: that is news, and warns.
      await attempt(deadId, "dead", "0 seconds");
      const again = await checkWebhookPipeline(deps({}));
      assert.equal(again.status, "warn");
      assert.match(again.detail, /^1 dead events/);
    } finally {
      await db.sql`update public.relay_settings set dead_acknowledged_at = null`;
      await db.sql`delete from public.webhook_events where id in (${deadId}, ${deliveredId})`;
    }
  },
);

dbTest(
  "readiness check webhook_pipeline: an event the Agent SDK refused (410) minutes ago, nothing since, is no " +
    "failing delivery: a dead event that warns, never the probe's fail",
  async () => {
    await ensureDeliveryHealthView(db.sql);
    await storeVerifiedWebhook(db.sql, 9401);
    const [{ id }] = await db.sql<{ id: number }[]>`
      update public.webhook_events set status = 'dead', attempts = 1, next_attempt_at = null, last_error = 'HTTP 410'
       where event_key = 'message:9401:message_created' returning id`;
    // As the write-back records it; no success after it (the pipeline idle since).
    await db.sql`insert into public.webhook_delivery_attempts
                   (event_id, attempt, version, started_at, http_status, succeeded, outcome, error, recorded_at)
                 values (${id}, 1, 1, now() - interval '6 minutes', 410, false, 'dead', 'HTTP 410',
                         now() - interval '6 minutes')`;
    try {
      const check = await checkWebhookPipeline(deps({}));
      assert.equal(check.status, "warn", check.detail);
      assert.doesNotMatch(check.detail, /failing since/);
      assert.match(check.detail, /^1 dead events \(replay, or acknowledge them\)/);
      const delivery = check.data?.delivery as Record<string, unknown>;
      assert.deepEqual([delivery.escalate, delivery.failing_since], [false, null]);
    } finally {
      await db.sql`delete from public.webhook_events where id = ${id}`;
    }
  },
);

dbTest("readiness checks: close the stand-in and the database", async () => {
  await chatwoot.close();
  await db.close();
});
