// A realistic data set, made the way production makes it: signed webhooks through the real function, then
// the real forwarder against a loopback Agent SDK that fails one conversation (retries, then dead letters).
import { createChatwootWebhookApp } from "../supabase/functions/_shared/chatwoot_webhook.ts";
import type { Sql } from "../supabase/functions/_shared/db.ts";
import { drain } from "../supabase/functions/_shared/forwarder.ts";
import { silentLogger } from "../supabase/functions/_shared/log.ts";
import { webhookConfigFromEnv } from "../supabase/functions/_shared/webhook_config.ts";
import { SAMPLE_EVENTS, samplePayload } from "../scripts/lib/samples.ts";
import { serveOnLoopback, signedRequest, TEST_SECRET } from "./_http.ts";

export const FIXTURE = {
  /** Conversations whose deliveries succeed, and the one the Agent SDK keeps failing. */
  flowing: [101, 102],
  failing: 103,
  /** Message ids: 1000 + conversation * 10 + n. */
  editedMessageId: 2015,
  outgoingMessageId: 2022,
  privateNoteMessageId: 2023,
  botMessageId: 2024,
  maxAttempts: 3,
};

async function post(app: { fetch: (r: Request) => Response | Promise<Response> }, payload: unknown) {
  const res = await app.fetch(
    signedRequest("http://relay.test/chatwoot-webhook", JSON.stringify(payload)),
  );
  if (res.status !== 200) throw new Error(`fixture post answered ${res.status}: ${await res.text()}`);
  return await res.json();
}

/** Loads the fixture into a migrated database; returns what was posted. */
export async function loadFixture(sql: Sql): Promise<{ posted: number }> {
  await sql`update public.relay_settings
               set retry_schedule_seconds = '{0}', retry_jitter = 0, max_attempts = ${FIXTURE.maxAttempts}`;
  const app = createChatwootWebhookApp({
    config: webhookConfigFromEnv({ CHATWOOT_WEBHOOK_SECRET: TEST_SECRET }),
    sql,
    log: silentLogger,
  });
  const at = new Date("2026-11-20T10:00:00.000Z");
  let posted = 0;
  for (const conversationId of [...FIXTURE.flowing, FIXTURE.failing]) {
    for (const event of SAMPLE_EVENTS) {
      if (event === "message_updated") continue;
      await post(app, samplePayload(event, { conversationId, messageId: 1000 + conversationId * 10, at }));
      posted++;
    }
    // A second incoming message in every conversation.
    await post(
      app,
      samplePayload("message_created", { conversationId, messageId: 1000 + conversationId * 10 + 1, at }),
    );
    posted++;
  }
  // An edited message (created, then updated twice: the second update replaces the first).
  const edited = { conversationId: 101, messageId: FIXTURE.editedMessageId, at };
  await post(app, samplePayload("message_created", { ...edited, content: "Where is my order?" }));
  await post(app, samplePayload("message_updated", { ...edited, content: "Where is my order #1042?" }));
  // Each edit touches the conversation: the second update's payload carries a later updated_at (which orders
  // them when both are signed in the same second).
  const secondEdit = samplePayload("message_updated", {
    ...edited,
    content: "Where is my order #1042? Thanks",
  });
  (secondEdit.conversation as Record<string, unknown>).updated_at = at.getTime() / 1000 + 60.5;
  await post(app, secondEdit);
  // The same message_created delivered twice by Chatwoot (a duplicate).
  const duplicate = samplePayload("message_created", { ...edited, content: "Where is my order?" });
  await post(app, duplicate);
  // An agent's reply with two attachments, a private note, and an agent bot's message.
  const agent = { id: 7, name: "Alex Agent", email: "alex@hotrodan.com", type: "user" };
  await post(app, {
    ...samplePayload("message_created", { conversationId: 102, messageId: FIXTURE.outgoingMessageId, at }),
    message_type: "outgoing",
    content: "It ships today.",
    sender: agent,
    attachments: [
      { id: 1, message_id: FIXTURE.outgoingMessageId, file_type: "image", account_id: 1, extension: "png" },
      { id: 2, message_id: FIXTURE.outgoingMessageId, file_type: "file", account_id: 1, extension: "pdf" },
    ],
  });
  await post(app, {
    ...samplePayload("message_created", { conversationId: 102, messageId: FIXTURE.privateNoteMessageId, at }),
    message_type: "outgoing",
    private: true,
    content: "Customer is a VIP",
    sender: agent,
  });
  await post(app, {
    ...samplePayload("message_created", { conversationId: 102, messageId: FIXTURE.botMessageId, at }),
    message_type: "template",
    content: "Rate your conversation",
    sender: { id: 3, name: "CSAT Bot", type: "agent_bot" },
  });
  posted += 7;

  // Deliver: the Agent SDK answers 500 for the failing conversation, 200 for the rest.
  const agentSdk = serveOnLoopback(async (req) => {
    const body = await req.json();
    const conversation = body.conversation?.id ?? body.id;
    return conversation === FIXTURE.failing
      ? new Response("upstream exploded", { status: 500 })
      : Response.json({ ok: true });
  });
  try {
    const summary = await drain(
      sql,
      { agentSdkUrl: agentSdk.url, agentSdkSecret: null, agentSdkToken: null },
      {
        budgetMs: 20_000,
        batchSize: 20,
        log: silentLogger,
      },
    );
    if (summary.stopped !== "idle") throw new Error(`fixture drain stopped: ${JSON.stringify(summary)}`);
  } finally {
    await agentSdk.stop();
  }
  return { posted };
}

/**
 * Enough delivered history for the planner to prefer the indexes (EXPLAIN on a few dozen rows always
 * picks a sequential scan): `rows` old delivered messages over 500 conversations, then ANALYZE.
 */
export async function loadHistory(sql: Sql, rows = 20_000): Promise<void> {
  await sql`
    insert into public.webhook_events (
      event_key, event, message_id, conversation_id, account_id, inbox_id, payload, raw_body, body_sha256,
      verified_by, status, attempts, received_at, last_received_at, delivered_at)
    select 'message:' || (100000 + g) || ':message_created', 'message_created', 100000 + g, 5000 + g % 500, 1, 3,
           jsonb_build_object('event', 'message_created', 'id', 100000 + g, 'content', 'history ' || g,
                              'message_type', 'incoming', 'created_at', '2026-01-01T00:00:00.000Z'),
           '{"event":"message_created"}', md5(g::text) || md5(g::text), 'signature', 'delivered', 1,
           now() - interval '60 days' + g * interval '1 minute', now() - interval '60 days' + g * interval '1 minute',
           now() - interval '60 days' + g * interval '1 minute'
      from generate_series(1, ${rows}) g`;
  await sql`analyze public.webhook_events`;
}
