// The Data team's SQL surface over a realistic fixture: views, the analyst role, docs/sql.md, retention.
import assert from "node:assert/strict";
import { connect, type Sql } from "../supabase/functions/_shared/db.ts";
import { dbTest, startTestDb } from "./_db.ts";
import { sqlDoc, sqlDocQueries } from "./_sql_doc.ts";
import { runScript } from "./_dev.ts";
import { FIXTURE, loadFixture, loadHistory } from "./_fixture.ts";
import { eventToStore, storeRecoveredCopy, storeSample } from "./_forwarding.ts";
import { storeEvent } from "../supabase/functions/_shared/ingest_store.ts";
import { samplePayload } from "../scripts/lib/samples.ts";

const db = await startTestDb();
const sql = db.sql;
await loadFixture(sql);

/** Runs `fn` on one connection as `role` (SET LOCAL ROLE inside a transaction that is rolled back). */
function asRole<T>(role: string, fn: (tx: Sql) => Promise<T>): Promise<T> {
  return rolledBack(async (tx) => {
    await tx.unsafe(`set local role ${role}`);
    return await fn(tx);
  });
}

/** Runs `fn` in a transaction on one connection, then rolls it back: what it wrote is gone after. */
async function rolledBack<T>(fn: (tx: Sql) => Promise<T>): Promise<T> {
  let result: T;
  await sql.begin(async (tx) => {
    result = await fn(tx as unknown as Sql);
    throw new Rollback();
  }).catch((error) => {
    if (!(error instanceof Rollback)) throw error;
  });
  return result!;
}
class Rollback extends Error {}

