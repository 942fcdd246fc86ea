// The upgrade path: a database migrated by an earlier release, holding live data written by that release's
// SQL functions, then brought to HEAD by `applyMigrations` (as `supabase db push` would). Tests elsewhere
// migrate empty databases; here every row must come through, and HEAD's forwarder must deliver the old events
// exactly as it delivers new ones. Runs on PGlite, or on the server DATABASE_URL names.
import assert from "node:assert/strict";
import { startTestDb, type TestDb } from "./_db.ts";
import { hostedStandIns } from "./_hosted.ts";
import { startAgentSdk } from "./_agent_sdk.ts";
import { fullEnv, startChatwootStandIn } from "./_readiness.ts";
import { eventToStore, fastSettings } from "./_forwarding.ts";
import { applyMigrations, listMigrations } from "../scripts/lib/migrations.ts";
import { type SampleEvent, samplePayload } from "../scripts/lib/samples.ts";
import { eventColumns } from "../supabase/functions/_shared/chatwoot_payload.ts";
import { sha256Hex } from "../supabase/functions/_shared/signature.ts";
import { drain } from "../supabase/functions/_shared/forwarder.ts";
import { storeEvent } from "../supabase/functions/_shared/ingest_store.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";
import { createReadinessApp } from "../supabase/functions/_shared/readiness.ts";
import type { Sql } from "../supabase/functions/_shared/db.ts";

/**
 * Where sets of migrations landed (git log -- supabase/migrations): a database may have been migrated up to
 * any of these by the release of its day.
 */
const CUTS = ["20261121001500", "20261121002800", "20261121004200"];

/**
 * A folder holding HEAD's migrations up to and including `cut`. Files edited after their release (lock
 * timeouts, comments) leave the same schema as that day's files did once HEAD's later ones apply.
 */
async function migrationsUpTo(cut: string): Promise<URL> {
  const dir = await Deno.makeTempDir({ prefix: "relay_upgrade_" });
  for (const file of await listMigrations()) {
    if (file.version.localeCompare(cut) <= 0) {
      await Deno.copyFile(file.path, `${dir}/${file.version}_${file.name}.sql`);
    }
  }
  return new URL(`file://${dir}/`);
}

// deno-lint-ignore no-explicit-any
type Row = Record<string, any>;

const TOKEN = "ghp_4f9Kq2Lm7Xz0Rt5Wv8Yb3Nc6Hd1Ja2Ps9Qe"; // token-shaped: letters and digits, 20+
const PROJECT_REF = "abcdefghijklmnopqrst"; // letters only: stays

/** The era's ingest_webhook_event, called with the arguments it has (named: newer ones are left out). */
async function ingestThen(sql: Sql, raw: string, sentAt: Date): Promise<number> {
  const stored = eventToStore(raw);
  const [{ n }] = await sql<{ n: number }[]>`
    select max(pronargs)::int as n from pg_proc where proname = 'ingest_webhook_event'
       and pronamespace = 'public'::regnamespace`;
  const receipt = n >= 13 ? sql`, p_receipt_id => ${crypto.randomUUID()}::uuid` : sql``;
  const [row] = await sql<{ event_id: string }[]>`
    select event_id from public.ingest_webhook_event(
      p_event_key => ${stored.eventKey}, p_event => ${stored.event}, p_message_id => ${stored.messageId},
      p_conversation_id => ${stored.conversationId}, p_account_id => ${stored.accountId},
      p_inbox_id => ${stored.inboxId}, p_delivery_id => ${null}, p_payload => ${raw}::text::jsonb,
      p_raw_body => ${raw}, p_body_sha256 => ${stored.bodySha256}, p_verified_by => 'signature',
      p_sent_at => ${sentAt.toISOString()}::timestamptz ${receipt})`;
  return Number(row.event_id);
}

const body = (event: SampleEvent, messageId: number, conversationId: number, at: Date, content?: string) =>
  JSON.stringify(samplePayload(event, { messageId, conversationId, at, content }));

const hasFunction = async (sql: Sql, name: string) =>
  (await sql`select 1 from pg_proc where proname = ${name} and pronamespace = 'public'::regnamespace`)
    .length > 0;

