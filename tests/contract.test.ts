// docs/chatwoot-contract.md, fact by fact, end to end: the deployed webhook function served over loopback HTTP,
// a real database, and the Agent SDK stand-in at `${AGENT_SDK_URL}/webhooks/chatwoot`. Each test names the
// fact it pins. README ("Against the Support team's webhook runbook") says what replaced the runbook's items.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { chatwootWebhookApp } from "../supabase/functions/_shared/chatwoot_webhook.ts";
import { drain } from "../supabase/functions/_shared/forwarder.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";
import { signChatwoot } from "../supabase/functions/_shared/signature.ts";
import { SAMPLE_EVENTS, samplePayload } from "../scripts/lib/samples.ts";
import { type AgentSdkStandIn, ok } from "./_agent_sdk.ts";
import { dbIndependentTest, dbTest, type TestDb } from "./_db.ts";
import { closeSharedDb, statusOf, withBackgroundAwaited, withForwardingSetup } from "./_forwarding.ts";
import { eventually, serveOnLoopback, signedRequest, TEST_SECRET } from "./_http.ts";

let nextMessageId = 880_000;

/**
 * The webhook function as deployed (immediate delivery included), on a loopback port, sending to `sdk`; runs
 * `fn` with a `post` that sends a Request's method, headers and body to it over HTTP.
 */
async function withWebhookOverHttp(
  fn: (
    ctx: {
      db: TestDb;
      sdk: AgentSdkStandIn;
      log: ReturnType<typeof memoryLogger>;
      post: (req: Request) => Promise<{ status: number; body: Record<string, unknown> }>;
      /** Drains what is due until nothing is, as forward-events would (the immediate drain may be mid-way). */
      flush: () => Promise<void>;
    },
  ) => Promise<void>,
) {
  await withForwardingSetup(async (db, sdk, config) => {
    const log = memoryLogger();
    const app = chatwootWebhookApp({
      env: { CHATWOOT_WEBHOOK_SECRET: TEST_SECRET, AGENT_SDK_URL: sdk.url },
      sql: db.sql,
      log,
    });
    const server = serveOnLoopback((req) => app.fetch(req));
    const webhookUrl = `${server.url}/chatwoot-webhook`;
    const post = async (req: Request) => {
      const res = await fetch(webhookUrl, {
        method: req.method,
        headers: req.headers,
        body: await req.arrayBuffer(),
      });
      return { status: res.status, body: await res.json() };
    };
    const flush = async () => {
      await eventually(async () => (await drain(db.sql, config, { log, budgetMs: 5_000 })).claimed === 0);
    };
    try {
      await withBackgroundAwaited(() => fn({ db, sdk, log, post, flush }));
    } finally {
      await server.stop();
    }
  });
}

const URL_ANY = "http://relay.test/chatwoot-webhook"; // signedRequest's URL: post() sends it to the server

