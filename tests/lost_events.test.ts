// An event the late store gave up on ("[Chatwoot Webhook] Lost") is recorded in public.webhook_lost_events once
// the database answers again, and stats and readiness name it: the function's log alone is kept briefly.
import assert from "node:assert/strict";
import postgres from "postgres";
import { dbTest, HOLDS_DB, startTestDb } from "./_db.ts";
import { runScript } from "./_dev.ts";
import { startDbProxy } from "./_proxy.ts";
import { eventually, signedRequest, TEST_SECRET } from "./_http.ts";
import { storeRecoveredCopy } from "./_forwarding.ts";
import { lostRecord } from "./_lost_events.ts";
import { connect } from "../supabase/functions/_shared/db.ts";
import { createChatwootWebhookApp } from "../supabase/functions/_shared/chatwoot_webhook.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";
import { LostEvents, lostEventsSince, writeLostEvents } from "../supabase/functions/_shared/lost_events.ts";
import {
  checkWebhookPipeline,
  readinessConfigFromEnv,
} from "../supabase/functions/_shared/readiness_checks.ts";
import { webhookConfigFromEnv } from "../supabase/functions/_shared/webhook_config.ts";
import { samplePayload } from "../scripts/lib/samples.ts";

const db = await startTestDb();
const URL_BASE = "http://functions.local/chatwoot-webhook";

interface LostRow {
  event: string;
  event_key: string;
  delivery_id: string | null;
  inbox_id: string | null;
  account_id: string | null;
  received_at: Date | null;
  message_created_at: Date | null;
  recover_command: string | null;
  error_code: string | null;
  tried_for_ms: string;
}

/** A database proxy to cut, a pool through it, and webhook settings whose stores give up within ~1 s. */
function behindProxyWithShortStores() {
  const proxy = startDbProxy(db.url);
  const viaProxy = connect(proxy.url, { max: 1 });
  const config = webhookConfigFromEnv({
    CHATWOOT_WEBHOOK_SECRET: TEST_SECRET,
    CHATWOOT_WEBHOOK_LATE_STORE_SECONDS: "1",
  });
  assert.ok(config.ok);
  config.config.storeBudgetMs = 300;
  return { proxy, viaProxy, config };
}

