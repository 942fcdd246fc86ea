// `deno task recover`: the messages of a window that webhook_events lacks, found through a stand-in of
// Chatwoot's REST API on loopback (its shapes as Chatwoot's API views give them: conversations by last
// activity, 25 a page; a conversation's messages as Chatwoot's MessageFinder gives them: ordered by created_at,
// the latest page first, older ones by id (`before`), or every message of an id range (`after` and `before`)).
import assert from "node:assert/strict";
import {
  type ChatwootApi,
  ChatwootApiError,
  RecoveryInterrupted,
  RecoveryWindowError,
  scanForMissing,
  storeRecovered,
} from "../scripts/lib/chatwoot_recover.ts";
import { samplePayload } from "../scripts/lib/samples.ts";
import { dbTest, startTestDb } from "./_db.ts";
import { runScript } from "./_dev.ts";
import { eventToStore, storeSample } from "./_forwarding.ts";
import { storeEvent } from "../supabase/functions/_shared/ingest_store.ts";
import { eventually, serveOnLoopback, settledWithin } from "./_http.ts";
import { CLOSED_PORT, closedPortUrl } from "./_closed_port.ts";
import { startDbProxy } from "./_proxy.ts";
import { connect, dbErrorCode } from "../supabase/functions/_shared/db.ts";

const db = await startTestDb();
const sql = db.sql;
const TOKEN = "user-access-token-0123456789";
const ACCOUNT = "7";
const NOW = Math.floor(Date.now() / 1000);
const ago = (minutes: number) => NOW - minutes * 60;

interface StandInMessage {
  id: number;
  message_type: number;
  created_at: number;
  private?: boolean;
  content?: string;
  sender?: Record<string, unknown>;
  attachments?: unknown[];
}

const contact = {
  id: 31,
  name: "Jamie Rivera",
  email: "jamie@example.com",
  phone_number: null,
  type: "contact",
};
// The API's user sender has no email (the agents list has it).
const agent = { id: 5, name: "Alex Agent", available_name: "Alex", type: "user" };

interface StandInConversation {
  id: number;
  last_activity_at: number;
  inbox_id?: number;
  messages: StandInMessage[];
}

/** A Chatwoot account's API with these conversations, listed by last activity, small pages to page through. */
function startChatwootApi(
  conversations: StandInConversation[],
  {
    conversationsPerPage = 2,
    messagesPerPage = 3,
    idRangeLimit = 1000,
    failFirst = 0,
    role = "administrator",
    gone = new Set<number>(),
    onConversationsPage = (_page: number) => {},
    stalledBodies = 0,
    // A proxy or an API that answers the first page whatever `page` asks for.
    ignoresPage = false,
    // Answers 429 to the first requests, with this Retry-After (seconds) when set.
    rateLimitedFirst = 0,
    retryAfter = null as string | null,
    // Every request after the first `failAfter` fails (until the test sets failure.after back to Infinity):
    // 503, a body cut off by a dropped connection, a body that stalls, a 200 that is not JSON, or a 200 whose
    // JSON is no messages page (one holding null: "malformed").
    failAfter = Infinity,
    failWith = "503" as FailureKind,
    // Awaited before each request is answered (its path and query): a test holds one until it has acted.
    beforeAnswer = (_request: string, _req: Request): Promise<unknown> | void => {},
  } = {},
) {
  const requests: string[] = [];
  const failure = { after: failAfter, kind: failWith };
  let failures = failFirst;
  const json = (body: unknown) => Response.json(body);
  const api = serveOnLoopback(async (req) => {
    const url = new URL(req.url);
    await beforeAnswer(url.pathname + url.search, req);
    requests.push(url.pathname + url.search);
    if (req.headers.get("api_access_token") !== TOKEN) {
      return Response.json({ errors: ["Invalid Access Token"] }, { status: 401 });
    }
    if (rateLimitedFirst > 0) {
      rateLimitedFirst--;
      return new Response("Retry later\n", {
        status: 429,
        headers: retryAfter ? { "retry-after": retryAfter } : {},
      });
    }
    if (failures > 0) {
      failures--;
      return new Response("upstream restarting", { status: 503 });
    }
    if (requests.length > failure.after) return failedAnswer(failure.kind, req);
    const base = `/api/v1/accounts/${ACCOUNT}`;
    if (url.pathname === `${base}/conversations` && stalledBodies > 0) {
      stalledBodies--;
      // 200 and the start of a body, then nothing (a proxy or a Chatwoot worker that hangs mid-answer).
      let stalled: ReadableStreamDefaultController<Uint8Array>;
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          stalled = controller;
          controller.enqueue(new TextEncoder().encode('{"data": {"payload": ['));
        },
        cancel() {},
      });
      req.signal.addEventListener("abort", () => stalled.close());
      return new Response(body, { headers: { "content-type": "application/json" } });
    }
    if (url.pathname === "/api/v1/profile") return json({ id: 5, accounts: [{ id: Number(ACCOUNT), role }] });
    if (url.pathname === base) return json({ id: Number(ACCOUNT), name: "Acme Support" });
    if (url.pathname === `${base}/inboxes`) return json({ payload: [{ id: 3, name: "Email" }] });
    if (url.pathname === `${base}/agents`) {
      return json([{ id: 5, name: "Alex Agent", email: "alex@example.com" }]);
    }
    if (url.pathname === `${base}/conversations`) {
      assert.equal(url.searchParams.get("status"), "all");
      assert.equal(url.searchParams.get("sort_by"), "last_activity_at_desc");
      const page = ignoresPage ? 1 : Number(url.searchParams.get("page") ?? 1);
      // Paging on past any sensible number of pages: refused, so that a client that would page forever fails.
      if (requests.filter((r) => r.startsWith(`${base}/conversations?`)).length > 200) {
        return new Response("too many pages read", { status: 400 });
      }
      const listed = [...conversations].sort((a, b) => b.last_activity_at - a.last_activity_at);
      const slice = listed.slice((page - 1) * conversationsPerPage, page * conversationsPerPage);
      // Counted as this page was read; what the callback changes shows on the next one.
      const allCount = conversations.length;
      onConversationsPage(page);
      return json({
        data: {
          meta: { all_count: allCount },
          payload: slice.map((c) => ({
            id: c.id,
            account_id: Number(ACCOUNT),
            inbox_id: c.inbox_id ?? 3,
            status: "open",
            meta: { channel: "Channel::Email", sender: contact },
            last_activity_at: c.last_activity_at,
            timestamp: c.last_activity_at,
            messages: c.messages.slice(-1),
            // As Chatwoot's conversation partial lists it: the latest message that is not an activity.
            last_non_activity_message: c.messages.findLast((x) => x.message_type !== 2) ?? null,
          })),
        },
      });
    }
    const m = new RegExp(`^${base}/conversations/(\\d+)/messages$`).exec(url.pathname);
    const conversation = m && !gone.has(Number(m[1])) && conversations.find((c) => c.id === Number(m[1]));
    if (conversation) {
      // As Chatwoot's MessageFinder: `before`/`after` filter by id, created_at orders (a tie by id here).
      const before = url.searchParams.get("before");
      const after = url.searchParams.get("after");
      const byCreation = [...conversation.messages].sort((a, b) =>
        a.created_at - b.created_at || a.id - b.id
      );
      const page = after !== null && before !== null
        ? byCreation.filter((x) => x.id >= Number(after) && x.id < Number(before)).slice(0, idRangeLimit)
        : byCreation.filter((x) => before === null || x.id < Number(before)).slice(-messagesPerPage);
      return json({
        meta: { labels: [] },
        payload: page.map((x) => ({
          content: `message ${x.id}`,
          inbox_id: 3,
          conversation_id: conversation.id,
          content_type: "text",
          status: "sent",
          content_attributes: {},
          private: x.private ?? false,
          source_id: null,
          ...x,
        })),
      });
    }
    return new Response(null, { status: 404 });
  });
  const config: ChatwootApi = {
    baseUrl: api.url,
    apiToken: TOKEN,
    accountId: ACCOUNT,
    retryPausesMs: [10, 10],
  };
  return { ...api, config, requests, failure };
}

type FailureKind = "503" | "cut" | "stall" | "html" | "malformed";

/** An answer that fails as `kind` says; those that start a body start it as a messages page would. */
function failedAnswer(kind: FailureKind, req: Request): Response {
  if (kind === "503") return new Response("upstream restarting", { status: 503 });
  if (kind === "malformed") return Response.json({ meta: { labels: [] }, payload: [null] });
  if (kind === "html") {
    return new Response("<html><body>Maintenance</body></html>", {
      headers: { "content-type": "text/html" },
    });
  }
  let controller: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
      c.enqueue(new TextEncoder().encode('{"meta": {"labels": []}, "payload": [{"id": 1, "content": "mess'));
      // The connection dropped mid-body: the stream errors, and the server aborts the response.
      if (kind === "cut") queueMicrotask(() => c.error(new Error("connection dropped")));
    },
    cancel() {},
  });
  if (kind === "stall") req.signal.addEventListener("abort", () => controller.close());
  return new Response(body, { headers: { "content-type": "application/json" } });
}

/** How many requests `scan` makes before the first whose path and query match `pattern`. */
async function requestsBefore(
  api: ReturnType<typeof startChatwootApi>,
  pattern: RegExp,
  scan: () => Promise<unknown>,
) {
  const from = api.requests.length;
  await scan();
  const at = api.requests.slice(from).findIndex((r) => pattern.test(r));
  assert.ok(at >= 0, `no request matching ${pattern}`);
  api.requests.splice(0, api.requests.length);
  return at;
}