dbTest(
  "contract: the signature covers '<timestamp>.<raw body>', checked before parsing: Rails' bytes pass and go on " +
    "as they came; a re-serialised body, the body alone (#13809) or another timestamp do not",
  async () => {
    await withWebhookOverHttp(async ({ db, sdk, post, flush }) => {
      const id = nextMessageId++;
      // As Rails writes it: `<`, `>`, `&` escaped, a float with a trailing zero, its own key order and spacing.
      const raw =
        `{"event":"message_created","id":${id},"content":"\\u003cb\\u003eHi\\u003c/b\\u003e \\u0026 bye",` +
        `"content_type":"text","message_type":"incoming","private":false,"created_at":"2026-11-21T10:00:00.123Z",` +
        `"conversation":{"id":41,"inbox_id":3,"updated_at":1795255200.50},"account":{"id":1,"name":"HotDash"},` +
        `"inbox":{"id":3,"name":"Support"},"sender":{"id":9,"name":"J","blocked":false}}`;
      const now = Math.floor(Date.now() / 1000);
      const hmacHex = (data: string) => createHmac("sha256", TEST_SECRET).update(data).digest("hex");
      const reserialised = JSON.stringify(JSON.parse(raw));
      assert.notEqual(reserialised, raw, "the sample must differ from its re-serialised form");
      const forged: Array<[string, string]> = [
        ["signed over the re-serialised JSON", `sha256=${hmacHex(`${now}.${reserialised}`)}`],
        ["signed over the body alone", `sha256=${hmacHex(raw)}`],
        ["signed with another timestamp", signChatwoot(TEST_SECRET, String(now - 1), raw)],
        ["hex without the sha256= prefix", hmacHex(`${now}.${raw}`)],
      ];
      for (const [what, signature] of forged) {
        const res = await post(signedRequest(URL_ANY, raw, {
          nowSeconds: now,
          headers: { "X-Chatwoot-Signature": signature },
        }));
        assert.deepEqual([res.status, res.body.error], [401, "signature_invalid"], what);
      }
      // Verified before it is parsed: a body that is no JSON is refused for its signature first.
      const notJson = `${raw.slice(0, -1)},`;
      const forgedNotJson = await post(signedRequest(URL_ANY, notJson, { secret: "not-the-secret" }));
      assert.deepEqual([forgedNotJson.status, forgedNotJson.body.error], [401, "signature_invalid"]);
      const signedNotJson = await post(signedRequest(URL_ANY, notJson));
      assert.deepEqual([signedNotJson.status, signedNotJson.body.error], [400, "invalid_json"]);
      const [{ n }] = await db.sql<{ n: number }[]>`select count(*)::int as n from webhook_events`;
      assert.equal(n, 0, "nothing refused was stored");

      const res = await post(signedRequest(URL_ANY, raw, { nowSeconds: now }));
      assert.equal(res.status, 200);
      const [row] = await db.sql`select raw_body, verified_by, sent_at from webhook_events where id = ${
        Number(res.body.id)
      }`;
      assert.equal(row.raw_body, raw);
      assert.equal(row.verified_by, "signature");
      assert.equal(new Date(row.sent_at).getTime(), now * 1000, "sent_at is the signed timestamp");
      await flush();
      await sdk.waitFor(() => sdk.accepted().length === 1, "the delivery");
      const got = sdk.accepted()[0];
      assert.equal(new URL(got.url).pathname, "/webhooks/chatwoot");
      assert.equal(got.text, raw, "forwarded byte for byte, escapes and all");
      assert.equal(got.headers.get("content-type"), "application/json");
      assert.equal(got.headers.get("x-chatwoot-event"), "message_created");
      assert.equal(got.headers.get("idempotency-key"), `message:${id}:message_created`);
    });
  },
);

dbTest(
  "contract: X-Chatwoot-Delivery is an unsigned hint: a copy under another delivery id is a duplicate, two " +
    "events under one id are both stored, and an agent-bot retry (same id, signed anew) is delivered once",
  async () => {
    await withWebhookOverHttp(async ({ db, sdk, post, flush }) => {
      const first = JSON.stringify(samplePayload("message_created", { messageId: nextMessageId++ }));
      const second = JSON.stringify(samplePayload("message_created", { messageId: nextMessageId++ }));
      const delivery = crypto.randomUUID();
      const now = Math.floor(Date.now() / 1000);
      const a = await post(signedRequest(URL_ANY, first, { deliveryId: delivery, nowSeconds: now }));
      // The agent bot's retry after a 500: the same job, so the same delivery id and body, signed 3 s later.
      const retry = await post(signedRequest(URL_ANY, first, { deliveryId: delivery, nowSeconds: now + 3 }));
      // The same event again from another job (Chatwoot's duplicates): another delivery id.
      const again = await post(signedRequest(URL_ANY, first, { deliveryId: crypto.randomUUID() }));
      // Another event under the first one's delivery id: the header is not signed, so it decides nothing.
      const other = await post(signedRequest(URL_ANY, second, { deliveryId: delivery }));
      assert.deepEqual(
        [a, retry, again, other].map((r) => [r.status, r.body.outcome]),
        [[200, "stored"], [200, "duplicate"], [200, "duplicate"], [200, "stored"]],
      );
      assert.equal(retry.body.id, a.body.id);
      assert.notEqual(other.body.id, a.body.id);
      const rows = await db.sql<{ message_id: string; delivery_id: string; receive_count: number }[]>`
        select message_id, delivery_id, receive_count from webhook_events order by id`;
      assert.deepEqual(rows.map((r) => [Number(r.message_id), r.delivery_id, r.receive_count]), [
        [JSON.parse(first).id, delivery, 3],
        [JSON.parse(second).id, delivery, 1],
      ]);
      await flush();
      await sdk.waitFor(() => sdk.accepted().length === 2, "both deliveries");
      assert.deepEqual(
        sdk.received.map((r) => r.headers.get("idempotency-key")).sort(),
        [
          `message:${JSON.parse(first).id}:message_created`,
          `message:${JSON.parse(second).id}:message_created`,
        ],
        "each message sent once, keyed by its message id",
      );
    });
  },
);

