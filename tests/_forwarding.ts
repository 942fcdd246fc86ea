// Shared set-up of the forwarding tests: store realistic events through the real ingest function, and make
// the retry schedule fast (no test ever waits for real minutes).
import assert from "node:assert/strict";
import { eventColumns, parseChatwootEvent } from "../supabase/functions/_shared/chatwoot_payload.ts";
import { chatwootWebhookApp } from "../supabase/functions/_shared/chatwoot_webhook.ts";
import { type Logger, memoryLogger } from "../supabase/functions/_shared/log.ts";
import type { Sql } from "../supabase/functions/_shared/db.ts";
import { type EventToStore, storeEvent } from "../supabase/functions/_shared/ingest_store.ts";
import { startTestDb, type TestDb } from "./_db.ts";
import { type AgentSdkStandIn, startAgentSdk } from "./_agent_sdk.ts";
import type { ForwarderConfig } from "../supabase/functions/_shared/forwarder_config.ts";
import { chatwootSignatureHeaders, sha256Hex } from "../supabase/functions/_shared/signature.ts";
import { type SampleEvent, type SampleOptions, samplePayload } from "../scripts/lib/samples.ts";

let nextMessageId = 10_000;

/** What chatwoot-webhook hands to storeEvent for this raw body (signed, no delivery id). */
export function eventToStore(raw: string): EventToStore {
  const parsed = parseChatwootEvent(raw);
  if (!parsed.ok) throw new Error(`bad sample: ${parsed.message}`);
  const sha = sha256Hex(raw);
  return {
    ...eventColumns(parsed.payload, parsed.event, sha),
    deliveryId: null,
    payloadJson: raw,
    rawBody: raw,
    bodySha256: sha,
    verifiedBy: "signature",
    sentAtSeconds: Math.floor(Date.now() / 1000),
    receiptId: crypto.randomUUID(),
  };
}

/**
 * Stores `raw` as `deno task recover` stores a message whose webhook never came (recover_webhook_event, to be
 * forwarded); returns what it says (the row id, or null when the event was there already).
 */
export async function storeRecoveredCopy(sql: Sql, raw: string): Promise<number | null> {
  const e = eventToStore(raw);
  const [{ id }] = await sql<{ id: string | null }[]>`
    select public.recover_webhook_event(${e.eventKey}::text, ${e.event}::text, ${e.messageId}::bigint,
      ${e.conversationId}::bigint, ${e.accountId}::bigint, ${e.inboxId}::bigint, ${raw}::text,
      ${e.bodySha256}::text, true) as id`;
  return id === null ? null : Number(id);
}

/** Stores a sample event (or the given raw text) exactly as chatwoot-webhook would; returns its row id. */
export async function storeSample(
  sql: Sql,
  event: SampleEvent = "message_created",
  options: SampleOptions & { raw?: string } = {},
): Promise<number> {
  const raw = options.raw ??
    JSON.stringify(samplePayload(event, { messageId: nextMessageId++, ...options }));
  const stored = await storeEvent(sql, eventToStore(raw));
  return stored.id;
}

export interface FastSettings {
  max_attempts?: number;
  retry_schedule_seconds?: number[];
  request_timeout_ms?: number;
  lease_seconds?: number;
}

/** fastSettings' request_timeout_ms unless told. */
export const FAST_REQUEST_TIMEOUT_MS = 2_000;

/** Immediate retries, no jitter, short timeouts. */
export async function fastSettings(sql: Sql, s: FastSettings = {}) {
  await sql`
    update public.relay_settings set
      max_attempts = ${s.max_attempts ?? 5},
      retry_schedule_seconds = ${s.retry_schedule_seconds ?? [0]}::int[],
      retry_jitter = 0,
      request_timeout_ms = ${s.request_timeout_ms ?? FAST_REQUEST_TIMEOUT_MS},
      lease_seconds = ${s.lease_seconds ?? 30}
    where id`;
}

export async function statusOf(sql: Sql, id: number): Promise<string> {
  const [row] = await sql<{ status: string }[]>`select status from public.webhook_events where id = ${id}`;
  return row.status;
}