let nextId = 7_000_000;
/** One window's worth of conversations: what Chatwoot holds, and which of its messages we stored. */
async function scenario() {
  const id = () => nextId++;
  const [before, stored, outgoing, activity, note, template, incoming, fromContact] = Array.from(
    { length: 8 },
    id,
  );
  const conversations: StandInConversation[] = [
    {
      id: id(),
      last_activity_at: ago(10),
      messages: [
        { id: before, message_type: 0, created_at: ago(180), sender: contact },
        { id: stored, message_type: 0, created_at: ago(90), sender: contact },
        { id: outgoing, message_type: 1, created_at: ago(80), sender: agent },
        { id: activity, message_type: 2, created_at: ago(70) },
        { id: note, message_type: 1, created_at: ago(60), private: true, sender: agent },
        { id: template, message_type: 3, created_at: ago(50) },
        { id: incoming, message_type: 0, created_at: ago(40), sender: contact },
      ],
    },
    {
      id: id(),
      last_activity_at: ago(30),
      messages: [{
        id: fromContact,
        message_type: 0,
        created_at: ago(30),
        sender: contact,
        attachments: [{ id: 9, message_id: fromContact, file_type: "image", data_url: "https://x/a.png" }],
      }],
    },
    // Last active before the window: paging stops at it, and its messages are never read.
    { id: id(), last_activity_at: ago(300), messages: [{ id: id(), message_type: 0, created_at: ago(300) }] },
    { id: id(), last_activity_at: ago(400), messages: [{ id: id(), message_type: 0, created_at: ago(400) }] },
  ];
  await storeSample(sql, "message_created", { messageId: stored, conversationId: conversations[0].id });
  return {
    conversations,
    missing: [outgoing, note, template, incoming, fromContact],
    ids: { stored, outgoing, note, template, incoming, fromContact, activity, before },
  };
}

const SINCE = new Date((NOW - 120 * 60) * 1000);
const UNTIL = new Date((NOW + 60) * 1000);

dbTest(
  `recover [${db.kind}]: lists the window's messages we lack, then stores them once, to be forwarded`,
  async () => {
    const s = await scenario();
    const api = startChatwootApi(s.conversations, { failFirst: 1 });
    try {
      const scan = await scanForMissing(api.config, sql, SINCE, UNTIL);
      assert.deepEqual(scan.missing.map((m) => m.message.id), s.missing);
      assert.deepEqual([scan.conversations, scan.messages, scan.alreadyStored], [2, 6, 1]);
      // The conversation list stopped at the first one active before the window; its messages were not read.
      const oldConversation = s.conversations[2].id;
      assert.ok(!api.requests.some((r) => r.includes(`/conversations/${oldConversation}/`)));
      assert.ok(api.requests.some((r) => /messages\?before=\d+/.test(r)), "paged back with before=");

      const [check] = await sql`select convalidated from pg_constraint
      where conname = 'webhook_events_verified_by_check'`;
      assert.equal(check.convalidated, true, "migration 002100 validated the widened check");
      const stored = await storeRecovered(api.config, sql, scan.missing);
      assert.deepEqual(stored, { stored: 5, storedMeanwhile: 0 });
      assert.ok(api.requests.includes("/api/v1/profile"), "the token's role was asked");
      const rows = await sql`
      select message_id, verified_by, status, receive_count, account_id, inbox_id, conversation_id, payload
        from webhook_events where message_id = any(${s.missing}::bigint[]) order by message_id`;
      assert.equal(rows.length, 5);
      for (const row of rows) {
        assert.deepEqual(
          [row.verified_by, row.status, row.receive_count, Number(row.account_id), Number(row.inbox_id)],
          ["chatwoot_api", "pending", 1, 7, 3],
        );
        assert.equal(row.payload.event, "message_created");
        assert.equal(row.payload.relay_recovered.from, "chatwoot_api");
        assert.deepEqual(row.payload.account, { id: 7, name: "Acme Support" });
        assert.deepEqual(row.payload.inbox, { id: 3, name: "Email" });
      }
      const byId = new Map(rows.map((r) => [Number(r.message_id), r.payload]));
      const out = byId.get(s.ids.outgoing)!;
      assert.equal(out.message_type, "outgoing");
      assert.equal(out.created_at, new Date(ago(80) * 1000).toISOString());
      assert.deepEqual(out.sender, { id: 5, name: "Alex Agent", email: "alex@example.com", type: "user" });
      assert.equal(Number(out.conversation.id), s.conversations[0].id);
      assert.equal(
        out.conversation.channel,
        "Channel::Email",
        "the webhook's conversation has channel at the top",
      );
      assert.deepEqual(out.conversation.messages.map((m: { id: number }) => m.id), [s.ids.outgoing]);
      // The listing's latest message is a later one than this, and no webhook's conversation holds it.
      assert.ok(!("last_non_activity_message" in out.conversation), "not the conversation's latest message");
      assert.deepEqual(
        byId.get(s.ids.note)!.conversation.messages,
        [],
        "a private note is not the last message",
      );
      assert.equal(byId.get(s.ids.note)!.private, true);
      assert.equal(byId.get(s.ids.template)!.message_type, "template");
      const fromContact = byId.get(s.ids.fromContact)!;
      assert.equal(fromContact.sender.type, undefined, "a webhook's contact has no type");
      assert.equal(typeof fromContact.sender.avatar, "string");
      assert.deepEqual(fromContact.sender.account, { id: 7, name: "Acme Support" });
      assert.equal(fromContact.attachments.length, 1);
      // The Data team's view reads them like any message.
      const [view] = await sql`select sender_type, message_type, content from chatwoot_messages
      where message_id = ${s.ids.incoming}`;
      assert.deepEqual({ ...view }, {
        sender_type: "contact",
        message_type: "incoming",
        content: `message ${s.ids.incoming}`,
      });

      // Nothing left to recover; a second run storing the same list (as if racing this one) stores nothing.
      assert.equal((await scanForMissing(api.config, sql, SINCE, UNTIL)).missing.length, 0);
      assert.deepEqual(await storeRecovered(api.config, sql, scan.missing), {
        stored: 0,
        storedMeanwhile: 5,
      });
      const [{ n }] =
        await sql`select count(*)::int as n from webhook_events where message_id = any(${s.missing}::bigint[])`;
      assert.equal(n, 5);
      // The webhook arriving after all replaces the rebuilt copy with Chatwoot's own bytes: the same message,
      // one receipt, no duplicate, still due for its (single) delivery.
      const genuine = JSON.stringify(samplePayload("message_created", { messageId: s.ids.incoming }));
      await storeSample(sql, "message_created", { raw: genuine });
      const [after] =
        await sql`select count(*)::int as n, max(receive_count) as receipts, max(version) as version,
          bool_and(raw_body = ${genuine}) as genuine, max(verified_by) as verified_by, max(status) as status
        from webhook_events where message_id = ${s.ids.incoming}`;
      assert.deepEqual({ ...after }, {
        n: 1,
        receipts: 1,
        version: 1,
        genuine: true,
        verified_by: "signature",
        status: "pending",
      });
    } finally {
      await api.stop();
    }
  },
);

dbTest(
  `recover [${db.kind}]: a message type Chatwoot never sends by webhook is skipped, even one named like an ` +
    "object's own property",
  async () => {
    const id = () => nextId++;
    const [incoming, ...others] = [id(), id(), id(), id()];
    const messages: StandInMessage[] = [
      { id: incoming, message_type: 0, created_at: ago(40), sender: contact },
      // Not Chatwoot's numbers: a JSON answer may hold anything, and "toString" is in every object.
      ...["toString", "constructor", "__proto__"].map((type, i) => ({
        id: others[i],
        message_type: type as unknown as number,
        created_at: ago(30 - i),
        sender: contact,
      })),
    ];
    const api = startChatwootApi([{ id: id(), last_activity_at: ago(10), messages }]);
    try {
      const scan = await scanForMissing(api.config, sql, SINCE, UNTIL);
      assert.deepEqual(scan.missing.map((m) => m.message.id), [incoming]);
    } finally {
      await api.stop();
    }
  },
);

dbTest(
  `recover [${db.kind}]: a token Chatwoot refuses stops the scan with the reason, storing nothing`,
  async () => {
    const s = await scenario();
    const api = startChatwootApi(s.conversations);
    try {
      await assert.rejects(
        scanForMissing({ ...api.config, apiToken: "wrong-token-0123456789" }, sql, SINCE, UNTIL),
        (e: Error) => e instanceof ChatwootApiError && /answered 401.*CHATWOOT_API_TOKEN/.test(e.message),
      );
      assert.equal(api.requests.length, 1, "a 401 is not retried");
    } finally {
      await api.stop();
    }
  },
);

dbTest(
  `recover [${db.kind}]: an answer cut off by the timeout is retried like one that never came, not "not JSON"`,
  async () => {
    const s = await scenario();
    const api = startChatwootApi(s.conversations, { stalledBodies: 1 });
    try {
      const scan = await scanForMissing({ ...api.config, requestTimeoutMs: 200 }, sql, SINCE, UNTIL);
      assert.deepEqual(scan.missing.map((m) => m.message.id), s.missing);
      const firstPage = api.requests.filter((r) => r.includes("/conversations?") && r.endsWith("page=1"));
      assert.ok(firstPage.length >= 2, "the request whose answer stalled was sent again");
    } finally {
      await api.stop();
    }
  },
);

dbTest(
  `recover [${db.kind}]: deno task recover reads a time without a zone as UTC, not the machine's zone`,
  async () => {
    const s = await scenario();
    const api = startChatwootApi(s.conversations);
    const env = {
      CHATWOOT_BASE_URL: api.url,
      CHATWOOT_API_TOKEN: TOKEN,
      CHATWOOT_ACCOUNT_ID: ACCOUNT,
      TZ: "America/New_York", // JavaScript's Date reads "2026-11-21T10:00" in this zone
    };
    // As chatwoot_timestamp() reads them: no zone is UTC, and "t"/"z" are "T"/"Z".
    const args = [
      "--since",
      SINCE.toISOString().replace(/Z$/, ""),
      "--until",
      UNTIL.toISOString().toLowerCase(),
    ];
    try {
      const report = await runScript("scripts/recover.ts", args, db.url, env);
      assert.equal(report.code, 0, report.stderr);
      assert.ok(
        report.stdout.includes(`messages created in [${SINCE.toISOString()}, ${UNTIL.toISOString()})`),
        report.stdout,
      );
      assert.match(report.stdout, /missing: 5/);
    } finally {
      await api.stop();
    }
  },
);

dbTest(`recover [${db.kind}]: deno task recover says when it waits to try Chatwoot's API again`, async () => {
  const s = await scenario();
  const api = startChatwootApi(s.conversations, { failFirst: 1 });
  const env = { CHATWOOT_BASE_URL: api.url, CHATWOOT_API_TOKEN: TOKEN, CHATWOOT_ACCOUNT_ID: ACCOUNT };
  try {
    const report = await runScript(
      "scripts/recover.ts",
      ["--since", SINCE.toISOString(), "--until", UNTIL.toISOString()],
      db.url,
      env,
    );
    assert.equal(report.code, 0, report.stderr);
    assert.match(
      report.stdout,
      /^warning: Chatwoot API \/api\/v1\/profile: answered 503; trying again in 1 s \(retry 1 of 6\)$/m,
    );
    assert.match(report.stdout, /missing: 5/);
    assert.ok(!report.stdout.includes(TOKEN) && !report.stderr.includes(TOKEN));
  } finally {
    await api.stop();
  }
});

