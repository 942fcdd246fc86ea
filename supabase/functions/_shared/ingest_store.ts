// Storing an accepted event: one call to ingest_webhook_event(), retried briefly on connection trouble.
import {
  dbErrorCode,
  type DbFailureReason,
  dbFailureReason,
  isTransientDbError,
  releaseStatementText,
  type Sql,
} from "./db.ts";
import type { EventColumns } from "./chatwoot_payload.ts";
import { bigintLiteral, textLiteral } from "./sql_literal.ts";
import { withTimeout } from "./timeout.ts";

export interface EventToStore extends EventColumns {
  deliveryId: string | null;
  /** The jsonb copy when it differs from the raw body (U+0000 removed); null when the raw body serves. */
  payloadJson: string | null;
  rawBody: string;
  bodySha256: string;
  verifiedBy: "signature" | "url_token";
  /** X-Chatwoot-Timestamp of a signed request (Unix seconds): orders versions of a message; null for a URL token. */
  sentAtSeconds: number | null;
  /** Made once per request and sent with every attempt: the database tells a retry of ours from a duplicate
   * (an attempt whose connection was lost may still have stored the event). */
  receiptId: string;
  /** When the request came (ms since 1970): a lost event's `deno task recover` window starts from it. */
  receivedAtMs?: number;
  /** A message's created_at (ms since 1970), Chatwoot's clock: may be earlier than the receipt. */
  messageCreatedAtMs?: number | null;
}

export type IngestOutcome = "stored" | "duplicate" | "updated";

export interface StoredEvent {
  id: number;
  outcome: IngestOutcome;
  receiveCount: number;
  status: string;
  /** Pending and forwarding not paused: a delivery attempt may start now. */
  forwardNow: boolean;
  /** relay_settings.agent_sdk_url_override is set, so there is a target even without AGENT_SDK_URL. */
  targetOverrideSet: boolean;
}

/**
 * A body longer than this (in characters) is sent as a parameter, not a literal. Written into the statement it
 * is copied three times more as text of two bytes a character once it holds one past U+00FF, as mail does
 * (escaped twice, then the statement made flat), about half of what an email of megabytes cost the function
 * (README, "Body size"); beside that, the second round trip a parameter costs (sql_literal.ts) is nothing.
 * Chatwoot's ordinary bodies (5-20 KB) stay literals, in one round trip.
 */
export const BODY_PARAMETER_FROM_CHARS = 64 * 1024;

/**
 * One call of ingest_webhook_event(), its values written in as literals so that it goes in one round trip
 * (sql_literal.ts says why), but for a long body (above). The casts name the function's parameter types. Once
 * it has run, the statement and its parameters (and with them the body) are dropped from postgres.js' query
 * object, which outlives it (db.ts says why).
 */
export async function storeEvent(sql: Sql, e: EventToStore): Promise<StoredEvent> {
  const asParameters = e.rawBody.length > BODY_PARAMETER_FROM_CHARS;
  const query = sql.unsafe<
    {
      event_id: string;
      outcome: IngestOutcome;
      receive_count: number;
      status: string;
      forward_now: boolean;
      target_override_set: boolean;
    }[]
  >(
    `select event_id, outcome, receive_count, status, forward_now, target_override_set
      from public.ingest_webhook_event(${textLiteral(e.eventKey)}, ${textLiteral(e.event)},
        ${bigintLiteral(e.messageId)}, ${bigintLiteral(e.conversationId)}, ${bigintLiteral(e.accountId)},
        ${bigintLiteral(e.inboxId)}, ${textLiteral(e.deliveryId)},
        ${asParameters ? "$1::text" : textLiteral(e.payloadJson)}::jsonb,
        ${asParameters ? "$2::text" : textLiteral(e.rawBody)}, ${textLiteral(e.bodySha256)},
        ${textLiteral(e.verifiedBy)}, to_timestamp(${bigintLiteral(e.sentAtSeconds)}),
        ${textLiteral(e.receiptId)}::uuid)`,
    asParameters ? [e.payloadJson, e.rawBody] : [],
  );
  try {
    const [row] = await query;
    return {
      id: Number(row.event_id),
      outcome: row.outcome,
      receiveCount: row.receive_count,
      status: row.status,
      forwardNow: row.forward_now,
      targetOverrideSet: row.target_override_set,
    };
  } finally {
    releaseStatementText(query);
  }
}

export class DeadlineExceeded extends Error {
  constructor(
    readonly lastError: unknown,
    /** The attempt still running when the budget ended (a lock wait, a database that stopped answering). */
    readonly inFlight: Promise<unknown> | null = null,
  ) {
    super("deadline exceeded");
  }
}

/** The database's own error behind what retryWithinBudget threw: the last attempt's when it gave up. */
export function lastDbError(thrown: unknown): unknown {
  return thrown instanceof DeadlineExceeded ? thrown.lastError : thrown;
}

/** A budget spent with no answer at all (a lock wait, a database gone silent): no error to classify. */
export function givenUpUnanswered(thrown: unknown): boolean {
  return thrown instanceof DeadlineExceeded && dbErrorCode(thrown.lastError) === null;
}

/** Why, as one fixed word an answer may carry: a give-up with no answer is a database out of reach. */
export function budgetFailureReason(thrown: unknown): DbFailureReason {
  return givenUpUnanswered(thrown) ? "unreachable" : dbFailureReason(lastDbError(thrown));
}

/**
 * Runs `attempt` until it succeeds, a non-transient error is thrown, or `budgetMs` is spent. Chatwoot gives up
 * after 5 s and never re-sends, so the whole answer must stay well inside that.
 */
export async function retryWithinBudget<T>(
  attempt: () => Promise<T>,
  { budgetMs, pausesMs = [50, 150, 300, 500], signal }: {
    budgetMs: number;
    pausesMs?: number[];
    /** Once aborted, no further attempt starts (the one in flight is still awaited). */
    signal?: AbortSignal;
  },
): Promise<T> {
  // performance.now(): a budget must not jump with the wall clock (an NTP step).
  const deadline = performance.now() + budgetMs;
  // What the log reports when no attempt came back at all (a lock wait, a database that stopped answering).
  let lastError: unknown = new Error(`no answer from the database within ${budgetMs} ms`);
  for (let i = 0;; i++) {
    const remaining = deadline - performance.now();
    if (remaining <= 0 || (i > 0 && signal?.aborted)) throw new DeadlineExceeded(lastError);
    try {
      const current = attempt();
      return await withTimeout(current, remaining, () => new DeadlineExceeded(lastError, current));
    } catch (error) {
      if (error instanceof DeadlineExceeded) throw error;
      if (!isTransientDbError(error)) throw error;
      lastError = error;
    }
    const pause = Math.min(pausesMs[Math.min(i, pausesMs.length - 1)], deadline - performance.now());
    if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause));
  }
}