dbTest(
  `lost events [${db.kind}]: an event lost while the database is down is recorded once it is back; stats and readiness say so`,
  async () => {
    const { proxy, viaProxy, config } = behindProxyWithShortStores();
    const log = memoryLogger();
    const app = createChatwootWebhookApp({ config, sql: viaProxy, log });
    const body = JSON.stringify(
      samplePayload("message_created", { messageId: 733_001, inboxId: 7, accountId: 4 }),
    );
    const key = "message:733001:message_created";
    const delivery = crypto.randomUUID();
    try {
      proxy.takeDown();
      const res = await app.fetch(signedRequest(URL_BASE, body, { deliveryId: delivery }));
      assert.equal(res.status, 503);
      await res.body?.cancel();
      const lost = await eventually(
        () => Promise.resolve(log.lines.find((l) => l.msg === "[Chatwoot Webhook] Lost")),
        15_000,
        "the late store giving up",
      );
      // The record's first write fails too (the database is still down): it is kept and retried.
      await eventually(
        () =>
          Promise.resolve(
            log.lines.some((l) =>
              l.msg === "Background task failed" && l.task === "record_webhook_lost_event"
            ),
          ),
        15_000,
        "the failed write of the record",
      );
      proxy.restore();
      const rows = await eventually(
        async () => {
          const rows = await db.sql<LostRow[]>`
            select event, event_key, delivery_id, inbox_id, account_id, received_at, message_created_at,
                   recover_command, error_code, tried_for_ms
              from public.webhook_lost_events where event_key = ${key}`;
          return rows.length > 0 ? rows : null;
        },
        // The record's write is retried 5 s, then 10 s, … after a failure (write_back.ts).
        60_000,
        "the lost event recorded",
      );
      assert.equal(rows.length, 1);
      const row = rows[0];
      assert.deepEqual(
        [row.event, row.delivery_id, Number(row.inbox_id), Number(row.account_id), row.error_code],
        ["message_created", delivery, 7, 4, lost.code],
      );
      assert.equal(row.recover_command, lost.recover);
      assert.match(
        String(row.recover_command),
        /^deno task recover --since \S+ --until \S+ --inbox 7 --store$/,
      );
      assert.ok(row.received_at instanceof Date && row.message_created_at instanceof Date);
      assert.equal(Number(row.tried_for_ms), lost.tried_for_ms);
      assert.equal(
        (await db.sql`select 1 from public.webhook_events where event_key = ${key}`).length,
        0,
        "not stored: lost",
      );

      const text = await runScript("scripts/stats.ts", [], db.url);
      assert.equal(text.code, 0, text.stdout + text.stderr);
      assert.match(text.stdout, /lost\s+1 in the last 7 day\(s\), last .*recover_command/);
      const json = await runScript("scripts/stats.ts", ["--json"], db.url);
      assert.equal(json.code, 0, json.stdout + json.stderr);
      assert.equal(JSON.parse(json.stdout).lost, 1);
      assert.equal(JSON.parse(json.stdout).lost_missing, 1);
      assert.match(text.stdout, /lost\s+1 in the last 7 day\(s\), last .*: 1 not stored; recover them/);

      const env = { AGENT_SDK_URL: "http://agent-sdk.invalid" };
      const check = await checkWebhookPipeline({
        sql: db.sql,
        env,
        config: readinessConfigFromEnv(env),
        now: () => new Date(),
      });
      assert.notEqual(check.status, "pass", check.detail);
      assert.match(check.detail, /1 event lost in 24 h \(last [^)]+\): not stored/);
      assert.ok(check.detail.includes(`(latest: ${lost.recover})`), check.detail);
      assert.equal(check.data?.lost_24h, 1);
      assert.equal(check.data?.lost_24h_missing, 1);

      // Recovered (as deno task recover --store stores it): the loss stays on record, its warning ends.
      assert.notEqual(await storeRecoveredCopy(db.sql, body), null);
      const after = await checkWebhookPipeline({
        sql: db.sql,
        env,
        config: readinessConfigFromEnv(env),
        now: () => new Date(),
      });
      assert.doesNotMatch(after.detail, /lost in 24 h \(last/);
      assert.match(after.detail, /1 event lost in 24 h \(1 stored since\)/);
      assert.equal(after.data?.lost_24h, 1);
      assert.equal(after.data?.lost_24h_missing, 0);
      const statsAfter = await runScript("scripts/stats.ts", [], db.url);
      assert.match(statsAfter.stdout, /lost\s+1 in the last 7 day\(s\), last .*: all stored since/);
      const jsonAfter = JSON.parse((await runScript("scripts/stats.ts", ["--json"], db.url)).stdout);
      assert.deepEqual([jsonAfter.lost, jsonAfter.lost_missing], [1, 0]);
    } finally {
      await viaProxy.end({ timeout: 1 });
      await proxy.close();
    }
  },
);

