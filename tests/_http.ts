// Helpers for talking to the webhook function the way Chatwoot does.
import assert from "node:assert/strict";
import { chatwootSignatureHeaders } from "../supabase/functions/_shared/signature.ts";
import type { Sql } from "../supabase/functions/_shared/db.ts";
import type { memoryLogger } from "../supabase/functions/_shared/log.ts";

export const TEST_SECRET = "whsec_test_0123456789abcdef0123456789abcdef";

export interface SignedPost {
  secret?: string;
  nowSeconds?: number;
  deliveryId?: string;
  headers?: Record<string, string>;
}

/** A Request to `url` carrying `body` signed in Chatwoot's scheme. */
export function signedRequest(url: string, body: string, options: SignedPost = {}): Request {
  return new Request(url, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      "X-Chatwoot-Delivery": options.deliveryId ?? crypto.randomUUID(),
      ...chatwootSignatureHeaders(options.secret ?? TEST_SECRET, body, options.nowSeconds),
      ...options.headers,
    },
    body,
  });
}

/** Serves `handler` on a free loopback port; returns its base URL and a stop function. */
export function serveOnLoopback(handler: (req: Request) => Response | Promise<Response>) {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, handler);
  return { url: `http://127.0.0.1:${server.addr.port}`, stop: () => server.shutdown() };
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes. */
export async function eventually<T>(
  check: () => Promise<T | null | undefined | false>,
  timeoutMs = 5000,
  what = "condition",
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/**
 * `promise`, or a failure naming `what` once `boundMs` passes without it settling: a liveness bound, so that a
 * test of a give-up fails instead of hanging when the give-up is gone. Not a timing assertion: keep the bound
 * many times what the give-up takes, so that only a hang reaches it.
 */
export async function settledWithin<T>(promise: Promise<T>, boundMs: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still waiting after ${boundMs / 1000} s`)), boundMs);
  });
  try {
    return await Promise.race([promise, hung]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Waits for the webhook's "Stored late" line, then checks the event was stored once: a second statement for
 * it would have counted it as its own duplicate.
 */
export async function assertStoredLateOnce(log: ReturnType<typeof memoryLogger>, sql: Sql, body: string) {
  const late = await eventually(
    () => Promise.resolve(log.lines.find((l) => l.msg === "[Chatwoot Webhook] Stored late")),
    30_000,
    "the late store",
  );
  assert.equal(late.outcome, "stored");
  const [row] = await sql`select receive_count from webhook_events where raw_body = ${body}`;
  assert.equal(row.receive_count, 1);
}