dbTest(
  "contract: a message from a contact (no type), an agent, an agent bot, a Captain assistant or no sender, " +
    "and a private note, are each stored and sent on",
  async () => {
    await withWebhookOverHttp(async ({ db, sdk, post, flush }) => {
      const contact = {
        id: 512,
        name: "Jamie",
        email: "j@example.com",
        phone_number: null,
        identifier: null,
        thumbnail: "",
        avatar: "",
        additional_attributes: {},
        custom_attributes: {},
        blocked: false,
      };
      const variants: Array<[string, Record<string, unknown>]> = [
        ["contact", { sender: contact }],
        ["user", {
          sender: { id: 7, name: "Alex", email: "alex@example.com", type: "user" },
          message_type: "outgoing",
        }],
        ["agent bot", { sender: { id: 2, name: "Bot", type: "agent_bot" }, message_type: "outgoing" }],
        ["captain", { sender: { id: 3, name: "Captain", description: "x", type: "captain_assistant" } }],
        ["no sender", { sender: null, message_type: "template" }],
        ["private note", {
          sender: { id: 7, name: "Alex", email: "alex@example.com", type: "user" },
          message_type: "outgoing",
          private: true,
        }],
      ];
      const ids: number[] = [];
      for (const [what, fields] of variants) {
        const id = nextMessageId++;
        ids.push(id);
        // A conversation each: delivery order within one conversation is not what this test is about.
        const body = JSON.stringify({
          ...samplePayload("message_created", { messageId: id, conversationId: id }),
          ...fields,
        });
        const res = await post(signedRequest(URL_ANY, body));
        assert.deepEqual([res.status, res.body.outcome], [200, "stored"], what);
      }
      const [{ n }] = await db.sql<{ n: number }[]>`select count(*)::int as n from webhook_events`;
      assert.equal(n, variants.length);
      await flush();
      await sdk.waitFor(() => sdk.accepted().length === variants.length, "every variant delivered");
      assert.deepEqual(
        sdk.accepted().map((r) => JSON.parse(r.text).id).sort((x, y) => x - y),
        ids,
      );
    });
  },
);

dbTest(
  "contract: conversation events take their account from messages[0].account_id when it has no `account`, " +
    "and one with no account and no messages is still stored",
  async () => {
    await withWebhookOverHttp(async ({ db, post }) => {
      const base = samplePayload("conversation_status_changed", { conversationId: 4242, accountId: 17 });
      delete base.account;
      const withMessage = JSON.stringify(base);
      const bare = JSON.stringify({ ...base, messages: [], status: "snoozed" });
      const stored: Array<[number, number | null]> = [];
      for (const body of [withMessage, bare]) {
        const res = await post(signedRequest(URL_ANY, body));
        assert.deepEqual([res.status, res.body.outcome], [200, "stored"]);
        const [row] = await db.sql<{ conversation_id: string; account_id: string | null; status: string }[]>`
          select conversation_id, account_id, status from webhook_events where id = ${Number(res.body.id)}`;
        stored.push([Number(row.conversation_id), row.account_id === null ? null : Number(row.account_id)]);
      }
      assert.deepEqual(stored, [[4242, 17], [4242, null]]);
    });
  },
);

dbTest(
  "contract: Chatwoot is never asked to re-send: the Agent SDK's 500 is not passed on (the runbook's " +
    "'return 500' is replaced), the webhook answers 200 once stored, and the relay retries until delivered",
  async () => {
    await withWebhookOverHttp(async ({ db, sdk, log, post, flush }) => {
      sdk.behave((r) => r.attempt === 1 ? new Response("agent sdk is down", { status: 500 }) : ok());
      const body = JSON.stringify(samplePayload("message_created", { messageId: nextMessageId++ }));
      const res = await post(signedRequest(URL_ANY, body));
      assert.equal(res.status, 200);
      assert.equal(res.body.ok, true);
      assert.equal(res.body.outcome, "stored");
      // Waits for the write-back, not for the Agent SDK's answer: the drain that delivered may be the webhook's
      // immediate one, still writing `delivered` when the stand-in has already answered (CI saw 'delivering').
      const id = Number(res.body.id);
      await eventually(
        async () => {
          await flush();
          return (await statusOf(db.sql, id)) === "delivered";
        },
        15_000,
        "the retried delivery, written back",
      );
      const [row] = await db.sql<{ status: string; attempts: number }[]>`
        select status, attempts from webhook_events where id = ${id}`;
      assert.deepEqual([row.status, row.attempts, sdk.accepted().length], ["delivered", 2, 1]);
      // The runbook's log lines: Received on entry; the Agent SDK's error with status and body; success with
      // status and duration.
      assert.ok(log.lines.some((l) => l.msg === "[Chatwoot Webhook] Received"));
      const error = log.lines.find((l) => l.msg === "Agent SDK error");
      assert.deepEqual([error?.status, error?.body], [500, "agent sdk is down"]);
      const success = log.lines.find((l) => l.msg === "Processed successfully");
      assert.equal(success?.status, 200);
      assert.equal(typeof success?.duration_ms, "number");
    });
  },
);

