// Migration 20261121010600 (message edits read from their period): chatwoot_messages finds an edited message's
// message_created from its message_updated, so that docs/sql.md's messages per day reads the period's rows and
// not every message_created of the table; and on messages of every shape the view answers exactly as before.
// Migration 20261121010900 (message payload read once per row): the view's columns read one copy of the
// payload, fetched once a row; the same answers again.
import assert from "node:assert/strict";
import { dbTest, migrationsBefore, startTestDb } from "./_db.ts";
import { answersAsDataAnalyst, sqlDocQueries } from "./_sql_doc.ts";
import { loadFixture } from "./_fixture.ts";
import { eventToStore, storeRecoveredCopy } from "./_forwarding.ts";
import { applyMigrations } from "../scripts/lib/migrations.ts";
import { samplePayload } from "../scripts/lib/samples.ts";
import { storeEvent } from "../supabase/functions/_shared/ingest_store.ts";

const EDITS_FROM_THEIR_PERIOD = "20261121010600";
const PAYLOAD_READ_ONCE = "20261121010900";

const before = await migrationsBefore(EDITS_FROM_THEIR_PERIOD);
const db = await startTestDb({ migrationsDir: before });
const sql = db.sql;

// deno-lint-ignore no-explicit-any
type Payload = Record<string, any>;
const store = (payload: Payload) => storeEvent(sql, eventToStore(JSON.stringify(payload)));
const DAY = 86_400_000;
/** Messages and edits of the last days, as Chatwoot (and deno task recover) send them. */
const RECENT_FIRST_ID = 7001;

/**
 * A history of 20 000 messages two to four months old, one in 7 edited (the update's row keyed as ingest keys
 * it), bulk-loaded; and the last days' messages of every shape through the real ingest.
 */
async function loadMessages(): Promise<void> {
  await sql`
    insert into public.webhook_events (event_key, event, message_id, conversation_id, account_id, inbox_id,
      payload, raw_body, body_sha256, verified_by, status, attempts, received_at, last_received_at, built_at)
    select 'message:' || (300000 + g) || ':' || ev, ev, 300000 + g, 6000 + g / 30, 1, 3,
           jsonb_build_object('event', ev, 'id', 300000 + g, 'message_type', 'incoming',
             'content', case when ev = 'message_updated' and g % 14 = 0 then 'edited ' else '' end || 'old ' || g,
             'sender', jsonb_build_object('id', 512, 'name', 'Jamie'),
             'created_at', to_char(now() at time zone 'UTC' - interval '60 days' - g * interval '5 minutes',
                                   'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
           '{}', md5(ev || g) || md5(g::text), 'signature', 'delivered', 1, now() - interval '60 days',
           now() - interval '60 days', case when ev = 'message_updated' then now() - interval '60 days' end
      from generate_series(1, 20000) g,
           lateral (select 'message_created' as ev union all select 'message_updated' where g % 7 = 0) e`;

  const at = new Date(Date.now() - 3 * DAY);
  let id = RECENT_FIRST_ID;
  const message = (
    messageId: number,
    extra: Payload = {},
    event = "message_created",
    when = at,
  ): Payload => ({
    ...samplePayload(event as "message_created", { conversationId: 401, messageId, at: when }),
    ...extra,
  });
  const later = (minutes: number) => new Date(at.getTime() + minutes * 60_000);
  // Never edited; edited; edited twice (the later build wins); a status-only update; a deletion.
  await store(message(id++));
  await store(message(id, { content: "first" }));
  await store(message(id++, { content: "second" }, "message_updated", later(1)));
  await store(message(id, { content: "one" }));
  await store(message(id, { content: "two", created_at: at.toISOString() }, "message_updated", later(1)));
  await store(message(id++, { content: "three", created_at: at.toISOString() }, "message_updated", later(2)));
  await store(message(id, { content: "Sent" }));
  await store(message(id++, { content: "Sent" }, "message_updated", later(1)));
  await store(message(id, { attachments: [{ id: 1, file_type: "image" }] }));
  await store(
    message(
      id++,
      { content: "This message was deleted", content_attributes: { deleted: true } },
      "message_updated",
    ),
  );
  // The update came first; an update whose message_created never came (or was pruned).
  await store(message(id, { content: "edited before" }, "message_updated", later(1)));
  await store(message(id++, { content: "original" }));
  await store(message(id++, { content: "orphan" }, "message_updated"));
  // An update built with another created_at: a message of the history edited into the period, and one of the
  // period whose update says it is older than the period.
  await store(message(id, { created_at: new Date(Date.now() - 70 * DAY).toISOString() }));
  await store(message(id++, { created_at: at.toISOString(), content: "moved in" }, "message_updated"));
  await store(message(id));
  await store(
    message(
      id++,
      { created_at: new Date(Date.now() - 70 * DAY).toISOString(), content: "out" },
      "message_updated",
    ),
  );
  // Times chatwoot_timestamp reads as null, edited; an agent's private note, edited; a bot's message.
  await store(message(id, { created_at: "2026-02-30T10:00:00Z" }));
  await store(message(id++, { created_at: "2026-02-30T10:00:00Z", content: "x" }, "message_updated"));
  const note = { private: true, message_type: "outgoing", sender: { id: 7, name: "Alex", type: "user" } };
  await store(message(id, note));
  await store(message(id++, { ...note, content: "note, edited" }, "message_updated"));
  await store(message(id++, { message_type: "template", sender: { id: 3, name: "Bot", type: "agent_bot" } }));
  // A copy recovered from the API, then edited; another account's message.
  await storeRecoveredCopy(sql, JSON.stringify(message(id)));
  await store(message(id++, { content: "recovered, edited" }, "message_updated"));
  await store(samplePayload("message_created", { conversationId: 401, messageId: id++, accountId: 2, at }));
  // Payloads no ingest stores (it takes JSON objects only), written directly: the view reads them as before.
  await sql`
    insert into public.webhook_events (event_key, event, message_id, conversation_id, payload, raw_body,
      body_sha256, verified_by, status)
    select 'message:' || m || ':message_created', 'message_created', m, 401, p, p::text, md5(p::text) || md5(''),
           'signature', 'skipped'
      from (values (${id++}::bigint, '[1, {"content": "in an array"}]'::jsonb),
                   (${id++}, '"a string"'::jsonb),
                   (${id++}, '{"content": null, "sender": null, "private": null, "attachments": null}'::jsonb)) v(m, p)`;
  await sql`analyze public.webhook_events`;
}

