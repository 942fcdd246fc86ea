// The README's Operations section, command by command: each block is taken from the README itself and run
// against a real database (and, for shell commands, as the real CLI), then its effect is checked.
import assert from "node:assert/strict";
import { createChatwootWebhookApp } from "../supabase/functions/_shared/chatwoot_webhook.ts";
import { drain } from "../supabase/functions/_shared/forwarder.ts";
import { silentLogger } from "../supabase/functions/_shared/log.ts";
import { webhookConfigFromEnv } from "../supabase/functions/_shared/webhook_config.ts";
import { samplePayload } from "../scripts/lib/samples.ts";
import { dbTest, startTestDb } from "./_db.ts";
import { runScript } from "./_dev.ts";
import { FIXTURE, loadFixture } from "./_fixture.ts";
import { serveOnLoopback, signedRequest } from "./_http.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
const operations = readme.slice(
  readme.indexOf("## Operations"),
  readme.indexOf("\n## ", readme.indexOf("## Operations") + 1),
);
const blocks = [...operations.matchAll(/```(sql|sh)\n([\s\S]*?)```/g)].map((m) => ({
  lang: m[1],
  text: m[2].trim(),
}));

/** The one README block (of `lang`) that matches `pattern`. */
function block(lang: "sql" | "sh", pattern: RegExp): string {
  const found = blocks.filter((b) => b.lang === lang && pattern.test(b.text));
  assert.equal(found.length, 1, `README Operations: expected one ${lang} block matching ${pattern}`);
  return found[0].text;
}

/** Runs one README shell line (`deno task <name> …`) as the real script, against `databaseUrl`. */
async function runTask(line: string, databaseUrl: string): Promise<string> {
  const match = /^deno task (\w+)\s*(.*?)\s*(?:#.*)?$/.exec(line);
  assert.ok(match, `not a deno task line: ${line}`);
  const tasks = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).tasks as Record<string, string>;
  const script = /scripts\/\S+\.ts/.exec(tasks[match[1]])![0];
  const out = await runScript(script, match[2] ? match[2].split(/\s+/) : [], databaseUrl);
  const text = out.stdout + out.stderr;
  assert.equal(out.code, 0, `${line}\n${text}`);
  return text;
}

const db = await startTestDb();
const sql = db.sql;
await loadFixture(sql);
const sink = serveOnLoopback(() => Response.json({ ok: true }));
const forwarder = { agentSdkUrl: sink.url, agentSdkSecret: null, agentSdkToken: null };

async function pendingCount(): Promise<number> {
  const [{ n }] = await sql<
    { n: number }[]
  >`select count(*)::int as n from webhook_events where status = 'pending'`;
  return n;
}

dbTest(`operations [${db.kind}]: pause keeps events pending, resume delivers them`, async () => {
  await sql.unsafe(block("sql", /forwarding_paused = true/));
  const app = createChatwootWebhookApp({
    config: webhookConfigFromEnv({ CHATWOOT_WEBHOOK_SECRET: "ops-secret" }),
    sql,
    log: silentLogger,
  });
  const body = JSON.stringify(samplePayload("message_created", { messageId: 777_001, conversationId: 4242 }));
  const res = await app.fetch(
    signedRequest("http://relay.test/chatwoot-webhook", body, { secret: "ops-secret" }),
  );
  assert.equal(res.status, 200);
  const paused = await drain(sql, forwarder, { budgetMs: 5000, log: silentLogger });
  assert.equal(paused.stopped, "paused");
  assert.equal(await pendingCount(), 1);
  await sql.unsafe(block("sql", /forwarding_paused = false/));
  const resumed = await drain(sql, forwarder, { budgetMs: 5000, log: silentLogger });
  assert.equal(resumed.delivered, 1);
  assert.equal(await pendingCount(), 0);
});

dbTest(`operations [${db.kind}]: point at staging and back, without a redeploy`, async () => {
  const staging = block("sql", /agent_sdk_url_override = 'https?:/);
  await sql.unsafe(staging);
  const url = /'(https?:[^']+)'/.exec(staging)![1];
  const [setting] = await sql`select agent_sdk_url_override from relay_settings`;
  assert.equal(setting.agent_sdk_url_override, url);
  // The forwarder reads the target with each claim. (Nothing is sent: the README's URL is not on loopback.)
  await sql`insert into webhook_events (event_key, event, conversation_id, account_id, payload, raw_body, body_sha256, verified_by, next_attempt_at)
            values ('ops-staging', 'message_created', 99999, 1, '{}', '{}', repeat('e', 64), 'signature', now())`;
  const claimed =
    await sql`select event_key, agent_sdk_url_override from claim_webhook_events('ops-test', 50)`;
  assert.equal(claimed.find((c) => c.event_key === "ops-staging")?.agent_sdk_url_override, url);
  await sql`delete from webhook_events where event_key = 'ops-staging'`;
  await sql.unsafe(block("sql", /agent_sdk_url_override = null/));
  const [back] = await sql`select agent_sdk_url_override from relay_settings`;
  assert.equal(back.agent_sdk_url_override, null);
});

