// The HTTP edges of chatwoot-webhook and readiness, over real TCP: a URL token with a raw "+" (as base64 has),
// and a body that stops arriving half way.
import assert from "node:assert/strict";
import { createChatwootWebhookApp } from "../supabase/functions/_shared/chatwoot_webhook.ts";
import { createReadinessApp } from "../supabase/functions/_shared/readiness.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";
import { chatwootSignatureHeaders } from "../supabase/functions/_shared/signature.ts";
import { webhookConfigFromEnv } from "../supabase/functions/_shared/webhook_config.ts";
import { samplePayload } from "../scripts/lib/samples.ts";
import { dbTest, startTestDb } from "./_db.ts";
import { eventually, serveOnLoopback, TEST_SECRET } from "./_http.ts";
import { ADMIN_TOKEN, fullEnv } from "./_readiness.ts";

const db = await startTestDb();
const sql = db.sql;
/** Base64-shaped, with "+" and "/": what `openssl rand -base64 21` gives. */
const PLUS_TOKEN = "q+3vR8x/Lw0+Zk7pTn2+YbHc5dEf";

let nextId = 500_000;
const messageBody = (messageId = nextId++) => JSON.stringify(samplePayload("message_created", { messageId }));

async function storedWithMessageId(messageId: number): Promise<number> {
  const [{ n }] = await sql<{ n: number }[]>`
    select count(*)::int as n from webhook_events where message_id = ${messageId}`;
  return n;
}

function webhookServer(env: Record<string, string>, bodyDeadlineMs?: number) {
  const config = webhookConfigFromEnv(env);
  assert.ok(config.ok);
  if (bodyDeadlineMs !== undefined) config.config.bodyDeadlineMs = bodyDeadlineMs;
  const log = memoryLogger();
  const app = createChatwootWebhookApp({ config, sql, log });
  return { ...serveOnLoopback(app.fetch), log };
}

/**
 * Sends `head` (request line and headers) and `parts` of the body over a raw TCP connection, pausing `pauseMs`
 * between parts, then reads the answer: status and JSON body. A server that never answers gives status 0
 * once `giveUpMs` has passed (so a hang fails the test instead of holding it).
 */
async function rawExchange(
  baseUrl: string,
  head: string,
  parts: Uint8Array[],
  { pauseMs = 0, giveUpMs = 10_000 } = {},
): Promise<{ status: number; body: Record<string, unknown> | null }> {
  const { hostname, port } = new URL(baseUrl);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  const giveUp = setTimeout(() => conn.close(), giveUpMs);
  const received: number[] = [];
  try {
    await conn.write(new TextEncoder().encode(head));
    for (const [i, part] of parts.entries()) {
      if (i > 0 && pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
      await conn.write(part);
    }
    const buf = new Uint8Array(16 * 1024);
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      received.push(...buf.subarray(0, n));
      const text = new TextDecoder().decode(new Uint8Array(received));
      const end = text.indexOf("\r\n\r\n");
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(text)?.[1];
      if (end >= 0 && length !== undefined && received.length >= end + 4 + Number(length)) break;
    }
  } finally {
    clearTimeout(giveUp);
    try {
      conn.close();
    } catch {
      // already closed by giveUp
    }
  }
  const text = new TextDecoder().decode(new Uint8Array(received));
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
  const bodyText = text.slice(text.indexOf("\r\n\r\n") + 4);
  return { status, body: status ? JSON.parse(bodyText) : null };
}

/**
 * A raw HTTP/1.1 connection to `baseUrl`: bytes written as given, answers read whole one after another, and
 * whether the server closed it. Once `giveUpMs` has passed since it opened, the socket is closed on our side
 * and every read ends: a server that keeps it open fails the test instead of holding it.
 */
