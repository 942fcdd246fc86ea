// chatwoot-webhook against a real database: every answer it gives, and what it leaves in webhook_events.
import assert from "node:assert/strict";
import {
  createChatwootWebhookApp,
  type WebhookDeps,
} from "../supabase/functions/_shared/chatwoot_webhook.ts";
import { connect } from "../supabase/functions/_shared/db.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";
import {
  chatwootSignatureHeaders,
  sha256Hex,
  signChatwoot,
} from "../supabase/functions/_shared/signature.ts";
import { webhookConfigFromEnv } from "../supabase/functions/_shared/webhook_config.ts";
import { SAMPLE_EVENTS, samplePayload } from "../scripts/lib/samples.ts";
import {
  dbIndependentTest,
  dbTest,
  HOLDS_DB,
  lockWebhookEvents,
  startEmptyPglite,
  startTestDb,
} from "./_db.ts";
import { startDbProxy } from "./_proxy.ts";
import {
  assertStoredLateOnce,
  eventually,
  serveOnLoopback,
  settledWithin,
  signedRequest,
  TEST_SECRET,
} from "./_http.ts";
import { eventToStore } from "./_forwarding.ts";
import { largeEmailBody } from "./_email.ts";
import {
  DeadlineExceeded,
  retryWithinBudget,
  storeEvent,
} from "../supabase/functions/_shared/ingest_store.ts";
import { textLiteral } from "../supabase/functions/_shared/sql_literal.ts";
import { CLOSED_PORT } from "./_closed_port.ts";

const db = await startTestDb();
const sql = db.sql;
const URL_BASE = "http://relay.test/chatwoot-webhook";
const URL_TOKEN = "tok_0123456789abcdefghijklmnopqrstuv";

/** What the apps makeApp made write in the background (refusal counts), written out and stopped by these. */
const appStops: Array<() => Promise<unknown>> = [];

function makeApp(env: Record<string, string> = {}, deps: Partial<WebhookDeps> = {}) {
  const log = memoryLogger();
  const config = webhookConfigFromEnv({ CHATWOOT_WEBHOOK_SECRET: TEST_SECRET, ...env });
  // The store's budget is not under test here (its tests build their own apps): on a loaded machine, storing a
  // MiB body, or 100 stores queued at once, took longer than its 2.5 s and was answered 503.
  if (config.ok) config.config.storeBudgetMs = 60_000;
  const app = createChatwootWebhookApp({
    config,
    sql,
    log,
    onStop: (stop) => appStops.push(stop),
    ...deps,
  });
  return { app, log };
}

let nextId = 100_000;
const uniqueMessage = (overrides: Record<string, unknown> = {}) =>
  JSON.stringify({ ...samplePayload("message_created", { messageId: nextId++ }), ...overrides });

async function post(app: { fetch: (r: Request) => Response | Promise<Response> }, req: Request) {
  const res = await app.fetch(req);
  return { status: res.status, body: await res.json(), headers: res.headers };
}

async function countRows(): Promise<number> {
  const [{ n }] = await sql<{ n: number }[]>`select count(*)::int as n from webhook_events`;
  return n;
}

async function countRowsWhere(rawBody: string): Promise<number> {
  const [{ n }] = await sql<
    { n: number }[]
  >`select count(*)::int as n from webhook_events where raw_body = ${rawBody}`;
  return n;
}

dbTest(
  `webhook [${db.kind}]: a signed message_created is stored with its columns, exact bytes and hash`,
  async () => {
    const { app, log } = makeApp();
    const body = JSON.stringify(
      samplePayload("message_created", { messageId: 42, conversationId: 7, inboxId: 3 }),
    );
    const delivery = crypto.randomUUID();
    const res = await post(app, signedRequest(URL_BASE, body, { deliveryId: delivery }));
    assert.equal(res.status, 200);
    assert.equal(res.body.ok, true);
    assert.equal(res.body.outcome, "stored");
    assert.equal(res.body.duplicate, false);
    assert.equal(res.body.event_key, "message:42:message_created");
    const [row] = await sql`select * from webhook_events where id = ${res.body.id}`;
    assert.equal(row.event, "message_created");
    assert.equal(Number(row.message_id), 42);
    assert.equal(Number(row.conversation_id), 7);
    assert.equal(Number(row.account_id), 1);
    assert.equal(Number(row.inbox_id), 3);
    assert.equal(row.delivery_id, delivery);
    assert.equal(row.raw_body, body);
    assert.equal(row.body_sha256, sha256Hex(body));
    assert.equal(row.verified_by, "signature");
    assert.equal(row.status, "pending");
    assert.equal(row.receive_count, 1);
    assert.deepEqual(row.payload, JSON.parse(body));
    assert.ok(log.lines.some((l) => l.msg === "[Chatwoot Webhook] Received"));
    assert.ok(log.lines.some((l) => l.msg === "[Chatwoot Webhook] Stored" && l.event_id === res.body.id));
    // README's Answers table, row 200, names every key of the answer (it lacked `event` and `status`).
    assert.equal(res.body.status, row.status);
    const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
    const row200 = readme.split("\n").find((line) => /^\| 200 +\| —/.test(line));
    assert.ok(row200, "README's Answers table has a 200 row");
    const documented = [...row200.matchAll(/"(\w+)":/g)].map((m) => m[1]).sort();
    assert.deepEqual(documented, Object.keys(res.body).sort());
  },
);

dbTest(`webhook [${db.kind}]: each event type of the contract is stored under its key`, async () => {
  const { app } = makeApp();
  for (const event of SAMPLE_EVENTS) {
    const body = JSON.stringify(
      samplePayload(event, { messageId: 777, conversationId: 888, accountId: 5, inboxId: 6 }),
    );
    const res = await post(app, signedRequest(URL_BASE, body));
    assert.equal(res.status, 200, `${event}: ${JSON.stringify(res.body)}`);
    const expectedKey = event.startsWith("message_") ? `message:777:${event}` : `${event}:${sha256Hex(body)}`;
    const [row] = await sql`select * from webhook_events where id = ${res.body.id}`;
    assert.equal(row.event_key, expectedKey);
    assert.equal(row.event, event);
    assert.equal(row.account_id === null ? null : Number(row.account_id), 5, event);
    if (!event.startsWith("contact_") && !event.startsWith("inbox_")) {
      assert.equal(Number(row.conversation_id), 888);
    }
  }
});

dbTest(`webhook [${db.kind}]: an identical body again is a counted duplicate, not a new row`, async () => {
  const { app } = makeApp();
  const body = uniqueMessage();
  const first = await post(app, signedRequest(URL_BASE, body));
  const second = await post(app, signedRequest(URL_BASE, body));
  assert.equal(first.body.outcome, "stored");
  assert.equal(second.status, 200);
  assert.equal(second.body.duplicate, true);
  assert.equal(second.body.outcome, "duplicate");
  assert.equal(second.body.id, first.body.id);
  const [row] = await sql`select receive_count, version, last_received_at > received_at as later
                          from webhook_events where id = ${first.body.id}`;
  assert.equal(row.receive_count, 2);
  assert.equal(row.version, 1);
});

dbTest(
  `webhook [${db.kind}]: 100 concurrent posts of one event over HTTP leave one row with receive_count 100`,
  async () => {
    // Deduplication is under test, not the store budget (makeApp's is generous).
    const { app } = makeApp();
    const server = serveOnLoopback(app.fetch);
    try {
      const body = uniqueMessage();
      const responses = await Promise.all(
        Array.from({ length: 100 }, async () => {
          const res = await fetch(signedRequest(`${server.url}/chatwoot-webhook`, body));
          return { status: res.status, body: await res.json() };
        }),
      );
      assert.deepEqual([...new Set(responses.map((r) => r.status))], [200]);
      assert.equal(responses.filter((r) => r.body.outcome === "stored").length, 1);
      assert.equal(responses.filter((r) => r.body.duplicate).length, 99);
      const rows = await sql`select receive_count from webhook_events where raw_body = ${body}`;
      assert.equal(rows.length, 1);
      assert.equal(rows[0].receive_count, 100);
    } finally {
      await server.stop();
    }
  },
);

dbTest(
  `webhook [${db.kind}]: a changed message_updated replaces its payload and never touches message_created`,
  async () => {
    const { app } = makeApp();
    const id = nextId++;
    const created = JSON.stringify(samplePayload("message_created", { messageId: id, content: "first" }));
    const v1 = JSON.stringify(samplePayload("message_updated", { messageId: id, content: "edited once" }));
    const v2 = JSON.stringify(samplePayload("message_updated", { messageId: id, content: "edited twice" }));
    const c = await post(app, signedRequest(URL_BASE, created));
    const u1 = await post(app, signedRequest(URL_BASE, v1));
    await sql`update webhook_events set status = 'delivered', delivered_at = now(), attempts = 1 where id = ${u1.body.id}`;
    const u2 = await post(app, signedRequest(URL_BASE, v2));
    assert.equal(u1.body.outcome, "stored");
    assert.equal(u2.body.outcome, "updated");
    assert.equal(u2.body.duplicate, false);
    assert.equal(u2.body.id, u1.body.id);
    assert.notEqual(c.body.id, u1.body.id);
    const [updated] = await sql`select * from webhook_events where id = ${u1.body.id}`;
    assert.equal(updated.payload.content, "edited twice");
    assert.equal(updated.raw_body, v2);
    assert.equal(updated.version, 2);
    assert.equal(updated.receive_count, 2);
    assert.equal(updated.status, "pending", "the newest version is due for forwarding again");
    assert.equal(updated.attempts, 0);
    assert.equal(updated.delivered_at, null);
    const [original] =
      await sql`select payload->>'content' as content, version from webhook_events where id = ${c.body.id}`;
    assert.equal(original.content, "first");
    assert.equal(original.version, 1);
  },
);

dbTest(
  `webhook [${db.kind}]: a new version arriving while the old one is being delivered keeps the lease`,
  async () => {
    const { app } = makeApp();
    const id = nextId++;
    const v1 = JSON.stringify(samplePayload("message_updated", { messageId: id, content: "v1" }));
    const v2 = JSON.stringify(samplePayload("message_updated", { messageId: id, content: "v2" }));
    const first = await post(app, signedRequest(URL_BASE, v1));
    await sql`update webhook_events set status = 'delivering', attempts = 1 where id = ${first.body.id}`;
    const second = await post(app, signedRequest(URL_BASE, v2));
    assert.equal(second.body.outcome, "updated");
    const [row] =
      await sql`select status, version, attempts, raw_body from webhook_events where id = ${first.body.id}`;
    assert.equal(row.status, "delivering");
    assert.equal(row.version, 2);
    assert.equal(row.attempts, 1);
    assert.equal(row.raw_body, v2);
  },
);