interface Seeded {
  ids: Record<string, number>;
  /** Forwarded by the drain after the upgrade (pending, failed, replayed, recovered, leased). */
  toDeliver: number[];
  sdkUrl: string;
  /** The era accepted token-shaped evidence, which migration 003800 redacts on the way up. */
  redactedByUpgrade: boolean;
  /** The era accepted a token-shaped writer (updated_by), which migration 007600 redacts on the way up. */
  writerRedactedByUpgrade: boolean;
}

/** An operator's database of that release: events in every state, settings and checklist changed. */
async function seedThen(sql: Sql, sdkUrl: string): Promise<Seeded> {
  const t0 = new Date(Date.now() - 60_000);
  const at = (s: number) => new Date(t0.getTime() + s * 1000);
  await fastSettings(sql, { max_attempts: 3 });
  await sql`update public.relay_settings set agent_sdk_url_override = ${sdkUrl},
    forward_events = '{message_created,message_updated,conversation_status_changed,Message_Created," "}'
    where id`;
  const ids: Record<string, number> = {};
  // Five events taken through one claim: delivered, failed (retry due now), dead (410), replayed, in flight.
  ids.delivered = await ingestThen(sql, body("message_created", 7001, 301, at(1)), at(1));
  ids.failed = await ingestThen(sql, body("message_created", 7002, 302, at(2)), at(2));
  ids.dead = await ingestThen(sql, body("message_created", 7003, 303, at(3)), at(3));
  ids.replayed = await ingestThen(sql, body("message_created", 7004, 304, at(4)), at(4));
  ids.leased = await ingestThen(sql, body("message_created", 7005, 305, at(5)), at(5));
  const claimed = await sql<Row[]>`select * from public.claim_webhook_events('release-forwarder', 5, 600)`;
  assert.equal(claimed.length, 5);
  const report = (id: number, http_status: number) => {
    const c = claimed.find((r) => Number(r.id) === id)!;
    return {
      id: c.id,
      attempt: c.attempt,
      version: c.version,
      started_at: new Date().toISOString(),
      duration_ms: 3,
      http_status,
      error: http_status === 200 ? null : `HTTP ${http_status}`,
      response_excerpt: null,
      retry_after_seconds: null,
    };
  };
  const results = [report(ids.delivered, 200), report(ids.failed, 503), report(ids.dead, 410)];
  results.push(report(ids.replayed, 410));
  await sql`select * from public.complete_webhook_deliveries('release-forwarder',
    ${JSON.stringify(results)}::text::jsonb)`;
  await sql`select public.replay_webhook_events(${[ids.replayed]}::bigint[])`;
  // A message and its edit; a conversation's status change (forwarded) and update (skipped).
  ids.message = await ingestThen(sql, body("message_created", 7010, 310, at(10), "Hello"), at(10));
  ids.edit = await ingestThen(sql, body("message_updated", 7010, 310, at(11), "Hello, edited"), at(11));
  ids.statusChanged = await ingestThen(sql, body("conversation_status_changed", 0, 311, at(12)), at(12));
  ids.skipped = await ingestThen(sql, body("conversation_updated", 0, 311, at(13)), at(13));
  ids.pending = await ingestThen(sql, body("message_created", 7020, 320, at(20)), at(20));
  if (await hasFunction(sql, "recover_webhook_event")) {
    // A message recovered from Chatwoot's API (migration 002000 on).
    const raw = body("message_created", 7030, 330, at(30));
    const c = eventColumns(JSON.parse(raw), "message_created", sha256Hex(raw));
    const [{ id }] = await sql<
      { id: string }[]
    >`select public.recover_webhook_event(${c.eventKey}, ${c.event},
      ${c.messageId}, ${c.conversationId}, ${c.accountId}, ${c.inboxId}, ${raw}, ${sha256Hex(raw)}) as id`;
    ids.recovered = Number(id);
  }
  // Refusals counted (webhook_rejections), as the era's webhook wrote them.
  await sql`select public.record_webhook_rejection('signature_invalid', 401)`;
  await sql`select public.record_webhook_rejection('signature_invalid', 401)`;
  await sql`select public.record_webhook_rejection('payload_too_large', 413)`;
  // Paused by the operator: what arrives meanwhile waits.
  await sql`update public.relay_settings set forwarding_paused = true where id`;
  ids.whilePaused = await ingestThen(sql, body("message_created", 7040, 340, at(40)), at(40));
  // The checklist: evidence written through the era's own write path, one holding a token.
  const update = (key: string, status: string, evidence: string) =>
    sql`select key from public.readiness_update_item(${key}, ${status}, true, ${evidence}, 'ops', 'alice')`;
  // Evidence a release before 003800 accepted (a token, a line break); later ones refuse it themselves.
  const checked =
    (await sql`select 1 from pg_constraint where conname = 'readiness_tasks_evidence_publishable'`)
      .length > 0;
  await update(
    "task-1",
    "done",
    checked ? "fixed with ghp_[redacted] rotated" : `fixed with ${TOKEN} rotated`,
  );
  await update("task-2", "done", `project ${PROJECT_REF}, log attached`);
  await update("blocker-1", "done", checked ? "resolved: line one line two" : "resolved: line one\nline two");
  await update("inbox-1", "in_progress", "screenshots in the drive");
  // A writer a release before 007600 accepted (readiness_update_item's p_actor, published as updated_by).
  const writerChecked =
    (await sql`select 1 from pg_constraint where conname = 'readiness_inbox_config_updated_by_publishable'`)
      .length > 0;
  await sql`select key from public.readiness_update_item('inbox-2', 'in_progress', false, null, null,
    ${writerChecked ? "admin:dana" : `admin:dana ${TOKEN}`})`;
  const toDeliver = [
    ids.failed,
    ids.replayed,
    ids.leased,
    ids.message,
    ids.edit,
    ids.statusChanged,
    ids.pending,
    ...(ids.recovered ? [ids.recovered] : []),
    ids.whilePaused,
  ];
  return { ids, toDeliver, sdkUrl, redactedByUpgrade: !checked, writerRedactedByUpgrade: !writerChecked };
}