dbTest(
  `lost events [${db.kind}]: an event refused at once (the instance holds its limit of late stores) is recorded too`,
  async () => {
    const { proxy, viaProxy, config } = behindProxyWithShortStores();
    // One event is always taken; the next finds the instance full.
    config.config.lateStoreMaxBytes = 1;
    const log = memoryLogger();
    const app = createChatwootWebhookApp({ config, sql: viaProxy, log });
    const post = async (id: number) => {
      const body = JSON.stringify(samplePayload("message_created", { messageId: id }));
      const res = await app.fetch(signedRequest(URL_BASE, body));
      assert.equal(res.status, 503);
      await res.body?.cancel();
    };
    try {
      proxy.takeDown();
      await post(733_101);
      await post(733_102);
      const refused = log.lines.find((l) =>
        l.msg === "[Chatwoot Webhook] Lost" && l.reason === "memory_bound"
      );
      assert.equal(refused?.event_key, "message:733102:message_created");
      proxy.restore();
      const [row] = await eventually(
        async () => {
          const rows = await db.sql<{ error_code: string; recover_command: string }[]>`
            select error_code, recover_command from public.webhook_lost_events
             where event_key = 'message:733102:message_created'`;
          return rows.length > 0 ? rows : null;
        },
        60_000,
        "the refused event recorded",
      );
      assert.deepEqual({ ...row }, { error_code: "memory_bound", recover_command: refused?.recover });
    } finally {
      await viaProxy.end({ timeout: 1 });
      await proxy.close();
    }
  },
);

dbTest(
  `lost events [${db.kind}]: past the memory bound losses are counted only; a retried write inserts once`,
  async () => {
    let down = true;
    let writes = 0;
    const write = writeLostEvents(db.sql);
    const log = memoryLogger();
    const lostEvents = new LostEvents(
      (batch) => {
        writes++;
        // A write that stores the rows and loses its answer: the retry must not store them twice.
        return down ? write(batch).then(() => Promise.reject(new Error("answer lost"))) : write(batch);
      },
      log,
      2,
    );
    const record = (n: number) =>
      lostRecord({ event: "conversation_created", event_key: `bound-test:${n}`, error_code: "bound_test" });
    const counted = async () => {
      const [row] = await db.sql<{ rows: number; losses: number; keys: string[] }[]>`
        select count(*)::int as rows, coalesce(sum(1 + unrecorded_losses), 0)::int as losses,
               array_agg(split_part(event_key, ':', 1) order by event_key) as keys
          from public.webhook_lost_events where error_code = 'bound_test'`;
      return { ...row };
    };
    for (let n = 1; n <= 3; n++) lostEvents.add(record(n));
    // Two kept, and the third counted on a row of its own, written with them (its answer lost too).
    await eventually(async () => (await counted()).keys?.includes("unrecorded"), 15_000, "the counted row");
    // Two more past the bound: counted on that row (its id), which the retry writes again with all three.
    for (let n = 4; n <= 5; n++) lostEvents.add(record(n));
    down = false;
    await lostEvents.close();
    assert.deepEqual(await counted(), {
      rows: 3,
      losses: 5,
      keys: ["bound-test", "bound-test", "unrecorded"],
    });
  },
);