dbTest(
  `webhook [${db.kind}]: message_created again with a drifted snapshot is a duplicate, never forwarded twice`,
  async () => {
    // Chatwoot builds a payload when its job runs, so a duplicated message_created carries the conversation as
    // it is by then. The message was created once: the Agent SDK must see it once.
    const seen: number[] = [];
    const { app } = makeApp({}, { afterStore: (s) => void seen.push(s.id) });
    const id = nextId++;
    const first = samplePayload("message_created", { messageId: id });
    const later = {
      ...first,
      conversation: { ...(first.conversation as Record<string, unknown>), unread_count: 2, updated_at: 1.5 },
    };
    const a = await post(app, signedRequest(URL_BASE, JSON.stringify(first)));
    await sql`update webhook_events set status = 'delivered', delivered_at = now(), attempts = 1 where id = ${a.body.id}`;
    const b = await post(app, signedRequest(URL_BASE, JSON.stringify(later)));
    assert.equal(b.status, 200);
    assert.equal(b.body.id, a.body.id);
    assert.equal(b.body.outcome, "duplicate");
    assert.equal(b.body.duplicate, true);
    const [row] =
      await sql`select status, version, receive_count, attempts, raw_body, delivered_at is not null as kept
                            from webhook_events where id = ${a.body.id}`;
    assert.deepEqual(
      { status: row.status, version: row.version, receive_count: row.receive_count, attempts: row.attempts },
      { status: "delivered", version: 1, receive_count: 2, attempts: 1 },
    );
    assert.equal(row.raw_body, JSON.stringify(first), "the body first received stays");
    assert.equal(row.kept, true);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(seen, [a.body.id], "no delivery is started for the copy");
  },
);

dbTest(
  `webhook [${db.kind}]: an older message_updated arriving after a newer one is a duplicate, not a replacement`,
  async () => {
    const { app } = makeApp();
    const id = nextId++;
    const now = Math.floor(Date.now() / 1000);
    /** Built (conversation.updated_at) in the order of the edits, as Chatwoot builds them. */
    const builtAt: Record<string, number> = {
      "edited once": now - 21,
      "edited twice": now - 11,
      "edited thrice": now - 10.5,
      "edited four times": now - 1,
    };
    const body = (content: string) => {
      const payload = samplePayload("message_updated", { messageId: id, content });
      (payload.conversation as Record<string, unknown>).updated_at = builtAt[content];
      return JSON.stringify(payload);
    };
    const newer = await post(app, signedRequest(URL_BASE, body("edited twice"), { nowSeconds: now - 10 }));
    const older = await post(app, signedRequest(URL_BASE, body("edited once"), { nowSeconds: now - 20 }));
    assert.equal(newer.body.outcome, "stored");
    assert.equal(older.status, 200);
    assert.equal(older.body.outcome, "duplicate");
    let [row] = await sql`select payload->>'content' as content, version, receive_count,
                                 extract(epoch from sent_at)::bigint as sent
                            from webhook_events where id = ${newer.body.id}`;
    assert.deepEqual(
      {
        content: row.content,
        version: row.version,
        receive_count: row.receive_count,
        sent: Number(row.sent),
      },
      { content: "edited twice", version: 1, receive_count: 2, sent: now - 10 },
    );
    // Sent in the same second as the stored one, built later (its conversation.updated_at is later): it wins.
    const same = await post(app, signedRequest(URL_BASE, body("edited thrice"), { nowSeconds: now - 10 }));
    assert.equal(same.body.outcome, "updated");
    const latest = await post(app, signedRequest(URL_BASE, body("edited four times"), { nowSeconds: now }));
    assert.equal(latest.body.outcome, "updated");
    [row] =
      await sql`select payload->>'content' as content, version, extract(epoch from sent_at)::bigint as sent
                        from webhook_events where id = ${newer.body.id}`;
    assert.deepEqual(
      { content: row.content, version: row.version, sent: Number(row.sent) },
      { content: "edited four times", version: 3, sent: now },
    );
  },
);

dbTest(
  `webhook [${db.kind}]: of two message_updated signed in the same second, the same one stays in either order`,
  async () => {
    const { app } = makeApp();
    const now = Math.floor(Date.now() / 1000);
    /** A message_updated as Chatwoot builds it: conversation.updated_at is read when the payload is built. */
    const body = (id: number, content: string, conversationUpdatedAt: number) => {
      const payload = samplePayload("message_updated", { messageId: id, content });
      (payload.conversation as Record<string, unknown>).updated_at = conversationUpdatedAt;
      return JSON.stringify(payload);
    };
    /** Posts the bodies in order, all signed in the same second; returns the outcomes and what stayed. */
    const arrive = async (id: number, bodies: string[]) => {
      const key = `message:${id}:message_updated`;
      await sql`delete from webhook_events where event_key = ${key}`;
      const outcomes = [];
      for (const text of bodies) {
        const res = await post(app, signedRequest(URL_BASE, text, { nowSeconds: now }));
        assert.equal(res.status, 200, JSON.stringify(res.body));
        outcomes.push(res.body.outcome);
      }
      const [row] =
        await sql`select payload->>'content' as content from webhook_events where event_key = ${key}`;
      const [view] = await sql`select content from chatwoot_messages where message_id = ${id}`;
      assert.equal(view.content, row.content, "chatwoot_messages shows the stored body");
      return { outcomes, content: row.content };
    };
    // The older state (built at .25) sent a moment after the newer one (built at .75): the newer stays.
    const id = nextId++;
    const older = body(id, "edited once", now - 1 + 0.25);
    const newer = body(id, "edited twice", now - 1 + 0.75);
    assert.deepEqual(await arrive(id, [older, newer]), {
      outcomes: ["stored", "updated"],
      content: "edited twice",
    });
    assert.deepEqual(await arrive(id, [newer, older]), {
      outcomes: ["stored", "duplicate"],
      content: "edited twice",
    });
    // Built at the same moment too (a status change read with the edit): Chatwoot gives no order at all, but
    // the same body stays whichever arrives first.
    const a = body(id, "status read", now + 0.5);
    const b = body(id, "status delivered", now + 0.5);
    const ab = await arrive(id, [a, b]);
    const ba = await arrive(id, [b, a]);
    assert.equal(ab.content, ba.content);
    assert.deepEqual([...ab.outcomes, ...ba.outcomes].sort(), ["duplicate", "stored", "stored", "updated"]);
  },
);

dbTest(
  `webhook [${db.kind}]: a message_updated built earlier but signed in a later second does not replace a newer one`,
  async () => {
    const { app } = makeApp();
    const now = Math.floor(Date.now() / 1000);
    const body = (id: number, content: string, conversationUpdatedAt: number) => {
      const payload = samplePayload("message_updated", { messageId: id, content });
      (payload.conversation as Record<string, unknown>).updated_at = conversationUpdatedAt;
      return JSON.stringify(payload);
    };
    // Chatwoot builds a payload in one job and signs it in another, when it sends it: two sends can cross a
    // second boundary in the other order, and an agent-bot delivery retried after a 500 is signed anew, 3 s
    // later. The state built first (at .25) is signed 3 s after the one built later.
    for (const order of ["older last", "older first"]) {
      const id = nextId++;
      const older = { text: body(id, "before the deletion", now - 5 + 0.25), nowSeconds: now - 2 };
      const newer = { text: body(id, "This message was deleted", now - 5 + 0.75), nowSeconds: now - 5 };
      const bodies = order === "older last" ? [newer, older] : [older, newer];
      const outcomes = [];
      for (const { text, nowSeconds } of bodies) {
        outcomes.push((await post(app, signedRequest(URL_BASE, text, { nowSeconds }))).body.outcome);
      }
      const [view] = await sql`select content from chatwoot_messages where message_id = ${id}`;
      assert.deepEqual({ outcomes, content: view.content }, {
        outcomes: order === "older last" ? ["stored", "duplicate"] : ["stored", "updated"],
        content: "This message was deleted",
      }, order);
    }
  },
);

dbTest(
  `webhook [${db.kind}]: a message_updated signed again later stays against one built at the same time, in any order`,
  async () => {
    const { app } = makeApp();
    const now = Math.floor(Date.now() / 1000);
    const body = (id: number, content: string) => {
      const payload = samplePayload("message_updated", { messageId: id, content });
      // Built at the same moment (a status change read with the edit): the signed times order them.
      (payload.conversation as Record<string, unknown>).updated_at = now - 10 + 0.5;
      return JSON.stringify(payload);
    };
    // "read" is sent at -6 and, retried by Chatwoot (an agent bot after a 500), signed anew at -3; "delivered"
    // is signed at -4 on another instance. The latest signed copy is "read"'s, whichever arrives first: an
    // exact copy of the stored body must carry its later signed time, or "delivered" replaces it.
    const arrivals = {
      "retry before the other": ["read@-6", "read@-3", "delivered@-4"],
      "retry after the other": ["read@-6", "delivered@-4", "read@-3"],
      "other first": ["delivered@-4", "read@-6", "read@-3"],
    };
    const results: Record<string, string> = {};
    for (const [order, copies] of Object.entries(arrivals)) {
      const id = nextId++;
      // Made once each: a copy is the same bytes (samplePayload's created_at moves with the clock).
      const bodies: Record<string, string> = { read: body(id, "read"), delivered: body(id, "delivered") };
      for (const copy of copies) {
        const [content, ago] = copy.split("@");
        const res = await post(
          app,
          signedRequest(URL_BASE, bodies[content], { nowSeconds: now + Number(ago) }),
        );
        assert.equal(res.status, 200, JSON.stringify(res.body));
      }
      const [row] = await sql`select payload->>'content' as content, receive_count
                                from webhook_events where event_key = ${`message:${id}:message_updated`}`;
      assert.equal(row.receive_count, 3, order);
      results[order] = row.content;
    }
    assert.deepEqual(results, {
      "retry before the other": "read",
      "retry after the other": "read",
      "other first": "read",
    });
  },
);