const READINESS_SECTIONS = ["credentials", "inbox_config", "blockers", "tasks", "validations"];

async function snapshot(sql: Sql) {
  const rows = async (query: string) => (await sql.unsafe<Row[]>(query)).map((r) => r.j as Row);
  const readiness: Record<string, Row[]> = {};
  for (const s of READINESS_SECTIONS) {
    readiness[s] = await rows(`select to_jsonb(t) as j from public.readiness_${s} t order by key`);
  }
  return {
    events: await rows("select to_jsonb(e) as j from public.webhook_events e order by id"),
    attempts: await rows("select to_jsonb(a) as j from public.webhook_delivery_attempts a order by id"),
    settings: (await rows("select to_jsonb(s) as j from public.relay_settings s"))[0],
    readiness,
    history: await rows("select to_jsonb(h) as j from public.readiness_item_history h order by id"),
    rejections: await rows(
      "select to_jsonb(r) as j from public.webhook_rejections r order by minute, reason",
    ),
  };
}

/** `after` restricted to the keys `before` had (columns added by later migrations are looked at apart). */
const sameKeys = (before: Row, after: Row) =>
  Object.fromEntries(Object.keys(before).map((k) => [k, after[k]]));

async function upgradeTest(cut: string) {
  const dir = await migrationsUpTo(cut);
  const db: TestDb = await startTestDb({ migrationsDir: dir });
  const sdk = startAgentSdk();
  const chatwoot = startChatwootStandIn();
  try {
    const sql = db.sql;
    const seeded = await seedThen(sql, sdk.url);
    const { ids } = seeded;
    const before = await snapshot(sql);

    const applied = await applyMigrations(sql);
    const all = (await listMigrations()).map((f) => f.version);
    assert.deepEqual(applied, all.filter((v) => v.localeCompare(cut) > 0));
    assert.deepEqual(await applyMigrations(sql), [], "a second run applies nothing");
    const after = await snapshot(sql);

    // Every event and attempt row as it was, in the columns it had; the columns added since, as documented.
    assert.deepEqual(after.events.map((e, i) => sameKeys(before.events[i], e)), before.events);
    assert.deepEqual(after.attempts, before.attempts);
    assert.deepEqual(after.rejections, before.rejections);
    for (const [i, e] of after.events.entries()) {
      if (!("built_at" in before.events[i])) {
        assert.equal(e.built_at, null, "stored before 003150: no build time");
      }
      if (!("recent_receipts" in before.events[i])) assert.deepEqual(e.recent_receipts, []);
    }
    // Settings: only the names no event can have are dropped (004500), nothing else changes.
    const { forward_events, updated_at: _u, ...settingsRest } = after.settings;
    const { forward_events: _f, updated_at: _v, ...settingsBefore } = before.settings;
    assert.deepEqual(forward_events, ["message_created", "message_updated", "conversation_status_changed"]);
    assert.deepEqual(sameKeys(settingsBefore, settingsRest), settingsBefore);
    assert.equal(after.settings.forwarding_paused, true);
    assert.equal(after.settings.agent_sdk_url_override, seeded.sdkUrl);
    assert.equal(after.settings.dead_acknowledged_at, null);

    // Readiness: evidence made publishable (003800), the old value in the history; other rows untouched.
    const evidence = (section: string, key: string) =>
      after.readiness[section].find((r) => r.key === key)!.evidence;
    assert.equal(evidence("tasks", "task-1"), "fixed with ghp_[redacted] rotated");
    assert.equal(evidence("tasks", "task-2"), `project ${PROJECT_REF}, log attached`);
    assert.equal(evidence("blockers", "blocker-1"), "resolved: line one line two");
    assert.equal(evidence("inbox_config", "inbox-1"), "screenshots in the drive");
    const repaired = new Set([
      ...(seeded.redactedByUpgrade ? ["task-1", "blocker-1"] : []),
      ...(seeded.writerRedactedByUpgrade ? ["inbox-2"] : []),
    ]);
    // The writer redacted in place (007600): the item's status, evidence and updated_at as they were.
    const inbox2 = (rows: Row[]) => rows.find((r) => r.key === "inbox-2")!;
    assert.deepEqual(
      inbox2(after.readiness.inbox_config),
      seeded.writerRedactedByUpgrade
        ? { ...inbox2(before.readiness.inbox_config), updated_by: "admin:dana ghp_[redacted]" }
        : inbox2(before.readiness.inbox_config),
    );
    for (const section of READINESS_SECTIONS) {
      const untouched = (rows: Row[]) => rows.filter((r) => !repaired.has(r.key));
      assert.deepEqual(untouched(after.readiness[section]), untouched(before.readiness[section]), section);
      for (const r of after.readiness[section]) {
        if (r.status !== before.readiness[section].find((b) => b.key === r.key)!.status) {
          assert.fail(`${r.key}'s status changed`);
        }
      }
    }
    assert.deepEqual(after.history.slice(0, before.history.length), before.history);
    const newHistory = after.history.slice(before.history.length);
    assert.deepEqual(
      newHistory.map((h) => [h.item_key, h.old_evidence, h.changed_by]).sort(),
      [
        ...(seeded.redactedByUpgrade
          ? [
            ["blocker-1", "resolved: line one\nline two", "migration 20261121003800"],
            ["task-1", `fixed with ${TOKEN} rotated`, "migration 20261121003800"],
          ]
          : []),
        ...(seeded.writerRedactedByUpgrade ? [["inbox-2", null, "migration 20261121007600"]] : []),
      ].sort(),
    );

    // Views answer, agree with the rows, and docs/sql.md's queries run as data_analyst.
    const count = async (status: string) =>
      Number((await sql`select count(*) as n from public.webhook_events where status = ${status}`)[0].n);
    const [health] = await sql`select * from public.webhook_pipeline_health`;
    assert.equal(Number(health.backlog), (await count("pending")) + (await count("delivering")));
    assert.equal(Number(health.dead_total), 1);
    assert.equal(health.paused, true);
    assert.equal(health.escalate, false);
    assert.equal(Number(health.dead_last_hour), 2, "the dead one and the one replayed since both died");
    const [{ last }] = await sql`select max(last_received_at) as last from public.webhook_events
                                  where verified_by <> 'chatwoot_api'`;
    assert.deepEqual(health.last_received_at, last, "last webhook received: recovered copies left out");
    const [stats] =
      await sql`select sum(events)::int as events, sum(dead)::int as dead, sum(skipped)::int as skipped
                               from public.chatwoot_daily_event_stats`;
    assert.deepEqual(
      { events: stats.events, dead: stats.dead, skipped: stats.skipped },
      { events: after.events.length, dead: 1, skipped: 1 },
    );
    const [delivery] = await sql`select * from public.webhook_delivery_health`;
    assert.equal(Number(delivery.dead_unacknowledged), 1, "never acknowledged: the old death counts");
    const [message] = await sql`select * from public.chatwoot_messages where message_id = 7010`;
    assert.equal(message.content, "Hello, edited");
    assert.equal(message.edited, true);
    assert.equal(Number(message.event_id), ids.message);
    const doc = await Deno.readTextFile(new URL("../docs/sql.md", import.meta.url));
    const queries = [...doc.matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => m[1].trim());
    assert.ok(queries.length >= 10);
    for (const query of queries) {
      await sql.begin(async (tx) => {
        await tx.unsafe("set local role data_analyst");
        await tx.unsafe(query);
      });
    }

    // Readiness serves, with the repaired evidence and no token anywhere.
    const readiness = createReadinessApp({
      sql,
      env: fullEnv(chatwoot.url),
      log: memoryLogger(),
      cacheMs: 0,
      checkTimeoutMs: 10_000,
    });
    for (const path of ["/readiness", "/readiness?format=markdown", "/readiness?format=html"]) {
      const res = await readiness.request(path);
      const text = await res.text();
      assert.ok([200, 503].includes(res.status), `${path}: ${res.status} ${text.slice(0, 200)}`);
      assert.ok(!text.includes(TOKEN), path);
      assert.ok(text.includes("[redacted]"), path);
      if (path === "/readiness") {
        const database = JSON.parse(text).checks.find((c: Row) =>
          c.key === "database" || c.name === "database"
        );
        assert.equal(database?.status, "pass", JSON.stringify(database));
      }
    }

    if (ids.recovered) {
      // The real webhook of a copy recovered before the upgrade replaces it: same row, receipt and delivery.
      const real = await storeEvent(sql, eventToStore(body("message_created", 7030, 330, new Date())));
      assert.deepEqual([real.id, real.outcome], [ids.recovered, "stored"]);
      const [copy] = await sql`select verified_by, version, receive_count, status from public.webhook_events
                                where id = ${ids.recovered}`;
      assert.deepEqual({ ...copy }, {
        verified_by: "signature",
        version: 1,
        receive_count: 1,
        status: "pending",
      });
    }

    // HEAD's drain: nothing while paused; once resumed, every waiting event (and the lease, once expired)
    // goes to the override as a new event would; the dead one stays dead until replayed.
    const config = { agentSdkUrl: null, agentSdkSecret: null, agentSdkToken: null };
    const log = memoryLogger();
    assert.equal((await drain(sql, config, { budgetMs: 20_000, log })).stopped, "paused");
    assert.equal(sdk.received.length, 0);
    await sql`update public.relay_settings set forwarding_paused = false where id`;
    const newId = (await storeEvent(sql, eventToStore(body("message_created", 7050, 350, new Date())))).id;
    // The release's forwarder that holds the lease is gone: its event waits for the lease to run out.
    await drain(sql, config, { budgetMs: 20_000, log });
    assert.equal(sdk.received.filter((r) => r.eventId === ids.leased).length, 0, "leased: not sent yet");
    assert.equal(
      (await sql`select status from public.webhook_events where id = ${ids.leased}`)[0].status,
      "delivering",
    );
    await sql`update public.webhook_events set lease_expires_at = now() - interval '1 second'
               where id = ${ids.leased}`; // its 10 minutes, without waiting them
    await drain(sql, config, { budgetMs: 20_000, log });
    const statuses = await sql<{ id: string; status: string; raw_body: string }[]>`
      select id, status, raw_body from public.webhook_events order by id`;
    for (const id of [...seeded.toDeliver, newId]) {
      const row = statuses.find((r) => Number(r.id) === id)!;
      assert.equal(row.status, "delivered", `event ${id}`);
      const got = sdk.received.filter((r) => r.eventId === id);
      assert.equal(got.length, 1, `event ${id} sent once`);
      assert.equal(got[0].text, row.raw_body);
    }
    const headerNames = (id: number) =>
      [...sdk.received.find((r) => r.eventId === id)!.headers.keys()].filter((h) => h.startsWith("x-relay"))
        .sort();
    assert.deepEqual(headerNames(ids.pending), headerNames(newId), "old events go out as new ones do");
    assert.equal(sdk.received.find((r) => r.eventId === ids.failed)!.attempt, 2);
    assert.equal(sdk.received.find((r) => r.eventId === ids.leased)!.attempt, 2);
    assert.ok(
      sdk.received.findIndex((r) => r.eventId === ids.message) <
        sdk.received.findIndex((r) => r.eventId === ids.edit),
      "the message before its edit",
    );
    assert.equal(
      (await sql`select status from public.webhook_events where id = ${ids.delivered}`)[0].status,
      "delivered",
    );
    assert.equal(sdk.received.filter((r) => r.eventId === ids.delivered).length, 0, "not sent again");
    assert.equal(
      (await sql`select status from public.webhook_events where id = ${ids.skipped}`)[0].status,
      "skipped",
    );
    assert.equal(
      (await sql`select status from public.webhook_events where id = ${ids.dead}`)[0].status,
      "dead",
    );

    // The dead one: acknowledged, then replayed and delivered.
    await sql`update public.relay_settings set dead_acknowledged_at = now() where id`;
    assert.equal(
      Number(
        (await sql`select dead_unacknowledged from public.webhook_delivery_health`)[0]
          .dead_unacknowledged,
      ),
      0,
    );
    await sql`select public.replay_webhook_events(${[ids.dead]}::bigint[])`;
    await drain(sql, config, { budgetMs: 20_000, log });
    assert.equal(
      (await sql`select status from public.webhook_events where id = ${ids.dead}`)[0].status,
      "delivered",
    );
    const [end] = await sql`select * from public.webhook_pipeline_health`;
    assert.equal(Number(end.backlog), 0);
    assert.equal(Number(end.dead_total), 0);
  } finally {
    await chatwoot.close();
    await sdk.close();
    await db.close();
    await Deno.remove(dir, { recursive: true });
  }
}

