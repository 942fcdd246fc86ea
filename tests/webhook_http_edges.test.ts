// The HTTP edges of chatwoot-webhook over real TCP: a URL token with a raw "+" (as base64 has).
import assert from "node:assert/strict";
import { createChatwootWebhookApp } from "../supabase/functions/_shared/chatwoot_webhook.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";
import { webhookConfigFromEnv } from "../supabase/functions/_shared/webhook_config.ts";
import { samplePayload } from "../scripts/lib/samples.ts";
import { dbTest, startTestDb } from "./_db.ts";
import { serveOnLoopback } from "./_http.ts";

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

function webhookServer(env: Record<string, string>) {
  const config = webhookConfigFromEnv(env);
  assert.ok(config.ok);
  const log = memoryLogger();
  const app = createChatwootWebhookApp({ config, sql, log });
  return { ...serveOnLoopback(app.fetch), log };
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

Deno.test({
  name: "webhook http edges: close the database",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () => db.close(),
});