dbTest(
  `webhook [${db.kind}]: ordering two message_updated of the same second does not read the stored body again`,
  async () => {
    const { app } = makeApp();
    const id = nextId++;
    const now = Math.floor(Date.now() / 1000);
    // Some 1 MB of hex: it hardly compresses, so the stored payload is TOASTed over hundreds of blocks.
    const hex = () =>
      Array.from(crypto.getRandomValues(new Uint8Array(50_000)), (b) => b.toString(16)).join("");
    const filler = Array.from({ length: 10 }, hex).join("");
    const body = (content: string, conversationUpdatedAt: number) => {
      const payload = samplePayload("message_updated", { messageId: id, content: `${content} ${filler}` });
      (payload.conversation as Record<string, unknown>).updated_at = conversationUpdatedAt;
      return JSON.stringify(payload);
    };
    const stored = body("edited twice", now - 1 + 0.75);
    const res = await post(app, signedRequest(URL_BASE, stored, { nowSeconds: now }));
    assert.equal(res.body.outcome, "stored");
    /** Buffers the ingest of `text` (signed at `now`) touches; EXPLAIN counts those of nested statements. */
    const ingest = async (text: string) => {
      const [{ "QUERY PLAN": [plan] }] = await sql.unsafe(`
        explain (analyze, buffers, format json)
        select outcome from public.ingest_webhook_event(${textLiteral(`message:${id}:message_updated`)},
          'message_updated', ${id}, 101, 1, 1, null, ${textLiteral(text)}::jsonb, ${textLiteral(text)},
          ${textLiteral(sha256Hex(text))}, 'signature', to_timestamp(${now}), gen_random_uuid())`);
      return plan.Plan["Shared Hit Blocks"] + plan.Plan["Shared Read Blocks"] as number;
    };
    const duplicate = await ingest(stored);
    // Built earlier, signed in the same second: a duplicate, decided without reading the stored payload.
    const older = await ingest(body("edited once", now - 1 + 0.25));
    assert.ok(
      older - duplicate < 100,
      `an older copy touched ${older} buffers, an identical one ${duplicate}`,
    );
    const [row] = await sql`select payload->>'content' like 'edited twice %' as kept, receive_count
                              from webhook_events where event_key = ${res.body.event_key}`;
    assert.deepEqual({ ...row }, { kept: true, receive_count: 3 });
  },
);

dbTest(
  `webhook [${db.kind}]: an unsigned (URL token) message_updated replaces as it arrives; the signed time stays`,
  async () => {
    const { app } = makeApp({ CHATWOOT_WEBHOOK_URL_TOKEN: URL_TOKEN });
    const id = nextId++;
    const now = Math.floor(Date.now() / 1000);
    /** Built in the order of the story: "signed earlier" first, then "signed", then the unsigned ones. */
    const builtAt: Record<string, number> = {
      "signed earlier": now - 21,
      "signed": now - 11,
      "unsigned one": now - 2,
      "unsigned two": now - 1,
    };
    const body = (content: string) => {
      const payload = samplePayload("message_updated", { messageId: id, content });
      (payload.conversation as Record<string, unknown>).updated_at = builtAt[content];
      return JSON.stringify(payload);
    };
    const unsigned = (content: string) =>
      new Request(`${URL_BASE}?token=${URL_TOKEN}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: body(content),
      });
    const signed = await post(app, signedRequest(URL_BASE, body("signed"), { nowSeconds: now - 10 }));
    const first = await post(app, unsigned("unsigned one"));
    const second = await post(app, unsigned("unsigned two"));
    // Older than the last signed copy: still a duplicate after the unsigned ones.
    const older = await post(app, signedRequest(URL_BASE, body("signed earlier"), { nowSeconds: now - 20 }));
    assert.deepEqual([signed.body.outcome, first.body.outcome, second.body.outcome, older.body.outcome], [
      "stored",
      "updated",
      "updated",
      "duplicate",
    ]);
    const [row] =
      await sql`select payload->>'content' as content, extract(epoch from sent_at)::bigint as sent,
                                   verified_by
                            from webhook_events where id = ${signed.body.id}`;
    assert.deepEqual({ ...row, sent: Number(row.sent) }, {
      content: "unsigned two",
      sent: now - 10,
      verified_by: "url_token",
    });
  },
);

dbTest(`webhook [${db.kind}]: rotation — every listed secret verifies, a removed one does not`, async () => {
  const { app } = makeApp({ CHATWOOT_WEBHOOK_SECRET: "new-secret-value, old-secret-value" });
  for (const secret of ["new-secret-value", "old-secret-value"]) {
    const res = await post(app, signedRequest(URL_BASE, uniqueMessage(), { secret }));
    assert.equal(res.status, 200, secret);
  }
  const after = makeApp({ CHATWOOT_WEBHOOK_SECRET: "new-secret-value" });
  const res = await post(
    after.app,
    signedRequest(URL_BASE, uniqueMessage(), { secret: "old-secret-value" }),
  );
  assert.equal(res.status, 401);
  assert.equal(res.body.error, "signature_invalid");
});

dbTest(
  `webhook [${db.kind}]: 401 for missing, invalid, stale, future and malformed signatures; nothing stored`,
  async () => {
    const now = 1_800_000_000;
    const { app, log } = makeApp({ CHATWOOT_WEBHOOK_TOLERANCE_SECONDS: "300" }, { nowSeconds: () => now });
    const before = await countRows();
    const body = uniqueMessage();
    const cases: Array<[string, Request]> = [
      [
        "signature_missing",
        new Request(URL_BASE, { method: "POST", headers: { "content-type": "application/json" }, body }),
      ],
      ["signature_invalid", signedRequest(URL_BASE, body, { secret: "wrong-secret", nowSeconds: now })],
      ["timestamp_stale", signedRequest(URL_BASE, body, { nowSeconds: now - 301 })],
      ["timestamp_future", signedRequest(URL_BASE, body, { nowSeconds: now + 301 })],
      [
        "timestamp_missing",
        signedRequest(URL_BASE, body, { nowSeconds: now, headers: { "X-Chatwoot-Timestamp": "" } }),
      ],
      [
        "timestamp_invalid",
        // Signed as sent: an unsigned one is refused by its signature first.
        signedRequest(URL_BASE, body, {
          nowSeconds: now,
          headers: {
            "X-Chatwoot-Timestamp": "yesterday",
            "X-Chatwoot-Signature": signChatwoot(TEST_SECRET, "yesterday", body),
          },
        }),
      ],
    ];
    // A body changed after signing.
    const signed = chatwootSignatureHeaders(TEST_SECRET, body, now);
    cases.push([
      "signature_invalid",
      new Request(URL_BASE, {
        method: "POST",
        headers: { "content-type": "application/json", ...signed },
        body: body.replace("order", "ORDER"),
      }),
    ]);
    for (const [code, req] of cases) {
      const res = await post(app, req);
      assert.equal(res.status, 401, code);
      assert.equal(res.body.error, code);
      assert.equal(res.body.ok, false);
    }
    const edge = await post(app, signedRequest(URL_BASE, body, { nowSeconds: now - 300 }));
    assert.equal(edge.status, 200, "the window's edge is accepted");
    assert.equal(await countRows(), before + 1);
    const logged = JSON.stringify(log.lines);
    assert.ok(!logged.includes(TEST_SECRET) && !logged.includes(signed["X-Chatwoot-Signature"].slice(7)));
  },
);

dbTest(
  `webhook [${db.kind}]: a tolerance over a day is refused: a body signed a year ago is not taken again`,
  async () => {
    // Set to a year, a signed body captured once (a log, a proxy) was stored when posted again a year later.
    const now = 1_800_000_000;
    const { app, log } = makeApp({ CHATWOOT_WEBHOOK_TOLERANCE_SECONDS: "31536000" }, {
      nowSeconds: () => now,
    });
    const body = uniqueMessage();
    const res = await post(app, signedRequest(URL_BASE, body, { nowSeconds: now - 365 * 86_400 + 60 }));
    assert.equal(res.status, 401, JSON.stringify(res.body));
    assert.equal(res.body.error, "timestamp_stale");
    assert.equal(await countRowsWhere(body), 0);
    assert.ok(
      log.lines.some((l) =>
        l.problem ===
          "CHATWOOT_WEBHOOK_TOLERANCE_SECONDS must be an integer from 1 to 86400; using the default 300"
      ),
      "said, with the default used instead",
    );
  },
);

dbTest(
  `webhook [${db.kind}]: the signature is checked before the timestamp; a stale or future one logs its skew`,
  async () => {
    const now = 1_800_000_000;
    const { app, log } = makeApp({ CHATWOOT_WEBHOOK_TOLERANCE_SECONDS: "300" }, { nowSeconds: () => now });
    const before = await countRows();
    const body = uniqueMessage();
    const forged = (headers: Record<string, string>) =>
      signedRequest(URL_BASE, body, { secret: "wrong-secret", nowSeconds: now, headers });
    // Forged requests say nothing about the clock, whatever their timestamp.
    for (const timestamp of [String(now - 3600), String(now + 3600), "yesterday"]) {
      const res = await post(app, forged({ "X-Chatwoot-Timestamp": timestamp }));
      assert.equal(res.status, 401, timestamp);
      assert.equal(res.body.error, "signature_invalid", timestamp);
    }
    // Signed, but outside the window: refused by time, and the log says by how much (positive: future).
    for (const [skew, code] of [[-301, "timestamp_stale"], [301, "timestamp_future"]] as const) {
      const res = await post(app, signedRequest(URL_BASE, body, { nowSeconds: now + skew }));
      assert.equal(res.body.error, code);
      const line = log.lines.findLast((l) => l.msg === "[Chatwoot Webhook] Rejected");
      assert.equal(line?.error, code);
      assert.equal(line?.skew_seconds, skew);
    }
    assert.equal(await countRows(), before);
  },
);

dbTest(
  `webhook [${db.kind}]: the URL token works for senders that cannot sign, in constant time, and only it`,
  async () => {
    const { app } = makeApp({ CHATWOOT_WEBHOOK_SECRET: "", CHATWOOT_WEBHOOK_URL_TOKEN: URL_TOKEN });
    const body = uniqueMessage();
    const plain = (url: string) =>
      new Request(url, { method: "POST", headers: { "content-type": "application/json" }, body });
    const ok = await post(app, plain(`${URL_BASE}?token=${URL_TOKEN}`));
    assert.equal(ok.status, 200);
    const [row] = await sql`select verified_by from webhook_events where id = ${ok.body.id}`;
    assert.equal(row.verified_by, "url_token");
    for (const url of [`${URL_BASE}?token=${URL_TOKEN}x`, `${URL_BASE}?token=`, URL_BASE]) {
      const res = await post(app, plain(url));
      assert.equal(res.status, 401, url);
      assert.equal(res.body.error, "token_invalid");
    }
    // With both configured, a signature that fails is final: a valid token does not rescue it.
    const both = makeApp({ CHATWOOT_WEBHOOK_URL_TOKEN: URL_TOKEN });
    const badSig = signedRequest(`${URL_BASE}?token=${URL_TOKEN}`, uniqueMessage(), { secret: "nope" });
    assert.equal((await post(both.app, badSig)).body.error, "signature_invalid");
    const noSig = await post(both.app, plain(`${URL_BASE}?token=${URL_TOKEN}`));
    assert.equal(noSig.status, 200);
  },
);

dbTest(
  `webhook [${db.kind}]: a URL token rotation (old,new) accepts either value, a third is 401 and not stored`,
  async () => {
    // Written as a rotation list, the whole "old,new" was the one token: every real request was a 401, lost.
    const OLD = "tok_old_0123456789abcdefghijklmn";
    const NEW = "tok_new_0123456789abcdefghijklmn";
    const { app } = makeApp({ CHATWOOT_WEBHOOK_SECRET: "", CHATWOOT_WEBHOOK_URL_TOKEN: ` ${OLD} , ${NEW} ` });
    const plain = (token: string, body: string) =>
      new Request(`${URL_BASE}?token=${encodeURIComponent(token)}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
      });
    for (const token of [OLD, NEW]) {
      const res = await post(app, plain(token, uniqueMessage()));
      assert.equal(res.status, 200, token);
      const [row] = await sql`select verified_by from webhook_events where id = ${res.body.id}`;
      assert.equal(row.verified_by, "url_token");
    }
    for (const token of [URL_TOKEN, `${OLD},${NEW}`, OLD.slice(0, -1)]) {
      const body = uniqueMessage();
      const res = await post(app, plain(token, body));
      assert.deepEqual([res.status, res.body.error], [401, "token_invalid"], token);
      assert.equal(await countRowsWhere(body), 0);
    }
    // Every value must be long enough to be secret: one short value refuses the setting, naming it.
    const short = webhookConfigFromEnv({ CHATWOOT_WEBHOOK_URL_TOKEN: `${OLD},short-one` });
    assert.ok(!short.ok && /CHATWOOT_WEBHOOK_URL_TOKEN must be at least 24 characters/.test(short.message));
    assert.ok(!short.message.includes("short-one") && !short.message.includes(OLD));
    const refused = createChatwootWebhookApp({ config: short, sql, log: memoryLogger() });
    const body = uniqueMessage();
    const res = await post(refused, plain(OLD, body));
    assert.deepEqual([res.status, res.body.error], [503, "not_configured"]);
    assert.equal(await countRowsWhere(body), 0);
  },
);