async function rawConnection(baseUrl: string, giveUpMs = 10_000) {
  const { hostname, port } = new URL(baseUrl);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  let gaveUp = false;
  const giveUp = setTimeout(() => {
    gaveUp = true;
    conn.close();
  }, giveUpMs);
  const buf = new Uint8Array(16 * 1024);
  let pending: number[] = [];
  return {
    /** Writes `bytes`; false when the server has closed (or reset) the connection already. */
    write: (bytes: Uint8Array | string) =>
      conn.write(typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes).then(
        () => true,
        () => false,
      ),
    /** The next answer; status 0 when the connection ended before a whole one arrived. */
    async answer(): Promise<{ status: number; head: string; body: Record<string, unknown> | null }> {
      for (;;) {
        const text = new TextDecoder().decode(new Uint8Array(pending));
        const end = text.indexOf("\r\n\r\n");
        const length = end < 0 ? undefined : /\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, end))?.[1];
        if (length !== undefined && pending.length >= end + 4 + Number(length)) {
          const head = text.slice(0, end).toLowerCase();
          const body = text.slice(end + 4, end + 4 + Number(length));
          pending = pending.slice(end + 4 + Number(length));
          return { status: Number(/^http\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), head, body: JSON.parse(body) };
        }
        const n = await conn.read(buf).catch(() => null);
        if (n === null) return { status: 0, head: "", body: null };
        pending.push(...buf.subarray(0, n));
      }
    },
    /** Whether the server closed the connection (end of stream, or a reset) before we gave up on it. */
    async closedByServer(): Promise<boolean> {
      for (;;) {
        const n = await conn.read(buf).catch(() => null);
        if (n === null) return !gaveUp;
      }
    },
    close() {
      clearTimeout(giveUp);
      try {
        conn.close();
      } catch {
        // closed already (by giveUp)
      }
    },
  };
}

function requestHead(method: string, path: string, headers: Record<string, string>, length: number): string {
  const lines = [`${method} ${path} HTTP/1.1`, "Host: 127.0.0.1", `Content-Length: ${length}`];
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  return lines.join("\r\n") + "\r\n\r\n";
}

/** A signed webhook, split in two halves. */
function signedWebhookHalves(messageId: number): { head: string; halves: Uint8Array[] } {
  const body = new TextEncoder().encode(messageBody(messageId));
  const text = new TextDecoder().decode(body);
  const headers = {
    "Content-Type": "application/json",
    ...chatwootSignatureHeaders(TEST_SECRET, text),
  };
  const half = Math.floor(body.length / 2);
  return {
    head: requestHead("POST", "/chatwoot-webhook", headers, body.length),
    halves: [body.subarray(0, half), body.subarray(half)],
  };
}

dbTest(
  `webhook http edges [${db.kind}]: a URL token with "+" is accepted sent raw or encoded; a wrong one is 401`,
  async () => {
    const server = webhookServer({ CHATWOOT_WEBHOOK_URL_TOKEN: PLUS_TOKEN });
    try {
      const post = async (query: string) => {
        const messageId = nextId++;
        const res = await fetch(`${server.url}/chatwoot-webhook?${query}`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: messageBody(messageId),
        });
        return { status: res.status, body: await res.json(), stored: await storedWithMessageId(messageId) };
      };
      // Pasted into Chatwoot's URL as it is: "+" arrives raw, which form decoding reads as a space.
      const raw = await post(`token=${PLUS_TOKEN}`);
      assert.deepEqual([raw.status, raw.body.outcome, raw.stored], [200, "stored", 1]);
      // Encoded as it should be ("%2B"), by send.ts for one.
      const encoded = await post(`token=${encodeURIComponent(PLUS_TOKEN)}`);
      assert.deepEqual([encoded.status, encoded.body.outcome, encoded.stored], [200, "stored", 1]);
      // Still refused: another token with "+", the right one with spaces where its "+" are, one character off.
      for (
        const wrong of [
          "q+3vR8x/Lw0+Zk7pTn2+YbHc5dEg",
          PLUS_TOKEN.replaceAll("+", "%20"),
          PLUS_TOKEN.slice(0, -1),
        ]
      ) {
        const res = await post(`token=${wrong}`);
        assert.deepEqual([res.status, res.body.error, res.stored], [401, "token_invalid", 0], wrong);
      }
      const logged = JSON.stringify(server.log.lines);
      assert.ok(!logged.includes(PLUS_TOKEN) && !logged.includes(PLUS_TOKEN.replaceAll("+", " ")));
    } finally {
      await server.stop();
    }
  },
);