dbTest(
  `recover [${db.kind}]: a 429 is waited out as its Retry-After says, not the shorter pause`,
  async () => {
    const s = await scenario();
    const api = startChatwootApi(s.conversations, { rateLimitedFirst: 1, retryAfter: "1" });
    const lines: string[] = [];
    try {
      const scan = await scanForMissing({ ...api.config, onRetry: (l) => lines.push(l) }, sql, SINCE, UNTIL);
      assert.deepEqual(scan.missing.map((m) => m.message.id), s.missing);
      // The pauses configured are 10 ms: the line names Chatwoot's second instead.
      assert.deepEqual(lines, [
        "Chatwoot API /api/v1/profile: answered 429; trying again in 1 s (retry 1 of 2)",
      ]);
    } finally {
      await api.stop();
    }
  },
);

dbTest(
  `recover [${db.kind}]: a retry after no answer at all says why, as does the failure after the last`,
  async () => {
    const lines: string[] = [];
    const config: ChatwootApi = {
      baseUrl: closedPortUrl(),
      apiToken: TOKEN,
      accountId: ACCOUNT,
      retryPausesMs: [10],
      onRetry: (line) => lines.push(line),
    };
    // fetch's own message is "fetch failed": what failed (refused, no such host, a TLS error) is in its cause.
    await assert.rejects(
      scanForMissing(config, sql, SINCE, UNTIL),
      (e: Error) => e instanceof ChatwootApiError && /refused.*, after 2 tries$/i.test(e.message),
    );
    assert.equal(lines.length, 1);
    assert.match(
      lines[0],
      /^Chatwoot API \/api\/v1\/profile: fetch failed: .*refused.*; trying again in 0.01 s/i,
    );
  },
);

dbTest(`recover [${db.kind}]: deno task recover reports, and with --store stores`, async () => {
  const s = await scenario();
  const api = startChatwootApi(s.conversations);
  const env = { CHATWOOT_BASE_URL: api.url, CHATWOOT_API_TOKEN: TOKEN, CHATWOOT_ACCOUNT_ID: ACCOUNT };
  const args = ["--since", SINCE.toISOString(), "--until", UNTIL.toISOString()];
  try {
    const report = await runScript("scripts/recover.ts", args, db.url, env);
    assert.equal(report.code, 0, report.stderr);
    assert.match(report.stdout, /stored: 1; missing: 5/);
    assert.match(report.stdout, new RegExp(`message ${s.ids.note} in conversation \\d+, .*, private`));
    assert.match(report.stdout, /run again with --store/);
    assert.doesNotMatch(report.stdout, new RegExp(TOKEN));
    const store = await runScript("scripts/recover.ts", [...args, "--store"], db.url, env);
    assert.equal(store.code, 0, store.stderr);
    assert.match(store.stdout, /stored 5 \(verified_by chatwoot_api/);
    const [{ n }] = await sql`select count(*)::int as n from webhook_events
      where message_id = any(${s.missing}::bigint[]) and verified_by = 'chatwoot_api'`;
    assert.equal(n, 5);

    const refused = await runScript("scripts/recover.ts", args, db.url, {
      ...env,
      CHATWOOT_API_TOKEN: "nope",
    });
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /recover failed \(http:\/\/127\.0\.0\.1:\d+\/\): Chatwoot API \/api\/v1\/profile: answered 401/,
    );
    const unset = await runScript("scripts/recover.ts", args, db.url, { CHATWOOT_BASE_URL: api.url });
    assert.equal(unset.code, 2);
    assert.match(unset.stderr, /Set CHATWOOT_API_TOKEN \(or CHATWOOT_TOKEN_PROD\), CHATWOOT_ACCOUNT_ID/);
    const broken = await runScript("scripts/recover.ts", args, db.url, {
      ...env,
      CHATWOOT_API_TOKEN: "token-part\nSECRET-tail-4711",
    });
    assert.equal(broken.code, 2);
    assert.match(broken.stderr, /CHATWOOT_API_TOKEN holds characters an HTTP header cannot carry/);
    assert.ok(!broken.stderr.includes("SECRET-tail-4711"));
  } finally {
    await api.stop();
  }
});