dbTest(
  `webhook [${db.kind}]: with neither secret nor token configured every request gets 503 not_configured`,
  async () => {
    const { app } = makeApp({ CHATWOOT_WEBHOOK_SECRET: "" });
    const before = await countRows();
    const res = await post(app, signedRequest(URL_BASE, uniqueMessage()));
    assert.equal(res.status, 503);
    assert.equal(res.body.error, "not_configured");
    assert.match(res.body.message, /CHATWOOT_WEBHOOK_SECRET/);
    assert.equal(await countRows(), before);
    const noDb = createChatwootWebhookApp({
      config: webhookConfigFromEnv({ CHATWOOT_WEBHOOK_SECRET: TEST_SECRET }),
      sql: null,
      log: memoryLogger(),
    });
    const res2 = await post(noDb, signedRequest(URL_BASE, uniqueMessage()));
    assert.equal(res2.status, 503);
    assert.equal(res2.body.error, "not_configured");
    const shortToken = webhookConfigFromEnv({ CHATWOOT_WEBHOOK_URL_TOKEN: "short" });
    assert.equal(shortToken.ok, false);
    // A knob refused beside a missing secret is said too (not hidden until the secret is set).
    const badNumber = webhookConfigFromEnv({ CHATWOOT_WEBHOOK_MAX_BODY_BYTES: "lots" });
    assert.ok(!badNumber.ok && /CHATWOOT_WEBHOOK_SECRET/.test(badNumber.message));
    assert.deepEqual(badNumber.warnings, [
      "CHATWOOT_WEBHOOK_MAX_BODY_BYTES must be an integer from 1 to 67108864; using the default 6291456",
    ]);
  },
);

dbTest(
  `webhook [${db.kind}]: 400 for bad JSON, no event, and schema mismatch; nothing stored; issues name paths`,
  async () => {
    const { app } = makeApp();
    const before = await countRows();
    const bodies: Array<[string, string]> = [
      ["invalid_json", "{not json"],
      ["invalid_json", '"a string"'],
      ["missing_event", JSON.stringify({ id: 1, content: "x" })],
      ["invalid_payload", JSON.stringify({ ...samplePayload("message_created"), id: "not-a-number" })],
      ["invalid_payload", JSON.stringify({ ...samplePayload("message_created"), message_type: 1 })],
    ];
    for (const [code, body] of bodies) {
      const res = await post(app, signedRequest(URL_BASE, body));
      assert.equal(res.status, 400, body);
      assert.equal(res.body.error, code);
    }
    const mismatch = await post(
      app,
      signedRequest(URL_BASE, JSON.stringify({ ...samplePayload("message_created"), message_type: 1 })),
    );
    assert.deepEqual(mismatch.body.issues.map((i: { path: string }) => i.path), ["message_type"]);
    const badUtf8 = new Uint8Array([0x7b, 0x22, 0x65, 0x22, 0x3a, 0xff, 0x7d]);
    const headers = chatwootSignatureHeaders(TEST_SECRET, badUtf8);
    const utf8 = await post(
      app,
      new Request(URL_BASE, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: badUtf8,
      }),
    );
    assert.equal(utf8.status, 400);
    assert.equal(await countRows(), before);
  },
);

dbTest(
  `webhook [${db.kind}]: Chatwoot's longest message (150 000 characters) fits the default limit`,
  async () => {
    const { app } = makeApp();
    // Three bytes a character in UTF-8, and in the body three times: content, and the conversation's last
    // message with its processed_message_content, as Chatwoot sends them.
    const text = "你好，我的订单还没有到。".repeat(12_500);
    assert.equal(text.length, 150_000);
    const id = nextId++;
    const payload = samplePayload("message_created", { messageId: id, content: text }) as {
      conversation: { messages: Array<Record<string, unknown>> };
    };
    payload.conversation.messages[0].processed_message_content = text;
    const body = JSON.stringify(payload);
    assert.ok(new TextEncoder().encode(body).length > 1_350_000);
    const res = await post(app, signedRequest(URL_BASE, body));
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const [row] =
      await sql`select length(payload->>'content') as n from webhook_events where message_id = ${id}`;
    assert.equal(row.n, 150_000);
  },
);

dbTest(
  `webhook [${db.kind}]: a tuning knob set to 30s, -1 or 0x10 falls back to its default, said once; no 503`,
  async () => {
    // Chatwoot never re-sends: a typo in a knob with a safe default answered every webhook 503 and lost it.
    const knobs: [string, string, number][] = [
      ["CHATWOOT_WEBHOOK_TOLERANCE_SECONDS", "from 1 to 86400", 300],
      ["CHATWOOT_WEBHOOK_MAX_BODY_BYTES", "from 1 to 67108864", 6 * 1024 * 1024],
      ["CHATWOOT_WEBHOOK_LATE_STORE_SECONDS", ">= 0", 120],
    ];
    for (const [name, range, fallback] of knobs) {
      for (const value of ["30s", "-1", "0x10"]) {
        const { app, log } = makeApp({ [name]: value });
        const config = webhookConfigFromEnv({ CHATWOOT_WEBHOOK_SECRET: TEST_SECRET, [name]: value });
        assert.ok(config.ok, `${name}=${value}`);
        assert.equal(config.config.toleranceSeconds, 300);
        assert.equal(config.config.maxBodyBytes, 6 * 1024 * 1024);
        assert.equal(config.config.lateStoreMs, 120_000);
        // Over 16 bytes (MAX_BODY_BYTES=0x10 read as hex) and signed 100 s ago (a tolerance of 30 or 16 s).
        const body = uniqueMessage();
        const res = await post(
          app,
          signedRequest(URL_BASE, body, { nowSeconds: Math.floor(Date.now() / 1000) - 100 }),
        );
        assert.equal(res.status, 200, `${name}=${value}: ${JSON.stringify(res.body)}`);
        assert.equal(await countRowsWhere(body), 1);
        const warned = log.lines.filter((l) => l.level === "warn" && String(l.problem).includes(name));
        assert.deepEqual(
          warned.map((l) => l.problem),
          [`${name} must be an integer ${range}; using the default ${fallback}`],
          `${name}=${value}: said once, at start, with the setting and the default, never the value`,
        );
      }
    }
  },
);

dbTest(
  `webhook [${db.kind}]: a 5 MiB email message_created fits the default limit, stored byte for byte`,
  async () => {
    // Chatwoot cuts an email's content at 150 000 characters but sends its HTML and text uncut, twice, with
    // every <, > and & written as \u003c: a few hundred KB of newsletter HTML makes a body over 4 MiB, which
    // the old default refused (413), and Chatwoot never sends it again. Over real HTTP, as it arrives.
    const { app } = makeApp();
    const server = serveOnLoopback(app.fetch);
    try {
      const id = nextId++;
      const body = largeEmailBody(5 * 1024 * 1024, id);
      assert.ok(new TextEncoder().encode(body).length > 5_200_000);
      const res = await fetch(`${server.url}/chatwoot-webhook`, signedRequest(URL_BASE, body));
      const answer = await res.json();
      assert.equal(res.status, 200, JSON.stringify(answer));
      assert.equal(answer.event_key, `message:${id}:message_created`);
      const [row] = await sql<{ raw_body: string; body_sha256: string; html: string }[]>`
        select raw_body, body_sha256, payload->'content_attributes'->'email'->'html_content'->>'full' as html
          from webhook_events where id = ${answer.id}`;
      assert.ok(row.raw_body === body, "raw_body is the body received, byte for byte");
      assert.equal(row.body_sha256, sha256Hex(body));
      assert.equal(row.html, JSON.parse(body).content_attributes.email.html_content.full);
    } finally {
      await server.stop();
    }
  },
);