dbTest(
  "contract: unknown extra fields and an event name Chatwoot may add later are stored, not refused",
  async () => {
    await withWebhookOverHttp(async ({ db, post }) => {
      const extra = JSON.stringify({
        ...samplePayload("message_created", { messageId: nextMessageId++ }),
        some_future_field: { nested: [1, 2, 3] },
      });
      const future = JSON.stringify({ event: "conversation_priority_changed", id: 12, priority: "urgent" });
      for (const body of [extra, future]) {
        const res = await post(signedRequest(URL_ANY, body));
        assert.deepEqual([res.status, res.body.outcome], [200, "stored"], body.slice(0, 60));
        const [row] = await db.sql<{ raw_body: string; status: string }[]>`
          select raw_body, status from webhook_events where id = ${Number(res.body.id)}`;
        assert.equal(row.raw_body, body);
      }
    });
  },
);

dbIndependentTest(
  "contract: every sample `deno task send` posts is shaped as the contract says Chatwoot sends it",
  () => {
    const keys = (value: unknown) => Object.keys(value as Record<string, unknown>).sort();
    for (const event of SAMPLE_EVENTS) {
      const p = samplePayload(event, { messageId: 5, conversationId: 6, accountId: 7, inboxId: 8 }) as // deno-lint-ignore no-explicit-any
      Record<string, any>;
      assert.equal(p.event, event, "every payload has a top-level event");
      if (event === "message_created" || event === "message_updated") {
        assert.ok(["incoming", "outgoing", "template"].includes(p.message_type), `${event}: a string type`);
        assert.equal(p.id, 5, `${event}: id is the message id`);
        assert.match(p.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, `${event}: ISO-8601 with ms`);
        assert.ok(
          !("status" in p) && !("changed_attributes" in p),
          `${event}: no status, no changed_attributes`,
        );
        assert.ok(!("type" in p.sender), `${event}: a contact sender has no type key`);
        assert.ok(!("attachments" in p), `${event}: attachments only when present`);
        assert.deepEqual([keys(p.account), keys(p.inbox)], [["id", "name"], ["id", "name"]]);
        assert.equal(p.conversation.id, 6, `${event}: conversation is the conversation's event data`);
        assert.ok(
          Number.isInteger(p.conversation.messages[0].message_type),
          `${event}: an integer type inside`,
        );
        assert.ok(Number.isInteger(p.conversation.messages[0].created_at), `${event}: epoch seconds inside`);
      } else if (event.startsWith("conversation_typing")) {
        assert.deepEqual(keys(p), ["conversation", "event", "is_private", "user"], event);
      } else if (event.startsWith("conversation_")) {
        assert.equal(p.id, 6, `${event}: id is the display id`);
        assert.equal(p.inbox_id, 8);
        assert.deepEqual(keys(p.meta), ["assignee", "hmac_verified", "sender", "team"]);
        assert.ok(Array.isArray(p.messages) && p.messages.length <= 1, `${event}: at most the last message`);
        assert.ok(
          Number.isInteger(p.created_at) && typeof p.updated_at === "number",
          `${event}: epoch times`,
        );
        if (event !== "conversation_created") {
          assert.ok(Array.isArray(p.changed_attributes), `${event}: changed_attributes is an array`);
          for (const change of p.changed_attributes) {
            for (const value of Object.values(change)) {
              assert.deepEqual(keys(value), ["current_value", "previous_value"], event);
            }
          }
        }
      } else if (event === "webwidget_triggered") {
        for (
          const key of [
            "id",
            "contact",
            "inbox",
            "account",
            "current_conversation",
            "source_id",
            "event_info",
          ]
        ) {
          assert.ok(key in p, `${event}: ${key}`);
        }
      } else if (event.startsWith("contact_")) {
        assert.equal(p.id, 512, `${event}: the contact's fields`);
        assert.ok(!("type" in p), `${event}: a contact has no type key`);
        assert.equal(Array.isArray(p.changed_attributes), event === "contact_updated", event);
      } else if (event.startsWith("inbox_")) {
        // Inbox::EventDataPresenter#push_data: settings, times and the channel's record; no inbox id or name.
        assert.ok(!("id" in p) && !("name" in p), `${event}: no top-level id or name`);
        assert.equal(typeof p.channel, "object", `${event}: the channel's record`);
        assert.equal(p.channel.account_id, 7, `${event}: the channel's account_id is the account's`);
        assert.ok(typeof p.created_at === "string" && typeof p.updated_at === "string", event);
        assert.equal(Array.isArray(p.changed_attributes), event === "inbox_updated", event);
      } else {
        assert.fail(`${event}: a sample the contract does not describe`);
      }
    }
  },
);

dbTest("contract: close database", closeSharedDb);