dbTest(
  `recover [${db.kind}]: a command line deno task recover cannot run says what is wrong, exit 2`,
  async () => {
    const env = {
      CHATWOOT_BASE_URL: closedPortUrl(),
      CHATWOOT_API_TOKEN: TOKEN,
      CHATWOOT_ACCOUNT_ID: ACCOUNT,
    };
    const twoMinutesAgo = new Date(Date.now() - 120_000).toISOString();
    const cases: [string[], RegExp][] = [
      [[], /^--since is required/],
      [["--since", "yesterday"], /^--since: "yesterday" is not a time/],
      [["--since", SINCE.toISOString(), "--until", "2026-13-01"], /^--until: "2026-13-01" is not a time/],
      // A Lost line's event of a minute ago: --until's default (5 minutes ago) is before it.
      [["--since", twoMinutesAgo], /^--since \S+ is not before --until \S+ \(by default 5 minutes ago/],
      [
        ["--since", SINCE.toISOString(), "--inbox", "3,x"],
        /^--inbox takes inbox ids \(whole numbers\), not 3,x/,
      ],
      [["--since", SINCE.toISOString(), "--no-forward"], /^--no-forward goes with --store/],
    ];
    for (const [args, reason] of cases) {
      const run = await runScript("scripts/recover.ts", args, db.url, env);
      assert.equal(run.code, 2, args.join(" "));
      assert.match(run.stderr, reason, args.join(" "));
      assert.match(run.stderr, /^usage:/m, "the usage follows");
    }
  },
);

dbTest(
  `recover [${db.kind}]: a conversation that moves to the first page while the list is paged is still read`,
  async () => {
    const lost = nextId++;
    const conversations: StandInConversation[] = [
      { id: nextId++, last_activity_at: ago(10), messages: [] },
      { id: nextId++, last_activity_at: ago(20), messages: [] },
      {
        id: nextId++,
        last_activity_at: ago(30),
        messages: [{ id: lost, message_type: 0, created_at: ago(30) }],
      },
      { id: nextId++, last_activity_at: ago(300), messages: [] },
    ];
    // Once the first page is read, the third conversation gets a new message and is listed first.
    const api = startChatwootApi(conversations, {
      onConversationsPage: (page) => {
        if (page === 1) conversations[2].last_activity_at = NOW;
      },
    });
    try {
      const scan = await scanForMissing(api.config, sql, SINCE, UNTIL);
      assert.deepEqual(scan.missing.map((m) => m.message.id), [lost]);
    } finally {
      await api.stop();
    }
  },
);

dbTest(
  `recover [${db.kind}]: a conversation that moves ahead during two passes is still read (the list moved)`,
  async () => {
    const lost = nextId++;
    const now = () => Math.floor(Date.now() / 1000);
    const b = { id: nextId++, last_activity_at: ago(10), messages: [] };
    const c = { id: nextId++, last_activity_at: ago(20), messages: [] };
    const x = {
      id: nextId++,
      last_activity_at: ago(25),
      messages: [{ id: lost, message_type: 0, created_at: ago(25) }],
    };
    const d = { id: nextId++, last_activity_at: ago(30), messages: [] };
    let calls = 0;
    const api = startChatwootApi([b, c, x, d], {
      onConversationsPage: () => {
        calls++;
        // Pass 0, after page 1: X gets a message (moves to the front, before the read offset).
        if (calls === 1) x.last_activity_at = now();
        // Pass 0, after page 2: two conversations already found get messages too (ahead of X again).
        if (calls === 2) (c.last_activity_at = now() + 1, b.last_activity_at = now() + 2);
        // Pass 1, after page 1 (both already found): X gets another message.
        if (calls === 4) x.last_activity_at = now() + 3;
      },
    });
    try {
      const scan = await scanForMissing(api.config, sql, SINCE, UNTIL);
      assert.deepEqual(scan.missing.map((m) => m.message.id), [lost], `calls: ${calls}`);
    } finally {
      await api.stop();
    }
  },
);

dbTest(
  `recover [${db.kind}]: a conversation deleted while the list is paged does not hide the one after it`,
  async () => {
    const lost = nextId++;
    const deleted = { id: nextId++, last_activity_at: ago(10), messages: [] };
    const conversations: StandInConversation[] = [
      deleted,
      { id: nextId++, last_activity_at: ago(20), messages: [] },
      {
        id: nextId++,
        last_activity_at: ago(30),
        messages: [{ id: lost, message_type: 0, created_at: ago(30) }],
      },
      { id: nextId++, last_activity_at: ago(40), messages: [] },
      { id: nextId++, last_activity_at: ago(300), messages: [] },
    ];
    // Once the first page is read, its first conversation is deleted: the rest move up a place, and the
    // third would now be on the first page, which was read already.
    const api = startChatwootApi(conversations, {
      onConversationsPage: (page) => {
        if (page === 1 && conversations.includes(deleted)) {
          conversations.splice(conversations.indexOf(deleted), 1);
        }
      },
    });
    const lines: string[] = [];
    try {
      const scan = await scanForMissing(api.config, sql, SINCE, UNTIL, { progress: (l) => lines.push(l) });
      assert.deepEqual(scan.missing.map((m) => m.message.id), [lost], lines.join("\n"));
    } finally {
      await api.stop();
    }
  },
);

dbTest(
  `recover [${db.kind}]: an API that answers the same page whatever \`page\` says is read a bounded number ` +
    `of times, with a warning, not paged forever`,
  async () => {
    const lost = nextId++;
    const conversations: StandInConversation[] = [
      { id: nextId++, last_activity_at: ago(10), messages: [] },
      {
        id: nextId++,
        last_activity_at: ago(20),
        messages: [{ id: lost, message_type: 0, created_at: ago(20) }],
      },
      { id: nextId++, last_activity_at: ago(300), messages: [] },
    ];
    const api = startChatwootApi(conversations, { ignoresPage: true });
    const lines: string[] = [];
    try {
      const scan = await scanForMissing(api.config, sql, SINCE, UNTIL, { progress: (l) => lines.push(l) });
      assert.deepEqual(scan.missing.map((m) => m.message.id), [lost]);
      assert.ok(lines.some((l) => l.includes("run again for the same window")), lines.join("\n"));
      const listReads = api.requests.filter((r) => r.includes("/conversations?")).length;
      assert.ok(listReads <= 20, `${listReads} reads of the conversation list`);
    } finally {
      await api.stop();
    }
  },
);

dbTest(
  `recover [${db.kind}]: a conversation list still changing after the last pass stores what was found, exit 3`,
  async () => {
    const [lostB, lostC, lostBusy] = [nextId++, nextId++, nextId++];
    // Three conversations in the middle of busy chats: after every page read, the one of them listed last
    // gets a new message and moves to the front, pushing the rest down a place. No pass is ever quiet.
    const now = () => Math.floor(Date.now() / 1000);
    const busy: StandInConversation[] = [0, 1, 2].map((i) => ({
      id: nextId++,
      last_activity_at: now() - i,
      messages: i === 0 ? [{ id: lostBusy, message_type: 0, created_at: ago(5) }] : [],
    }));
    const conversations: StandInConversation[] = [
      ...busy,
      { id: nextId++, last_activity_at: ago(10), messages: [] },
      {
        id: nextId++,
        last_activity_at: ago(20),
        messages: [{ id: lostB, message_type: 0, created_at: ago(20) }],
      },
      {
        id: nextId++,
        last_activity_at: ago(30),
        messages: [{ id: lostC, message_type: 0, created_at: ago(30) }],
      },
      { id: nextId++, last_activity_at: ago(300), messages: [] },
    ];
    let bumps = 0;
    const api = startChatwootApi(conversations, {
      onConversationsPage: () => {
        const last = [...busy].sort((a, b) => a.last_activity_at - b.last_activity_at)[0];
        last.last_activity_at = Math.max(now(), ...busy.map((c) => c.last_activity_at)) + 1;
        bumps++;
      },
    });
    const env = { CHATWOOT_BASE_URL: api.url, CHATWOOT_API_TOKEN: TOKEN, CHATWOOT_ACCOUNT_ID: ACCOUNT };
    const args = ["--since", SINCE.toISOString(), "--until", UNTIL.toISOString(), "--store"];
    try {
      const run = await runScript("scripts/recover.ts", args, db.url, env);
      assert.equal(run.code, 3, `${run.stdout}\n${run.stderr}`);
      assert.match(run.stdout, /warning: the conversation list was still changing after 10 passes/);
      assert.match(run.stdout, /stored 3 \(verified_by chatwoot_api/);
      assert.match(run.stderr, /^recover incomplete: .* what was found is stored above: run again/m);
      const [{ n }] = await sql`select count(*)::int as n from webhook_events
        where message_id = any(${[lostB, lostC, lostBusy]}::bigint[]) and verified_by = 'chatwoot_api'`;
      assert.equal(n, 3);
      assert.ok(bumps >= 20, `the list was read ${bumps} times`);
    } finally {
      await api.stop();
    }
  },
);

/** Three conversations in the window, their messages all missing; the second's read over several requests. */
function threeConversations() {
  const message = (minutes: number) => ({ id: nextId++, message_type: 0, created_at: ago(minutes) });
  const conversations: StandInConversation[] = [
    { id: nextId++, last_activity_at: ago(10), messages: [message(50), message(40)] },
    { id: nextId++, last_activity_at: ago(20), messages: [60, 50, 40, 30, 20].map(message) },
    { id: nextId++, last_activity_at: ago(30), messages: [message(30)] },
    { id: nextId++, last_activity_at: ago(300), messages: [message(300)] },
  ];
  const ids = (c: StandInConversation) => c.messages.map((m) => m.id);
  return { conversations, ids, all: conversations.slice(0, 3).flatMap(ids) };
}

/** How many rows each of these messages has in webhook_events, and their content, by message id. */
async function storedRows(messageIds: number[]) {
  const rows = await sql`select message_id, count(*)::int as n, min(payload->>'content') as content
    from webhook_events where message_id = any(${messageIds}::bigint[]) group by message_id order by message_id`;
  return rows.map((r) => [Number(r.message_id), r.n, r.content]);
}

dbTest(
  `recover [${db.kind}]: Chatwoot failing part-way (5xx, cut connection, timeout) keeps what was read in full ` +
    `before; a re-run stores the rest, nothing twice`,
  async () => {
    for (const kind of ["503", "cut", "stall"] as const) {
      const { conversations, ids, all } = threeConversations();
      const [first, second, third] = conversations;
      const api = startChatwootApi(conversations, { failWith: kind });
      const config = { ...api.config, requestTimeoutMs: 1000 };
      const scan = () => scanForMissing(config, sql, SINCE, UNTIL, { readAccountDetails: true });
      try {
        // Fails from the second conversation's id range on: its pages `before` were read, not all its messages.
        api.failure.after = await requestsBefore(api, new RegExp(`/${second.id}/messages\\?after=`), scan);
        const partial = await scan();
        assert.ok(partial.stopped, kind);
        assert.equal(partial.stopped.conversationsRead, 1, kind);
        assert.deepEqual(partial.stopped.notReached, [second.id, third.id], kind);
        assert.match(
          partial.stopped.error.message,
          new RegExp(`/conversations/${second.id}/messages: `),
          kind,
        );
        assert.ok(api.requests.some((r) => r.includes(`/${second.id}/messages?before=`)), kind);
        assert.deepEqual(partial.missing.map((m) => m.message.id), ids(first), kind);
        assert.ok(partial.details, "the account's details were read before the messages");
        // Stored without asking Chatwoot anything more: it is failing.
        const asked = api.requests.length;
        const stored = await storeRecovered(config, sql, partial.missing, { details: partial.details });
        assert.deepEqual(stored, { stored: 2, storedMeanwhile: 0 }, kind);
        assert.equal(api.requests.length, asked, kind);
        assert.deepEqual(await storedRows(all), ids(first).map((id) => [id, 1, `message ${id}`]), kind);

        // Chatwoot answers again: the re-run stores the rest, and finds the first conversation's stored.
        api.failure.after = Infinity;
        const rest = await scan();
        assert.equal(rest.stopped, null, kind);
        assert.deepEqual([rest.messages, rest.alreadyStored, rest.missing.length], [8, 2, 6], kind);
        assert.deepEqual(await storeRecovered(config, sql, rest.missing), { stored: 6, storedMeanwhile: 0 });
        assert.deepEqual(
          await storedRows(all),
          [...all].sort((a, b) => a - b).map((id) => [id, 1, `message ${id}`]),
          kind,
        );
      } finally {
        await api.stop();
      }
    }
  },
);

dbTest(
  `recover [${db.kind}]: deno task recover stopped by Chatwoot part-way stores what it read, names the rest, ` +
    `exit 1`,
  async () => {
    const { conversations, ids, all } = threeConversations();
    const [first, second, third] = conversations;
    // A proxy's maintenance page, answered 200: not retried, so the task is not slowed by its minute of retries.
    const api = startChatwootApi(conversations, { failWith: "html" });
    const env = { CHATWOOT_BASE_URL: api.url, CHATWOOT_API_TOKEN: TOKEN, CHATWOOT_ACCOUNT_ID: ACCOUNT };
    const args = ["--since", SINCE.toISOString(), "--until", UNTIL.toISOString(), "--store"];
    try {
      api.failure.after = await requestsBefore(
        api,
        new RegExp(`/${second.id}/messages\\?after=`),
        () => scanForMissing(api.config, sql, SINCE, UNTIL, { readAccountDetails: true }),
      );
      const run = await runScript("scripts/recover.ts", args, db.url, env);
      assert.equal(run.code, 1, `${run.stdout}\n${run.stderr}`);
      assert.match(
        run.stdout,
        /message_created in the 1 of 3 conversations read before Chatwoot's API failed: 2; stored: 0; missing: 2\n/,
      );
      assert.match(run.stdout, /^stored 2 \(verified_by chatwoot_api/m);
      assert.match(
        run.stderr,
        new RegExp(
          `^recover failed \\(http://127\\.0\\.0\\.1:\\d+/\\): Chatwoot API /api/v1/accounts/7/conversations/` +
            `${second.id}/messages: the answer is not JSON$`,
          "m",
        ),
      );
      assert.match(
        run.stderr,
        new RegExp(
          `^not reached: 2 of 3 conversations \\(${second.id}, ${third.id}\\), none of their messages ` +
            `stored; what the 1 read in full lack is stored above\\. Run the same command again`,
          "m",
        ),
      );
      assert.deepEqual(await storedRows(all), ids(first).map((id) => [id, 1, `message ${id}`]));

      api.failure.after = Infinity;
      const again = await runScript("scripts/recover.ts", args, db.url, env);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /message_created: 8; stored: 2; missing: 6\n/);
      assert.match(again.stdout, /^stored 6 \(verified_by chatwoot_api/m);
      assert.deepEqual(
        await storedRows(all),
        [...all].sort((a, b) => a - b).map((id) => [id, 1, `message ${id}`]),
      );
    } finally {
      await api.stop();
    }
  },
);

dbTest(
  `recover [${db.kind}]: a messages page holding an entry that is no message stops the scan there as ` +
    `Chatwoot's answer, naming it: what was stored before is said, the rest named, exit 1`,
  async () => {
    const { conversations, ids, all } = threeConversations();
    const [first, second, third] = conversations;
    // The second conversation's first messages page is a 200 holding null: an answer Chatwoot's API should
    // not give, which neither the database nor this code is to blame for.
    const api = startChatwootApi(conversations, { failWith: "malformed" });
    const env = { CHATWOOT_BASE_URL: api.url, CHATWOOT_API_TOKEN: TOKEN, CHATWOOT_ACCOUNT_ID: ACCOUNT };
    const args = ["--since", SINCE.toISOString(), "--until", UNTIL.toISOString(), "--store"];
    try {
      api.failure.after = await requestsBefore(
        api,
        new RegExp(`/${second.id}/messages`),
        () => scanForMissing(api.config, sql, SINCE, UNTIL, { readAccountDetails: true }),
      );
      const scan = await scanForMissing(api.config, sql, SINCE, UNTIL, { readAccountDetails: true });
      assert.equal(scan.stopped?.reason, "chatwoot", String(scan.stopped?.error));
      assert.ok(scan.stopped.error instanceof ChatwootApiError, String(scan.stopped.error));
      assert.deepEqual([scan.stopped.conversationsRead, scan.stopped.notReached], [1, [second.id, third.id]]);
      assert.deepEqual(scan.missingLines.map((l) => l.id), ids(first));
      api.requests.splice(0, api.requests.length); // failure.after counts from here again

      const run = await runScript("scripts/recover.ts", args, db.url, env);
      const said = `${run.stdout}\n${run.stderr}`;
      assert.equal(run.code, 1, said);
      assert.match(
        run.stdout,
        /message_created in the 1 of 3 conversations read before Chatwoot's API failed: 2; stored: 0; missing: 2\n/,
      );
      assert.match(run.stdout, /^stored 2 \(verified_by chatwoot_api/m);
      assert.match(
        run.stderr,
        new RegExp(
          `^recover failed \\(http://127\\.0\\.0\\.1:\\d+/\\): Chatwoot API /api/v1/accounts/7/conversations/` +
            `${second.id}/messages: payload\\[0\\] is null, not a message$`,
          "m",
        ),
      );
      assert.match(
        run.stderr,
        new RegExp(
          `^not reached: 2 of 3 conversations \\(${second.id}, ${third.id}\\), none of their messages ` +
            `stored; what the 1 read in full lack is stored above\\. Run the same command again`,
          "m",
        ),
      );
      assert.doesNotMatch(run.stderr, /unexpected|database|postgres/, "the database did not fail");
      assert.ok(!said.includes(TOKEN));
      assert.deepEqual(await storedRows(all), ids(first).map((id) => [id, 1, `message ${id}`]));
    } finally {
      await api.stop();
    }
  },
);

/**
 * `deno run -A scripts/recover.ts <args>` as a child to signal; `stderr()` is what it printed there so far,
 * `output` settles once it exited.
 */
function spawnRecover(args: string[], env: Record<string, string>) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "scripts/recover.ts", ...args],
    cwd: new URL("..", import.meta.url).pathname,
    env: { DATABASE_URL: db.url, NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const text = { stdout: "", stderr: "" };
  const drain = (stream: ReadableStream<Uint8Array>, into: "stdout" | "stderr") =>
    stream.pipeThrough(new TextDecoderStream()).pipeTo(
      new WritableStream({ write: (chunk) => void (text[into] += chunk) }),
    );
  const output = Promise.all([child.status, drain(child.stdout, "stdout"), drain(child.stderr, "stderr")])
    .then(([status]) => ({ code: status.code, ...text }));
  return { kill: (signal: Deno.Signal) => child.kill(signal), stderr: () => text.stderr, output };
}

/**
 * A stand-in Chatwoot that holds the first request matching `pattern` until `release()` (the client may give
 * up on it meanwhile); `held` settles once that request came.
 */
function holdingChatwootApi(conversations: StandInConversation[], pattern: RegExp) {
  const held = Promise.withResolvers<void>();
  const released = Promise.withResolvers<void>();
  let holding = true;
  const api = startChatwootApi(conversations, {
    beforeAnswer: (request) => {
      if (!holding || !pattern.test(request)) return;
      holding = false;
      held.resolve();
      return released.promise;
    },
  });
  return { ...api, held: held.promise, release: () => released.resolve() };
}

dbTest(
  `recover [${db.kind}]: deno task recover --store stores each conversation once read; SIGINT/SIGTERM stops ` +
    `it, the ones read stored; a re-run stores the rest, nothing twice`,
  async () => {
    for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
      const { conversations, ids, all } = threeConversations();
      const [first, second, third] = conversations;
      // Held at the third conversation's first request: the first two were read in full by then.
      const api = holdingChatwootApi(conversations, new RegExp(`/conversations/${third.id}/messages`));
      const env = { CHATWOOT_BASE_URL: api.url, CHATWOOT_API_TOKEN: TOKEN, CHATWOOT_ACCOUNT_ID: ACCOUNT };
      const args = ["--since", SINCE.toISOString(), "--until", UNTIL.toISOString(), "--store"];
      try {
        const child = spawnRecover(args, env);
        const exitedEarly = child.output.then((run) => {
          throw new Error(
            `exited before the third conversation was asked for:\n${run.stdout}\n${run.stderr}`,
          );
        });
        await settledWithin(
          Promise.race([api.held, exitedEarly]),
          60_000,
          "the third conversation's messages",
        );
        // Stored before the scan went on, not at its end.
        const readFirst = [...ids(first), ...ids(second)].sort((a, b) => a - b);
        assert.deepEqual(await storedRows(all), readFirst.map((id) => [id, 1, `message ${id}`]), signal);

        child.kill(signal);
        const run = await settledWithin(child.output, 60_000, `recover after ${signal}`);
        api.release();
        assert.equal(run.code, code, `${run.stdout}\n${run.stderr}`);
        assert.match(
          run.stdout,
          new RegExp(
            `message_created in the 2 of 3 conversations read before it was stopped \\(${signal}\\): 7; ` +
              `stored: 0; missing: 7\n`,
          ),
        );
        assert.match(run.stdout, /^stored 7 \(verified_by chatwoot_api/m);
        assert.match(run.stderr, new RegExp(`^recover stopped \\(${signal}\\)$`, "m"));
        assert.match(
          run.stderr,
          new RegExp(
            `^not reached: 1 of 3 conversations \\(${third.id}\\), none of their messages stored; what the 2 ` +
              `read in full lack is stored above\\. Run the same command again: `,
            "m",
          ),
        );
        assert.deepEqual(await storedRows(all), readFirst.map((id) => [id, 1, `message ${id}`]), signal);

        const again = await runScript("scripts/recover.ts", args, db.url, env);
        assert.equal(again.code, 0, again.stderr);
        assert.match(again.stdout, /message_created: 8; stored: 7; missing: 1\n/);
        assert.match(again.stdout, /^stored 1 \(verified_by chatwoot_api/m);
        assert.deepEqual(
          await storedRows(all),
          [...all].sort((a, b) => a - b).map((id) => [id, 1, `message ${id}`]),
        );
      } finally {
        api.release();
        await api.stop();
      }
    }
  },
);

dbTest(
  `recover [${db.kind}]: SIGINT while a conversation is being stored stores it whole, then stops, exit 130`,
  async () => {
    if (db.kind !== "postgres") return; // waits on a lock another session holds, seen in pg_stat_activity
    const { conversations, ids, all } = threeConversations();
    const [first, second, third] = conversations;
    const api = startChatwootApi(conversations);
    const env = { CHATWOOT_BASE_URL: api.url, CHATWOOT_API_TOKEN: TOKEN, CHATWOOT_ACCOUNT_ID: ACCOUNT };
    // Share mode: the check for what is stored reads on, the first insert waits until released.
    const released = Promise.withResolvers<void>();
    const locked = Promise.withResolvers<void>();
    const holder = sql.begin(async (tx) => {
      await tx`lock table public.webhook_events in share mode`;
      locked.resolve();
      await released.promise;
    });
    await Promise.race([locked.promise, holder]);
    try {
      const child = spawnRecover(
        ["--since", SINCE.toISOString(), "--until", UNTIL.toISOString(), "--store"],
        env,
      );
      await eventually(
        async () =>
          (await sql`select 1 from pg_stat_activity
            where application_name = 'chatwoot-relay-recover' and wait_event_type = 'Lock'`).length > 0,
        60_000,
        "recover's first insert waiting on the lock",
      );
      child.kill("SIGINT");
      // Let go once the signal was taken (its line printed), the insert still waiting.
      await eventually(
        () => Promise.resolve(child.stderr().includes("SIGINT: stopping")),
        60_000,
        "the SIGINT line",
      );
      released.resolve();
      await holder;
      const run = await settledWithin(child.output, 60_000, "recover after SIGINT");
      assert.equal(run.code, 130, `${run.stdout}\n${run.stderr}`);
      assert.match(run.stdout, /in the 1 of 3 conversations read before it was stopped \(SIGINT\): 2; /);
      assert.match(run.stdout, /^stored 2 \(verified_by chatwoot_api/m);
      assert.match(
        run.stderr,
        new RegExp(`^not reached: 2 of 3 conversations \\(${second.id}, ${third.id}\\), none`, "m"),
      );
      assert.deepEqual(await storedRows(all), ids(first).map((id) => [id, 1, `message ${id}`]));
    } finally {
      released.resolve();
      await holder.catch(() => {});
      await api.stop();
    }
  },
);

dbTest(
  `recover [${db.kind}]: a prune that moves the horizon during a scan stops it as retention, not as the ` +
    `database failing; what was stored before stays`,
  async () => {
    const { conversations, ids, all } = threeConversations();
    const [first, second, third] = conversations;
    const [{ pruned_before: before }] = await sql`select pruned_before from relay_settings`;
    // The daily prune commits as the second conversation's messages are read: the window is now behind the
    // horizon (pruned_before + 1 hour), and recover_webhook_event refuses its messages (55000).
    const api = startChatwootApi(conversations, {
      beforeAnswer: async (request) => {
        if (request.includes(`/${second.id}/messages`)) {
          await sql`update relay_settings set pruned_before = now()`;
        }
      },
    });
    try {
      const scan = await scanForMissing(api.config, sql, SINCE, UNTIL, { store: {} });
      assert.equal(scan.stopped?.reason, "retention", String(scan.stopped?.error));
      assert.match(
        scan.stopped.error.message,
        /^recover_webhook_event: message \d+ was created at .*recover from/,
      );
      assert.equal(scan.stopped.conversationsRead, 1);
      assert.deepEqual(scan.stopped.notReached, [second.id, third.id]);
      assert.deepEqual(await storedRows(all), ids(first).map((id) => [id, 1, `message ${id}`]));

      // The task says so: the prune, not a signal nor the database, stopped it (the same prune again).
      await sql`update relay_settings set pruned_before = ${before}`;
      const env = { CHATWOOT_BASE_URL: api.url, CHATWOOT_API_TOKEN: TOKEN, CHATWOOT_ACCOUNT_ID: ACCOUNT };
      const args = ["--since", SINCE.toISOString(), "--until", UNTIL.toISOString(), "--store"];
      const run = await runScript("scripts/recover.ts", args, db.url, env);
      assert.equal(run.code, 1, `${run.stdout}\n${run.stderr}`);
      assert.match(
        run.stdout,
        /in the 1 of 3 conversations read before a prune moved the retention horizon: 2; stored: 2; missing: 0\n/,
      );
      assert.match(run.stderr, /^recover failed: recover_webhook_event: message \d+ /m);
    } finally {
      await sql`update relay_settings set pruned_before = ${before}`;
      await api.stop();
    }
  },
);

dbTest(
  `recover [${db.kind}]: a scan stopped while it waits to retry Chatwoot stops at once, the conversations ` +
    `stored before kept`,
  async () => {
    // Stopped as the retry is announced (before its pause), and once the pause has begun.
    for (const when of ["before", "during"] as const) {
      const { conversations, ids, all } = threeConversations();
      const [first, second, third] = conversations;
      const api = startChatwootApi(conversations);
      const stopping = new AbortController();
      // Chatwoot answers 503 from the second conversation's messages on; the pause before its retry is long.
      api.failure.after = await requestsBefore(
        api,
        new RegExp(`/${second.id}/messages`),
        () => scanForMissing(api.config, sql, SINCE, UNTIL, { readAccountDetails: true }),
      );
      const config = {
        ...api.config,
        retryPausesMs: [600_000],
        onRetry: () => when === "before" ? stopping.abort() : setTimeout(() => stopping.abort(), 0),
      };
      try {
        const scan = await settledWithin(
          scanForMissing(config, sql, SINCE, UNTIL, { store: {}, signal: stopping.signal }),
          60_000,
          `the scan stopped ${when} its retry pause`,
        );
        assert.equal(scan.stopped?.reason, "interrupted", when);
        assert.ok(scan.stopped.error instanceof RecoveryInterrupted);
        assert.equal(scan.stopped.conversationsRead, 1);
        assert.deepEqual(scan.stopped.notReached, [second.id, third.id]);
        assert.deepEqual(scan.stored, { stored: 2, storedMeanwhile: 0 });
        assert.deepEqual(scan.missing, [], "stored as read, not kept");
        assert.deepEqual(scan.missingLines.map((l) => l.id), ids(first));
        assert.deepEqual(await storedRows(all), ids(first).map((id) => [id, 1, `message ${id}`]), when);
      } finally {
        await api.stop();
      }
    }
  },
);

dbTest(
  `recover [${db.kind}]: deno task recover stopped before the messages are read stores nothing, exit 130`,
  async () => {
    const { conversations, all } = threeConversations();
    const api = holdingChatwootApi(conversations, /\/conversations\?/);
    const env = { CHATWOOT_BASE_URL: api.url, CHATWOOT_API_TOKEN: TOKEN, CHATWOOT_ACCOUNT_ID: ACCOUNT };
    try {
      const child = spawnRecover(
        ["--since", SINCE.toISOString(), "--until", UNTIL.toISOString(), "--store"],
        env,
      );
      await settledWithin(api.held, 60_000, "the conversation list");
      child.kill("SIGINT");
      const run = await settledWithin(child.output, 60_000, "recover after SIGINT");
      assert.equal(run.code, 130, `${run.stdout}\n${run.stderr}`);
      assert.match(
        run.stderr,
        /^recover stopped \(SIGINT\) before any conversation's messages were read: nothing stored$/m,
      );
      assert.deepEqual(await storedRows(all), []);
    } finally {
      api.release();
      await api.stop();
    }
  },
);

dbTest(
  `recover [${db.kind}]: the database failing mid-scan keeps the conversations stored before, none half ` +
    `stored; says so, exit 1; a re-run stores the rest`,
  async () => {
    const { conversations, ids, all } = threeConversations();
    const [first, second, third] = conversations;
    // The database takes the second conversation's first two messages, then refuses its third.
    const refused = second.messages[2].id;
    await sql.unsafe(`alter table public.webhook_events add constraint recover_test_refused
      check (message_id is distinct from ${refused}) not valid`);
    const api = startChatwootApi(conversations);
    const env = { CHATWOOT_BASE_URL: api.url, CHATWOOT_API_TOKEN: TOKEN, CHATWOOT_ACCOUNT_ID: ACCOUNT };
    const args = ["--since", SINCE.toISOString(), "--until", UNTIL.toISOString(), "--store"];
    try {
      const run = await runScript("scripts/recover.ts", args, db.url, env);
      assert.equal(run.code, 1, `${run.stdout}\n${run.stderr}`);
      assert.match(
        run.stdout,
        /message_created in the 1 of 3 conversations read before the database failed: 2; stored: 0; missing: 2\n/,
      );
      assert.match(run.stdout, /^stored 2 \(verified_by chatwoot_api/m);
      assert.match(run.stderr, /^recover failed \(postgres.*\): .*recover_test_refused/m);
      assert.match(
        run.stderr,
        new RegExp(
          `^not reached: 2 of 3 conversations \\(${second.id}, ${third.id}\\), none of their messages ` +
            `stored; what the 1 read in full lack is stored above\\. Run the same command again once the ` +
            `database answers`,
          "m",
        ),
      );
      assert.deepEqual(await storedRows(all), ids(first).map((id) => [id, 1, `message ${id}`]));

      await sql`alter table public.webhook_events drop constraint recover_test_refused`;
      const again = await runScript("scripts/recover.ts", args, db.url, env);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /message_created: 8; stored: 2; missing: 6\n/);
      assert.match(again.stdout, /^stored 6 \(verified_by chatwoot_api/m);
      assert.deepEqual(
        await storedRows(all),
        [...all].sort((a, b) => a - b).map((id) => [id, 1, `message ${id}`]),
      );
    } finally {
      await sql`alter table public.webhook_events drop constraint if exists recover_test_refused`;
      await api.stop();
    }
  },
);

/**
 * public.<name>(<args>) renamed aside and a stand-in put in its place that returns no row (a set, empty): the
 * database answers without an error, and the caller that reads a row from it reads none (a bug of ours, as a
 * query's result read wrongly would be). `restore()` puts the function back as it was (its grants with it).
 */
function noRowFrom(name: string, args: string, returns: string) {
  const kept = `${name}_kept_by_recover_test`;
  let swapped = false;
  return {
    async swap() {
      if (swapped) return;
      swapped = true;
      await sql.begin(async (tx) => {
        await tx.unsafe(`alter function public.${name}(${args}) rename to ${kept}`);
        await tx.unsafe(`create function public.${name}(${args}) returns setof ${returns}
          language sql as 'select null::${returns} where false'`);
      });
    },
    async restore() {
      if (!swapped) return;
      swapped = false;
      await sql.begin(async (tx) => {
        await tx.unsafe(`drop function public.${name}(${args})`);
        await tx.unsafe(`alter function public.${kept}(${args}) rename to ${name}`);
      });
    },
  };
}

const RECOVER_WEBHOOK_EVENT_ARGS = "text, text, bigint, bigint, bigint, bigint, text, text, boolean";

dbTest(
  `recover [${db.kind}]: an error of ours while a conversation's messages are stored is said as unexpected, ` +
    `not as the database failing: no URL named, what was stored before stays, exit 1`,
  async () => {
    // The database answers the second conversation's store with no row where one is read: a TypeError in
    // our code, after the first conversation was stored.
    const { conversations, ids, all } = threeConversations();
    const [first, second, third] = conversations;
    const noRow = noRowFrom("recover_webhook_event", RECOVER_WEBHOOK_EVENT_ARGS, "bigint");
    const api = startChatwootApi(conversations, {
      beforeAnswer: async (request) => {
        if (request.includes(`/${second.id}/messages`)) await noRow.swap();
      },
    });
    const env = { CHATWOOT_BASE_URL: api.url, CHATWOOT_API_TOKEN: TOKEN, CHATWOOT_ACCOUNT_ID: ACCOUNT };
    const args = ["--since", SINCE.toISOString(), "--until", UNTIL.toISOString(), "--store"];
    try {
      const run = await runScript("scripts/recover.ts", args, db.url, env);
      const said = `${run.stdout}\n${run.stderr}`;
      assert.equal(run.code, 1, said);
      assert.match(
        run.stdout,
        /message_created in the 1 of 3 conversations read before an unexpected error: 2; stored: 0; missing: 2\n/,
      );
      assert.match(run.stdout, /^stored 2 \(verified_by chatwoot_api/m);
      assert.match(run.stderr, /^recover failed: unexpected error \(TypeError\): .*\bid\b/m);
      assert.match(
        run.stderr,
        new RegExp(
          `^not reached: 2 of 3 conversations \\(${second.id}, ${third.id}\\), none of their messages ` +
            `stored; what the 1 read in full lack is stored above\\. Run the same command again`,
          "m",
        ),
      );
      assert.doesNotMatch(run.stderr, /database|postgres|127\.0\.0\.1/, "nothing that did not fail is named");
      assert.ok(!said.includes(TOKEN));
      assert.deepEqual(await storedRows(all), ids(first).map((id) => [id, 1, `message ${id}`]));
    } finally {
      await noRow.restore();
      await api.stop();
    }

    // A payload builder's error (an invalid recovery time: a caller's bug) reaches the scan as it stores.
    const { conversations: some } = threeConversations();
    const builder = startChatwootApi(some);
    try {
      const scan = await scanForMissing(builder.config, sql, SINCE, UNTIL, { store: { now: new Date(NaN) } });
      assert.equal(scan.stopped?.reason, "unexpected", String(scan.stopped?.error));
      assert.ok(scan.stopped.error instanceof RangeError, String(scan.stopped.error));
      assert.equal(scan.stopped.conversationsRead, 0);
      assert.deepEqual(await storedRows(some.flatMap((c) => c.messages.map((m) => m.id))), []);
    } finally {
      await builder.stop();
    }
  },
);

dbTest(
  `recover [${db.kind}]: the database's connection lost while a conversation's messages are stored is still ` +
    `said as the database failing`,
  async () => {
    const { conversations, ids, all } = threeConversations();
    const [first, second, third] = conversations;
    const proxy = startDbProxy(db.url);
    const viaProxy = connect(proxy.url, { max: 1, connectTimeout: 2 });
    // Gone (open connections closed, new ones refused) once the first conversation is stored.
    const api = startChatwootApi(conversations, {
      beforeAnswer: (request) => {
        if (request.includes(`/${second.id}/messages`)) proxy.takeDown();
      },
    });
    try {
      const scan = await scanForMissing(api.config, viaProxy, SINCE, UNTIL, { store: {} });
      assert.equal(scan.stopped?.reason, "database", String(scan.stopped?.error));
      assert.match(String(dbErrorCode(scan.stopped.error)), /^(E[A-Z]+|CONNECT\w+)$/);
      assert.equal(scan.stopped.conversationsRead, 1);
      assert.deepEqual(scan.stopped.notReached, [second.id, third.id]);
      assert.deepEqual(await storedRows(all), ids(first).map((id) => [id, 1, `message ${id}`]));
    } finally {
      await viaProxy.end({ timeout: 1 });
      await proxy.close();
      await api.stop();
    }
  },
);

dbTest(
  `recover [${db.kind}]: a rebuilt payload that fails validation is named as that, not as the database ` +
    `failing; what was stored before stays, exit 1`,
  async () => {
    const { conversations, ids, all } = threeConversations();
    const [first, second, third] = conversations;
    // An API answer no webhook would carry: a sender id below 0. Its rebuilt payload fails the
    // message_created schema before anything is sent to the database, which answers all along.
    const invalid = second.messages[2];
    invalid.sender = { id: -1, name: "Nobody", type: "contact" };
    const api = startChatwootApi(conversations);
    const env = { CHATWOOT_BASE_URL: api.url, CHATWOOT_API_TOKEN: TOKEN, CHATWOOT_ACCOUNT_ID: ACCOUNT };
    const args = ["--since", SINCE.toISOString(), "--until", UNTIL.toISOString(), "--store"];
    try {
      const run = await runScript("scripts/recover.ts", args, db.url, env);
      const said = `${run.stdout}\n${run.stderr}`;
      assert.equal(run.code, 1, said);
      assert.match(
        run.stdout,
        new RegExp(
          "message_created in the 1 of 3 conversations read before a payload rebuilt from Chatwoot's API " +
            "failed validation: 2; stored: 0; missing: 2\n",
        ),
      );
      assert.match(
        run.stderr,
        new RegExp(
          `^recover failed: message ${invalid.id} in conversation ${second.id}: the payload rebuilt from ` +
            `Chatwoot's API is not a valid event: Payload does not match the message_created schema ` +
            `\\(sender\\.id: [^)]+\\)$`,
          "m",
        ),
      );
      assert.match(
        run.stderr,
        new RegExp(
          `^not reached: 2 of 3 conversations \\(${second.id}, ${third.id}\\), none of their messages ` +
            `stored; what the 1 read in full lack is stored above\\. ` +
            `A run again stops at message ${invalid.id} too`,
          "m",
        ),
      );
      assert.doesNotMatch(run.stderr, /database|postgres/, "the database did not fail, and is not named");
      assert.deepEqual(await storedRows(all), ids(first).map((id) => [id, 1, `message ${id}`]));
    } finally {
      await api.stop();
    }
  },
);

dbTest(
  `recover [${db.kind}]: a conversation list holding an entry that is no conversation (null, a number, an ` +
    `array) is said as Chatwoot's answer, naming the page and what was wrong, exit 1`,
  async () => {
    // The second page holds a conversation, then the entry: neither the database nor this code fails.
    let entry: unknown = null;
    const api = serveOnLoopback((req) => {
      const url = new URL(req.url);
      if (url.pathname === "/api/v1/profile") {
        return Response.json({ id: 5, accounts: [{ id: Number(ACCOUNT), role: "administrator" }] });
      }
      if (url.pathname === `/api/v1/accounts/${ACCOUNT}/conversations`) {
        const page = Number(url.searchParams.get("page"));
        const conversation = (id: number) => ({ id, inbox_id: 3, last_activity_at: NOW, messages: [] });
        const payload = page === 1
          ? [conversation(1), conversation(2)]
          : page === 2
          ? [conversation(3), entry]
          : [];
        return Response.json({ data: { meta: { all_count: 4 }, payload } });
      }
      return new Response(null, { status: 404 });
    });
    const env = { CHATWOOT_BASE_URL: api.url, CHATWOOT_API_TOKEN: TOKEN, CHATWOOT_ACCOUNT_ID: ACCOUNT };
    const args = ["--since", SINCE.toISOString(), "--until", UNTIL.toISOString()];
    try {
      for (const [value, said] of [[null, "null"], [7, "a number"], [[], "an array"]] as const) {
        entry = value;
        const run = await runScript("scripts/recover.ts", args, db.url, env);
        const output = `${run.stdout}\n${run.stderr}`;
        assert.equal(run.code, 1, output);
        assert.match(
          run.stderr,
          new RegExp(
            `^recover failed \\(http://127\\.0\\.0\\.1:\\d+/\\): Chatwoot API /api/v1/accounts/7/conversations ` +
              `\\(page 2\\): data\\.payload\\[1\\] is ${said}, not a conversation$`,
            "m",
          ),
          `${said}: ${run.stderr}`,
        );
        assert.doesNotMatch(run.stderr, /unexpected|database|postgres/, said);
        assert.ok(!output.includes(TOKEN), said);
      }
    } finally {
      await api.stop();
    }
  },
);

dbTest(
  `recover [${db.kind}]: an error of ours before any messages are read is said as unexpected, not as the ` +
    `database's (which stays named when it fails), exit 1`,
  async () => {
    // The database answers recover_horizon() with no row where one is read: a TypeError in our code.
    const { conversations, all } = threeConversations();
    const api = startChatwootApi(conversations);
    const noRow = noRowFrom("recover_horizon", "", "timestamptz");
    const env = { CHATWOOT_BASE_URL: api.url, CHATWOOT_API_TOKEN: TOKEN, CHATWOOT_ACCOUNT_ID: ACCOUNT };
    const args = ["--since", SINCE.toISOString(), "--until", UNTIL.toISOString(), "--store"];
    try {
      await noRow.swap();
      const run = await runScript("scripts/recover.ts", args, db.url, env);
      const said = `${run.stdout}\n${run.stderr}`;
      assert.equal(run.code, 1, said);
      assert.match(run.stderr, /^recover failed: unexpected error \(TypeError\): .*\bhorizon\b/m);
      assert.doesNotMatch(run.stderr, /database|postgres|127\.0\.0\.1/, "nothing that did not fail is named");
      assert.ok(!said.includes(TOKEN));
      assert.deepEqual(api.requests, [], "stopped before Chatwoot was asked anything");
      await noRow.restore();
      assert.deepEqual(await storedRows(all), []);

      // The database failing before the messages is still named as the database's, without its password.
      const closed = `postgresql://postgres:db-secret-4711@127.0.0.1:${CLOSED_PORT}/postgres`;
      const refused = await runScript("scripts/recover.ts", args, closed, env);
      assert.equal(refused.code, 1, `${refused.stdout}\n${refused.stderr}`);
      assert.match(
        refused.stderr,
        new RegExp(
          `^recover failed \\(postgresql://postgres:\\*\\*\\*@127\\.0\\.0\\.1:${CLOSED_PORT}/postgres\\): `,
          "m",
        ),
      );
      assert.ok(!`${refused.stdout}${refused.stderr}`.includes("db-secret-4711"));
    } finally {
      await noRow.restore();
      await api.stop();
    }
  },
);

dbTest(
  `recover [${db.kind}]: the account's other lists are read as the conversations are: an inbox or agent that ` +
    `is no object is Chatwoot's answer gone wrong; a stray entry in the profile's accounts is passed over`,
  async () => {
    const lists = {
      accounts: [null, { id: Number(ACCOUNT), role: "administrator" }] as unknown[],
      inboxes: [{ id: 3, name: "Email" }] as unknown[],
      agents: [] as unknown[],
    };
    const api = serveOnLoopback((req) => {
      const path = new URL(req.url).pathname;
      const base = `/api/v1/accounts/${ACCOUNT}`;
      if (path === "/api/v1/profile") return Response.json({ id: 5, accounts: lists.accounts });
      if (path === base) return Response.json({ id: Number(ACCOUNT), name: "Acme Support" });
      if (path === `${base}/inboxes`) return Response.json({ payload: lists.inboxes });
      if (path === `${base}/agents`) return Response.json(lists.agents);
      if (path === `${base}/conversations`) {
        return Response.json({ data: { meta: { all_count: 0 }, payload: [] } });
      }
      return new Response(null, { status: 404 });
    });
    const config: ChatwootApi = { baseUrl: api.url, apiToken: TOKEN, accountId: ACCOUNT, retryPausesMs: [] };
    const scan = () => scanForMissing(config, sql, SINCE, UNTIL, { readAccountDetails: true, progress });
    const lines: string[] = [];
    const progress = (line: string) => lines.push(line);
    try {
      const read = await scan();
      assert.equal(read.conversations, 0);
      assert.deepEqual([...read.details!.inboxNames], [[3, "Email"]]);
      assert.ok(!lines.some((l) => l.includes("role")), lines.join("\n"));

      lists.inboxes = [{ id: 3, name: "Email" }, null];
      await assert.rejects(scan(), (error) => {
        assert.ok(error instanceof ChatwootApiError, String(error));
        assert.equal(
          error.message,
          `Chatwoot API /api/v1/accounts/${ACCOUNT}/inboxes: payload[1] is null, not an inbox`,
        );
        return true;
      });
      lists.inboxes = [];
      lists.agents = ["alex@example.com"];
      await assert.rejects(scan(), (error) => {
        assert.ok(error instanceof ChatwootApiError, String(error));
        assert.equal(
          error.message,
          `Chatwoot API /api/v1/accounts/${ACCOUNT}/agents: entry 0 of the answer is a string, not an agent`,
        );
        return true;
      });
    } finally {
      await api.stop();
    }
  },
);

dbTest(
  `recover [${db.kind}]: a conversation deleted after it was listed is skipped with a warning, the rest read`,
  async () => {
    const s = await scenario();
    const api = startChatwootApi(s.conversations, { gone: new Set([s.conversations[0].id]) });
    const lines: string[] = [];
    try {
      const scan = await scanForMissing(api.config, sql, SINCE, UNTIL, { progress: (l) => lines.push(l) });
      assert.deepEqual(scan.missing.map((m) => m.message.id), [s.ids.fromContact]);
      const warning = `conversation ${s.conversations[0].id} is gone (404)`;
      assert.ok(lines.some((l) => l.includes(warning)), lines.join("\n"));
    } finally {
      await api.stop();
    }
  },
);

dbTest(
  `recover [${db.kind}]: a message saved after messages created later than it (imported, concurrent) is read`,
  async () => {
    const [first, a, b, c, d, late] = Array.from({ length: 6 }, () => nextId++);
    const conversation: StandInConversation = {
      id: nextId++,
      // Chatwoot sets last_activity_at to the created_at of the message saved last.
      last_activity_at: ago(38),
      messages: [
        { id: first, message_type: 0, created_at: ago(45) },
        { id: a, message_type: 0, created_at: ago(40) },
        { id: b, message_type: 0, created_at: ago(35) },
        { id: c, message_type: 0, created_at: ago(30) },
        { id: d, message_type: 0, created_at: ago(25) },
        // Saved last (the greatest id) with an earlier created_at: the latest page (by created_at) ends
        // before it, and the page `before` the smallest id on it holds only smaller ids.
        { id: late, message_type: 0, created_at: ago(38) },
      ],
    };
    for (const idRangeLimit of [1000, 2]) {
      const api = startChatwootApi([conversation], { idRangeLimit });
      try {
        const scan = await scanForMissing(
          { ...api.config, messagesPerIdRange: idRangeLimit },
          sql,
          SINCE,
          UNTIL,
        );
        assert.deepEqual(
          scan.missing.map((m) => m.message.id),
          [first, a, late, b, c, d],
          `at most ${idRangeLimit}`,
        );
      } finally {
        await api.stop();
      }
    }
  },
);

dbTest(
  `recover [${db.kind}]: a conversation with more messages in the window than one id range answers is read whole`,
  async () => {
    // Chatwoot's own limits (MessageFinder): 20 a page `before`, 1000 for an id range. Every seventh message
    // was saved late with an earlier time (imported), so id order is not created_at order.
    const messages: StandInMessage[] = Array.from({ length: 2500 }, (_, i) => ({
      id: nextId++,
      message_type: 0,
      created_at: ago(100 - i / 30) - (i % 7 === 6 ? 600 : 0),
    }));
    const conversation = { id: nextId++, last_activity_at: ago(10), messages };
    const api = startChatwootApi([conversation], { messagesPerPage: 20, idRangeLimit: 1000 });
    try {
      const scan = await scanForMissing(api.config, sql, SINCE, UNTIL);
      assert.deepEqual(
        scan.missing.map((m) => m.message.id).sort((a, b) => a - b),
        messages.map((m) => m.id),
      );
      const idRanges = api.requests.filter((r) => /messages\?after=/.test(r));
      assert.ok(
        idRanges.length >= 3,
        `the range answered in full was split: ${idRanges.length} id ranges read`,
      );
    } finally {
      await api.stop();
    }
  },
);

dbTest(
  `recover [${db.kind}]: an agent's token is warned about; --inbox keeps to the inboxes named; kept unforwarded`,
  async () => {
    const s = await scenario();
    s.conversations[1].inbox_id = 4;
    const api = startChatwootApi(s.conversations, { role: "agent" });
    const lines: string[] = [];
    try {
      const scan = await scanForMissing(api.config, sql, SINCE, UNTIL, {
        inboxIds: [4],
        progress: (l) => lines.push(l),
      });
      assert.ok(lines.some((l) => /warning: the token's user is an agent/.test(l)), lines.join("\n"));
      assert.deepEqual(scan.missing.map((m) => m.message.id), [s.ids.fromContact]);
      const stored = await storeRecovered(api.config, sql, scan.missing, { forward: false });
      assert.deepEqual(stored, { stored: 1, storedMeanwhile: 0 });
      const [row] = await sql`select status, verified_by from webhook_events
        where message_id = ${s.ids.fromContact}`;
      assert.deepEqual({ ...row }, { status: "skipped", verified_by: "chatwoot_api" });
    } finally {
      await api.stop();
    }
  },
);

dbTest(
  `recover [${db.kind}]: a recovered copy already delivered is not sent again when the real webhook comes`,
  async () => {
    const s = await scenario();
    const api = startChatwootApi(s.conversations);
    try {
      const scan = await scanForMissing(api.config, sql, SINCE, UNTIL);
      await storeRecovered(api.config, sql, scan.missing);
      await sql`update webhook_events set status = 'delivered', delivered_at = now(), next_attempt_at = null
        where message_id = ${s.ids.outgoing}`;
      const genuine = JSON.stringify(samplePayload("message_created", { messageId: s.ids.outgoing }));
      const stored = await storeEvent(sql, eventToStore(genuine));
      assert.deepEqual([stored.outcome, stored.receiveCount, stored.forwardNow], ["stored", 1, false]);
      const [row] = await sql`select status, raw_body = ${genuine} as genuine, verified_by from webhook_events
        where message_id = ${s.ids.outgoing}`;
      assert.deepEqual({ ...row }, { status: "delivered", genuine: true, verified_by: "signature" });
    } finally {
      await api.stop();
    }
  },
);

dbTest(
  `recover [${db.kind}]: a recovered copy is not a receipt: webhook_pipeline_health's last_received_at skips it`,
  async () => {
    const s = await scenario();
    const api = startChatwootApi(s.conversations);
    try {
      const scan = await scanForMissing(api.config, sql, SINCE, UNTIL);
      assert.equal((await storeRecovered(api.config, sql, scan.missing)).stored, 5);
    } finally {
      await api.stop();
    }
    // Every webhook came an hour ago (rolled back): the copies stored now say nothing about Chatwoot's.
    await sql.begin(async (tx) => {
      await tx`update webhook_events set last_received_at = last_received_at - interval '1 hour'
                where verified_by <> 'chatwoot_api'`;
      const [health] = await tx`select last_received_at from webhook_pipeline_health`;
      const [webhooks] = await tx`select max(last_received_at) as at from webhook_events
                                   where verified_by <> 'chatwoot_api'`;
      assert.equal(health.last_received_at.getTime(), webhooks.at.getTime());
      throw new Rollback();
    }).catch((error) => {
      if (!(error instanceof Rollback)) throw error;
    });
  },
);

dbTest(
  `recover [${db.kind}]: a window reaching back past what retention deleted is refused: it would deliver twice`,
  async () => {
    const s = await scenario();
    const api = startChatwootApi(s.conversations);
    try {
      // Deletes nothing here (no delivered event is 10 days old) but records its cutoff.
      await sql`call public.prune_webhook_events(0, interval '10 days')`;
      const elevenDaysAgo = new Date((NOW - 11 * 86_400) * 1000);
      await assert.rejects(
        scanForMissing(api.config, sql, elevenDaysAgo, UNTIL),
        (e: Error) => e instanceof RecoveryWindowError && /retention may have deleted events/.test(e.message),
      );
      assert.equal(api.requests.length, 0, "refused before asking Chatwoot anything");
      const cli = await runScript("scripts/recover.ts", ["--since", elevenDaysAgo.toISOString()], db.url, {
        CHATWOOT_BASE_URL: api.url,
        CHATWOOT_API_TOKEN: TOKEN,
        CHATWOOT_ACCOUNT_ID: ACCOUNT,
      });
      assert.equal(cli.code, 2);
      assert.match(cli.stderr, /start from \S+ or later/);
      // A window inside what is kept is read as before.
      assert.equal((await scanForMissing(api.config, sql, SINCE, UNTIL)).missing.length, 5);
    } finally {
      await api.stop();
    }
  },
);

dbTest(
  `recover [${db.kind}]: a long scan says how far it has read, every 100 pages of the list and conversations`,
  async () => {
    const conversations: StandInConversation[] = Array.from({ length: 230 }, (_, i) => ({
      id: nextId++,
      last_activity_at: ago(100 - i / 10),
      messages: [{ id: nextId++, message_type: 0, created_at: ago(100 - i / 10) }],
    }));
    const api = startChatwootApi(conversations, { conversationsPerPage: 2 });
    const lines: string[] = [];
    try {
      const scan = await scanForMissing(api.config, sql, SINCE, UNTIL, { progress: (l) => lines.push(l) });
      assert.equal(scan.missing.length, 230);
      // The list, two to a page: 115 pages, and every 100th said.
      assert.deepEqual(lines.filter((l) => l.startsWith("conversation list")), [
        "conversation list: read 100 pages, 200 conversations",
      ]);
      assert.deepEqual(lines.filter((l) => l.startsWith("read ")), [
        "read the messages of 100 of 230 conversations; missing so far: 100",
        "read the messages of 200 of 230 conversations; missing so far: 200",
      ]);
    } finally {
      await api.stop();
    }
  },
);

dbTest(
  `recover [${db.kind}]: a scan keeps the messages it lacks, not every message of the window (a huge account)`,
  async () => {
    // 80 conversations of four 250 KB messages (an email's HTML comes larger), all stored but one, read under a
    // 48 MB heap: holding the window's 80 MB of messages exceeds it, as does keeping the list's 40 MB of latest
    // ones (each conversation's in `messages` and `last_non_activity_message`). Ten to a page of the list.
    const large = "x".repeat(250_000);
    const conversations: StandInConversation[] = Array.from({ length: 80 }, (_, i) => ({
      id: nextId++,
      last_activity_at: ago(90 - i),
      messages: Array.from({ length: 4 }, () => ({
        id: nextId++,
        message_type: 0,
        created_at: ago(90 - i),
        content: large,
      })),
    }));
    const lost = conversations[7].messages[2].id;
    for (const conversation of conversations) {
      for (const { id } of conversation.messages) {
        if (id !== lost) {
          await storeSample(sql, "message_created", { messageId: id, conversationId: conversation.id });
        }
      }
    }
    const api = startChatwootApi(conversations, { conversationsPerPage: 10, messagesPerPage: 20 });
    try {
      const report = await runScript(
        "scripts/recover.ts",
        ["--since", SINCE.toISOString(), "--until", UNTIL.toISOString()],
        db.url,
        {
          CHATWOOT_BASE_URL: api.url,
          CHATWOOT_API_TOKEN: TOKEN,
          CHATWOOT_ACCOUNT_ID: ACCOUNT,
          DENO_V8_FLAGS: "--max-old-space-size=48",
        },
      );
      assert.equal(report.code, 0, report.stderr.slice(0, 2000));
      assert.match(report.stdout, /message_created: 320; stored: 319; missing: 1\n/);
      assert.match(report.stdout, new RegExp(`message ${lost} in conversation ${conversations[7].id},`));
    } finally {
      await api.stop();
    }
  },
);

dbTest(`recover [${db.kind}]: close database`, () => db.close());

class Rollback extends Error {}