export async function attemptsOf(sql: Sql, id: number) {
  return await sql<
    { attempt: number; version: number; http_status: number | null; outcome: string; error: string | null }[]
  >`select attempt, version, http_status, outcome, error from public.webhook_delivery_attempts
     where event_id = ${id} order by id`;
}

/** The event is still pending, no attempt counted or recorded: nothing was spent on it. */
export async function assertUntouched(sql: Sql, id: number): Promise<void> {
  const [row] = await sql<{ status: string; attempts: number }[]>`
    select status, attempts from public.webhook_events where id = ${id}`;
  assert.deepEqual({ ...row, recorded: [...await attemptsOf(sql, id)] }, {
    status: "pending",
    attempts: 0,
    recorded: [],
  });
}

let shared: Promise<TestDb> | null = null;
let sharedClosed = false;

/**
 * One migrated database per test file (starting PGlite costs seconds on a busy machine), emptied and with
 * default settings before each test. Tests in a file run one after another; closeSharedDb() ends it.
 */
export async function freshForwardingDb(): Promise<TestDb> {
  // A test registered after the file's close test would start a second database that nothing drops.
  if (sharedClosed) {
    throw new Error("the shared database is closed: register the close test last in its file");
  }
  shared ??= startTestDb();
  const db = await shared;
  await db.sql.unsafe(`
    truncate public.webhook_delivery_attempts, public.webhook_events, public.webhook_rejections
      restart identity cascade;
    delete from public.relay_settings;
    insert into public.relay_settings default values;`).simple();
  return db;
}

export async function closeSharedDb() {
  sharedClosed = true;
  if (shared) await (await shared).close();
  shared = null;
}

/** A fresh forwarding database with fast retry settings and an Agent SDK stand-in, closed afterwards. */
export async function withForwardingSetup(
  fn: (db: TestDb, sdk: AgentSdkStandIn, config: ForwarderConfig) => Promise<void>,
) {
  const db = await freshForwardingDb();
  const sdk = startAgentSdk();
  try {
    await fastSettings(db.sql);
    await fn(db, sdk, { agentSdkUrl: sdk.url, agentSdkSecret: null, agentSdkToken: null });
  } finally {
    await sdk.close();
  }
}

/**
 * One chatwoot-webhook function instance (its own immediate-drain single flight), posting signed samples.
 * With `agentSdkUrl` null it has no AGENT_SDK_URL: only relay_settings' override gives it a target. `env`
 * adds to its environment (AGENT_SDK_TOKEN, ...); `log` receives its log lines.
 */
export function webhookInstance(
  sql: Sql,
  agentSdkUrl: string | null,
  options: { env?: Record<string, string>; log?: Logger } = {},
) {
  const secret = "chatwoot-webhook-secret-for-tests";
  const app = chatwootWebhookApp({
    env: {
      CHATWOOT_WEBHOOK_SECRET: secret,
      ...(agentSdkUrl === null ? {} : { AGENT_SDK_URL: agentSdkUrl }),
      ...options.env,
    },
    sql,
    log: options.log ?? memoryLogger(),
  });
  return async (event: SampleEvent, messageId: number, conversationId: number, content?: string) => {
    const body = JSON.stringify(samplePayload(event, { messageId, conversationId, content }));
    const response = await app.fetch(
      new Request("http://functions.local/chatwoot-webhook", {
        method: "POST",
        headers: { "Content-Type": "application/json", ...chatwootSignatureHeaders(secret, body) },
        body,
      }),
    );
    assert.equal(response.status, 200);
    return (await response.json()) as { id: number; outcome: string; status: string };
  };
}

/**
 * Runs `fn` with the edge runtime's `EdgeRuntime.waitUntil` stood in for, then waits for what was handed to it,
 * as the runtime does: the immediate drains end before the next test truncates the tables under them (a
 * drain's last, empty claim could otherwise meet that TRUNCATE: "deadlock detected").
 */
export async function withBackgroundAwaited(fn: () => Promise<void>): Promise<void> {
  const edge = globalThis as { EdgeRuntime?: unknown };
  const before = edge.EdgeRuntime;
  const handed: Promise<unknown>[] = [];
  edge.EdgeRuntime = { waitUntil: (promise: Promise<unknown>) => void handed.push(promise) };
  try {
    await fn();
  } finally {
    edge.EdgeRuntime = before;
    await Promise.allSettled(handed);
  }
}
