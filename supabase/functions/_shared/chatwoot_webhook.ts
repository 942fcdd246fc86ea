// The chatwoot-webhook function: authenticate the raw body, validate it, store it, answer in milliseconds.
import { Hono } from "hono";
import {
  bodyReadRefusal,
  isJsonContentType,
  jsonError,
  notFoundJson,
  queryParameterReadings,
  readBodyWithin,
} from "./http.ts";
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import {
  type EventColumns,
  eventColumns,
  inboxEventWithoutChannelSecrets,
  jsonbText,
  messageEventKey,
  parseChatwootEvent,
} from "./chatwoot_payload.ts";
import { runInBackground, singleFlight } from "./background.ts";
import { chatwootTime } from "./chatwoot_time.ts";
import { dbErrorCode, type Sql } from "./db.ts";
import { drain } from "./forwarder.ts";
import { forwarderConfigFromEnv, NO_TARGET, sendingProblem } from "./forwarder_config.ts";
import {
  budgetFailureReason,
  DeadlineExceeded,
  type EventToStore,
  lastDbError,
  retryWithinBudget,
  type StoredEvent,
  storeEvent,
} from "./ingest_store.ts";
import { LateStores, NOT_TRIED_WHEN_FULL, recoverCommand } from "./late_store.ts";
import type { LogFields, Logger } from "./log.ts";
import {
  isRefusalCode,
  type LostEvent,
  LostEvents,
  type RefusalCode,
  writeLostEvents,
} from "./lost_events.ts";
import { RejectionCounter, writeRejections } from "./rejection_counter.ts";
import {
  ChatwootSignatureVerifier,
  checkTimestamp,
  DELIVERY_HEADER,
  sha256Hex,
  SIGNATURE_HEADER,
  TIMESTAMP_HEADER,
  timingSafeEqualStrings,
} from "./signature.ts";
import { NO_DATABASE, type Runtime } from "./runtime.ts";
import { type WebhookConfig, webhookConfigFromEnv, type WebhookConfigResult } from "./webhook_config.ts";

export const FUNCTION_NAME = "chatwoot-webhook";
const LOG = "[Chatwoot Webhook]";

export interface WebhookDeps {
  config: WebhookConfigResult;
  /** null when no database URL is configured. */
  sql: Sql | null;
  log: Logger;
  /** Why `sql` is null although a database is configured (Runtime.databaseProblem). */
  databaseProblem?: string | null;
  /** Unix seconds; injectable for tests of the timestamp window. */
  nowSeconds?: () => number;
  /** Registers work for the host's stop (Runtime.onStop): the refusal counts still kept are written then. */
  onStop?: Runtime["onStop"];
  /** Called after an event is stored (not for duplicates), e.g. to start an immediate delivery attempt. */
  afterStore?: (
    stored: StoredEvent & { event: string; conversationId: number | null },
  ) => void | Promise<void>;
}

type ErrorCode =
  | "method_not_allowed"
  | "not_configured"
  | "unsupported_media_type"
  | "payload_too_large"
  | "request_timeout"
  | "body_incomplete"
  | "signature_missing"
  | "signature_invalid"
  | "timestamp_missing"
  | "timestamp_invalid"
  | "timestamp_stale"
  | "timestamp_future"
  | "token_invalid"
  | "invalid_json"
  | "missing_event"
  | "invalid_payload"
  | "database_unavailable"
  | "internal_error";

class Rejection {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly error: ErrorCode,
    readonly message: string,
    readonly extra: Record<string, unknown> = {},
    /** Fields for the "Rejected" log line only, not the answer: the event once the body is read, a skew. */
    readonly logged: LogFields = {},
  ) {}
}

/** Chatwoot's id of this delivery (X-Chatwoot-Delivery), as logged and stored; null when absent. */
const deliveryIdOf = (req: Request) => req.headers.get(DELIVERY_HEADER)?.slice(0, 100) || null;