dbTest(`webhook [${db.kind}]: 405, 415, 413 (declared and streamed) and 404`, async () => {
  const { app } = makeApp({ CHATWOOT_WEBHOOK_MAX_BODY_BYTES: "2048" });
  const get = await post(app, new Request(URL_BASE));
  assert.equal(get.status, 405);
  assert.equal(get.body.error, "method_not_allowed");
  assert.equal(get.headers.get("allow"), "POST");
  const body = uniqueMessage();
  const text = await post(
    app,
    signedRequest(URL_BASE, body, { headers: { "Content-Type": "text/plain" } }),
  );
  assert.equal(text.status, 415);
  assert.equal(text.body.error, "unsupported_media_type");
  const charset = await post(
    app,
    signedRequest(URL_BASE, body, { headers: { "Content-Type": "application/json; charset=utf-8" } }),
  );
  assert.equal(charset.status, 200);
  const big = JSON.stringify(samplePayload("message_created", { messageId: nextId++, padToBytes: 4096 }));
  const declared = await post(app, signedRequest(URL_BASE, big));
  assert.equal(declared.status, 413);
  assert.equal(declared.body.error, "payload_too_large");
  // Chunked upload without Content-Length: the limit still holds while streaming.
  const signed = chatwootSignatureHeaders(TEST_SECRET, big);
  const stream = new ReadableStream({
    start(controller) {
      const bytes = new TextEncoder().encode(big);
      for (let i = 0; i < bytes.length; i += 512) controller.enqueue(bytes.slice(i, i + 512));
      controller.close();
    },
  });
  const streamed = await post(
    app,
    new Request(URL_BASE, {
      method: "POST",
      headers: { "content-type": "application/json", ...signed },
      body: stream,
    }),
  );
  assert.equal(streamed.status, 413);
  const missing = await post(app, new Request("http://relay.test/other", { method: "POST" }));
  assert.equal(missing.status, 404);
});

dbTest(`webhook [${db.kind}]: refusals are counted by reason, without bodies`, async () => {
  const counts = async () => {
    const rows = await sql<{ reason: string; count: number }[]>`
      select reason, sum(count)::int as count from webhook_rejections group by reason`;
    return Object.fromEntries(rows.map((r) => [r.reason, r.count])) as Record<string, number>;
  };
  // Earlier tests' refusals are recorded in the background: their apps stopped (counts written) first, rather
  // than counts quiet for a moment, which a slow write outlasts.
  await Promise.all(appStops.splice(0).map((stop) => stop()));
  const baseline = await counts();
  const { app } = makeApp();
  const delta = (now: Record<string, number>, reason: string) => (now[reason] ?? 0) - (baseline[reason] ?? 0);
  // One refusal first, so the minute's row exists and the next write adds to it.
  await post(app, signedRequest(URL_BASE, uniqueMessage(), { secret: "wrong" }));
  await eventually(async () => delta(await counts(), "signature_invalid") === 1);
  // Concurrent refusals are gathered and written together (rejection_counter.ts): each one still counts.
  await Promise.all(
    Array.from(
      { length: 50 },
      () => post(app, signedRequest(URL_BASE, uniqueMessage(), { secret: "wrong" })),
    ),
  );
  await post(app, signedRequest(URL_BASE, "{bad json"));
  await eventually(
    async () => {
      const now = await counts();
      return delta(now, "signature_invalid") === 51 && delta(now, "invalid_json") === 1;
    },
    5000,
    `rejection counts (baseline ${JSON.stringify(baseline)}, now ${JSON.stringify(await counts())})`,
  );
  const columns =
    await sql`select column_name from information_schema.columns where table_name = 'webhook_rejections'`;
  assert.deepEqual(columns.map((c) => c.column_name).sort(), [
    "count",
    "http_status",
    "last_rejected_at",
    "minute",
    "reason",
  ]);
  const [status] =
    await sql`select distinct http_status from webhook_rejections where reason = 'signature_invalid'`;
  assert.equal(status.http_status, 401);
});

dbTest(
  `webhook [${db.kind}]: a body with \\u0000 is kept byte-exact in raw_body and stored queryable, every digit kept`,
  async () => {
    const { app } = makeApp();
    // Numbers a double cannot hold: the jsonb copy made without the U+0000 must still keep them exactly.
    const body = uniqueMessage({ content: "before\u0000after" })
      .replace(/}$/, ',"order_ref":123456789012345678901234567890,"huge":1e400}');
    assert.ok(body.includes("\\u0000"));
    const res = await post(app, signedRequest(URL_BASE, body));
    assert.equal(res.status, 200);
    const [row] = await sql`
      select raw_body, payload->>'content' as content, payload->>'order_ref' as order_ref,
             payload->>'huge' as huge, payload = replace(raw_body, '\\u0000', '')::jsonb as same
        from webhook_events where id = ${res.body.id}`;
    assert.equal(row.raw_body, body);
    assert.equal(row.content, "beforeafter");
    assert.deepEqual({ order_ref: row.order_ref, huge: row.huge }, {
      order_ref: "123456789012345678901234567890",
      huge: `1${"0".repeat(400)}`,
    });
    assert.equal(row.same, true, "payload is the body without its U+0000");
  },
);

dbTest(`webhook [${db.kind}]: numbers beyond double precision keep every digit in payload`, async () => {
  const { app } = makeApp();
  const body = uniqueMessage().replace(
    '"content_type":"text"',
    '"content_type":"text","big":12345678901234567890.5',
  );
  const res = await post(app, signedRequest(URL_BASE, body));
  assert.equal(res.status, 200);
  const [row] =
    await sql`select payload->>'big' as big, raw_body from webhook_events where id = ${res.body.id}`;
  assert.equal(row.big, "12345678901234567890.5");
  assert.equal(row.raw_body, body);
});

// Inbox::EventDataPresenter#push_data (chatwoot/chatwoot app/presenters/inbox/event_data_presenter.rb), as
// WebhookListener#inbox_created and #inbox_updated send it (app/listeners/webhook_listener.rb): the inbox's
// settings and its channel record, with no top-level id or name; `account` only since webhook_data was added
// (push_data.merge(account: account.webhook_data)). Each was refused 400 for its missing id, and lost.
function inboxEventAsChatwootSendsIt(
  event: "inbox_created" | "inbox_updated",
  withAccount: boolean,
): Record<string, unknown> & { channel: Record<string, unknown> } {
  const at = new Date().toISOString();
  return {
    allow_messages_after_resolved: true,
    lock_to_single_conversation: false,
    auto_assignment_config: {},
    enable_auto_assignment: true,
    enable_email_collect: true,
    greeting_enabled: false,
    greeting_message: null,
    csat_survey_enabled: false,
    business_name: null,
    sender_name_type: "friendly",
    timezone: "UTC",
    out_of_office_message: null,
    working_hours_enabled: false,
    working_hours: [{ day_of_week: 0, closed_all_day: true, open_hour: null, open_minutes: null }],
    created_at: at,
    updated_at: at,
    // The channel's own record: its id is the channel's, not the inbox's.
    channel: { id: nextId++, account_id: 61, website_url: "https://hotrodan.com", created_at: at },
    ...(withAccount ? { account: { id: 61, name: "HotDash" } } : {}),
    event,
    ...(event === "inbox_updated"
      ? { changed_attributes: [{ name: { previous_value: "Support", current_value: "Support EU" } }] }
      : {}),
  };
}

dbTest(
  `webhook [${db.kind}]: inbox_created and inbox_updated as Chatwoot sends them (no top-level id) are stored`,
  async () => {
    const { app } = makeApp();
    for (const event of ["inbox_created", "inbox_updated"] as const) {
      for (const withAccount of [false, true]) {
        const body = JSON.stringify(inboxEventAsChatwootSendsIt(event, withAccount));
        const res = await post(app, signedRequest(URL_BASE, body));
        assert.equal(res.status, 200, `${event} (account: ${withAccount}): ${JSON.stringify(res.body)}`);
        const [row] = await sql`select event_key, account_id, inbox_id, raw_body
                                  from webhook_events where id = ${res.body.id}`;
        assert.equal(row.event_key, `${event}:${sha256Hex(body)}`);
        assert.equal(row.raw_body, body);
        // The account is the payload's, or (before Chatwoot sent one) its channel's; no inbox id is sent.
        assert.deepEqual([Number(row.account_id), row.inbox_id], [61, null], event);
      }
    }
  },
);

dbTest(
  `webhook [${db.kind}]: an inbox event's channel credentials are neither stored nor logged, nor forwarded`,
  async () => {
    // Inbox::EventDataPresenter#push_data sends `channel: channel`, the channel's whole record: an email
    // channel's IMAP/SMTP passwords and OAuth provider_config, an API channel's hmac_token and secret, a
    // Telegram bot_token (chatwoot/chatwoot app/presenters/inbox/event_data_presenter.rb,
    // app/models/channel/email.rb). Stored as sent, data_analyst (who reads webhook_events) read them.
    const { app, log } = makeApp();
    const secrets = ["imap-pass-8c1f0e", "smtp-pass-93ad27", "ya29.oauth-access-4b7e", "hmac-token-5f2c9a"];
    const payload = inboxEventAsChatwootSendsIt("inbox_updated", true);
    payload.channel = {
      ...payload.channel,
      email: "support@hotrodan.com",
      imap_login: "support@hotrodan.com",
      imap_password: secrets[0],
      smtp_password: secrets[1],
      provider_config: { access_token: secrets[2], refresh_token: "r", expires_on: "2026-12-01" },
      hmac_token: secrets[3],
      imap_port: 993,
    };
    const body = JSON.stringify(payload);
    const res = await post(app, signedRequest(URL_BASE, body));
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const [row] = await sql`select event_key, account_id, raw_body, payload from webhook_events
                             where id = ${res.body.id}`;
    const stored = JSON.stringify(row) + JSON.stringify(log.lines) + JSON.stringify(res.body);
    for (const secret of secrets) assert.ok(!stored.includes(secret), `${secret} kept`);
    assert.ok(!stored.includes('refresh_token":"r'));
    // What identifies the channel stays; what was left out is named.
    const channel = row.payload.channel;
    assert.deepEqual(
      [channel.id, channel.account_id, channel.email, channel.created_at],
      [payload.channel.id, 61, "support@hotrodan.com", payload.channel.created_at],
    );
    assert.deepEqual(
      row.payload.relay_redacted,
      [
        "channel.imap_login",
        "channel.imap_password",
        "channel.smtp_password",
        "channel.provider_config",
        "channel.hmac_token",
        "channel.imap_port",
      ],
    );
    assert.deepEqual(JSON.parse(row.raw_body), row.payload, "raw_body is the stored (cut) JSON");
    assert.equal(row.event_key, `inbox_updated:${sha256Hex(row.raw_body)}`);
    assert.equal(Number(row.account_id), 61);
    // The same webhook again is a duplicate of it.
    const again = await post(app, signedRequest(URL_BASE, body));
    assert.deepEqual([again.status, again.body.id, again.body.duplicate], [200, res.body.id, true]);
  },
);