/** docs/sql.md's queries of chatwoot_messages. */
const docQueries = async () => (await sqlDocQueries()).filter((query) => query.includes("chatwoot_messages"));

const MESSAGES_PER_DAY = async () => {
  const query = (await docQueries()).find((q) => q.includes("webhook_events_message_created_at_idx"));
  assert.ok(query, "docs/sql.md's messages per day");
  return query;
};

/** The whole view, the period's and each recent message's rows, and docs/sql.md's queries, as data_analyst. */
async function answers(): Promise<string[]> {
  const period = "((now() at time zone 'UTC')::date - 29)::timestamp at time zone 'UTC'";
  return answersAsDataAnalyst(sql, [
    "select * from chatwoot_messages order by event_id, message_id",
    `select * from chatwoot_messages where created_at >= ${period} order by event_id, message_id`,
    `select * from chatwoot_messages where message_id >= ${RECENT_FIRST_ID} order by event_id, message_id`,
    "select * from chatwoot_messages where conversation_id = 401 order by event_id, message_id",
    ...await docQueries(),
  ]);
}

// deno-lint-ignore no-explicit-any
type PlanNode = Record<string, any>;

/** Rows a plan read from webhook_events' heap (index-only reads left out), with those its filters dropped. */
function tableRowsRead(node: PlanNode): number {
  const reads = ["Seq Scan", "Index Scan", "Bitmap Heap Scan"].includes(node["Node Type"]) &&
    node["Relation Name"] === "webhook_events";
  const own = reads
    ? (node["Actual Rows"] + (node["Rows Removed by Filter"] ?? 0) +
      (node["Rows Removed by Index Recheck"] ?? 0)) *
      node["Actual Loops"]
    : 0;
  return own + (node.Plans ?? []).reduce((sum: number, child: PlanNode) => sum + tableRowsRead(child), 0);
}

dbTest(
  `message edits indexed [${db.kind}]: the view and docs/sql.md's queries answer as before`,
  async () => {
    await loadFixture(sql);
    await loadMessages();
    const old = await answers();
    const upTo = await migrationsBefore(PAYLOAD_READ_ONCE);
    const first = await applyMigrations(sql, { dir: upTo });
    await Deno.remove(upTo, { recursive: true });
    assert.ok(first.includes(EDITS_FROM_THEIR_PERIOD), `applied ${first.join(", ")}`);
    const between = await answers();
    const then = await applyMigrations(sql);
    assert.ok(then.includes(PAYLOAD_READ_ONCE), `applied ${then.join(", ")}`);
    const now = await answers();
    for (const [step, answered] of [["010600", between], ["010900", now]] as const) {
      assert.equal(answered.length, old.length);
      for (const [i, answer] of answered.entries()) {
        assert.equal(answer, old[i], `answer ${i} changed by migration ${step}`);
      }
    }
    // The data covers what it should: edits in the period, and a history of them.
    const [counts] = await sql`
    select count(*) filter (where edited and message_id between ${RECENT_FIRST_ID} and 299999)::int as recent_edited,
           count(*) filter (where edited and message_id >= 300000)::int as old_edited,
           count(*) filter (where message_id >= ${RECENT_FIRST_ID} and message_id < 300000)::int as recent
      from chatwoot_messages`;
    assert.ok(
      counts.recent_edited >= 6 && counts.old_edited >= 1000 && counts.recent >= 14,
      JSON.stringify(counts),
    );
  },
);

dbTest(
  `message edits indexed [${db.kind}]: messages per day reads the period's rows, not every message`,
  async () => {
    const [{ period }] = await sql`
      select count(*)::int as period from public.webhook_events
       where event in ('message_created', 'message_updated')
         and public.chatwoot_timestamp_immutable(payload -> 'created_at')
             >= ((now() at time zone 'UTC')::date - 29)::timestamp at time zone 'UTC'`;
    const [{ messages }] = await sql`
      select count(*)::int as messages from public.webhook_events where event = 'message_created'`;
    assert.ok(period >= 20 && messages > 100 * period, `${period} of ${messages}`);
    const query = await MESSAGES_PER_DAY();
    const plan = await sql.begin(async (tx) => {
      await tx.unsafe("set local role data_analyst");
      const [{ "QUERY PLAN": plan }] = await tx.unsafe(`explain (analyze, format json) ${query}`);
      return plan;
    });
    // Each of the period's message events, its message_created or update looked up (an index lookup by
    // message_id also meets the other event of that message); before, every message_created of the table.
    const read = tableRowsRead(plan[0].Plan);
    assert.ok(read <= 4 * period, `${read} rows read for the period's ${period}:\n${JSON.stringify(plan)}`);
  },
);

Deno.test({
  name: `message edits indexed [${db.kind}]: close database`,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await db.close();
    await Deno.remove(before, { recursive: true });
  },
});
