import assert from "node:assert/strict";
import {
  eventColumns,
  jsonbText,
  parseChatwootEvent,
} from "../supabase/functions/_shared/chatwoot_payload.ts";
import { SAMPLE_EVENTS, samplePayload } from "../scripts/lib/samples.ts";
import { dbIndependentTest } from "./_db.ts";

const SHA = "a".repeat(64);

dbIndependentTest("payload: every event of the contract parses and yields its key and columns", () => {
  for (const event of SAMPLE_EVENTS) {
    const payload = samplePayload(event, { messageId: 11, conversationId: 22, accountId: 33, inboxId: 44 });
    const parsed = parseChatwootEvent(JSON.stringify(payload));
    assert.ok(parsed.ok, `${event}: ${JSON.stringify(parsed)}`);
    const columns = eventColumns(parsed.payload, parsed.event, SHA);
    const isMessage = event.startsWith("message_");
    assert.equal(columns.eventKey, isMessage ? `message:11:${event}` : `${event}:${SHA}`);
    assert.equal(columns.messageId, isMessage ? 11 : null, event);
    const hasConversation = !event.startsWith("contact_") && !event.startsWith("inbox_");
    assert.equal(columns.conversationId, hasConversation ? 22 : null, event);
    assert.equal(columns.accountId, 33, event);
    // An inbox event carries no id of its inbox (its channel's record has the channel's id), a contact none.
    assert.equal(columns.inboxId, hasConversation ? 44 : null, event);
  }
});

dbIndependentTest(
  "payload: conversation events without a top-level account fall back to messages[0].account_id",
  () => {
    const payload = samplePayload("conversation_status_changed", { accountId: 9 });
    assert.equal(payload.account, undefined);
    const parsed = parseChatwootEvent(JSON.stringify(payload));
    assert.ok(parsed.ok);
    assert.equal(eventColumns(parsed.payload, parsed.event, SHA).accountId, 9);
  },
);

dbIndependentTest(
  "payload: webwidget_triggered with a null contact and conversation (Chatwoot's .try) is accepted",
  () => {
    const payload = {
      ...samplePayload("webwidget_triggered", { accountId: 3, inboxId: 4 }),
      contact: null,
      current_conversation: null,
    };
    const parsed = parseChatwootEvent(JSON.stringify(payload));
    assert.ok(parsed.ok, JSON.stringify(parsed));
    const columns = eventColumns(parsed.payload, parsed.event, SHA);
    assert.deepEqual(
      { conversationId: columns.conversationId, accountId: columns.accountId, inboxId: columns.inboxId },
      { conversationId: null, accountId: 3, inboxId: 4 },
    );
    // A contact that is there still needs its id.
    const noId = parseChatwootEvent(JSON.stringify({ ...payload, contact: { name: "Jamie" } }));
    assert.ok(!noId.ok && noId.issues?.some((i) => i.path === "contact.id"));
  },
);

dbIndependentTest("payload: unknown extra fields and unknown future events are accepted", () => {
  const withExtra = { ...samplePayload("message_created"), brand_new_field: { nested: [1, 2] } };
  const parsed = parseChatwootEvent(JSON.stringify(withExtra));
  assert.ok(parsed.ok);
  assert.deepEqual(parsed.payload.brand_new_field, { nested: [1, 2] });
  const future = parseChatwootEvent(JSON.stringify({ event: "conversation_priority_changed", id: 5 }));
  assert.ok(future.ok);
});

dbIndependentTest(
  "payload: an event named like an Object property (constructor, toString) is no schema of ours",
  () => {
    // The schema lookup read Object.prototype: "constructor" found a function and parsing threw, so a signed
    // webhook got 500 (ours to fix, and lost) instead of being stored as an unknown event or refused 400.
    const parsed = (event: string) => parseChatwootEvent(JSON.stringify({ event, id: 1 }));
    const constructor = parsed("constructor");
    assert.ok(constructor.ok && constructor.event === "constructor", JSON.stringify(constructor));
    for (const event of ["toString", "hasOwnProperty", "__proto__"]) {
      const refused = parsed(event);
      assert.ok(!refused.ok && refused.error === "invalid_payload", `${event}: ${JSON.stringify(refused)}`);
    }
  },
);