dbTest(
  `webhook [${db.kind}]: a typing event whose is_private is the API client's string ("true") is stored`,
  async () => {
    // Conversations::TypingStatusManager passes params[:is_private] through as the client sent it, and
    // WebhookListener#handle_typing_status sends `event.data[:is_private] || false` (chatwoot/chatwoot
    // app/services/conversations/typing_status_manager.rb, app/listeners/webhook_listener.rb): a form or
    // query-string `is_private=true` arrives as the string "true". It was refused 400 and lost.
    const { app } = makeApp();
    for (const isPrivate of ["true", "false"]) {
      const body = JSON.stringify({
        ...samplePayload("conversation_typing_on", { conversationId: nextId++ }),
        is_private: isPrivate,
      });
      const res = await post(app, signedRequest(URL_BASE, body));
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(await countRowsWhere(body), 1);
    }
  },
);

dbTest(
  `webhook [${db.kind}]: a message whose attachments list holds a null (an attachment with no file_type) is stored`,
  async () => {
    // Attachment#push_event_data returns nil when file_type is nil (attachments.file_type is a nullable
    // column), and Message#webhook_data sends attachments.map(&:push_event_data) as it is (chatwoot/chatwoot
    // app/models/attachment.rb, app/models/message.rb, db/schema.rb). It was refused 400 for attachments.0,
    // and the message lost.
    const { app } = makeApp();
    const body = uniqueMessage({
      attachments: [null, {
        id: 9,
        message_id: 1,
        file_type: "image",
        account_id: 1,
        extension: null,
        data_url: "https://x.test/a.png",
        thumb_url: "",
        file_size: 10,
        width: null,
        height: null,
      }],
    });
    const res = await post(app, signedRequest(URL_BASE, body));
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(await countRowsWhere(body), 1);
  },
);

dbTest(
  `webhook [${db.kind}]: logs carry ids and codes, never the secret, the signature or the content`,
  async () => {
    const { app, log } = makeApp();
    const content = `private words ${crypto.randomUUID()}`;
    const req = signedRequest(URL_BASE, uniqueMessage({ content }));
    const signature = req.headers.get("X-Chatwoot-Signature")!;
    assert.equal((await post(app, req)).status, 200);
    const logged = JSON.stringify(log.lines);
    for (const secretish of [TEST_SECRET, signature.slice(7), content]) {
      assert.ok(
        !logged.includes(secretish),
      );
    }
  },
);

dbTest(
  `webhook [${db.kind}]: database down — a short in-request retry, then 503 database_unavailable`,
  async () => {
    // Chatwoot abandons a request at 5 s: the store gives up within its budget, well inside that.
    const config = webhookConfigFromEnv({ CHATWOOT_WEBHOOK_SECRET: TEST_SECRET });
    assert.ok(config.ok && config.config.storeBudgetMs < 5_000);
    // A port nothing listens on: every connection attempt is refused at once.
    const deadSql = connect(`postgresql://postgres@127.0.0.1:${CLOSED_PORT}/postgres`, { max: 1 });
    const log = memoryLogger();
    const app = createChatwootWebhookApp({ config, sql: deadSql, log });
    // The answer is the give-up; the bound, only there to fail rather than hang should it be gone.
    const res = await settledWithin(
      post(app, signedRequest(URL_BASE, uniqueMessage())),
      60_000,
      "the answer",
    );
    await deadSql.end({ timeout: 1 });
    assert.equal(res.status, 503);
    assert.equal(res.body.error, "database_unavailable");
    assert.equal(res.body.reason, "unreachable");
    const failed = log.lines.find((l) => l.msg === "[Chatwoot Webhook] Store failed");
    assert.equal(failed?.code, "ECONNREFUSED", JSON.stringify(log.lines));

    // The answer came after more than one try: the same store, counted, on the same refusing database.
    const retrySql = connect(`postgresql://postgres@127.0.0.1:${CLOSED_PORT}/postgres`, { max: 1 });
    let tries = 0;
    try {
      const storing = retryWithinBudget(() => {
        tries++;
        return storeEvent(retrySql, eventToStore(uniqueMessage()));
      }, { budgetMs: config.config.storeBudgetMs });
      await assert.rejects(settledWithin(storing, 60_000, "the store"), DeadlineExceeded);
      assert.ok(tries > 1, `${tries} try`);
    } finally {
      await retrySql.end({ timeout: 1 });
    }
  },
);

dbTest(
  `webhook [${db.kind}]: a database that comes back within the budget still gets the event stored`,
  async () => {
    // The database refuses connections for the first 400 ms, then comes back.
    const proxy = startDbProxy(db.url, { cut: true });
    const reopening = setTimeout(() => proxy.restore(), 400);
    const flakySql = connect(proxy.url, { max: 1 });
    const app = createChatwootWebhookApp({
      config: webhookConfigFromEnv({ CHATWOOT_WEBHOOK_SECRET: TEST_SECRET }),
      sql: flakySql,
      log: memoryLogger(),
    });
    try {
      const body = uniqueMessage();
      const res = await post(app, signedRequest(URL_BASE, body));
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const rows = await sql`select id from webhook_events where raw_body = ${body}`;
      assert.equal(rows.length, 1);
    } finally {
      clearTimeout(reopening);
      await flakySql.end({ timeout: 1 });
      await proxy.close();
    }
  },
);

/** Ingest statements of this database's sessions waiting on a lock (PostgreSQL server only). */
async function waitingIngests(): Promise<number> {
  const [{ n }] = await sql<{ n: number }[]>`
    select count(*)::int as n from pg_stat_activity
     where datname = current_database() and wait_event_type = 'Lock'
       and query like '%ingest_webhook_event%'`;
  return n;
}

/**
 * Waits until the request's statement waits on the lock, then says how many do. The 503 comes when the 300 ms
 * budget ends, whether or not the statement has reached the server by then: on a busy machine the pool's first
 * connection (through the proxy) can take longer than that to open.
 */
async function requestStatementWaits(): Promise<number> {
  await eventually(async () => (await waitingIngests()) > 0, 30_000, "the request's statement on the lock");
  return await waitingIngests();
}

/** Waits until `app` stores a new event again (postgres.js may still be backing off after an outage). */
async function storesAgain(app: { fetch: (r: Request) => Response | Promise<Response> }) {
  await eventually(
    async () => (await post(app, signedRequest(URL_BASE, uniqueMessage()))).status === 200,
    30_000,
    "a store after the database came back",
  );
}

/** The app on a database behind `proxy`, with a short store budget so the 503 comes quickly. */
function appBehindProxy(
  proxyUrl: string,
  env: Record<string, string>,
  deps: Partial<WebhookDeps> = {},
  lateStoreMaxBytes?: number,
) {
  const config = webhookConfigFromEnv({ CHATWOOT_WEBHOOK_SECRET: TEST_SECRET, ...env });
  assert.ok(config.ok);
  config.config.storeBudgetMs = 300;
  if (lateStoreMaxBytes !== undefined) config.config.lateStoreMaxBytes = lateStoreMaxBytes;
  const proxiedSql = connect(proxyUrl, { max: 1 });
  const log = memoryLogger();
  const app = createChatwootWebhookApp({ config, sql: proxiedSql, log, ...deps });
  return { app, log, proxiedSql };
}

dbTest(
  `webhook [${db.kind}]: database down past the budget — 503, then the event is stored once it is back, and delivered`,
  async () => {
    const proxy = startDbProxy(db.url, { cut: true });
    const after: Array<{ id: number; outcome: string }> = [];
    const { app, log, proxiedSql } = appBehindProxy(
      proxy.url,
      { CHATWOOT_WEBHOOK_LATE_STORE_SECONDS: "60" },
      {
        afterStore: (stored) => void after.push({ id: stored.id, outcome: stored.outcome }),
      },
    );
    try {
      const body = uniqueMessage();
      const delivery = crypto.randomUUID();
      const res = await post(app, signedRequest(URL_BASE, body, { deliveryId: delivery }));
      assert.equal(res.status, 503);
      assert.equal(res.body.error, "database_unavailable");
      assert.equal(res.body.retrying_seconds, 60);
      const failed = log.lines.find((l) => l.msg === "[Chatwoot Webhook] Store failed");
      assert.equal(failed?.late_store, "trying");
      assert.equal(await countRowsWhere(body), 0);

      proxy.restore();
      await eventually(async () => (await countRowsWhere(body)) === 1, 30_000);
      const [row] =
        await sql`select receive_count, delivery_id, status from webhook_events where raw_body = ${body}`;
      assert.equal(row.receive_count, 1);
      assert.equal(row.delivery_id, delivery);
      assert.equal(row.status, "pending");
      await eventually(() => Promise.resolve(after.length === 1));
      assert.equal(after[0].outcome, "stored");
      const late = log.lines.find((l) => l.msg === "[Chatwoot Webhook] Stored late");
      assert.equal(late?.event_id, after[0].id);
      assert.equal(late?.delivery_id, delivery);
      assert.ok(!log.lines.some((l) => l.msg === "[Chatwoot Webhook] Lost"));
    } finally {
      await proxiedSql.end({ timeout: 1 });
      await proxy.close();
    }
  },
);