dbTest(
  `lost events [${db.kind}]: losses past the bound are counted per code on rows of their own, never on a replay`,
  async () => {
    // Until 2026-12-01 the count rode on the batch's first row, under its code, and that row was written even
    // when it was a replay (no loss): one loss too many, and every overflow under one code.
    await db.sql.begin(async (tx) => {
      await tx`delete from public.webhook_lost_events`;
      await tx`
        insert into public.webhook_events (event_key, event, payload, raw_body, body_sha256, verified_by,
                                           status, received_at, last_received_at)
        values ('overflow:stored', 'conversation_created', '{}', '{}', repeat('d', 64), 'signature', 'skipped',
                now() - interval '1 hour', now() - interval '1 hour')`;
      let down = true;
      const write = writeLostEvents(tx as unknown as typeof db.sql);
      let writes = 0;
      const lostEvents = new LostEvents(
        (batch) => {
          writes++;
          return down ? Promise.reject(new Error("database down")) : write(batch);
        },
        memoryLogger(),
        2,
      );
      const refusal = (key: string, code: string, sha: string | null, minutesAgo: number) =>
        lostRecord({
          lost_at: new Date(Date.now() - minutesAgo * 60_000).toISOString(),
          event: "conversation_created",
          event_key: key,
          error_code: code,
          body_sha256: sha,
        });
      // The first kept is a replay (its body stored), the second a loss; the three past the bound (two stale,
      // one not JSON) are counted only.
      lostEvents.add(refusal("overflow:stored", "timestamp_stale", "d".repeat(64), 10));
      lostEvents.add(refusal("overflow:lost", "invalid_payload", "e".repeat(64), 9));
      lostEvents.add(refusal("overflow:1", "timestamp_stale", "f".repeat(64), 8));
      lostEvents.add(refusal("overflow:2", "timestamp_stale", "f".repeat(64), 7));
      lostEvents.add(refusal("overflow:3", "invalid_json", "f".repeat(64), 6));
      await eventually(() => Promise.resolve(writes > 0), 5_000, "a first write");
      down = false;
      await lostEvents.close();

      const rows = await tx<
        { event: string; counted: boolean; error_code: string; unrecorded_losses: number; lost_at: Date }[]
      >`
        select event, event_key like 'unrecorded:%' as counted, error_code, unrecorded_losses, lost_at
          from public.webhook_lost_events order by error_code`;
      assert.deepEqual(
        rows.map((r) => [r.event, r.counted, r.error_code, r.unrecorded_losses]),
        [
          ["unknown", true, "invalid_json", 0],
          ["conversation_created", false, "invalid_payload", 0],
          ["unknown", true, "timestamp_stale", 1],
        ],
        "the replay is not written; each code's overflow on a row of its own (itself one of them)",
      );
      // A counted row is lost when the last of its losses was.
      assert.ok(Math.abs(rows[2].lost_at.getTime() - (Date.now() - 7 * 60_000)) < 60_000);
      const lost = await lostEventsSince(tx, new Date(Date.now() - 24 * 3600_000));
      assert.deepEqual([lost.count, lost.missing], [4, 4]);
      assert.deepEqual(
        Object.fromEntries(Object.entries(lost.missing_by_code).map(([code, m]) => [code, m.missing])),
        { invalid_json: 1, invalid_payload: 1, timestamp_stale: 2 },
      );
      throw new Rollback();
    }).catch((error) => {
      if (!(error instanceof Rollback)) throw error;
    });
  },
);

dbTest(
  `lost events [${db.kind}]: a refusal of an event named "unrecorded" put back is a loss, not a row of counted losses`,
  async () => {
    // Refused bodies are keyed <event>:<sha256>, so an (authenticated) event named "unrecorded" gets a key that
    // starts as a row of counted losses' does (unrecorded:<id>). Put back after a failed write, it was taken for
    // one: the code's overflow was counted on it, and when its body was stored (a replay, left out) they went.
    await db.sql.begin(async (tx) => {
      await tx`delete from public.webhook_lost_events`;
      const replayKey = `unrecorded:${"d".repeat(64)}`;
      await tx`
        insert into public.webhook_events (event_key, event, payload, raw_body, body_sha256, verified_by,
                                           status, received_at, last_received_at)
        values (${replayKey}, 'unrecorded', '{}', '{}', repeat('d', 64), 'signature', 'skipped',
                now() - interval '1 hour', now() - interval '1 hour')`;
      let down = true;
      let writes = 0;
      const write = writeLostEvents(tx as unknown as typeof db.sql);
      const lostEvents = new LostEvents(
        (batch) => {
          writes++;
          return down ? Promise.reject(new Error("database down")) : write(batch);
        },
        memoryLogger(),
        1,
      );
      const refusal = (event: string, key: string, sha: string) =>
        lostRecord({ event, event_key: key, error_code: "timestamp_stale", body_sha256: sha });
      // The replay is kept (the bound is 1); the next two, lost, are counted past it.
      lostEvents.add(refusal("unrecorded", replayKey, "d".repeat(64)));
      lostEvents.add(refusal("conversation_created", "named:1", "e".repeat(64)));
      lostEvents.add(refusal("conversation_created", "named:2", "f".repeat(64)));
      await eventually(() => Promise.resolve(writes > 0), 5_000, "a first write");
      down = false;
      await lostEvents.close();
      const rows = await tx<{ event: string; unrecorded_losses: number }[]>`
        select event, unrecorded_losses from public.webhook_lost_events order by event`;
      assert.deepEqual(
        rows.map((r) => [r.event, r.unrecorded_losses]),
        [["unknown", 1]],
        "the replay left out; the two losses counted on a row of their own",
      );
      throw new Rollback();
    }).catch((error) => {
      if (!(error instanceof Rollback)) throw error;
    });
  },
);