dbIndependentTest("payload: not JSON, not an object, no event, and schema mismatches are told apart", () => {
  const notJson = parseChatwootEvent("{nope");
  assert.equal(!notJson.ok && notJson.error, "invalid_json");
  const array = parseChatwootEvent("[1,2]");
  assert.equal(!array.ok && array.error, "invalid_json");
  const noEvent = parseChatwootEvent('{"id":1}');
  assert.equal(!noEvent.ok && noEvent.error, "missing_event");
  const badName = parseChatwootEvent('{"event":"DROP TABLE"}');
  assert.equal(!badName.ok && badName.error, "invalid_payload");
  const numericType = { ...samplePayload("message_created"), message_type: 0 };
  const mismatch = parseChatwootEvent(JSON.stringify(numericType));
  assert.ok(!mismatch.ok);
  assert.equal(mismatch.error, "invalid_payload");
  assert.deepEqual(mismatch.issues?.map((i) => i.path), ["message_type"]);
  const noConversation = { ...samplePayload("message_created"), conversation: undefined };
  const missing = parseChatwootEvent(JSON.stringify(noConversation));
  assert.ok(!missing.ok && missing.issues?.some((i) => i.path === "conversation"));
  const stringId = parseChatwootEvent(JSON.stringify({ ...samplePayload("contact_created"), id: "12" }));
  assert.ok(!stringId.ok && stringId.issues?.some((i) => i.path === "id"));
});

/** A parsed JSON value with U+0000 removed from its strings and keys. */
function withoutNul(value: unknown): unknown {
  if (typeof value === "string") return value.replaceAll("\u0000", "");
  if (Array.isArray(value)) return value.map(withoutNul);
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k.replaceAll("\u0000", ""), withoutNul(v)]),
    );
  }
  return value;
}

dbIndependentTest(
  "payload: the jsonb copy is the raw text with its \\u0000 escapes cut out, or null when the raw text serves",
  () => {
    const cases: [raw: string, jsonb: string | null][] = [
      [String.raw`{"event":"x","big":12345678901234567890}`, null],
      // Numbers, spacing and key order as sent: the copy is never re-serialised.
      [
        String.raw`{"c": "x\u0000", "n": 123456789012345678901234567890, "huge": 1e400, "f": -0.10}`,
        String.raw`{"c": "x", "n": 123456789012345678901234567890, "huge": 1e400, "f": -0.10}`,
      ],
      [String.raw`{"c":"a\u0000\u0000\u0000b"}`, String.raw`{"c":"ab"}`],
      [String.raw`{"\u0000k\u0000":["\u0000v"]}`, String.raw`{"k":["v"]}`],
      // An escaped backslash, then the characters u0000: no U+0000, so the raw text serves.
      [String.raw`{"c":"a\\u0000b"}`, null],
      // An escaped backslash, then a U+0000: the backslash stays.
      [String.raw`{"c":"\\\u0000","d":"\\\\u0000"}`, String.raw`{"c":"\\","d":"\\\\u0000"}`],
      // Other escapes stay, hex digits in either case, and a digit after the escape is text.
      [
        String.raw`{"c":"\u00e9\u00E9\u0001\"\n\u00000"}`,
        String.raw`{"c":"\u00e9\u00E9\u0001\"\n0"}`,
      ],
    ];
    for (const [raw, jsonb] of cases) {
      assert.equal(jsonbText(raw), jsonb, raw);
      assert.deepEqual(JSON.parse(jsonb ?? raw), withoutNul(JSON.parse(raw)), raw);
    }
  },
);