dbTest(
  `webhook [${db.kind}]: a database whose port refused connections is used again once it is back`,
  async () => {
    // Refused connects (the server down, its host up) used to leave postgres.js' connections stuck in
    // "connecting": once the pool's were all spent, every query waited forever, the database back or not.
    const proxy = startDbProxy(db.url);
    const { app, log, proxiedSql } = appBehindProxy(proxy.url, { CHATWOOT_WEBHOOK_LATE_STORE_SECONDS: "60" });
    try {
      // A store on the pool before the port goes: the first may miss the 300 ms budget on a loaded machine
      // (connecting through the proxy), which is no part of what is checked here.
      await storesAgain(app);
      proxy.takeDown();
      const during = [uniqueMessage(), uniqueMessage(), uniqueMessage()];
      for (const body of during) assert.equal((await post(app, signedRequest(URL_BASE, body))).status, 503);
      proxy.restore();
      // Each post is given its 300 ms budget; postgres.js may still be backing off from the refusals.
      await storesAgain(app);
      for (const body of during) {
        await eventually(async () => (await countRowsWhere(body)) === 1, 30_000, "the late stores");
      }
      const keys = during.map((body) => `message:${JSON.parse(body).id}:message_created`);
      const storedLate = () => log.lines.filter((l) => l.msg === "[Chatwoot Webhook] Stored late");
      // The row is seen once its statement commits; the line, once the late store has its answer: later.
      await eventually(
        () => Promise.resolve(keys.every((key) => storedLate().some((l) => l.event_key === key))),
        30_000,
        "each late store's line",
      );
      assert.deepEqual(keys.map((key) => storedLate().filter((l) => l.event_key === key).length), [1, 1, 1]);
    } finally {
      await proxiedSql.end({ timeout: 1 });
      await proxy.close();
    }
  },
);

dbTest(
  `webhook [${db.kind}]: a late store that outlasts its window is logged Lost, with the key to fetch it by`,
  async () => {
    const proxy = startDbProxy(db.url);
    const { app, log, proxiedSql } = appBehindProxy(proxy.url, { CHATWOOT_WEBHOOK_LATE_STORE_SECONDS: "1" });
    proxy.takeDown(); // connections refused: each attempt fails (a cut connection would keep it queued)
    try {
      const body = uniqueMessage();
      const delivery = crypto.randomUUID();
      const sending = Date.now();
      const res = await post(app, signedRequest(URL_BASE, body, { deliveryId: delivery }));
      const answered = Date.now();
      assert.equal(res.status, 503);
      assert.equal(res.body.retrying_seconds, 1);
      await eventually(
        () => Promise.resolve(log.lines.some((l) => l.msg === "[Chatwoot Webhook] Lost")),
        30_000,
      );
      const lost = log.lines.find((l) => l.msg === "[Chatwoot Webhook] Lost")!;
      assert.equal(lost.event_key, `message:${JSON.parse(body).id}:message_created`);
      assert.equal(lost.delivery_id, delivery);
      assert.match(String(lost.error), /ECONNREFUSED/);
      // Where `deno task recover --since` would fetch it back from: a minute or two before the receipt (by the
      // request's own time, not the time now, which a slow wait for the Lost line moves on).
      const since = Date.parse(String(lost.recover_since));
      assert.ok(since <= answered - 60_000 && since > sending - 5 * 60_000, String(lost.recover_since));
      proxy.restore();
      // The same pool stores a new event, so whatever it still had queued has gone out by now: "Lost" is
      // said only once no statement of the event is left.
      await storesAgain(app);
      assert.equal(await countRowsWhere(body), 0, "given up: not stored behind the log's back");
      // (The probes above may have been stored late themselves; the lost event must not be.)
      assert.ok(
        !log.lines.some((l) => l.msg === "[Chatwoot Webhook] Stored late" && l.event_key === lost.event_key),
      );
    } finally {
      await proxiedSql.end({ timeout: 1 });
      await proxy.close();
    }
  },
);

dbTest(
  `webhook [${db.kind}]: late stores turned off (0): 503 "may not be stored", and nothing more is tried`,
  async () => {
    const proxy = startDbProxy(db.url);
    const { app, log, proxiedSql } = appBehindProxy(proxy.url, { CHATWOOT_WEBHOOK_LATE_STORE_SECONDS: "0" });
    try {
      proxy.takeDown();
      const res = await post(app, signedRequest(URL_BASE, uniqueMessage()));
      assert.equal(res.status, 503);
      assert.equal(res.body.error, "database_unavailable");
      assert.equal(res.body.message, "Database unavailable; the event may not be stored");
      assert.equal(res.body.retrying_seconds, undefined);
      assert.equal(log.lines.find((l) => l.msg === "[Chatwoot Webhook] Store failed")?.late_store, "off");
      proxy.restore();
      await storesAgain(app);
      assert.ok(!log.lines.some((l) => /Stored late|Lost/.test(String(l.msg))));
    } finally {
      await proxiedSql.end({ timeout: 1 });
      await proxy.close();
    }
  },
);

dbTest(
  `webhook [${db.kind}]: the memory bound counts only events still being tried; a worker shutdown logs them Lost`,
  async () => {
    const proxy = startDbProxy(db.url, { cut: true });
    const [first, second, third] = [uniqueMessage(), uniqueMessage(), uniqueMessage()];
    // Room for one event of these sizes at a time (late_store.ts counts 4 bytes a character).
    const room = 4 * Math.max(first.length, second.length, third.length) + 10;
    const { app, log, proxiedSql } = appBehindProxy(
      proxy.url,
      { CHATWOOT_WEBHOOK_LATE_STORE_SECONDS: "60" },
      {},
      room,
    );
    const lateStoreOf = (body: string) =>
      log.lines.filter((l) => l.msg === "[Chatwoot Webhook] Store failed").find((l) =>
        l.event_key === `message:${JSON.parse(body).id}:message_created`
      )?.late_store;
    try {
      assert.equal((await post(app, signedRequest(URL_BASE, first))).status, 503);
      const refused = await post(app, signedRequest(URL_BASE, second));
      assert.equal(lateStoreOf(first), "trying");
      // Refused before any statement is queued for it: answered at once, certainly not stored.
      assert.equal(lateStoreOf(second), "memory_bound");
      assert.equal(refused.status, 503);
      assert.equal(refused.body.message, "Database unavailable; the event is not stored");
      const lostNow = log.lines.find((l) =>
        l.msg === "[Chatwoot Webhook] Lost" && l.reason === "memory_bound"
      );
      assert.equal(lostNow?.event_key, `message:${JSON.parse(second).id}:message_created`);

      dispatchEvent(new Event("beforeunload"));
      const shutdown = log.lines.filter((l) =>
        l.msg === "[Chatwoot Webhook] Lost" && l.reason === "worker_shutdown"
      );
      assert.deepEqual(shutdown.map((l) => l.event_key), [`message:${JSON.parse(first).id}:message_created`]);

      proxy.restore();
      await eventually(
        async () => (await countRowsWhere(first)) === 1,
        30_000,
        "the first event's late store",
      );
      await eventually(
        () => Promise.resolve(log.lines.some((l) => l.msg === "[Chatwoot Webhook] Stored late")),
        30_000,
      );
      proxy.cut();
      assert.equal((await post(app, signedRequest(URL_BASE, third))).status, 503);
      assert.equal(lateStoreOf(third), "trying", "the first one's memory was given back");
      proxy.restore();
      await eventually(
        async () => (await countRowsWhere(third)) === 1,
        30_000,
        "the third event's late store",
      );
      assert.equal(await countRowsWhere(second), 0);
    } finally {
      await proxiedSql.end({ timeout: 1 });
      await proxy.close();
    }
  },
);

dbIndependentTest({
  name: "webhook: a process or worker that ends while a request still stores its event says it Lost, once",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // A database server that takes connections and never answers (hung, or its network gone): the request's
    // store waits within its budget, and Chatwoot has no answer yet, so the event is nowhere but here.
    const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const held: Deno.Conn[] = [];
    (async () => {
      for await (const conn of silent) held.push(conn);
    })().catch(() => {});
    const config = webhookConfigFromEnv({
      CHATWOOT_WEBHOOK_SECRET: TEST_SECRET,
      CHATWOOT_WEBHOOK_LATE_STORE_SECONDS: "0",
    });
    assert.ok(config.ok);
    config.config.storeBudgetMs = 5_000;
    const silentSql = connect(
      `postgresql://postgres@127.0.0.1:${(silent.addr as Deno.NetAddr).port}/postgres`,
      {
        max: 1,
      },
    );
    const log = memoryLogger();
    const app = createChatwootWebhookApp({ config, sql: silentSql, log });
    const body = uniqueMessage();
    const eventKey = `message:${JSON.parse(body).id}:message_created`;
    const lostLines = () =>
      log.lines.filter((l) => l.msg === "[Chatwoot Webhook] Lost" && l.event_key === eventKey);
    const answered = post(app, signedRequest(URL_BASE, body)).catch(() => null);
    try {
      await eventually(() => Promise.resolve(held.length > 0), 10_000, "the store's connection");
      dispatchEvent(new Event("unload"));
      assert.deepEqual(
        lostLines().map((l) => [l.reason, l.error, typeof l.recover_since]),
        [["process_exit", "the process is exiting", "string"]],
      );
      dispatchEvent(new Event("beforeunload"));
      assert.equal(lostLines().length, 1, "said once");
    } finally {
      await silentSql.end({ timeout: 0 });
      silent.close();
      for (const conn of held) {
        try {
          conn.close();
        } catch { /* closed */ }
      }
      await answered;
    }
    assert.equal(lostLines().length, 1, "the request that failed after it adds no second Lost");
  },
});

Deno.test({
  name:
    `webhook [${db.kind}]: a late store whose statement is cut off tries again, and stores the event once`,
  ignore: db.kind !== "postgres", // pg_terminate_backend; PGlite is one session
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const proxy = startDbProxy(db.url);
    const { app, log, proxiedSql } = appBehindProxy(proxy.url, { CHATWOOT_WEBHOOK_LATE_STORE_SECONDS: "60" });
    const body = uniqueMessage();
    const lock = await lockWebhookEvents(sql);
    try {
      assert.equal((await post(app, signedRequest(URL_BASE, body))).status, 503);
      assert.equal(await requestStatementWaits(), 1);
      // The late store waits on the lock with the request's statement; end that session (an aborted
      // statement stores nothing), so the late store must start a statement of its own.
      const [{ n }] = await sql<{ n: number }[]>`
        select count(pg_terminate_backend(pid))::int as n from pg_stat_activity
         where datname = current_database() and wait_event_type = 'Lock'
           and query like '%ingest_webhook_event%'`;
      assert.equal(n, 1);
      await eventually(async () => (await waitingIngests()) === 1, 30_000, "the late store's own statement");
    } finally {
      await lock.release();
    }
    try {
      await assertStoredLateOnce(log, sql, body);
    } finally {
      await proxiedSql.end({ timeout: 1 });
      await proxy.close();
    }
  },
});