/** How a request was authenticated, and the signed time it was sent (none for a URL token). */
type Authenticated =
  | { verifiedBy: "signature"; sentAtSeconds: number }
  | { verifiedBy: "url_token"; sentAtSeconds: null };
/** A refused request's authentication: a signature whose time was refused as malformed carries none. */
type RefusedAuth = { verifiedBy: Authenticated["verifiedBy"]; sentAtSeconds: number | null };

export function createChatwootWebhookApp(deps: WebhookDeps): Hono {
  const { config: configResult, sql, log } = deps;
  // Once, at start: a knob whose value was refused runs on its default, and says so (never the value).
  for (const problem of configResult.warnings) log("warn", `${LOG} Setting refused`, { problem });
  const nowSeconds = deps.nowSeconds ?? (() => Math.floor(Date.now() / 1000));
  const verifier = configResult.ok && configResult.config.secrets.length > 0
    ? new ChatwootSignatureVerifier(configResult.config.secrets)
    : null;
  const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  const rejections = sql ? new RejectionCounter(writeRejections(sql), log) : null;
  if (rejections) deps.onStop?.(() => rejections.close());
  // Events given up on, recorded once the database answers again (README, "Lost events").
  const lostEvents = sql ? new LostEvents(writeLostEvents(sql), log) : null;
  if (lostEvents) deps.onStop?.(() => lostEvents.close());
  // Chatwoot's own requests (authenticated) refused, lost as surely: recorded the same way, apart so that the
  // losses past its bound are counted on a refusal's row, not taken for the database's.
  const refusedEvents = sql ? new LostEvents(writeLostEvents(sql), log) : null;
  if (refusedEvents) deps.onStop?.(() => refusedEvents.close());

  // A new or changed event (not a duplicate) may start a delivery attempt at once.
  const startAfterStore = (stored: StoredEvent, e: EventToStore) => {
    if (stored.outcome === "duplicate" || !deps.afterStore) return;
    const afterStore = deps.afterStore;
    runInBackground(
      () => afterStore({ ...stored, event: e.event, conversationId: e.conversationId }),
      log,
      "after_store",
    );
  };
  const lateStores = configResult.ok && sql
    ? new LateStores(
      { windowMs: configResult.config.lateStoreMs, maxHeldBytes: configResult.config.lateStoreMaxBytes },
      (e) => storeEvent(sql, e),
      log,
      LOG,
      startAfterStore,
      (lost) => lostEvents?.add(lost),
    )
    : null;

  // What is known of each request's event once its body is read, for a line logged without it (Unhandled).
  const eventOf = new WeakMap<Request, LogFields>();

  // The delivery id and the event (once known) let an operator match a refusal to Chatwoot's own log.
  const reject = (c: Context, r: Rejection, known: LogFields = {}) => {
    log(r.status >= 500 ? "error" : "warn", `${LOG} Rejected`, {
      status: r.status,
      error: r.error,
      delivery_id: deliveryIdOf(c.req.raw),
      ...r.logged,
      ...known,
    });
    // Count refusals by reason for the readiness checks; never delays the answer, never stores the body.
    if (rejections && r.status < 500 && r.error !== "not_configured") rejections.add(r.error, r.status);
    if (r.status === 405) c.header("Allow", "POST");
    return jsonError(c, r.status, r.error, r.message, r.extra);
  };

  const app = new Hono({ strict: false });

  app.all(`/${FUNCTION_NAME}`, async (c) => {
    const started = performance.now();
    const req = c.req.raw;
    if (req.method !== "POST") {
      return reject(c, new Rejection(405, "method_not_allowed", "Only POST is accepted"));
    }
    if (!configResult.ok) {
      return reject(
        c,
        new Rejection(503, "not_configured", `Webhook receiver is not configured: ${configResult.message}`),
      );
    }
    if (!sql) {
      return reject(
        c,
        new Rejection(503, "not_configured", deps.databaseProblem ?? NO_DATABASE),
      );
    }
    const config = configResult.config;

    if (!isJsonContentType(req)) {
      return reject(c, new Rejection(415, "unsupported_media_type", "Content-Type must be application/json"));
    }
    // In a function of its own: an async function holds its locals across every await, so the store below
    // would otherwise wait with the body's bytes and its parsed copy held (an email's body can be megabytes).
    const received = await receive(req, config);
    if (received instanceof Rejection) return reject(c, received);
    const { toStore, columns, deliveryId, conversationUpdatedAt } = received;
    const known = { event: columns.event, event_key: columns.eventKey };
    eventOf.set(req, known);
    if (lateStores?.refuseIfFull(toStore)) {
      // The database has not answered for a while and this instance holds all the unstored events it may.
      log("error", `${LOG} Store failed`, {
        event: columns.event,
        event_key: columns.eventKey,
        delivery_id: deliveryId,
        error: NOT_TRIED_WHEN_FULL,
        late_store: "memory_bound",
      });
      return reject(
        c,
        new Rejection(503, "database_unavailable", "Database unavailable; the event is not stored", {
          reason: "unreachable",
        }),
        known,
      );
    }
    let stored: StoredEvent;
    try {
      const attempts = retryWithinBudget(() => storeEvent(sql, toStore), { budgetMs: config.storeBudgetMs });
      stored = await (lateStores ? lateStores.answering(toStore, attempts) : attempts);
    } catch (error) {
      const cause = lastDbError(error);
      const failed = {
        event: columns.event,
        event_key: columns.eventKey,
        delivery_id: deliveryId,
        error: cause instanceof Error ? cause.message : String(cause),
        code: dbErrorCode(cause),
      };
      const reason = budgetFailureReason(error);
      if (bodyNotStorable(error)) {
        log("warn", `${LOG} Store failed`, failed);
        // Refused by jsonb, not by us: as lost as a body our schema refuses (README, "Lost events").
        refusedEvents?.add(lostEvent("invalid_payload", {
          ...toStore,
          messageCreatedAtMs: toStore.messageCreatedAtMs ?? null,
          receivedAtMs: toStore.receivedAtMs ?? Date.now(),
          conversationUpdatedAt,
        }));
        return reject(
          c,
          new Rejection(400, "invalid_payload", "Body cannot be stored as jsonb; nothing stored"),
          known,
        );
      }
      // Chatwoot will not send it again, so this instance goes on trying in the background: out of budget
      // (after the statement still in flight), and after an error of ours that retrying within the budget
      // could not fix (one more try, which logs it Lost, with where to recover it from, if it fails again).
      const outOfBudget = error instanceof DeadlineExceeded;
      const late = lateStores
        ? lateStores.take(toStore, outOfBudget ? error.inFlight as Promise<StoredEvent> | null : null)
        : "off";
      log("error", `${LOG} Store failed`, { ...failed, late_store: late ?? "trying" });
      if (!outOfBudget) {
        return reject(c, new Rejection(500, "internal_error", "Event could not be stored"), known);
      }
      // Not taken over: "may not", since the statement still queued or waiting (on a lock, say) can store it.
      return late === null
        ? reject(
          c,
          new Rejection(
            503,
            "database_unavailable",
            `Database unavailable; not stored yet, still trying for ${config.lateStoreMs / 1000} s`,
            { retrying_seconds: config.lateStoreMs / 1000, reason },
          ),
          known,
        )
        : reject(
          c,
          new Rejection(503, "database_unavailable", "Database unavailable; the event may not be stored", {
            reason,
          }),
          known,
        );
    }

    const duplicate = stored.outcome === "duplicate";
    log("info", `${LOG} ${duplicate ? "Duplicate" : "Stored"}`, {
      event: columns.event,
      event_key: columns.eventKey,
      event_id: stored.id,
      outcome: stored.outcome,
      receive_count: stored.receiveCount,
      delivery_id: deliveryId,
      duration_ms: Math.round(performance.now() - started),
    });
    startAfterStore(stored, toStore);
    return c.json({
      ok: true,
      id: stored.id,
      event: columns.event,
      event_key: columns.eventKey,
      outcome: stored.outcome,
      duplicate,
      status: stored.status,
    });
  });

  app.notFound(notFoundJson);
  // Anything thrown past the handler's own catches (a body stream cut off mid-read): the documented JSON 500
  // and a JSON log line with the message, instead of Hono's plain-text answer and a printed error object.
  app.onError((error, c) => {
    log("error", `${LOG} Unhandled`, {
      error: error.message,
      delivery_id: deliveryIdOf(c.req.raw),
      ...eventOf.get(c.req.raw),
    });
    return jsonError(c, 500, "internal_error", "Internal error");
  });

  /** Reads, authenticates, decodes and validates a request: the event to store, or why it is refused. */
  async function receive(
    req: Request,
    config: WebhookConfig,
  ): Promise<
    | {
      toStore: EventToStore;
      columns: EventColumns;
      deliveryId: string | null;
      /** Of a message_updated: when Chatwoot built it, as sent (a record of its refusal by jsonb orders it). */
      conversationUpdatedAt: unknown;
    }
    | Rejection
  > {
    const limits = { maxBytes: config.maxBodyBytes, deadlineMs: config.bodyDeadlineMs };
    const read = await readBodyWithin(req, limits);
    if (!read.ok) {
      const r = bodyReadRefusal(read.reason, limits, "nothing stored");
      return new Rejection(r.status, r.error, r.message, r.extra);
    }
    const body = read.body;

    const deliveryId = deliveryIdOf(req);
    const receivedAtMs = Date.now();
    log("info", `${LOG} Received`, { delivery_id: deliveryId, bytes: body.length });
    // Authenticated, then refused: Chatwoot's own event, never sent again (README, "Lost events"). How it
    // was authenticated and its signed time, when it has one, order it against a stored version of its
    // message; `value`, the body as parsed already (null: no JSON object), spares the record a second parse.
    const lost = (
      r: Rejection,
      { verifiedBy, sentAtSeconds }: RefusedAuth,
      value?: Record<string, unknown> | null,
    ) => {
      if (isRefusalCode(r.error)) {
        refusedEvents?.add(
          lostEvent(r.error, {
            ...readRefused(body, value),
            deliveryId,
            receivedAtMs,
            verifiedBy,
            sentAtSeconds,
          }),
        );
      }
      return r;
    };

    const auth = authenticate(req, body, config);
    if (auth instanceof Rejection) {
      // Refused for its time once its signature verified: the signed time is Chatwoot's (a malformed one none).
      const signed = auth.error === "timestamp_stale" || auth.error === "timestamp_future";
      return lost(auth, {
        verifiedBy: "signature",
        sentAtSeconds: signed ? Number(req.headers.get(TIMESTAMP_HEADER)) : null,
      });
    }

    let text: string;
    try {
      text = decoder.decode(body);
    } catch {
      return lost(new Rejection(400, "invalid_json", "Body is not valid UTF-8"), auth, null);
    }
    const parsed = parseChatwootEvent(text);
    if (!parsed.ok) {
      return lost(
        new Rejection(
          400,
          parsed.error,
          parsed.message,
          parsed.issues ? { issues: parsed.issues } : {},
          // The issues are logged too (paths and reasons, no values): the refusal is a loss, and Chatwoot's
          // webhook log does not show our answer, so this line is where an operator reads what was refused.
          {
            ...(parsed.event === undefined ? {} : { event: parsed.event }),
            ...(parsed.issues ? { issues: parsed.issues } : {}),
          },
        ),
        auth,
        parsed.value ?? null,
      );
    }

    // An inbox event is stored (and forwarded) without its channel's credentials: the cut JSON, not the bytes.
    const cut = inboxEventWithoutChannelSecrets(parsed.event, parsed.payload);
    const storedText = cut?.text ?? text;
    const bodySha256 = sha256Hex(cut?.text ?? body);
    const columns = eventColumns(cut?.payload ?? parsed.payload, parsed.event, bodySha256);
    const toStore: EventToStore = {
      ...columns,
      deliveryId,
      payloadJson: jsonbText(storedText),
      rawBody: storedText,
      bodySha256,
      ...auth,
      receiptId: crypto.randomUUID(),
      receivedAtMs,
      messageCreatedAtMs: columns.messageId === null
        ? null
        : chatwootTime(parsed.payload.created_at)?.getTime() ?? null,
    };
    return { toStore, columns, deliveryId, conversationUpdatedAt: builtAt(parsed.event, parsed.payload) };
  }

  function authenticate(
    req: Request,
    body: Uint8Array,
    config: WebhookConfig,
  ): Authenticated | Rejection {
    const signature = req.headers.get(SIGNATURE_HEADER);
    if (verifier && signature !== null) {
      const timestamp = req.headers.get(TIMESTAMP_HEADER);
      if (timestamp === null || timestamp === "") {
        return new Rejection(
          401,
          "timestamp_missing",
          `${TIMESTAMP_HEADER} header is required with a signature`,
        );
      }
      // The signature first: a forged request learns nothing about the timestamp checks or our clock.
      if (!verifier.verify(signature, timestamp, body)) {
        return new Rejection(401, "signature_invalid", "Signature does not match the body");
      }
      const now = nowSeconds();
      const window = checkTimestamp(timestamp, now, config.toleranceSeconds);
      if (window === "missing" || window === "malformed") {
        return new Rejection(401, "timestamp_invalid", `${TIMESTAMP_HEADER} must be Unix seconds`);
      }
      if (window !== "ok") {
        return new Rejection(
          401,
          window === "stale" ? "timestamp_stale" : "timestamp_future",
          `${TIMESTAMP_HEADER} is outside the accepted window of ±${config.toleranceSeconds} s`,
          {},
          { skew_seconds: Number(timestamp) - now },
        );
      }
      return { verifiedBy: "signature", sentAtSeconds: Number(timestamp) };
    }
    // Both readings ("+" as a space, "+" as itself): a base64 token pasted unencoded arrives with its "+" raw.
    const readings = queryParameterReadings(req.url, "token");
    if (config.urlTokens.length > 0 && readings !== null) {
      // Every listed token against every reading, so timing does not tell which one (if any) matched.
      let matched = false;
      for (const urlToken of config.urlTokens) {
        for (const token of readings) if (timingSafeEqualStrings(token, urlToken)) matched = true;
      }
      return matched
        ? { verifiedBy: "url_token", sentAtSeconds: null }
        : new Rejection(401, "token_invalid", "URL token does not match");
    }
    return verifier
      ? new Rejection(401, "signature_missing", `${SIGNATURE_HEADER} header is required`)
      : new Rejection(401, "token_invalid", "A valid ?token= is required");
  }

  return app;
}

