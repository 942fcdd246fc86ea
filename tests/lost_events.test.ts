// An event the late store gave up on ("[Chatwoot Webhook] Lost") is recorded in public.webhook_lost_events once
// the database answers again, and stats and readiness name it: the function's log alone is kept briefly.
import assert from "node:assert/strict";
import { dbTest, startTestDb } from "./_db.ts";
import { runScript } from "./_dev.ts";
import { startDbProxy } from "./_proxy.ts";
import { eventually, signedRequest, TEST_SECRET } from "./_http.ts";
import { storeRecoveredCopy } from "./_forwarding.ts";
import { connect } from "../supabase/functions/_shared/db.ts";
import { createChatwootWebhookApp } from "../supabase/functions/_shared/chatwoot_webhook.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";
import { LostEvents, writeLostEvents } from "../supabase/functions/_shared/lost_events.ts";
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
    const record = (n: number) => ({
      id: crypto.randomUUID(),
      lost_at: new Date().toISOString(),
      event: "conversation_created",
      event_key: `bound-test:${n}`,
      delivery_id: null,
      inbox_id: null,
      account_id: null,
      received_at: null,
      message_created_at: null,
      recover_command: null,
      error_code: "memory_bound",
      tried_for_ms: 0,
    });
    for (let n = 1; n <= 3; n++) lostEvents.add(record(n));
    await eventually(() => Promise.resolve(writes > 0), 5_000, "a first write");
    down = false;
    await lostEvents.close();
    const [counted] = await db.sql<{ rows: number; losses: number }[]>`
      select count(*)::int as rows, coalesce(sum(1 + unrecorded_losses), 0)::int as losses
        from public.webhook_lost_events where event_key like 'bound-test:%'`;
    assert.deepEqual({ ...counted }, { rows: 2, losses: 3 });
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

dbTest(`lost events [${db.kind}]: close the database`, async () => {
  await db.close();
});