Deno.test({
  name: `webhook [${db.kind}]: a statement that outlives its cut connection stores the event; the retry is ` +
    `not counted a duplicate, and the delivery starts`,
  ignore: db.kind !== "postgres", // two sessions waiting on one lock; PGlite is one session
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const proxy = startDbProxy(db.url);
    const after: Array<{ outcome: string; forwardNow: boolean }> = [];
    const { app, log, proxiedSql } = appBehindProxy(
      proxy.url,
      { CHATWOOT_WEBHOOK_LATE_STORE_SECONDS: "60" },
      { afterStore: (s) => void after.push({ outcome: s.outcome, forwardNow: s.forwardNow }) },
    );
    const body = uniqueMessage();
    const lock = await lockWebhookEvents(sql);
    try {
      assert.equal((await post(app, signedRequest(URL_BASE, body))).status, 503);
      assert.equal(await requestStatementWaits(), 1);
      // The connection goes, its statement stays: PostgreSQL notices a gone client only when it next reads
      // or writes, so the statement runs (and commits) once the lock is free. The late store starts another.
      proxy.cut();
      proxy.restore();
      await eventually(async () => (await waitingIngests()) === 2, 30_000, "the late store's own statement");
    } finally {
      await lock.release();
    }
    try {
      await assertStoredLateOnce(log, sql, body);
      await eventually(() => Promise.resolve(after.length === 1), 30_000, "afterStore");
      assert.deepEqual(after, [{ outcome: "stored", forwardNow: true }]);
    } finally {
      await proxiedSql.end({ timeout: 1 });
      await proxy.close();
    }
  },
});

for (const setting of ["lock_timeout", "statement_timeout"]) {
  Deno.test({
    name:
      `webhook [${db.kind}]: a ${setting} set for the database ends a lock wait as a 503 and a late store, ` +
      `not a 500 that drops the event`,
    ignore: db.kind !== "postgres", // a second session holds the lock; PGlite is one session
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      // As an operator may set it (Supabase documents alter database/role … set statement_timeout).
      const [{ name }] = await sql<{ name: string }[]>`select current_database() as name`;
      await sql.unsafe(`alter database "${name}" set ${setting} = '300ms'`);
      const config = webhookConfigFromEnv({
        CHATWOOT_WEBHOOK_SECRET: TEST_SECRET,
        CHATWOOT_WEBHOOK_LATE_STORE_SECONDS: "60",
      });
      assert.ok(config.ok);
      config.config.storeBudgetMs = 1_000;
      const appSql = connect(db.url, { max: 2 }); // new sessions: they take the database's setting
      const log = memoryLogger();
      const app = createChatwootWebhookApp({ config, sql: appSql, log });
      const body = uniqueMessage();
      try {
        // Its session opened first: the store's budget is then spent on the lock wait the setting ends, not on
        // opening a connection (on a busy machine that alone can take most of a second).
        await appSql`select 1`;
        const lock = await lockWebhookEvents(sql);
        try {
          const res = await post(app, signedRequest(URL_BASE, body));
          assert.equal(res.status, 503, JSON.stringify(res.body));
          assert.equal(res.body.error, "database_unavailable");
          const failed = log.lines.find((l) => l.msg === "[Chatwoot Webhook] Store failed");
          assert.match(String(failed?.error), /canceling statement due to (lock|statement) timeout/);
          assert.equal(failed?.late_store, "trying");
        } finally {
          await lock.release();
        }
        await assertStoredLateOnce(log, sql, body);
      } finally {
        await appSql.end({ timeout: 1 });
        await sql.unsafe(`alter database "${name}" reset ${setting}`);
      }
    },
  });
}

dbTest(
  `webhook [${db.kind}]: a receipt stored again with its own receipt id answers what it did, counting nothing`,
  async () => {
    const id = nextId++;
    const version = (content: string, receiptId = crypto.randomUUID()) => {
      const raw = JSON.stringify(samplePayload("message_updated", { messageId: id, content }));
      return { ...eventToStore(raw), receiptId };
    };
    const first = version("v1");
    const changed = version("v2");
    const copy = { ...changed, receiptId: crypto.randomUUID() };
    const seen = [];
    // Forwarded, so that forward_now says whether a delivery may start (message_updated is not by default).
    await sql`update relay_settings set forward_events = forward_events || '{message_updated}'`;
    try {
      for (const e of [first, first, changed, changed, copy, copy]) {
        const s = await storeEvent(sql, e);
        seen.push([s.outcome, s.receiveCount, s.forwardNow]);
      }
    } finally {
      await sql`update relay_settings set forward_events = array_remove(forward_events, 'message_updated')`;
    }
    assert.deepEqual(seen, [
      ["stored", 1, true],
      ["stored", 1, true],
      ["updated", 2, true],
      ["updated", 2, true],
      ["duplicate", 3, false],
      ["duplicate", 3, false],
    ]);
    const [row] = await sql`select receive_count, version from webhook_events
      where event_key = ${`message:${id}:message_updated`}`;
    assert.deepEqual({ ...row }, { receive_count: 3, version: 2 });
  },
);

dbTest(
  `webhook [${db.kind}]: a retried receipt answers what it did even after duplicates came, and its delivery starts`,
  async () => {
    for (const later of ["a second copy from Chatwoot", "a call without a receipt id"]) {
      const first = eventToStore(uniqueMessage());
      await storeEvent(sql, first);
      const copy = later === "a call without a receipt id"
        ? { ...first, receiptId: null as unknown as string }
        : { ...first, receiptId: crypto.randomUUID() };
      assert.equal((await storeEvent(sql, copy)).outcome, "duplicate", later);
      const retry = await storeEvent(sql, first);
      assert.deepEqual([retry.outcome, retry.receiveCount, retry.forwardNow], ["stored", 2, true], later);
    }
  },
);

dbTest(
  `webhook [${db.kind}]: a connection whose last statement failed after sending a row stores the next event ` +
    `as usual (200, not a 500 and a "Lost" for a stored event)`,
  async () => {
    // As a restart's fast shutdown or pg_terminate_backend does to an ingest between its row and its end:
    // postgres.js (porsager/postgres#1119) then kept counting that row, and the connection's next result
    // came back as [<hole>, row].
    const failures: Array<[string, string]> = [
      ["a division by zero in its second row", "select 1 / (2 - x) as n from generate_series(1, 2) x"],
    ];
    if (db.kind === "postgres") {
      failures.push([
        "its session terminated after its first row",
        `select case when x = 2 then pg_terminate_backend(pg_backend_pid()) end as n
           from generate_series(1, 2) x`,
      ]);
    }
    for (const [what, statement] of failures) {
      const appSql = connect(db.url, { max: 1 }); // one connection: the next statement takes the same one
      const { app, log } = makeApp({}, { sql: appSql });
      try {
        await assert.rejects(appSql.unsafe(statement), what);
        const body = uniqueMessage();
        const res = await post(app, signedRequest(URL_BASE, body));
        assert.equal(res.status, 200, `${what}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.outcome, "stored", what);
        assert.equal(await countRowsWhere(body), 1, what);
        assert.deepEqual(log.lines.filter((l) => l.level === "error"), [], what);
      } finally {
        await appSql.end({ timeout: 1 });
      }
    }
  },
);

dbTest(
  `webhook [${db.kind}]: a retried receipt that finds a later one applied changes nothing: no older body back`,
  async () => {
    const id = nextId++;
    // URL-token copies carry no signed time, so only the receipt id tells the retry from a newer edit.
    const edit = (content: string) => ({
      ...eventToStore(JSON.stringify(samplePayload("message_updated", { messageId: id, content }))),
      verifiedBy: "url_token" as const,
      sentAtSeconds: null,
    });
    const first = edit("first edit");
    const second = edit("second edit");
    await storeEvent(sql, first);
    await storeEvent(sql, second);
    const retry = await storeEvent(sql, first);
    // What the first receipt did, said again; message_updated is not forwarded by default.
    assert.deepEqual([retry.outcome, retry.receiveCount, retry.forwardNow], ["stored", 2, false]);
    const [row] = await sql`select payload->>'content' as content, receive_count, version from webhook_events
      where event_key = ${`message:${id}:message_updated`}`;
    assert.deepEqual({ ...row }, { content: "second edit", receive_count: 2, version: 2 });
  },
);

dbIndependentTest(
  "webhook: an error of ours that retrying cannot fix is a 500 internal_error, logged",
  async () => {
    // A database without the schema: the ingest function does not exist (an operator forgot the migrations).
    const bare = await startEmptyPglite();
    const bareSql = connect(bare.url, { max: 1 });
    const log = memoryLogger();
    const app = createChatwootWebhookApp({
      config: webhookConfigFromEnv({ CHATWOOT_WEBHOOK_SECRET: TEST_SECRET }),
      sql: bareSql,
      log,
    });
    try {
      const res = await post(app, signedRequest(URL_BASE, uniqueMessage()));
      assert.equal(res.status, 500);
      assert.equal(res.body.error, "internal_error");
      const failure = log.lines.find((l) => l.msg === "[Chatwoot Webhook] Store failed");
      assert.match(String(failure?.error), /ingest_webhook_event/);
      assert.equal(failure?.late_store, "trying");
      // One more try in the background fails the same way: the event is logged Lost, with where
      // `deno task recover` may start to fetch it back.
      const lost = await eventually(
        () => Promise.resolve(log.lines.find((l) => l.msg === "[Chatwoot Webhook] Lost")),
        10_000,
        "the Lost line",
      );
      assert.equal(lost.event_key, failure?.event_key);
      assert.match(String(lost.recover_since), /^\d{4}-\d\d-\d\dT\d\d:\d\d:00\.000Z$/);
      assert.match(String(lost.error), /ingest_webhook_event/);
    } finally {
      await bareSql.end({ timeout: 1 });
      await bare.stop();
    }
  },
  HOLDS_DB,
);

dbTest(`webhook [${db.kind}]: afterStore runs for new and changed events, not for duplicates`, async () => {
  const seen: Array<{ id: number; outcome: string }> = [];
  const { app } = makeApp({}, { afterStore: (s) => void seen.push({ id: s.id, outcome: s.outcome }) });
  const body = uniqueMessage();
  const first = await post(app, signedRequest(URL_BASE, body));
  await post(app, signedRequest(URL_BASE, body));
  await eventually(() => Promise.resolve(seen.length >= 1));
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.deepEqual(seen, [{ id: first.body.id, outcome: "stored" }]);
});

Deno.test({
  name: `webhook [${db.kind}]: close database`,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () => db.close(),
});