dbTest(`lost events [${db.kind}]: kept as long as rejections, readable by service_role only`, async () => {
  await db.sql`insert into public.webhook_lost_events (id, lost_at, event, event_key, tried_for_ms)
    values (gen_random_uuid(), now() - interval '40 days', 'message_created', 'prune-test:old', 0),
           (gen_random_uuid(), now(), 'message_created', 'prune-test:new', 0)`;
  await db.sql`call public.prune_webhook_events()`;
  const left = await db.sql<{ event_key: string }[]>`
    select event_key from public.webhook_lost_events where event_key like 'prune-test:%'`;
  assert.deepEqual(left.map((r) => r.event_key), ["prune-test:new"]);
  const [rights] = await db.sql`
    select has_table_privilege('service_role', 'public.webhook_lost_events', 'select') as service_role,
           has_table_privilege('anon', 'public.webhook_lost_events', 'select') as anon,
           has_table_privilege('authenticated', 'public.webhook_lost_events', 'select') as authenticated,
           has_table_privilege('data_analyst', 'public.webhook_lost_events', 'select') as data_analyst`;
  assert.deepEqual({ ...rights }, {
    service_role: true,
    anon: false,
    authenticated: false,
    data_analyst: false,
  });
});

// readiness and stats read through webhook_lost_events_since() (migration 009400); a database without it
// still gets the same query, sent inline: both
// must say the same of the same losses, per error_code too (a refusal's warning is worded apart).
dbTest(`lost events [${db.kind}]: the read without JIT answers as the query it replaced`, async () => {
  await db.sql.begin(async (tx) => {
    // Only these (the other tests' losses are gone until the rollback): made good (stored after), still
    // missing (stored before its loss only), never stored with losses past a bound, and one too old.
    await tx`delete from public.webhook_lost_events`;
    await tx`
      insert into public.webhook_lost_events (id, lost_at, event, event_key, recover_command, error_code,
                                              tried_for_ms, unrecorded_losses)
      values (gen_random_uuid(), now() - interval '3 hours', 'message_created', 'agree:good', 'recover good',
              '57P01', 1, 0),
             (gen_random_uuid(), now() - interval '2 hours', 'message_created', 'agree:before',
              'recover before', '57P01', 1, 0),
             (gen_random_uuid(), now() - interval '1 hour', 'message_created', 'agree:never', null,
              '57P01', 1, 4),
             (gen_random_uuid(), now() - interval '3 days', 'message_created', 'agree:old', 'recover old',
              '57P01', 1, 0),
             (gen_random_uuid(), now() - interval '30 minutes', 'unknown', 'agree:refused', null,
              'invalid_json', 0, 0),
             (gen_random_uuid(), now() - interval '20 minutes', 'message_created', 'agree:good', null,
              'timestamp_stale', 0, 0)`;
    await tx`
      insert into public.webhook_events (event_key, event, payload, raw_body, body_sha256, verified_by,
                                         status, received_at, last_received_at)
      values ('agree:good', 'message_created', '{}', '{}', repeat('a', 64), 'chatwoot_api', 'skipped',
              now() - interval '150 minutes', now() - interval '150 minutes'),
             ('agree:before', 'message_created', '{}', '{}', repeat('b', 64), 'signature', 'skipped',
              now() - interval '5 hours', now() - interval '5 hours')`;
    const since = new Date(Date.now() - 24 * 3600_000);
    const inline = await lostEventsSince(tx, since, false);
    const viaFunction = await lostEventsSince(tx, since);
    const day = await tx<{ at: Date; never: Date }[]>`
      select max(lost_at) as at, max(lost_at) filter (where event_key = 'agree:never') as never
        from public.webhook_lost_events where event_key like 'agree:%'`;
    assert.deepEqual({ ...viaFunction }, { ...inline });
    const { missing_by_code, ...totals } = viaFunction;
    assert.deepEqual(totals, {
      count: 9,
      missing: 8,
      last_lost_at: day[0].at,
      recover_command: "recover before",
      acknowledged: 0, // none ever (the inline query is for a database from before acknowledgements)
    });
    // agree:good's refusal came after its store: missing (only a store at or after a loss makes it good).
    assert.deepEqual(
      Object.fromEntries(Object.entries(missing_by_code).map(([code, m]) => [code, m.missing])),
      { "57P01": 6, invalid_json: 1, timestamp_stale: 1 },
    );
    assert.equal(new Date(missing_by_code["57P01"].last!).getTime(), day[0].never.getTime());
    throw new Rollback();
  }).catch((error) => {
    if (!(error instanceof Rollback)) throw error;
  });
});