/** The event of a refused body that names none (not UTF-8 or JSON, or no `event`). */
export const UNKNOWN_EVENT = "unknown";

/** What a refused request's record needs of its event, as its store would have had it. */
interface RefusedEvent {
  event: string;
  eventKey: string;
  /** null: no message, or one without an integer id (keyed by its body: nothing recovered could match it). */
  messageId: number | null;
  bodySha256: string;
  inboxId: number | null;
  accountId: number | null;
  messageCreatedAtMs: number | null;
  /** A message_updated's conversation.updated_at as sent (its build time, which orders its versions). */
  conversationUpdatedAt: unknown;
}

/** A message_updated's build time as sent (conversation.updated_at), read as ingest_webhook_event reads it. */
function builtAt(event: string, payload: Record<string, unknown>): unknown {
  if (event !== "message_updated") return undefined;
  const conversation = payload.conversation;
  return typeof conversation === "object" && conversation !== null && !Array.isArray(conversation)
    ? (conversation as Record<string, unknown>).updated_at
    : undefined;
}

/**
 * What can be read of a refused body's event (it was authenticated: Chatwoot's). A body that validates (a
 * timestamp refusal) gives what its store would have (cut of an inbox's channel secrets, hashed as stored),
 * one our schema refused what its fields say, one not UTF-8 or JSON the event "unknown" keyed by its hash.
 * `value`: the body as the request path parsed it before refusing (null when it is no JSON object);
 * undefined when it refused before reading it (its signed time), and the body is parsed here.
 */