for (const cut of CUTS) {
  Deno.test({
    name:
      `migrations: a database migrated to ${cut} with live data upgrades to HEAD; nothing lost or changed ` +
      "but what later migrations say, and HEAD's forwarder delivers the old events as new ones",
    sanitizeOps: false,
    sanitizeResources: false,
    fn: () => upgradeTest(cut),
  });
}

Deno.test({
  name: "migrations: a forwarder job scheduled by a release before 003400 stays when its Vault secrets are " +
    "usable, and is unscheduled on the way up when they never were",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cut = "20261121002800";
    const dir = await migrationsUpTo(cut);
    try {
      for (
        const [token, stays] of [["forwarder-token-from-vault", true], [
          "forwarder-token-from-vault\n",
          false,
        ]]
      ) {
        // Secrets made first, good ones: the release's migration schedules the job. The operator then pastes
        // the token again (with its line break) and re-runs that release's schedule_forwarder(): it took it.
        const db = await startTestDb({
          beforeMigrations: hostedStandIns("forwarder-token-from-vault"),
          migrationsDir: dir,
        });
        try {
          await db.sql`update vault.decrypted_secrets set decrypted_secret = ${token}
                        where name = 'relay_forwarder_token'`;
          const [{ then }] = await db.sql`select public.schedule_forwarder('10 seconds') as then`;
          assert.equal(then, "scheduled relay-forward-events every 10 seconds");
          const [before] = await db.sql`select jobname, schedule, command from cron.job`;
          await applyMigrations(db.sql);
          const jobs = await db.sql`select jobname, schedule, command from cron.job`;
          assert.deepEqual(jobs.map((j) => ({ ...j })), stays ? [{ ...before }] : [], JSON.stringify(token));
        } finally {
          await db.close();
        }
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