dbTest(`operations [${db.kind}]: after an outage, what waits for a retry is sent now`, async () => {
  const [{ id }] = await sql`
    insert into webhook_events (event_key, event, conversation_id, account_id, payload, raw_body, body_sha256,
                                verified_by, attempts, next_attempt_at)
    values ('ops-waiting', 'message_created', 99997, 1, '{}', '{}', repeat('d', 64), 'signature', 4,
            now() + interval '1 hour')
    returning id`;
  try {
    const [row] = await sql.unsafe(block("sql", /retry_webhook_events_now/));
    assert.ok(Number(Object.values(row)[0]) >= 1);
    const [after] = await sql`select status, attempts, next_attempt_at <= now() as due
                                from webhook_events where id = ${id}`;
    assert.deepEqual({ ...after }, { status: "pending", attempts: 4, due: true });
    // It counts the events that were waiting: with none left, 0, though the backlog is not empty.
    const [again] = await sql.unsafe(block("sql", /retry_webhook_events_now/));
    assert.equal(Number(Object.values(again)[0]), 0);
    assert.ok(await pendingCount() >= 1);
  } finally {
    await sql`delete from webhook_events where id = ${id}`;
  }
});

dbTest(
  `operations [${db.kind}]: see what failed: each dead event with the Agent SDK's last answer`,
  async () => {
    const [{ id }] = await sql`
    insert into webhook_events (event_key, event, conversation_id, account_id, payload, raw_body, body_sha256,
                                verified_by, status, attempts, last_error)
    values ('ops-failed', 'message_created', 99998, 1, '{}', '{}', repeat('f', 64), 'signature', 'dead', 2,
            'HTTP 410')
    returning id`;
    // What the forwarder's write-back records: a retried 503, then the 410 that ended it.
    await sql`insert into webhook_delivery_attempts (event_id, attempt, version, started_at, succeeded, outcome,
                                                   http_status, response_excerpt)
            values (${id}, 1, 1, now() - interval '1 minute', false, 'retry', 503, 'upstream busy'),
                   (${id}, 2, 1, now(), false, 'dead', 410, 'gone: tenant closed')`;
    try {
      const rows = await sql.unsafe(block("sql", /webhook_delivery_attempts/));
      const row = rows.find((r) => Number(r.id) === Number(id));
      assert.ok(row, "the dead event is listed");
      assert.equal(row.http_status, 410);
      assert.equal(row.answer, "gone: tenant closed");
    } finally {
      await sql`delete from webhook_events where id = ${id}`;
    }
  },
);

dbTest(`operations [${db.kind}]: acknowledged dead events stay dead and stop counting`, async () => {
  const health = async () =>
    (await sql<{ dead_count: string; dead_unacknowledged: string }[]>`
      select dead_count, dead_unacknowledged from webhook_delivery_health`)[0];
  const before = await health();
  assert.ok(Number(before.dead_count) >= 2, "the fixture left dead events");
  assert.equal(before.dead_unacknowledged, before.dead_count);
  await sql.unsafe(block("sql", /dead_acknowledged_at = now\(\)/));
  const after = await health();
  assert.equal(after.dead_count, before.dead_count);
  assert.equal(Number(after.dead_unacknowledged), 0);
  await sql`update relay_settings set dead_acknowledged_at = null`;
});

dbTest(
  `operations [${db.kind}]: replay dead events with the CLI (dry run, then for real) and in SQL`,
  async () => {
    const dead = async () =>
      (await sql`select count(*)::int as n from webhook_events where status = 'dead' and event = 'message_created'`)[
        0
      ]
        .n as number;
    const before = await dead();
    assert.ok(before >= 2, "the fixture left dead message_created events");
    const [dryRun, realRun] = block("sh", /deno task replay/).split("\n");
    assert.match(dryRun, /--dry-run/);
    const counted = await runTask(dryRun, db.url);
    assert.match(counted, new RegExp(`\\b${before}\\b`));
    assert.equal(await dead(), before, "a dry run changes nothing");
    await runTask(realRun, db.url);
    assert.equal(await dead(), 0);
    // They fail again (conversation 103), die again, and the SQL form brings them back.
    const failing = serveOnLoopback(() => new Response("still broken", { status: 500 }));
    try {
      await sql`update relay_settings set retry_schedule_seconds = '{0}', retry_jitter = 0, max_attempts = 1`;
      await drain(sql, { ...forwarder, agentSdkUrl: failing.url }, { budgetMs: 10_000, log: silentLogger });
    } finally {
      await failing.stop();
    }
    assert.equal(await dead(), before);
    const [row] = await sql.unsafe(block("sql", /replay_webhook_events_between/));
    assert.equal(Number(Object.values(row)[0]), before);
    assert.equal(await dead(), 0);
    await sql`update relay_settings set max_attempts = ${FIXTURE.maxAttempts}`;
  },
);