function readRefused(body: Uint8Array, value?: Record<string, unknown> | null): RefusedEvent {
  let payload = value ?? undefined;
  if (value === undefined) {
    try {
      const parsed = parseChatwootEvent(
        new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(body),
      );
      payload = parsed.ok ? parsed.payload : parsed.value;
    } catch {
      // Not UTF-8: nothing is known but its hash (and the delivery id).
    }
  }
  const named = payload?.event;
  const event = typeof named === "string" && named !== "" ? named.slice(0, 100) : UNKNOWN_EVENT;
  const unread = {
    event,
    messageId: null,
    inboxId: null,
    accountId: null,
    messageCreatedAtMs: null,
    conversationUpdatedAt: undefined,
  };
  if (!payload) {
    const bodySha256 = sha256Hex(body);
    return { ...unread, eventKey: `${event}:${bodySha256}`, bodySha256 };
  }
  const cut = inboxEventWithoutChannelSecrets(event, payload);
  const bodySha256 = sha256Hex(cut?.text ?? body);
  const columns = eventColumns(cut?.payload ?? payload, event, bodySha256);
  // A message whose id our schema refused: its store's key (message:<id>:…) would be message:null:…, one
  // for every such refusal; keyed by its body instead, as an event nothing else keys.
  const idless = columns.eventKey === messageEventKey(null, event);
  return {
    event,
    eventKey: idless ? `${event}:${bodySha256}` : columns.eventKey,
    messageId: columns.messageId,
    bodySha256,
    inboxId: columns.inboxId,
    accountId: columns.accountId,
    messageCreatedAtMs: columns.messageId === null
      ? null
      : chatwootTime(payload.created_at)?.getTime() ?? null,
    conversationUpdatedAt: builtAt(event, payload),
  };
}