// The readiness function may be deployed before the migrations are pushed: on a database without the
// function (migration 009400 not applied yet) readiness and stats read the losses as before, not nothing.
dbTest(
  `lost events [${db.kind}]: a database without webhook_lost_events_since() still shows its losses`,
  async () => {
    const env = { AGENT_SDK_URL: "http://agent-sdk.invalid" };
    const read = async () => {
      const check = await checkWebhookPipeline({
        sql: db.sql,
        env,
        config: readinessConfigFromEnv(env),
        now: () => new Date(),
      });
      const stats = await runScript("scripts/stats.ts", ["--json"], db.url);
      assert.equal(stats.code, 0, stats.stdout + stats.stderr);
      const json = JSON.parse(stats.stdout);
      return [check.data?.lost_24h, check.data?.lost_24h_missing, json.lost, json.lost_missing];
    };
    await db.sql`insert into public.webhook_lost_events (id, lost_at, event, event_key, tried_for_ms)
    values (gen_random_uuid(), now(), 'message_created', 'no-function:1', 0)`;
    // Restored as the latest migration defining it has it (010000, with acknowledged), from its CREATE on.
    const migration = new URL(
      "../supabase/migrations/20261121010000_lost_events_acknowledged.sql",
      import.meta.url,
    );
    const define = "create function public.webhook_lost_events_since(";
    try {
      const viaFunction = await read();
      assert.ok(Number(viaFunction[0]) >= 1 && Number(viaFunction[1]) >= 1, String(viaFunction));
      await db.sql`drop function public.webhook_lost_events_since(timestamptz)`;
      assert.deepEqual(await read(), viaFunction);
    } finally {
      const text = await Deno.readTextFile(migration);
      assert.ok(text.includes(define), `${define} in ${migration}`);
      await db.sql.unsafe(text.slice(text.indexOf(define))).simple();
      await db.sql`delete from public.webhook_lost_events where event_key = 'no-function:1'`;
    }
  },
);