async function deniedAs(role: string, statement: string): Promise<string> {
  try {
    await asRole(role, (tx) => tx.unsafe(statement));
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
  return "allowed";
}

dbTest(`data [${db.kind}]: chatwoot_messages has one typed row per message, latest version`, async () => {
  const rows =
    await sql`select * from chatwoot_messages where conversation_id in (101, 102, 103) order by message_id`;
  const ids = rows.map((r) => Number(r.message_id));
  assert.deepEqual(ids, [
    2010,
    2011,
    FIXTURE.editedMessageId,
    2020,
    2021,
    FIXTURE.outgoingMessageId,
    FIXTURE.privateNoteMessageId,
    FIXTURE.botMessageId,
    2030,
    2031,
  ]);
  const byId = new Map(rows.map((r) => [Number(r.message_id), r]));
  const edited = byId.get(FIXTURE.editedMessageId)!;
  assert.equal(edited.content, "Where is my order #1042? Thanks");
  assert.equal(edited.edited, true);
  assert.equal(edited.delivery_status, "delivered");
  const plain = byId.get(2010)!;
  assert.equal(plain.edited, false);
  assert.equal(plain.message_type, "incoming");
  assert.equal(plain.sender_type, "contact");
  assert.equal(Number(plain.sender_id), 512);
  assert.equal(plain.sender_name, "Jamie Rivera");
  assert.equal(plain.account_name, "HotDash");
  assert.equal(plain.inbox_name, "customer.support@hotrodan.com");
  assert.equal(plain.content_type, "text");
  assert.equal(plain.private, false);
  assert.equal(plain.attachment_count, 0);
  assert.ok(plain.created_at instanceof Date);
  assert.equal(plain.created_at.toISOString(), "2026-11-20T10:00:00.000Z");
  const outgoing = byId.get(FIXTURE.outgoingMessageId)!;
  assert.deepEqual([outgoing.message_type, outgoing.sender_type, outgoing.attachment_count], [
    "outgoing",
    "user",
    2,
  ]);
  assert.equal(byId.get(FIXTURE.privateNoteMessageId)!.private, true);
  assert.deepEqual(
    [byId.get(FIXTURE.botMessageId)!.sender_type, byId.get(FIXTURE.botMessageId)!.message_type],
    ["agent_bot", "template"],
  );
  for (const id of [2030, 2031]) {
    assert.equal(byId.get(id)!.delivery_status, "dead");
    assert.equal(byId.get(id)!.delivery_attempts, FIXTURE.maxAttempts);
  }
  assert.equal(byId.get(2020)!.delivery_status, "delivered");
  // A message whose message_created never arrived still appears, from its update.
  await sql`select * from ingest_webhook_event('message:999001:message_updated', 'message_updated', 999001, 104, 1, 3,
    null, '{"event":"message_updated","id":999001,"content":"late","message_type":"incoming"}'::jsonb,
    '{}', ${"b".repeat(64)}, 'signature')`;
  const [orphan] =
    await sql`select content, edited, delivery_status from chatwoot_messages where message_id = 999001`;
  assert.deepEqual({ ...orphan }, { content: "late", edited: false, delivery_status: "skipped" });
});

dbTest(`data [${db.kind}]: chatwoot_messages: a status change is no edit; a deletion is said`, async () => {
  const store = (id: number, event: string, body: Record<string, unknown>, sha: string) => {
    const payload = JSON.stringify({ event, id, message_type: "outgoing", ...body });
    return sql`select * from ingest_webhook_event(${`message:${id}:${event}`}, ${event}, ${id}, 104, 1, 3,
      null, ${payload}::text::jsonb, '{}', ${sha.repeat(64)}, 'signature')`;
  };
  // Sent, then read: Chatwoot sends message_updated with the same content and a new status.
  await store(999101, "message_created", { content: "Your order shipped", status: "sent" }, "c");
  await store(999101, "message_updated", { content: "Your order shipped", status: "read" }, "d");
  // Deleted by the agent: Chatwoot replaces the content and marks it.
  await store(999102, "message_created", { content: "Wrong customer, sorry", status: "sent" }, "e");
  await store(999102, "message_updated", {
    content: "This message was deleted",
    content_attributes: { deleted: true },
    status: "sent",
  }, "f");
  const rows = await sql`select message_id, content, edited, deleted from chatwoot_messages
                          where message_id in (999101, 999102, ${FIXTURE.editedMessageId}) order by message_id`;
  assert.deepEqual(rows.map((r) => ({ ...r, message_id: Number(r.message_id) })), [
    {
      message_id: FIXTURE.editedMessageId,
      content: "Where is my order #1042? Thanks",
      edited: true,
      deleted: false,
    },
    { message_id: 999101, content: "Your order shipped", edited: false, deleted: false },
    { message_id: 999102, content: "This message was deleted", edited: false, deleted: true },
  ]);
});

dbTest(`data [${db.kind}]: chatwoot_conversation_events lists previous and current values`, async () => {
  const rows =
    await sql`select * from chatwoot_conversation_events where conversation_id = 101 order by event_id`;
  const status = rows.find((r) => r.attribute === "status")!;
  assert.equal(status.event, "conversation_status_changed");
  assert.equal(status.previous_text, "open");
  assert.equal(status.current_text, "resolved");
  assert.deepEqual(status.previous_value, "open");
  assert.equal(status.conversation_status, "resolved");
  assert.ok(status.occurred_at instanceof Date);
  const labels = rows.find((r) => r.attribute === "label_list")!;
  assert.equal(labels.event, "conversation_updated");
  assert.deepEqual(labels.previous_value, ["support"]);
  assert.deepEqual(labels.current_value, ["support", "shipping"]);
  assert.equal(Number(labels.account_id), 1);
  assert.equal(rows.length, 2);
});

dbTest(
  `data [${db.kind}]: webhook_pipeline_health is one row that adds up, and escalates after 5 minutes`,
  async () => {
    const [counts] = await sql`select
      count(*) filter (where status in ('pending', 'delivering'))::int as backlog,
      count(*) filter (where status = 'dead')::int as dead,
      count(*) filter (where status = 'delivered')::int as delivered
    from webhook_events`;
    const health = await sql`select * from webhook_pipeline_health`;
    assert.equal(health.length, 1);
    const h = health[0];
    assert.equal(Number(h.backlog), counts.backlog);
    assert.equal(Number(h.dead_total), counts.dead);
    assert.equal(Number(h.dead_last_hour), counts.dead);
    assert.equal(Number(h.delivered_last_hour), counts.delivered);
    assert.ok(counts.dead > 0 && counts.delivered > 0);
    assert.ok(h.last_received_at instanceof Date && h.last_delivered_at instanceof Date);
    assert.equal(h.paused, false);
    // The fixture's last attempts were failures of conversation 103, seconds ago: failing, not yet escalated.
    // (Read again with the successes a second earlier: PGlite's clock moves by milliseconds, and on a fast
    // machine the last success and the failure after it can share one.)
    await sql`update webhook_delivery_attempts set recorded_at = recorded_at - interval '1 second' where succeeded`;
    const [failing] = await sql`select failing_since, escalate from webhook_pipeline_health`;
    assert.ok(failing.failing_since instanceof Date);
    assert.equal(failing.escalate, false);
    await sql`update webhook_delivery_attempts set recorded_at = recorded_at - interval '6 minutes'`;
    const [later] = await sql`select escalate, delivered_last_hour from webhook_pipeline_health`;
    assert.equal(later.escalate, true);
    await sql`update webhook_delivery_attempts set recorded_at = recorded_at + interval '6 minutes'`;
  },
);

dbTest(
  `data [${db.kind}]: webhook_pipeline_health counts an event that died when its forwarder never reported`,
  async () => {
    await sql.begin(async (tx) => {
      const read = async () =>
        (await tx`select dead_last_hour::int, dead_last_day::int, dead_total::int from webhook_pipeline_health`)[
          0
        ];
      const before = await read();
      // An event on its last attempt (the fixture allows FIXTURE.maxAttempts), due before anything else.
      const [{ id }] = await tx`
        insert into webhook_events (event_key, event, conversation_id, account_id, payload, raw_body, body_sha256,
                                    verified_by, status, attempts, next_attempt_at)
        values ('lease-dies', 'message_created', 424242, 1, '{}', '{}', repeat('f', 64), 'signature', 'pending',
                ${FIXTURE.maxAttempts - 1}, now() - interval '1 day')
        returning id`;
      const [claimed] = await tx`select id from claim_webhook_events('crashed-forwarder', 1, 0)`;
      assert.equal(Number(claimed.id), Number(id));
      // Its forwarder never reports; the next claim reclaims the expired lease: attempts are spent, it dies.
      await tx`select * from claim_webhook_events('next-forwarder', 1)`;
      const [event] = await tx`select status from webhook_events where id = ${id}`;
      assert.equal(event.status, "dead");
      const after = await read();
      assert.equal(after.dead_total, before.dead_total + 1);
      assert.equal(after.dead_last_hour, before.dead_last_hour + 1, "died in the last hour");
      assert.equal(after.dead_last_day, before.dead_last_day + 1, "died in the last day");
      throw new Rollback();
    }).catch((error) => {
      if (!(error instanceof Rollback)) throw error;
    });
  },
);

dbTest(
  `data [${db.kind}]: webhook_pipeline_health's dead counts: the hour and the day end where they say`,
  async () => {
    // now() is the transaction's start throughout, so a death at exactly now() - 1 hour is at the edge: the
    // windows are "after", and it counts in the day only. Only deaths count (a 'dead' report, or a reclaim
    // that spent the attempts), an event once however often it died, and by when it died, not when it came.
    await rolledBack(async (tx) => {
      const read = async () =>
        (await tx`select dead_last_hour::int, dead_last_day::int, dead_total::int from webhook_pipeline_health`)[
          0
        ];
      const before = await read();
      // [key, status, attempts as (outcome, error, age)]
      const cases: [string, string, [string, string | null, string][]][] = [
        ["in-hour", "dead", [["dead", "HTTP 410", "59 minutes"]]],
        ["at-hour-edge", "dead", [["dead", "HTTP 410", "1 hour"]]],
        ["past-hour", "dead", [["dead", "HTTP 410", "61 minutes"]]],
        ["in-day", "dead", [["dead", "HTTP 410", "23 hours 59 minutes"]]],
        ["at-day-edge", "dead", [["dead", "HTTP 410", "1 day"]]],
        ["past-day", "dead", [["dead", "HTTP 410", "25 hours"]]],
        ["reclaim-spent", "dead", [[
          "lease_expired",
          "lease expired without a report; attempts exhausted",
          "30 minutes",
        ]]],
        ["reclaim-retry", "pending", [["lease_expired", "lease expired without a report", "30 minutes"]]],
        ["retrying", "pending", [["retry", "HTTP 503", "5 minutes"]]],
        // Replayed after dying, died again: one event.
        ["died-twice", "dead", [["dead", "HTTP 410", "2 hours"], ["dead", "HTTP 410", "10 minutes"]]],
        // Died long ago; its forwarder's late report is no death.
        ["late-report", "dead", [["dead", "HTTP 410", "25 hours"], ["lease_lost", "HTTP 410", "5 minutes"]]],
      ];
      for (const [key, status, attempts] of cases) {
        const [{ id }] = await tx`
          insert into webhook_events (event_key, event, payload, raw_body, body_sha256, verified_by, status,
                                      received_at, last_received_at)
          values (${`dead-window:${key}`}, 'message_created', '{}', '{}', repeat('d', 64), 'signature', ${status},
                  now() - interval '2 days', now() - interval '2 days')
          returning id`;
        for (const [i, [outcome, error, age]] of attempts.entries()) {
          await tx`
            insert into webhook_delivery_attempts (event_id, attempt, version, worker, started_at, succeeded,
                                                   outcome, error, recorded_at)
            values (${id}, ${i + 1}, 1, 'test', now() - ${age}::interval, false, ${outcome}, ${error},
                    now() - ${age}::interval)`;
        }
      }
      const after = await read();
      assert.deepEqual(
        {
          dead_last_hour: after.dead_last_hour - before.dead_last_hour,
          dead_last_day: after.dead_last_day - before.dead_last_day,
          dead_total: after.dead_total - before.dead_total,
        },
        {
          dead_last_hour: 3, // in-hour, reclaim-spent, died-twice
          dead_last_day: 6, // and at-hour-edge, past-hour, in-day
          dead_total: 9, // and at-day-edge, past-day, late-report
        },
      );
    });
  },
);

dbTest(`data [${db.kind}]: chatwoot_daily_event_stats matches the table`, async () => {
  const stats = await sql`select * from chatwoot_daily_event_stats`;
  const [totals] =
    await sql`select count(*)::int as events, sum(receive_count)::int as received from webhook_events`;
  assert.equal(stats.reduce((n, r) => n + Number(r.events), 0), totals.events);
  assert.equal(stats.reduce((n, r) => n + Number(r.received), 0), totals.received);
  const created = stats.filter((r) => r.event === "message_created");
  assert.equal(created.reduce((n, r) => n + Number(r.duplicates), 0), 1, "the one duplicate of the fixture");
  const updated = stats.filter((r) => r.event === "message_updated");
  assert.equal(updated.reduce((n, r) => n + Number(r.changed), 0), 1, "the edited message changed once");
  // Its second update was received as a new version, not as a duplicate.
  const [edit] = await sql`select receive_count, version from webhook_events
                            where event_key = ${`message:${FIXTURE.editedMessageId}:message_updated`}`;
  assert.deepEqual([edit.receive_count, edit.version], [2, 2]);
  assert.equal(updated.reduce((n, r) => n + Number(r.duplicates), 0), 0, "an edit is not a duplicate");
  const [{ repeats }] = await sql`select sum(version - 1)::int as repeats from webhook_events`;
  assert.equal(
    stats.reduce((n, r) => n + Number(r.received) - Number(r.duplicates), 0),
    totals.events + repeats,
    "every receipt is the first, a new version or a duplicate",
  );
  const typing = stats.filter((r) => r.event === "conversation_typing_on");
  assert.equal(typing.reduce((n, r) => n + Number(r.skipped), 0), 3);
});

dbTest(
  `data [${db.kind}]: chatwoot_daily_event_stats counts a copy recovered from the API as an event, not a receipt`,
  async () => {
    const day = async (tx: Sql) => {
      const [r] =
        await tx`select coalesce(sum(events), 0)::int as events, coalesce(sum(received), 0)::int as received,
                        coalesce(sum(duplicates), 0)::int as duplicates,
                        coalesce(sum(recovered), 0)::int as recovered
                   from chatwoot_daily_event_stats where event = 'message_created'`;
      return r;
    };
    await rolledBack(async (tx) => {
      const before = await day(tx);
      /** Events, receipts and recovered copies more than before; duplicates must not have moved. */
      const since = async () => {
        const now = await day(tx);
        assert.equal(now.duplicates, before.duplicates);
        return [now.events - before.events, now.received - before.received, now.recovered - before.recovered];
      };
      // What `deno task recover` stores for a message whose webhook never came.
      const raw = JSON.stringify(
        samplePayload("message_created", { messageId: 987_001, conversationId: 9871 }),
      );
      await storeRecoveredCopy(tx, raw);
      assert.deepEqual(await since(), [1, 0, 1], "one more event, recovered, and no receipt from Chatwoot");
      // The webhook comes after all: its bytes replace the copy's, and that is the receipt.
      await storeEvent(tx, eventToStore(raw));
      assert.deepEqual(await since(), [1, 1, 0]);
    });
  },
);

dbTest(`data [${db.kind}]: data_analyst reads the views and webhook_events, and nothing else`, async () => {
  for (
    const relation of [
      "chatwoot_messages",
      "chatwoot_conversation_events",
      "webhook_pipeline_health",
      "chatwoot_daily_event_stats",
      "webhook_events",
    ]
  ) {
    // select * (not count(*)): every column must be readable, including those computed from other tables.
    const rows = await asRole("data_analyst", (tx) => tx.unsafe(`select * from ${relation}`));
    assert.ok(rows.length > 0, `${relation} visible to data_analyst`);
  }
  const denied = "42501"; // insufficient_privilege
  for (
    const statement of [
      "select * from webhook_rejections",
      "select * from relay_settings",
      "select * from webhook_delivery_attempts",
      "select * from supabase_migrations.schema_migrations",
      "insert into webhook_events (event_key, event, payload, raw_body, body_sha256, verified_by) values ('x', 'x', '{}', '{}', repeat('a', 64), 'signature')",
      "update webhook_events set status = 'dead'",
      "delete from webhook_events",
      "update relay_settings set forwarding_paused = true",
      "select public.replay_webhook_events(array[1]::bigint[])",
      "select public.retry_webhook_events_now()",
      "call public.prune_webhook_events()",
      "select * from public.ingest_webhook_event('k', 'e', null, null, null, null, null, '{}', '{}', repeat('a', 64), 'signature')",
    ]
  ) {
    assert.equal(await deniedAs("data_analyst", statement), denied, statement);
  }
  for (const relation of ["webhook_events", "chatwoot_messages", "webhook_pipeline_health"]) {
    for (const role of ["anon", "authenticated"]) {
      assert.equal(await deniedAs(role, `select * from ${relation}`), denied, `${role} on ${relation}`);
    }
  }
});

dbTest(
  `data [${db.kind}]: docs/sql.md's Access names every function data_analyst may execute, and only those`,
  async () => {
    // The paragraph says "nothing else": a helper granted by a migration and left out of it (008500's
    // dead_unacknowledged_count, which webhook_pipeline_health calls) made that untrue.
    const access = /## Access\n\n([\s\S]*?)\n```/.exec(await sqlDoc())?.[1];
    assert.ok(access, "docs/sql.md has an Access section");
    const named = [...access.matchAll(/`(\w+)\([\w ,]*\)`/g)].map((m) => m[1]).sort();
    const granted = await sql<{ name: string }[]>`
      select distinct p.proname::text as name from pg_proc p
       where p.pronamespace = 'public'::regnamespace
         and has_function_privilege('data_analyst', p.oid, 'execute')
         and not has_function_privilege('public', p.oid, 'execute')
       order by 1`;
    assert.ok(granted.length >= 3);
    assert.deepEqual(named, granted.map((g) => g.name));
  },
);

dbTest(
  `data [${db.kind}]: every query in docs/sql.md runs as data_analyst, and uses the index it names`,
  async () => {
    await loadHistory(sql);
    const blocks = await sqlDocQueries();
    assert.ok(blocks.length >= 10, `found ${blocks.length} queries`);
    let indexed = 0;
    for (const query of blocks) {
      const rows = await asRole("data_analyst", (tx) => tx.unsafe(query));
      assert.ok(Array.isArray(rows), query);
      const index = /^-- index: (\S+)/m.exec(query)?.[1];
      if (!index) continue;
      indexed++;
      const [{ "QUERY PLAN": plan }] = await asRole(
        "data_analyst",
        (tx) => tx.unsafe(`explain (format json) ${query}`),
      );
      assert.ok(
        JSON.stringify(plan).includes(`"Index Name":"${index}"`),
        `${index} not used by:\n${query}\n${JSON.stringify(plan)}`,
      );
    }
    assert.ok(indexed >= 5);
    const [{ n }] = await sql`select count(*)::int as n from chatwoot_messages where conversation_id = 101`;
    assert.equal(n, 3);
  },
);

dbTest(
  `data [${db.kind}]: docs/sql.md's queries of one conversation keep to one account (display ids repeat)`,
  async () => {
    // The query under a `### heading` of docs/sql.md.
    const doc = await sqlDoc();
    const query = (heading: string) => {
      const block = new RegExp(`^### ${heading}\\n[\\s\\S]*?\`\`\`sql\\n([\\s\\S]*?)\`\`\``, "m").exec(doc);
      assert.ok(block, `"${heading}" in docs/sql.md`);
      return block[1].trim();
    };
    // Another account of the same Chatwoot has its own conversations 101 and 102 (display ids count per
    // account), stored as Chatwoot sends them.
    const other = { accountId: 2, inboxId: 9, at: new Date("2026-11-20T11:00:00.000Z") };
    const ids: number[] = [];
    for (const [event, conversationId] of [["message_created", 101], ["message_created", 102]] as const) {
      ids.push(
        await storeSample(sql, event, { ...other, conversationId, messageId: 990_000 + conversationId }),
      );
    }
    const statusChange = samplePayload("conversation_status_changed", { ...other, conversationId: 101 });
    ids.push(await storeSample(sql, "conversation_status_changed", { raw: JSON.stringify(statusChange) }));
    try {
      const asAnalyst = (text: string) => asRole("data_analyst", (tx) => tx.unsafe(text));
      const messages = await asAnalyst(query("A conversation's messages, in order"));
      const [{ n }] = await sql`select count(*)::int as n from chatwoot_messages
                                 where account_id = 1 and conversation_id = 101`;
      assert.equal(messages.length, n, "only account 1's conversation 101");
      const raw = await asAnalyst(query("Raw payload fields the views do not expose"));
      assert.ok(raw.length > 0 && raw.every((r) => !ids.includes(Number(r.id))), "only account 1's rows");
      // Status changes of every account: each row says whose conversation it is.
      const changes = await asAnalyst(query("Status changes, newest first"));
      const conversations = changes.map((r) => `${r.account_id}:${r.conversation_id}`);
      assert.ok(conversations.includes("1:101") && conversations.includes("2:101"), conversations.join(" "));
    } finally {
      await sql`delete from webhook_events where id = any(${ids})`;
    }
  },
);

dbTest(
  `data [${db.kind}]: docs/sql.md's status changes list each change once, though Chatwoot sends it twice`,
  async () => {
    const doc = await sqlDoc();
    const query = /^### Status changes, newest first\n[\s\S]*?```sql\n([\s\S]*?)```/m.exec(doc)?.[1];
    assert.ok(query, "the query is in docs/sql.md");
    // One resolve in Chatwoot: `status` is among the keys that also dispatch conversation_updated, whose
    // changed_attributes hold every saved change (Chatwoot's Conversation#notify_conversation_updation).
    const at = new Date("2026-11-20T12:00:00.000Z");
    const conversationId = 9_601;
    const statusChanged = samplePayload("conversation_status_changed", { conversationId, at });
    const updated = {
      ...samplePayload("conversation_updated", { conversationId, at }),
      status: "resolved",
      changed_attributes: [
        { status: { previous_value: "open", current_value: "resolved" } },
        { waiting_since: { previous_value: at.getTime() / 1000, current_value: null } },
      ],
    };
    await rolledBack(async (tx) => {
      for (const payload of [statusChanged, updated]) {
        await storeEvent(tx, eventToStore(JSON.stringify(payload)));
      }
      await tx.unsafe("set local role data_analyst");
      const rows = (await tx.unsafe(query)).filter((r) => Number(r.conversation_id) === conversationId);
      assert.deepEqual(rows.map((r) => [r.from_status, r.to_status]), [["open", "resolved"]]);
    });
  },
);

dbTest(
  `data [${db.kind}]: a message Chatwoot wrote itself (a CSAT survey, no sender) has a null sender_type`,
  async () => {
    const doc = await sqlDoc();
    const query = /^### Messages per day and sender type[^\n]*\n[\s\S]*?```sql\n([\s\S]*?)```/m.exec(doc)
      ?.[1];
    assert.ok(query, "the query is in docs/sql.md");
    const csat = {
      ...samplePayload("message_created", { conversationId: 9_602, messageId: 9_602_001, at: new Date() }),
      message_type: "template",
      content_type: "input_csat",
      content: "Please rate the conversation",
      sender: null,
    };
    await rolledBack(async (tx) => {
      await storeEvent(tx, eventToStore(JSON.stringify(csat)));
      await tx.unsafe("set local role data_analyst");
      const [row] = await tx`select sender_type, sender_id, sender_name from chatwoot_messages
                              where message_id = 9602001`;
      assert.deepEqual({ ...row }, { sender_type: null, sender_id: null, sender_name: null });
      const unsent = (await tx.unsafe(query)).filter((r) => r.sender_type === null);
      assert.equal(unsent.reduce((n, r) => n + Number(r.messages), 0), 1, "its own row");
    });
  },
);

dbTest(
  `data [${db.kind}]: every query in docs/sql.md answers the same whatever the session's time zone`,
  async () => {
    // Many SQL clients set TimeZone to the computer's zone; the doc's days and hours are UTC ones.
    const queries = await sqlDocQueries();
    // One transaction, so that now() is the same instant for every zone.
    const answers = await asRole("data_analyst", async (tx) => {
      const byZone: Record<string, string[]> = {};
      // 14 h ahead (the fixture's 10:00 UTC is the next day there) and a half-hour zone.
      for (const zone of ["UTC", "Etc/GMT-14", "America/St_Johns"]) {
        await tx`select set_config('TimeZone', ${zone}, true)`;
        byZone[zone] = [];
        for (const query of queries) byZone[zone].push(JSON.stringify(await tx.unsafe(query)));
      }
      return byZone;
    });
    for (const zone of ["Etc/GMT-14", "America/St_Johns"]) {
      for (const [i, answer] of answers[zone].entries()) {
        assert.equal(answer, answers.UTC[i], `${zone}:\n${queries[i]}`);
      }
    }
  },
);

dbTest(
  `data [${db.kind}]: docs/sql.md's windows of days start at the same instant in every zone, across a DST change`,
  async () => {
    // now() - interval '30 days' steps back 30 calendar days of the session's zone: across a change of
    // daylight saving time (America/St_Johns and Los_Angeles left it on 1 November 2026) an hour earlier than
    // in UTC. So the doc's "now()" is fixed to an instant the day after, and rows are put either side.
    const now = "'2026-11-02T12:00:00Z'::timestamptz";
    const zones = ["UTC", "America/St_Johns", "America/Los_Angeles"];
    const doc = await sqlDoc();
    const query = (heading: string) => {
      const block = new RegExp(`^### ${heading}[^\\n]*\\n[\\s\\S]*?\`\`\`sql\\n([\\s\\S]*?)\`\`\``, "m").exec(
        doc,
      );
      assert.ok(block, `"${heading}" in docs/sql.md`);
      return block[1].trim().replaceAll("now()", now);
    };
    /** The query's answer in each of the zones, in order. */
    const byZone = async (tx: Sql, text: string) => {
      const answers: string[] = [];
      for (const zone of zones) {
        await tx`select set_config('TimeZone', ${zone}, true)`;
        answers.push(JSON.stringify(await tx.unsafe(text)));
      }
      return answers;
    };
    await rolledBack(async (tx) => {
      // Messages 30 days before: 11:30 UTC (inside the window only where it started an hour early), 12:30 UTC
      // (a part of that day), and one on the next UTC day, the first whole one.
      const messages = query("Messages per day and sender type");
      const times = ["2026-10-03T11:30:00Z", "2026-10-03T12:30:00Z", "2026-10-04T00:30:00Z"];
      const sender = { id: 9_603, name: "Window Probe", type: "agent_bot" };
      for (const [i, at] of times.entries()) {
        const payload = samplePayload("message_created", { conversationId: 9_603, messageId: 9_603_001 + i });
        await storeEvent(tx, eventToStore(JSON.stringify({ ...payload, created_at: at, sender })));
      }
      // Delivered message_created events received 24 h 30 min and 23 h 30 min before now.
      const delivery = query("Time from receipt to delivery");
      for (const [i, received] of ["2026-11-01T11:30:00Z", "2026-11-01T12:30:00Z"].entries()) {
        const id = await storeSample(tx, "message_created", {
          conversationId: 9_604,
          messageId: 9_604_001 + i,
        });
        await tx`update webhook_events set status = 'delivered', received_at = ${received}::timestamptz,
                   delivered_at = ${received}::timestamptz + interval '2 seconds' where id = ${id}`;
      }
      await tx.unsafe("set local role data_analyst");
      for (const text of [messages, delivery]) {
        const [utc, ...others] = await byZone(tx, text);
        for (const [i, answer] of others.entries()) assert.equal(answer, utc, `${zones[i + 1]}:\n${text}`);
      }
      // The first day listed is whole: no part of 3 October, all of 4 October.
      await tx`select set_config('TimeZone', 'UTC', true)`;
      const days = (await tx.unsafe(messages)).filter((r) => r.sender_type === "agent_bot")
        .map((r) => new Date(r.day).toISOString().slice(0, 10));
      assert.ok(!days.includes("2026-10-03"), `no part of a day: ${days}`);
      assert.ok(days.includes("2026-10-04"), `the first whole day: ${days}`);
    });
  },
);

dbTest(
  `data [${db.kind}]: docs/sql.md's relations have the columns it names, of the types it gives`,
  async () => {
    const doc = await sqlDoc();
    const section = doc.slice(doc.indexOf("## Tables and views"), doc.indexOf("Notes on meaning"));
    const rows = [...section.matchAll(/^\| `(\w+)`\s*\|[^|]*\|([^|]*)\|$/gm)];
    assert.equal(rows.length, 5, "five relations listed");
    const types: Record<string, string> = { jsonb: "jsonb", timestamptz: "timestamp with time zone" };
    for (const [, relation, columnsText] of rows) {
      const actual = new Map(
        (await sql<{ name: string; type: string }[]>`
        select a.attname as name, format_type(a.atttypid, a.atttypmod) as type from pg_attribute a
         where a.attrelid = ${"public." + relation}::regclass and a.attnum > 0 and not a.attisdropped`)
          .map((c) => [c.name, c.type]),
      );
      // "`a`/`b` (jsonb)": each name, and the type in parentheses after it; other parentheses hold values.
      for (const [, names, note] of columnsText.matchAll(/((?:`\w+`\/?)+)(?: \(([^)]*)\))?/g)) {
        for (const [, name] of names.matchAll(/`(\w+)`/g)) {
          assert.ok(actual.has(name), `${relation}.${name} named by docs/sql.md does not exist`);
          if (note && types[note]) assert.equal(actual.get(name), types[note], `${relation}.${name}`);
        }
      }
    }
    // The index table: each index exists with the columns and condition given.
    const indexes = [...doc.matchAll(/^\| `(webhook_events_\w+)`(?: \(unique\))?(?: `([^`]*)`)?/gm)];
    assert.ok(indexes.length >= 8);
    for (const [, name, shape] of indexes) {
      const [row] = await sql<
        { def: string }[]
      >`select indexdef as def from pg_indexes where indexname = ${name}`;
      assert.ok(row, `${name} named by docs/sql.md does not exist`);
      if (!shape) continue;
      const normal = (text: string) =>
        text.toLowerCase().replace(/\s+in\s*\(/g, "(").replace(/=\s*any\s*\(array\[/g, "(")
          .replace(/[()'"\s\]]|::text/g, "");
      assert.ok(normal(row.def).endsWith(normal(shape)), `${name}: documented ${shape}, is ${row.def}`);
    }
  },
);

dbTest(
  `data [${db.kind}]: the doc's login "in role data_analyst" reads what data_analyst reads`,
  async () => {
    const doc = await sqlDoc();
    const example = /^create role alice login password '[^']*' in role data_analyst;$/m.exec(doc)?.[0];
    assert.ok(example, "the example is in docs/sql.md");
    // Roles belong to the whole server: a name of this run's own, dropped afterwards.
    const login = `relay_doc_analyst_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
    await sql.unsafe(example.replace("alice", login));
    try {
      const [{ events }] = await asRole(
        login,
        (tx) => tx`select count(*)::int as events from webhook_events`,
      );
      assert.ok(events > 0, "the policy for data_analyst lets its members see the rows");
      const [{ messages }] = await asRole(
        login,
        (tx) => tx`select count(*)::int as messages from chatwoot_messages`,
      );
      assert.ok(messages > 0);
      assert.equal(await deniedAs(login, "select * from relay_settings"), "42501");
      assert.equal(await deniedAs(login, "update webhook_events set status = 'dead'"), "42501");
    } finally {
      await sql.unsafe(`drop role ${login}`);
    }
  },
);

// Runs after the test above, which added 20 000 delivered events of history.
dbTest(
  `data [${db.kind}]: webhook_pipeline_health reads indexes, never the whole of webhook_events`,
  async () => {
    const [{ "QUERY PLAN": plan }] = await asRole(
      "data_analyst",
      (tx) => tx.unsafe("explain (format json) select * from webhook_pipeline_health"),
    );
    const scans: string[] = [];
    const walk = (node: Record<string, unknown>) => {
      if (node["Node Type"] === "Seq Scan") scans.push(String(node["Relation Name"]));
      for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) walk(child);
    };
    walk((plan as Array<{ Plan: Record<string, unknown> }>)[0].Plan);
    assert.ok(!scans.includes("webhook_events"), `sequential scans: ${scans.join(", ")}`);
    // Same values as the plain aggregates over the table.
    const [h] = await sql`select last_received_at from webhook_pipeline_health`;
    const [t] = await sql`select max(last_received_at) as last_received_at from webhook_events`;
    assert.equal(h.last_received_at.getTime(), t.last_received_at.getTime());
    const [d] = await sql`select last_delivered_at from webhook_pipeline_health`;
    const [a] =
      await sql`select max(recorded_at) as at from webhook_delivery_attempts where outcome = 'delivered'`;
    assert.equal(d.last_delivered_at.getTime(), a.at.getTime());
  },
);

dbTest(
  `data [${db.kind}]: webhook_pipeline_health finds the latest receipt among dead letters without fetching them`,
  async () => {
    await sql.begin(async (tx) => {
      // 300 dead letters, the newest of them the latest receipt of all (inside a transaction rolled back).
      await tx`insert into webhook_events (event_key, event, payload, raw_body, body_sha256, verified_by, status,
                 received_at, last_received_at)
               select 'dead-' || g, 'message_created', '{}', '{}', repeat('d', 64), 'signature', 'dead',
                 now() - interval '1 minute' * g, now() + interval '1 minute' - interval '1 second' * g
                 from generate_series(1, 300) g`;
      await tx.unsafe("set local role data_analyst");
      const [{ "QUERY PLAN": plan }] = await tx.unsafe(
        "explain (analyze, format json) select * from webhook_pipeline_health",
      );
      // Rows each scan of webhook_events fetched from the table (index-only scans excluded).
      const heapRows: Array<[string, number]> = [];
      const walk = (node: Record<string, unknown>) => {
        if (node["Relation Name"] === "webhook_events" && node["Node Type"] !== "Index Only Scan") {
          const rows = Number(node["Actual Rows"]) * Number(node["Actual Loops"]);
          heapRows.push([`${node["Node Type"]} ${node["Index Name"] ?? ""}`, rows]);
        }
        for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) walk(child);
      };
      walk((plan as Array<{ Plan: Record<string, unknown> }>)[0].Plan);
      const [{ backlog }] = await tx`select count(*)::int as backlog from webhook_events
                                      where status in ('pending', 'delivering')`;
      for (const [scan, rows] of heapRows) {
        assert.ok(rows <= Math.max(1, backlog), `${scan} fetched ${rows} rows (backlog ${backlog})`);
      }
      const [h] = await tx`select last_received_at from webhook_pipeline_health`;
      const [t] = await tx`select max(last_received_at) as at from webhook_events where status = 'dead'`;
      assert.equal(h.last_received_at.getTime(), t.at.getTime());
      throw new Rollback();
    }).catch((error) => {
      if (!(error instanceof Rollback)) throw error;
    });
  },
);

// A 410 is no failure (migration 20261121010500): the last failure and the first since the last success are
// looked up past the 410s, and must not walk them (a run of refusals, every event of a closed tenant say).
dbTest(
  `data [${db.kind}]: webhook_pipeline_health finds the last failure behind 2 000 410s without reading them`,
  async () => {
    await rolledBack(async (tx) => {
      const [{ id }] = await tx`select min(id) as id from webhook_events`;
      // Recorded at the transaction's now(): after every attempt before it, the latest of all.
      await tx`insert into webhook_delivery_attempts (event_id, attempt, version, worker, started_at, http_status,
                                                      succeeded, outcome, error)
               select ${id}, g, 1, 'test', now(), 410, false, 'dead', 'HTTP 410' from generate_series(1, 2000) g`;
      await tx`analyze webhook_delivery_attempts`;
      const [t] = await tx`select max(recorded_at) as at from webhook_delivery_attempts
                            where not succeeded and outcome <> 'lease_expired' and http_status is distinct from 410`;
      await tx.unsafe("set local role data_analyst");
      const [{ "QUERY PLAN": plan }] = await tx.unsafe(
        "explain (analyze, format json) select * from webhook_pipeline_health",
      );
      // Rows each scan of webhook_delivery_attempts that filters out the 410s read and dropped (an index whose
      // predicate leaves them out filters nothing: none is named in its plan).
      const filtered: Array<[string, number]> = [];
      const walk = (node: Record<string, unknown>) => {
        if (
          node["Relation Name"] === "webhook_delivery_attempts" && String(node.Filter ?? "").includes("410")
        ) {
          const removed = Number(node["Rows Removed by Filter"] ?? 0) * Number(node["Actual Loops"] ?? 1);
          const read = node["Node Type"] === "Seq Scan" ? Number.POSITIVE_INFINITY : removed;
          filtered.push([`${node["Node Type"]} ${node["Index Name"] ?? ""}`, read]);
        }
        for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) walk(child);
      };
      walk((plan as Array<{ Plan: Record<string, unknown> }>)[0].Plan);
      for (const [scan, rows] of filtered) assert.ok(rows < 100, `${scan} read and dropped ${rows} rows`);
      const [h] = await tx`select last_failure_at from webhook_pipeline_health`;
      assert.equal(h.last_failure_at?.getTime(), t.at?.getTime());
    });
  },
);

// Postgres compiles a plan whose estimated cost passes jit_above_cost (100 000 by default, on in hosted Supabase
// too) with JIT: about 60 ms at every read, ten times the view's own work. The dead letters, which retention
// keeps, must therefore not raise the plan's estimate beyond their index-only count, even in a branch that only
// runs after an acknowledgement: the planner costs it all the same (17x slower reads at 1 M events, 20 000 dead).
dbTest(
  `data [${db.kind}]: the health views' planned cost does not grow with the dead letters (no JIT at scale)`,
  async () => {
    await sql.begin(async (tx) => {
      const cost = async (view: string) => {
        await tx`analyze webhook_events`;
        await tx`analyze webhook_delivery_attempts`;
        const [{ "QUERY PLAN": plan }] = await tx.unsafe(`explain (format json) select * from ${view}`);
        return Number((plan as Array<{ Plan: Record<string, unknown> }>)[0].Plan["Total Cost"]);
      };
      const views = ["webhook_pipeline_health", "webhook_delivery_health"];
      const before = await Promise.all(views.map(cost));
      const added = 10_000;
      await tx`
        with dead as (
          insert into webhook_events (event_key, event, payload, raw_body, body_sha256, verified_by, status,
                                      received_at, last_received_at)
          select 'jit-dead-' || g, 'message_created', '{}', '{}', repeat('d', 64), 'signature', 'dead',
                 now() - interval '3 days', now() - interval '3 days'
            from generate_series(1, ${added}::int) g
          returning id)
        insert into webhook_delivery_attempts (event_id, attempt, version, worker, started_at, succeeded, outcome,
                                               error, recorded_at)
        select id, 1, 1, 'test', now() - interval '3 days', false, 'dead', 'HTTP 410', now() - interval '3 days'
          from dead`;
      const after = await Promise.all(views.map(cost));
      for (const [i, view] of views.entries()) {
        // An index-only count costs a few hundredths per row; a join of the dead rows with their attempts, ~5.
        const perDead = (after[i] - before[i]) / added;
        assert.ok(perDead < 0.5, `${view}: planned cost grew ${perDead.toFixed(2)} per dead letter`);
      }
      throw new Rollback();
    }).catch((error) => {
      if (!(error instanceof Rollback)) throw error;
    });
  },
);

// The same for a backlog (a forwarder down for an hour at a busy relay: 50 000 pending events). The backlog's
// count, its oldest event and the newest receipt read the pending rows' receipt times: from the heap (a bitmap
// scan of due_idx, ~1.3 per row in each of the three reads) they took webhook_pipeline_health to 134 000 and
// readiness's intake to 129 000 at 50 000 pending, both compiled with JIT; index-only, a few hundredths a row.
dbTest(
  `data [${db.kind}]: the health reads' planned cost does not grow with the backlog (no JIT at scale)`,
  async () => {
    // The planner takes the backlog's rows as scattered over the table's pages: read from the heap, that costs
    // ~1.3 a row where the table has many more pages than there are pending events, as one of 1 M events has.
    // Here 4 000 delivered events, 4 to a page (their bodies do not compress), for 200 pending; vacuumed, as
    // autovacuum keeps such a table, so an index-only read is costed as one (VACUUM needs no transaction).
    await sql`
      insert into webhook_events (event_key, event, payload, raw_body, body_sha256, verified_by, status,
                                  delivered_at, received_at, last_received_at)
      select 'jit-delivered-' || g, 'message_created', '{}',
             (select string_agg(md5(g || '-' || i), '') from generate_series(1, 53) i), repeat('c', 64),
             'signature', 'delivered', now() - interval '2 days', now() - interval '2 days', now() - interval '2 days'
        from generate_series(1, 4000) g`;
    try {
      await sql`vacuum analyze webhook_events`;
      await rolledBack(async (tx) => {
        const since = new Date(Date.now() - 24 * 3600_000).toISOString();
        const reads: Array<[string, string]> = [
          ["webhook_pipeline_health", "select * from webhook_pipeline_health"],
          ["webhook_delivery_health", "select * from webhook_delivery_health"],
          // readiness's webhook_pipeline check (readiness_checks.ts): its terms over the pending events
          [
            "readiness intake (pending)",
            `select (select max(e.last_received_at) from webhook_events e
                      where e.status = 'pending' and e.verified_by <> 'chatwoot_api'),
                    (select count(*) from webhook_events e
                      where e.status = 'pending' and e.last_received_at > '${since}'::timestamptz)`,
          ],
        ];
        const costs = async () => {
          await tx`analyze webhook_events`;
          const out: number[] = [];
          for (const [, query] of reads) {
            const [{ "QUERY PLAN": plan }] = await tx.unsafe(`explain (format json) ${query}`);
            out.push(Number((plan as Array<{ Plan: Record<string, unknown> }>)[0].Plan["Total Cost"]));
          }
          return out;
        };
        const before = await costs();
        const added = 200;
        // Over 50 conversations, received over the last hour, a tenth waiting for a retry.
        await tx`
          insert into webhook_events (event_key, event, message_id, conversation_id, account_id, payload,
                                      raw_body, body_sha256, verified_by, status, attempts, next_attempt_at,
                                      received_at, last_received_at)
          select 'jit-pending-' || g, 'message_created', 900000000 + g, 900000 + g % 50, 1, '{}', '{}',
                 repeat('c', 64), 'signature', 'pending', case when g % 10 = 0 then 3 else 0 end,
                 now() + case when g % 10 = 0 then interval '10 minutes' else -interval '1 minute' end,
                 now() - make_interval(secs => g * 15), now() - make_interval(secs => g * 15)
            from generate_series(1, ${added}::int) g`;
        const after = await costs();
        // Index-only, a count costs a few hundredths a row; from the heap, 1.3 or more in each term.
        const grown = reads.map(([name], i) => `${name}: ${((after[i] - before[i]) / added).toFixed(2)}`);
        assert.ok(
          reads.every((_, i) => (after[i] - before[i]) / added < 0.5),
          `planned cost per pending event: ${grown.join(", ")}`,
        );
      });
    } finally {
      await sql`delete from webhook_events where event_key like 'jit-delivered-%'`;
    }
  },
);

dbTest(`data [${db.kind}]: deno task stats prints the pipeline health, as text and as JSON`, async () => {
  const run = async (...args: string[]) => {
    const out = await runScript("scripts/stats.ts", args, db.url);
    assert.equal(out.code, 0, out.stdout + out.stderr);
    return out.stdout;
  };
  const [health] = await sql`select * from webhook_pipeline_health`;
  const json = JSON.parse(await run("--json", "--days", "3650"));
  assert.equal(json.health.dead_total, Number(health.dead_total));
  assert.equal(json.health.backlog, Number(health.backlog));
  assert.equal(json.health.escalate, health.escalate);
  const created = json.daily.filter((r: { event: string }) => r.event === "message_created");
  assert.ok(created.length > 0 && created.every((r: { events: number }) => r.events > 0));
  const text = await run();
  assert.match(
    text,
    new RegExp(`dead\\s+\\d+ went dead last hour, \\d+ last day; ${health.dead_total} dead now`),
  );
  assert.match(text, /escalate\s+no/);
  // Each day's row in the text, by its header: an edit is counted in `changed` (received - duplicates - changed
  // = events), and the day reads YYYY-MM-DD whatever the server's DateStyle.
  assert.match(text, /^ {2}day\s+event\s+events\s+received\s+duplicates\s+changed\s+delivered/m);
  assert.ok(json.daily.every((r: { day: string }) => /^\d{4}-\d\d-\d\d$/.test(r.day)));
  assert.ok(json.daily.some((r: { changed: number }) => r.changed > 0));
  assert.ok(!text.includes("postgres:postgres@"), "the connection string is shown without its password");
});

dbTest(
  `data [${db.kind}]: deno task stats says how many dead events are not acknowledged, for data_analyst too`,
  async () => {
    const run = async (url = db.url, ...args: string[]) => {
      const out = await runScript("scripts/stats.ts", args, url);
      assert.equal(out.code, 0, out.stdout + out.stderr);
      return out.stdout;
    };
    const deadLine = (text: string) => /^ {2}dead\s+(.*)$/m.exec(text)?.[1] ?? "";
    const [{ dead }] = await sql`select count(*)::int as dead from webhook_events where status = 'dead'`;
    assert.ok(dead >= 2, "the fixture left dead events");
    // The analysts' view has the number (data_analyst may not read webhook_delivery_health, relay_settings).
    const [asAnalyst] = await asRole(
      "data_analyst",
      (tx) => tx`select dead_total, dead_unacknowledged from webhook_pipeline_health`,
    );
    assert.deepEqual([Number(asAnalyst.dead_total), Number(asAnalyst.dead_unacknowledged)], [dead, dead]);
    // Never acknowledged: all of them want a look.
    let json = JSON.parse(await run(db.url, "--json"));
    assert.deepEqual([json.health.dead_total, json.health.dead_unacknowledged], [dead, dead]);
    assert.match(
      deadLine(await run()),
      new RegExp(`; ${dead} dead now, ${dead} not acknowledged: look at them`),
    );
    const [{ id }] = await sql`select id from webhook_events where status = 'dead' order by id limit 1`;
    try {
      // Acknowledged: none does.
      await sql`update relay_settings set dead_acknowledged_at = now()`;
      json = JSON.parse(await run(db.url, "--json"));
      assert.deepEqual([json.health.dead_total, json.health.dead_unacknowledged], [dead, 0]);
      assert.match(deadLine(await run()), new RegExp(`; ${dead} dead now, all acknowledged$`));
      // One replayed since that died again: it alone does.
      await sql`insert into webhook_delivery_attempts
                  (event_id, attempt, version, started_at, succeeded, outcome, http_status)
                values (${id}, 9, 1, now(), false, 'dead', 410)`;
      const expected = new RegExp(`; ${dead} dead now, 1 not acknowledged \\(${dead - 1} acknowledged\\)`);
      assert.match(deadLine(await run()), expected);
      if (db.kind === "postgres") {
        // Run by a member of data_analyst, as the Data team would (PGlite has one session: no other login).
        const login = `relay_stats_analyst_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
        await sql.unsafe(`create role ${login} login in role data_analyst`);
        try {
          const url = new URL(db.url);
          url.username = login;
          url.password = "";
          const text = await run(url.toString());
          assert.match(deadLine(text), expected);
          assert.match(text, /lost\s+unknown/, "the lost events are the operators' only");
        } finally {
          await sql.unsafe(`drop role ${login}`);
        }
      }
    } finally {
      await sql`delete from webhook_delivery_attempts where event_id = ${id} and attempt = 9`;
      await sql`update relay_settings set dead_acknowledged_at = null`;
    }
  },
);

dbTest(
  `data [${db.kind}]: deno task stats --days 1 is today's UTC day, whatever the session's time zone`,
  async () => {
    // Zones whose date differs from UTC's: 14 h ahead from 10:00 UTC on, 12 h behind until 12:00 UTC. Both are
    // run, so that one of them does at any time of day.
    for (const zone of ["Etc/GMT-14", "Etc/GMT+12"]) {
      const url = new URL(db.url);
      url.searchParams.set("TimeZone", zone);
      const probe = connect(url.toString(), { max: 1 });
      const [{ tz }] = await probe`select current_setting('TimeZone') as tz`;
      await probe.end();
      if (tz !== zone) return; // PGlite's socket keeps one session and its settings: nothing to show there.
      assert.deepEqual(await firstAndLastUtcSecondShown(url.toString()), ["today"], zone);
    }
  },
);

/**
 * Which of two events, one at the first second of the database's UTC day and one at the last second of the day
 * before, deno task stats --days 1 shows in the session `url` opens. The events are placed on the day the
 * script's query reads: a run that straddled midnight UTC (the day read before and after it differ) runs again.
 */
async function firstAndLastUtcSecondShown(url: string): Promise<string[]> {
  const utcDay = async () =>
    (await sql<{ day: string }[]>`select to_char((now() at time zone 'UTC')::date, 'YYYY-MM-DD') as day`)[0]
      .day;
  for (let run = 0; run < 3; run++) {
    const day = await utcDay();
    const dayStart = new Date(`${day}T00:00:00Z`);
    const dayBeforeEnd = new Date(dayStart.getTime() - 1000);
    await sql`insert into webhook_events (event_key, event, payload, raw_body, body_sha256, verified_by, status,
              received_at, last_received_at)
            values ('stats-yesterday', 'stats_probe', '{}', '{}', repeat('9', 64), 'signature', 'skipped',
                    ${dayBeforeEnd}, ${dayBeforeEnd}),
                   ('stats-today', 'stats_probe', '{}', '{}', repeat('8', 64), 'signature', 'skipped',
                    ${dayStart}, ${dayStart})`;
    try {
      const out = await runScript("scripts/stats.ts", ["--json", "--days", "1"], url);
      assert.equal(out.code, 0, out.stdout + out.stderr);
      if (await utcDay() !== day) continue;
      return JSON.parse(out.stdout).daily.filter((r: { event: string }) => r.event === "stats_probe")
        .map((r: { day: string }) => r.day === day ? "today" : r.day);
    } finally {
      await sql`delete from webhook_events where event = 'stats_probe'`;
    }
  }
  throw new Error("every run straddled midnight UTC");
}

dbTest(
  `data [${db.kind}]: retention prunes old delivered/skipped events in batches, never pending or dead`,
  async () => {
    const [before] = await sql`select
      count(*) filter (where status in ('delivered', 'skipped') and last_received_at < now() - interval '30 days')::int as old,
      count(*) filter (where status in ('pending', 'dead'))::int as kept,
      count(*)::int as total
    from webhook_events`;
    assert.ok(before.old >= 20_000, "history is older than 30 days");
    // Old dead and pending events must survive, however old.
    await sql`update webhook_events set last_received_at = now() - interval '90 days', received_at = now() - interval '90 days'
            where status = 'dead'`;
    await sql`insert into webhook_events (event_key, event, payload, raw_body, body_sha256, verified_by, status, received_at, last_received_at)
            values ('old-pending', 'message_created', '{}', '{}', repeat('c', 64), 'signature', 'pending',
                    now() - interval '90 days', now() - interval '90 days')`;
    const attemptsOfOld = await sql`select count(*)::int as n from webhook_delivery_attempts a
                                  join webhook_events e on e.id = a.event_id where e.status = 'delivered'`;
    assert.ok(attemptsOfOld[0].n > 0);
    const [{ deleted }] = await sql`call prune_webhook_events(batch_size => 3000)`;
    assert.equal(Number(deleted), before.old);
    const [after] = await sql`select count(*)::int as total,
      count(*) filter (where status in ('pending', 'dead'))::int as kept,
      count(*) filter (where status in ('delivered', 'skipped') and last_received_at < now() - interval '30 days')::int as old
    from webhook_events`;
    assert.equal(after.old, 0);
    assert.equal(after.kept, before.kept + 1);
    assert.equal(after.total, before.total + 1 - before.old);
    const [{ orphans }] = await sql`select count(*)::int as orphans from webhook_delivery_attempts a
                                  where not exists (select 1 from webhook_events e where e.id = a.event_id)`;
    assert.equal(orphans, 0);
    // Recent delivered events stay; the configured age applies when none is given.
    await sql`update relay_settings set retention_days = 1`;
    await sql`update webhook_events set last_received_at = now() - interval '2 days' where conversation_id = 101 and status = 'delivered'`;
    const [{ deleted: second }] = await sql`call prune_webhook_events()`;
    const [{ left }] =
      await sql`select count(*)::int as left from webhook_events where conversation_id = 101 and status = 'delivered'`;
    assert.ok(Number(second) > 0);
    assert.equal(left, 0);
    await sql`update relay_settings set retention_days = 30`;
  },
);

Deno.test({
  name: `data [${db.kind}]: close database`,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () => db.close(),
});