/** A refused request's record: its code and what was read of its event; no body, no header but its id. */
function lostEvent(
  code: RefusalCode,
  e: RefusedEvent & RefusedAuth & { deliveryId: string | null; receivedAtMs: number },
): LostEvent {
  const time = (ms: number | null) => ms === null ? null : new Date(ms).toISOString();
  return {
    id: crypto.randomUUID(),
    lost_at: new Date().toISOString(),
    event: e.event,
    event_key: e.eventKey,
    delivery_id: e.deliveryId,
    inbox_id: e.inboxId,
    account_id: e.accountId,
    received_at: time(e.receivedAtMs),
    message_created_at: time(e.messageCreatedAtMs),
    // As for a loss of the database's: deno task recover fetches a message_created back (only that), and
    // stores it under its message's id: one without an id could never be matched, so it gets no command.
    recover_command: e.event === "message_created" && e.messageId !== null
      ? recoverCommand(e, e.receivedAtMs).recover
      : null,
    error_code: code,
    tried_for_ms: 0,
    body_sha256: e.bodySha256,
    sent_at_seconds: e.sentAtSeconds,
    conversation_updated_at: e.conversationUpdatedAt,
    verified_by: e.verifiedBy,
  };
}

/**
 * Errors Postgres raises while reading the body as jsonb, about the body itself: JSON that JavaScript parses
 * but jsonb cannot hold (a lone surrogate escape such as "\ud83d": 22P02; a number beyond numeric's range such
 * as 1e1000000: 22003; an escape it does not support: 22P05; nesting past its stack: 54001). Bad input, not a
 * failure of ours.
 */
