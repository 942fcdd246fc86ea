// Migration 20261121006800 (message and conversation times indexed) rewrote chatwoot_messages and
// chatwoot_conversation_events for their indexes: on a database holding the fixture and the message and
// conversation shapes Chatwoot sends, both views and every query of docs/sql.md answer exactly as before it.
import assert from "node:assert/strict";
import { dbTest, migrationsBefore, startTestDb } from "./_db.ts";
import { answersAsDataAnalyst, sqlDocQueries } from "./_sql_doc.ts";
import { loadFixture } from "./_fixture.ts";
import { eventToStore, storeRecoveredCopy } from "./_forwarding.ts";
import { applyMigrations } from "../scripts/lib/migrations.ts";
import { samplePayload } from "../scripts/lib/samples.ts";
import { storeEvent } from "../supabase/functions/_shared/ingest_store.ts";
import type { Sql } from "../supabase/functions/_shared/db.ts";

const INDEXED = "20261121006800";

const before = await migrationsBefore(INDEXED);
const db = await startTestDb({ migrationsDir: before });
const sql = db.sql;

// deno-lint-ignore no-explicit-any
type Payload = Record<string, any>;
const store = (payload: Payload) => storeEvent(sql, eventToStore(JSON.stringify(payload)));

/** Messages and conversation events beyond the fixture's, as Chatwoot (and deno task recover) send them. */
async function loadShapes(): Promise<void> {
  const at = new Date("2026-11-25T23:30:00.000Z");
  const message = (id: number, extra: Payload = {}, event = "message_created"): Payload => ({
    ...samplePayload(event as "message_created", { conversationId: 301, messageId: id, at }),
    ...extra,
  });
  // Edited twice, status-only update, deleted (content replaced, attachments gone).
  await store(message(5001, { content: "first" }));
  await store(message(5001, { content: "second" }, "message_updated"));
  await store(message(5002, { content: "Your order shipped" }));
  await store(message(5002, { content: "Your order shipped" }, "message_updated"));
  await store(message(5003, { attachments: [{ id: 1, file_type: "image" }, null] }));
  await store(
    message(
      5003,
      { content: "This message was deleted", content_attributes: { deleted: true } },
      "message_updated",
    ),
  );
  // An update whose message_created never came; an update Chatwoot built with another created_at.
  await store(message(5004, { content: "late" }, "message_updated"));
  await store(message(5005, { created_at: "2026-11-25T23:30:00.000Z" }));
  await store(message(5005, { created_at: "2026-11-26T00:10:00.000Z", content: "moved" }, "message_updated"));
  // Times in the other shapes chatwoot_timestamp reads, and ones it does not (the webhook refuses a null).
  await store(message(5006, { created_at: 1795800000 }));
  await store(message(5007, { created_at: "2026-11-25 23:30:00" }));
  await store(message(5008, { created_at: "2026-11-26T01:30:00+02:00" }));
  await store(message(5009, { created_at: "2026-02-30T10:00:00Z" }));
  const { created_at: _, ...noTime } = message(5011);
  await store(noTime);
  // Private note, agent, agent bot, no sender; another account.
  await store(message(5012, { private: true, message_type: "outgoing", sender: { id: 7, type: "user" } }));
  await store(message(5013, { message_type: "template", sender: { id: 3, name: "Bot", type: "agent_bot" } }));
  await store(message(5014, { sender: null }));
  await store({
    ...samplePayload("message_created", { conversationId: 301, messageId: 5015, accountId: 2, at }),
  });
  // A copy recovered from the API, and one whose webhook came after all.
  await storeRecoveredCopy(sql, JSON.stringify(message(5016)));
  await storeRecoveredCopy(sql, JSON.stringify(message(5017)));
  await store(message(5017));
  // Conversation events: a status change sent as both events, labels, times as Chatwoot sends and not.
  const conversation = (event: string, extra: Payload) => ({
    ...samplePayload(event as "conversation_updated", { conversationId: 301, at }),
    ...extra,
  });
  await store(conversation("conversation_status_changed", {}));
  await store(conversation("conversation_updated", {
    status: "resolved",
    changed_attributes: [
      { status: { previous_value: "open", current_value: "resolved" } },
      { waiting_since: { previous_value: 1795800000, current_value: null } },
    ],
  }));
  await store(conversation("conversation_updated", { updated_at: "2026-11-26T00:00:00Z", unread_count: 2 }));
  await store(conversation("conversation_updated", { updated_at: null, unread_count: 3 }));
}

/** docs/sql.md's queries, but for those of the pipeline's health (their ages move with the clock). */
const docQueries = async () =>
  (await sqlDocQueries()).filter((query) => !query.includes("webhook_pipeline_health"));

/** Both views whole and every doc query, as data_analyst in one transaction (one now()). */
async function answers(sql: Sql): Promise<string[]> {
  return answersAsDataAnalyst(sql, [
    "select * from chatwoot_messages order by event_id, message_id",
    "select * from chatwoot_conversation_events order by event_id, attribute",
    ...await docQueries(),
  ]);
}

dbTest(`data times indexed [${db.kind}]: the views and docs/sql.md's queries answer as before`, async () => {
  await loadFixture(sql);
  await loadShapes();
  const old = await answers(sql);
  const applied = await applyMigrations(sql);
  assert.ok(applied.some((version) => version === INDEXED), `applied ${applied.join(", ")}`);
  const now = await answers(sql);
  assert.equal(now.length, old.length);
  for (const [i, answer] of now.entries()) assert.equal(answer, old[i], `answer ${i} changed`);
  const [{ messages }] = await sql`select count(*)::int as messages from chatwoot_messages`;
  assert.ok(messages >= 25, `${messages} messages`);
});

Deno.test({
  name: `data times indexed [${db.kind}]: close database`,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await db.close();
    await Deno.remove(before, { recursive: true });
  },
});