// Postgres compiles a plan whose estimated cost passes jit_above_cost (100 000 by default, on in hosted
// Supabase too) with JIT: 30-100 ms at every read. The losses of a day are counted with one probe of
// webhook_events per loss (stored since?), ~8.7 each in the planner's eyes, so readiness's webhook_pipeline
// check passed it at ~12 000 lost events (a busy relay's hours-long outage), exactly when it is read most.
// What readiness sends must not grow with the losses, and what it runs inside must never be compiled: a probe
// per row gains nothing from it. auto_explain (loaded per session, which takes a superuser: the test
// server's postgres is one) shows both.
Deno.test({
  name: `lost events [${db.kind}]: readiness's read of a day's losses is never compiled (JIT), however many`,
  ignore: db.kind !== "postgres",
  ...HOLDS_DB,
  async fn() {
    const plans: Array<{ "Query Text": string; Plan: { "Total Cost": number }; JIT?: unknown }> = [];
    const conn = postgres(db.url, {
      max: 1,
      prepare: false,
      onnotice: (n) => {
        const at = n.message.indexOf("{");
        if (n.message.startsWith("duration:") && at >= 0) plans.push(JSON.parse(n.message.slice(at)));
      },
    });
    try {
      const [{ jit }] = await conn<{ jit: boolean }[]>`select pg_jit_available() as jit`;
      await conn.begin(async (tx) => {
        await tx.unsafe(`load 'auto_explain'`);
        await tx.unsafe(
          `set local auto_explain.log_min_duration = 0; set local auto_explain.log_format = json;
          set local auto_explain.log_nested_statements = on; set local auto_explain.log_analyze = on;
          set local auto_explain.log_level = notice; set local client_min_messages = notice`,
        ).simple();
        const since = new Date(Date.now() - 24 * 3600_000);
        const addLosses = async (from: number, to: number) => {
          await tx`
            insert into public.webhook_lost_events (id, lost_at, event, event_key, recover_command,
                                                    error_code, tried_for_ms)
            select gen_random_uuid(), now() - make_interval(secs => g), 'message_created',
                   'message:' || (880000000 + g) || ':message_created', 'deno task recover --store',
                   '57P01', 1000
              from generate_series(${from}::int, ${to}::int) g`;
          await tx`analyze public.webhook_lost_events`;
        };
        // Every plan of one lostEventsSince; the statement it sends ends last (those nested in it end first).
        // A plan is logged when its portal is dropped, after the statement's answer: a query after it (whose
        // own plan comes later still) is what makes sure it has arrived.
        const flush = () => tx`select 'auto_explain: flush'`;
        const read = async () => {
          await flush();
          plans.length = 0;
          await lostEventsSince(tx, since);
          await flush();
          const own = plans.filter((p) => !p["Query Text"].includes("auto_explain: flush"));
          return { all: own, sent: own.at(-1)! };
        };
        await addLosses(1, 100);
        const before = (await read()).sent.Plan["Total Cost"];
        const added = 2000;
        await addLosses(101, 100 + added);
        const after = (await read()).sent.Plan["Total Cost"];
        // One probe of webhook_events per loss costs ~8.7 a row in the statement sent; a call costs nothing
        // per row.
        const perLoss = (after - before) / added;
        assert.ok(
          perLoss < 0.5,
          `the statement readiness sends: planned cost grew ${perLoss.toFixed(2)} per loss`,
        );
        // JIT asked for at any cost: only the read's own setting keeps it from compiling what runs inside.
        await tx.unsafe(
          `set local jit = on; set local jit_above_cost = 0; set local jit_inline_above_cost = 0;
          set local jit_optimize_above_cost = 0`,
        ).simple();
        const { all, sent } = await read();
        const nested = all.filter((p) => p !== sent);
        assert.deepEqual(
          nested.filter((p) => p.JIT).map((p) => p["Query Text"]),
          [],
          "compiled inside the read",
        );
        // The statement sent is compiled where the server can (JIT at any cost): the check above could see
        // it.
        if (jit) assert.ok(sent.JIT, `JIT available; not seen on ${sent["Query Text"]}`);
        throw new Rollback();
      }).catch((error) => {
        if (!(error instanceof Rollback)) throw error;
      });
    } finally {
      await conn.end({ timeout: 1 });
    }
  },
});
class Rollback extends Error {}

dbTest(`lost events [${db.kind}]: close the database`, async () => {
  await db.close();
});