function bodyNotStorable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return error instanceof Error && typeof code === "string" &&
    ["22P02", "22P05", "22003", "54001"].includes(code);
}

/** Budget of the delivery attempt started right after a pending event is stored. */
export const IMMEDIATE_DRAIN_BUDGET_MS = 2_000;
/**
 * At most this many events per immediate attempt: it runs on the webhook request's CPU allowance (2 s on
 * hosted Supabase), so a backlog is left to forward-events rather than worked off by every ingest.
 */
export const IMMEDIATE_DRAIN_MAX_EVENTS = 100;

/**
 * The function as deployed: settings from the runtime's environment. A newly stored (or changed) pending
 * event starts a short drain in the background, so it usually reaches the Agent SDK within milliseconds;
 * whatever that drain leaves (failures, retries) is picked up by forward-events on its schedule. One such
 * drain runs at a time per instance: a burst of stores would otherwise become a burst of drains, each
 * claiming on its own and taking connections of the small pool the stores need. A store while one runs
 * gets one more drain after it (shared by every store meanwhile), so its event still goes out at once.
 */
export function chatwootWebhookApp(runtime: Runtime): Hono {
  const { sql, log } = runtime;
  const forwarder = forwarderConfigFromEnv(runtime.env);
  // What keeps the environment's own target from being sent to (no AGENT_SDK_URL, or a URL or token no request
  // can use): fixed for the instance's life, so read once, not at every webhook.
  const problemWithoutOverride = sendingProblem(forwarder, null);
  // The last setting named in a warning: one per change, not one per webhook (forward-events says it too).
  // Without it nobody would learn why the event that just came in was not sent.
  let lastProblem: string | null = null;
  const warnOnce = (problem: string | null) => {
    if (problem && problem !== lastProblem) {
      log("warn", `${LOG} Immediate delivery not configured`, { problem });
    }
    lastProblem = problem;
  };
  const immediateDrain = sql
    ? singleFlight(
      async () => {
        const summary = await drain(sql, forwarder, {
          budgetMs: IMMEDIATE_DRAIN_BUDGET_MS,
          maxEvents: IMMEDIATE_DRAIN_MAX_EVENTS,
          batchSize: 10,
          worker: FUNCTION_NAME,
          log,
          // Every store that asked for this drain had just seen forwarding not paused and a target.
          settingsChecked: true,
          // It runs in the worker's background (waitUntil), which the wall-clock limit ends too.
          writeBackDeadline: runtime.workerDeadline,
        });
        log("debug", `${LOG} Immediate delivery`, { ...summary });
        // A token or an override no request can use, seen by the drain: nothing was claimed, or it was handed back.
        warnOnce(summary.stopped === "not_configured" ? summary.problem ?? null : null);
        // Stopped by its wall-clock budget, not for want of events: a slow Agent SDK holds a batch for seconds
        // (its timeout is 10 s), and what its write-back made due (the next event of a conversation, a newer
        // version) would otherwise wait for forward-events' next call. One more drain follows; the CPU bound
        // is maxEvents, a "limit" stop, which leaves the rest to forward-events, as does a "deadline" stop
        // (the worker has no time left for another batch).
        if (summary.stopped === "budget") void immediateDrain?.();
      },
      log,
      "immediate_delivery",
    )
    : null;
  return createChatwootWebhookApp({
    config: webhookConfigFromEnv(runtime.env),
    sql,
    log,
    databaseProblem: runtime.databaseProblem,
    onStop: runtime.onStop,
    afterStore: immediateDrain
      ? async (stored) => {
        // The ingest call already read the settings: no attempt while paused or without a target. A newer
        // version of an event being delivered is due once that delivery is written back: the drain after
        // the one in flight (if any) takes it (a paused forwarding claims nothing).
        const newerWhileDelivering = stored.outcome === "updated" && stored.status === "delivering";
        if (!stored.forwardNow && !newerWhileDelivering) return;
        // Nothing can be sent (no AGENT_SDK_URL and no override, or a URL or token no request can use): no
        // claim at all, rather than one handed back at every webhook. An override is checked by the claim.
        const problem = stored.targetOverrideSet ? null : problemWithoutOverride;
        if (problem) {
          // No target at all is a setup without forwarding (as in `deno task dev` without AGENT_SDK_URL).
          if (problem !== NO_TARGET) warnOnce(problem);
          return;
        }
        await immediateDrain();
      }
      : undefined,
  });
}