dbTest(
  `webhook http edges [${db.kind}]: a configured token with a space is still accepted sent as "+"`,
  async () => {
    const spaced = "q 3vR8x/Lw0 Zk7pTn2 YbHc5dEf";
    const server = webhookServer({ CHATWOOT_WEBHOOK_URL_TOKEN: spaced });
    try {
      const messageId = nextId++;
      const res = await fetch(`${server.url}/chatwoot-webhook?token=${spaced.replaceAll(" ", "+")}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: messageBody(messageId),
      });
      assert.deepEqual([res.status, (await res.json()).outcome], [200, "stored"]);
    } finally {
      await server.stop();
    }
  },
);

dbTest(
  `webhook http edges [${db.kind}]: a body that stalls half way is answered 408 request_timeout, counted, not stored`,
  async () => {
    const server = webhookServer({ CHATWOOT_WEBHOOK_SECRET: TEST_SECRET }, 300);
    try {
      const messageId = nextId++;
      const { head, halves } = signedWebhookHalves(messageId);
      const res = await rawExchange(server.url, head, [halves[0]]);
      assert.deepEqual([res.status, res.body?.error], [408, "request_timeout"]);
      assert.equal(await storedWithMessageId(messageId), 0);
      const counted = await eventually(
        async () => {
          const [row] = await sql<{ n: number; status: number }[]>`
          select sum(count)::int as n, max(http_status) as status from webhook_rejections
           where reason = 'request_timeout'`;
          return row.n > 0 ? row : null;
        },
        5000,
        "the 408 counted in webhook_rejections",
      );
      assert.equal(counted.status, 408);
    } finally {
      await server.stop();
    }
  },
);

dbTest(
  `webhook http edges [${db.kind}]: a client gone half way through its body is a refusal (400), not an error of ours`,
  async () => {
    const server = webhookServer({ CHATWOOT_WEBHOOK_SECRET: TEST_SECRET }, 10_000);
    try {
      const messageId = nextId++;
      const { head, halves } = signedWebhookHalves(messageId);
      const { hostname, port } = new URL(server.url);
      const conn = await Deno.connect({ hostname, port: Number(port) });
      await conn.write(new TextEncoder().encode(head));
      await conn.write(halves[0]);
      conn.close();
      const rejected = await eventually(
        () =>
          Promise.resolve(
            server.log.lines.find((l) => l.msg.endsWith("Rejected") || l.level === "error") ?? null,
          ),
        5000,
        "a Rejected line for the body that ended early",
      );
      assert.deepEqual([rejected.level, rejected.status, rejected.error], ["warn", 400, "body_incomplete"]);
      assert.deepEqual(server.log.lines.filter((l) => l.level === "error"), []);
      assert.equal(await storedWithMessageId(messageId), 0);
    } finally {
      await server.stop();
    }
  },
);

dbTest(
  `webhook http edges [${db.kind}]: a slow body completed within the deadline is stored`,
  async () => {
    // Longer than the pause, by far: this is about a body that takes a while, not about the deadline.
    const server = webhookServer({ CHATWOOT_WEBHOOK_SECRET: TEST_SECRET }, 10_000);
    try {
      const messageId = nextId++;
      const { head, halves } = signedWebhookHalves(messageId);
      const res = await rawExchange(server.url, head, halves, { pauseMs: 500, giveUpMs: 20_000 });
      assert.deepEqual([res.status, res.body?.outcome], [200, "stored"]);
      assert.equal(await storedWithMessageId(messageId), 1);
    } finally {
      await server.stop();
    }
  },
);

dbTest(
  `webhook http edges [${db.kind}]: a readiness PATCH whose body stalls is answered 408, the item unchanged`,
  async () => {
    const app = (bodyDeadlineMs: number) =>
      createReadinessApp({
        sql,
        env: fullEnv("http://127.0.0.1:9"), // PATCH calls no Chatwoot
        log: memoryLogger(),
        cacheMs: 0,
        bodyDeadlineMs,
      });
    const evidence = async () => {
      const [row] = await sql<{ status: string; evidence: string | null }[]>`
        select status, evidence from public.readiness_items where key = 'task-2'`;
      return row;
    };
    const body = new TextEncoder().encode(JSON.stringify({ status: "done", evidence: "stalled patch body" }));
    const head = requestHead("PATCH", "/readiness/items/task-2", {
      "Content-Type": "application/json",
      Authorization: `Bearer ${ADMIN_TOKEN}`,
    }, body.length);
    const half = Math.floor(body.length / 2);

    const before = await evidence();
    const stalled = serveOnLoopback(app(300).fetch);
    try {
      const res = await rawExchange(stalled.url, head, [body.subarray(0, half)]);
      assert.deepEqual([res.status, res.body?.error], [408, "request_timeout"]);
      assert.deepEqual(await evidence(), before);
    } finally {
      await stalled.stop();
    }

    const patient = serveOnLoopback(app(10_000).fetch);
    try {
      const res = await rawExchange(patient.url, head, [body.subarray(0, half), body.subarray(half)], {
        pauseMs: 500,
        giveUpMs: 20_000,
      });
      assert.deepEqual([res.status, res.body?.ok], [200, true]);
      assert.deepEqual(await evidence(), { status: "done", evidence: "stalled patch body" });
    } finally {
      await patient.stop();
    }
  },
);

// Deno.serve keeps a socket after an answer for as long as the request's body is neither read to its end nor
// cancelled, and an answer given once the body is cancelled is keep-alive: a client that declared or streamed
// a body past the limit kept its connection for as long as it kept it, one that stalled and then went on had
// the rest of its body read and the connection kept for more. A refusal closes the connection once answered (for a stalled body,
// once the client sends anything more: Deno's pending read holds the socket until then); a body read whole
// keeps it for the next request.
dbTest(
  `webhook http edges [${db.kind}]: a stalled body's 408 closes the connection once the client goes on`,
  async () => {
    const server = webhookServer({ CHATWOOT_WEBHOOK_SECRET: TEST_SECRET }, 300);
    const conn = await rawConnection(server.url);
    try {
      const { head, halves } = signedWebhookHalves(nextId++);
      await conn.write(head);
      await conn.write(halves[0]);
      const res = await conn.answer();
      assert.deepEqual([res.status, res.body?.error], [408, "request_timeout"]);
      assert.match(res.head, /\r\nconnection: close(\r\n|$)/);
      // The client goes on: the rest of its body is not read for a next request on this connection.
      await conn.write(halves[1]);
      assert.equal(await conn.closedByServer(), true, "the server closed the connection after its 408");
    } finally {
      conn.close();
      await server.stop();
    }
  },
);

dbTest(
  `webhook http edges [${db.kind}]: a body declared past the limit is a 413 that closes the connection`,
  async () => {
    const server = webhookServer({
      CHATWOOT_WEBHOOK_SECRET: TEST_SECRET,
      CHATWOOT_WEBHOOK_MAX_BODY_BYTES: "1000",
    });
    const conn = await rawConnection(server.url);
    try {
      // Refused before any byte of the body is read; the client then stops sending.
      await conn.write(
        requestHead("POST", "/chatwoot-webhook", { "Content-Type": "application/json" }, 5000),
      );
      await conn.write("x".repeat(100));
      const res = await conn.answer();
      assert.deepEqual([res.status, res.body?.error], [413, "payload_too_large"]);
      assert.equal(await conn.closedByServer(), true, "the server closed the connection after its 413");
    } finally {
      conn.close();
      await server.stop();
    }
  },
);

dbTest(
  `webhook http edges [${db.kind}]: a chunked body streamed past the limit is a 413 that closes the connection`,
  async () => {
    const server = webhookServer({
      CHATWOOT_WEBHOOK_SECRET: TEST_SECRET,
      CHATWOOT_WEBHOOK_MAX_BODY_BYTES: "1000",
    });
    const conn = await rawConnection(server.url);
    try {
      // 2000 bytes in one chunk, then nothing: no last chunk ever comes.
      await conn.write(
        "POST /chatwoot-webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n" +
          "Content-Type: application/json\r\n\r\n",
      );
      await conn.write(`7d0\r\n${"x".repeat(2000)}\r\n`);
      const res = await conn.answer();
      assert.deepEqual([res.status, res.body?.error], [413, "payload_too_large"]);
      assert.equal(await conn.closedByServer(), true, "the server closed the connection after its 413");
    } finally {
      conn.close();
      await server.stop();
    }
  },
);

dbTest(
  `webhook http edges [${db.kind}]: after a 200 the connection stays open and serves the next webhook`,
  async () => {
    const server = webhookServer({ CHATWOOT_WEBHOOK_SECRET: TEST_SECRET });
    const conn = await rawConnection(server.url);
    try {
      const ids = [nextId++, nextId++];
      for (const messageId of ids) {
        const { head, halves } = signedWebhookHalves(messageId);
        await conn.write(head);
        await conn.write(halves[0]);
        await conn.write(halves[1]);
        const res = await conn.answer();
        assert.deepEqual([res.status, res.body?.outcome], [200, "stored"]);
        assert.doesNotMatch(res.head, /connection: close/);
      }
      assert.deepEqual([await storedWithMessageId(ids[0]), await storedWithMessageId(ids[1])], [1, 1]);
    } finally {
      conn.close();
      await server.stop();
    }
  },
);

dbTest(
  `webhook http edges [${db.kind}]: a readiness PATCH whose body stalls is a 408 that closes the connection once the client goes on`,
  async () => {
    const server = serveOnLoopback(
      createReadinessApp({
        sql,
        env: fullEnv("http://127.0.0.1:9"), // PATCH calls no Chatwoot
        log: memoryLogger(),
        cacheMs: 0,
        bodyDeadlineMs: 300,
      }).fetch,
    );
    const conn = await rawConnection(server.url);
    try {
      const body = JSON.stringify({ status: "done", evidence: "stalled again" });
      await conn.write(requestHead("PATCH", "/readiness/items/task-2", {
        "Content-Type": "application/json",
        Authorization: `Bearer ${ADMIN_TOKEN}`,
      }, body.length));
      await conn.write(body.slice(0, 10));
      const res = await conn.answer();
      assert.deepEqual([res.status, res.body?.error], [408, "request_timeout"]);
      assert.match(res.head, /\r\nconnection: close(\r\n|$)/);
      await conn.write(body.slice(10));
      assert.equal(await conn.closedByServer(), true, "the server closed the connection after its 408");
    } finally {
      conn.close();
      await server.stop();
    }
  },
);

dbTest(
  `webhook http edges [${db.kind}]: a body sent in one-byte chunks is stored (read in linear time, within the deadline)`,
  async () => {
    // Chunked encoding lets a client (before any authentication) send a byte a chunk, and Deno hands each
    // chunk to the reader on its own: work or objects growing with the chunks read so far made 200 KB take
    // past the 60 s deadline (408). What is kept per chunk is tested in read_body.test.ts, by reachability.
    const server = webhookServer({ CHATWOOT_WEBHOOK_SECRET: TEST_SECRET });
    const messageId = nextId++;
    const text = messageBody(messageId).replace(/^\{/, "{" + " ".repeat(200_000));
    const body = new TextEncoder().encode(text);
    const head = [
      "POST /chatwoot-webhook HTTP/1.1",
      "Host: 127.0.0.1",
      "Transfer-Encoding: chunked",
      "Content-Type: application/json",
      ...Object.entries(chatwootSignatureHeaders(TEST_SECRET, text)).map(([k, v]) => `${k}: ${v}`),
    ].join("\r\n") + "\r\n\r\n";
    const parts: Uint8Array[] = [];
    for (let i = 0; i < body.length; i += 4096) {
      // "1\r\n<byte>\r\n" for each byte of this slice of the body.
      const slice = body.subarray(i, i + 4096);
      const part = new Uint8Array(slice.length * 6);
      slice.forEach((byte, j) => part.set([0x31, 13, 10, byte, 13, 10], j * 6));
      parts.push(part);
    }
    parts.push(new TextEncoder().encode("0\r\n\r\n"));
    try {
      const res = await rawExchange(server.url, head, parts, { giveUpMs: 90_000 });
      assert.deepEqual([res.status, res.body?.outcome], [200, "stored"]);
      assert.equal(await storedWithMessageId(messageId), 1);
    } finally {
      await server.stop();
    }
  },
);

Deno.test({
  name: "webhook http edges: close the database",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () => db.close(),
});