dbTest(`operations [${db.kind}]: the secret rotation steps never refuse a genuine delivery`, async () => {
  const expand = (command: string, vars: Record<string, string>) => {
    const value = /CHATWOOT_WEBHOOK_SECRET="([^"]+)"/.exec(command)![1];
    return value.replace(/\$(\w+)/g, (_, name) => vars[name]);
  };
  const vars = { OLD_SECRET: "old-secret-0123456789", NEW_SECRET: "new-secret-9876543210" };
  const overlap = expand(block("sh", /CHATWOOT_WEBHOOK_SECRET="\$OLD_SECRET,\$NEW_SECRET"/), vars);
  const finalOnly = expand(block("sh", /CHATWOOT_WEBHOOK_SECRET="\$NEW_SECRET"/), vars);
  const appWith = (secret: string) =>
    createChatwootWebhookApp({
      config: webhookConfigFromEnv({ CHATWOOT_WEBHOOK_SECRET: secret }),
      sql,
      log: silentLogger,
    });
  const url = "http://relay.test/chatwoot-webhook";
  // Chatwoot refuses a second webhook with a URL the account already has (unique per account), so the new
  // webhook's URL is the README's: the same function, with a query of its own.
  const query = /chatwoot-webhook(\?[\w=&.-]+)/.exec(operations)?.[1];
  assert.ok(query, "README Operations: the second webhook's URL (…/chatwoot-webhook?…)");
  const newUrl = url + query;
  const body = JSON.stringify(samplePayload("message_created", { messageId: 777_002, conversationId: 4243 }));
  // Before: only the old webhook exists.
  const before = await appWith(vars.OLD_SECRET).fetch(
    signedRequest(url, body, { secret: vars.OLD_SECRET }),
  );
  assert.equal(before.status, 200);
  // Overlap: both webhooks send the same event, one per secret; both verify, it is stored once.
  const both = appWith(overlap);
  const next = JSON.stringify(samplePayload("message_created", { messageId: 777_003, conversationId: 4243 }));
  const viaOld = await (await both.fetch(signedRequest(url, next, { secret: vars.OLD_SECRET }))).json();
  const viaNew = await (await both.fetch(signedRequest(newUrl, next, { secret: vars.NEW_SECRET }))).json();
  assert.deepEqual([viaOld.outcome, viaNew.outcome], ["stored", "duplicate"]);
  assert.equal(viaNew.id, viaOld.id);
  // After: the old webhook is gone and only the new secret verifies.
  const after = appWith(finalOnly);
  assert.equal((await after.fetch(signedRequest(newUrl, next, { secret: vars.NEW_SECRET }))).status, 200);
  assert.equal((await after.fetch(signedRequest(url, next, { secret: vars.OLD_SECRET }))).status, 401);
});

dbTest(`operations [${db.kind}]: read the escalation flag in SQL and with deno task stats`, async () => {
  const query = block("sql", /escalate/);
  const [calm] = await sql.unsafe(query);
  assert.equal(calm.escalate, false);
  // Deliveries have been failing for 6 minutes without a success in between.
  const [{ id }] = await sql`select id from webhook_events order by id limit 1`;
  await sql`insert into webhook_delivery_attempts (event_id, attempt, version, started_at, succeeded, outcome, http_status, recorded_at)
            select ${id}, 1, 1, now() - interval '6 minutes', false, 'retry', 503, now() - interval '6 minutes' - n * interval '1 second'
              from generate_series(0, 2) n`;
  await sql`delete from webhook_delivery_attempts where succeeded and recorded_at > now() - interval '7 minutes'`;
  const [alarm] = await sql.unsafe(query);
  assert.equal(alarm.escalate, true);
  assert.ok(alarm.failing_since instanceof Date);
  const printed = await runTask(block("sh", /^deno task stats$/m), db.url);
  assert.match(printed, /escalate\s+YES/);
});

Deno.test({
  name: `operations [${db.kind}]: close`,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await sink.stop();
    await db.close();
  },
});
