// The forwarder: claim due events (one SQL call), POST each to the Agent SDK concurrently, write the whole
// batch's outcomes back (one SQL call), repeat until nothing is due or the time budget is spent.
// Retries, ordering, leases and dead letters are decided in Postgres (claim_webhook_events,
// complete_webhook_deliveries); this module only moves bytes and reports what happened.
import { errorMessage } from "./background.ts";
import { headerTokenProblem, withoutSecrets } from "./env.ts";
import {
  type DeliveryTarget,
  deliveryTarget,
  type ForwarderConfig,
  sendingProblem,
} from "./forwarder_config.ts";
import { lastDbError, retryWithinBudget } from "./ingest_store.ts";
import { dbErrorCode, type Sql } from "./db.ts";
import { jsonLogger, type Logger } from "./log.ts";
import { WRITE_BACK_MIN_BUDGET_MS } from "./runtime.ts";
import { chatwootSignatureHeaders, sha256Hex } from "./signature.ts";

export interface DrainOptions {
  /** Stop claiming new batches after this long (a batch in flight still finishes). Default 25 s. */
  budgetMs?: number;
  /** Events claimed and delivered concurrently per round. Default 10. */
  batchSize?: number;
  /**
   * Batches in flight at once, each its own claim → POSTs → write-back cycle, so one batch's database round
   * trips overlap another's deliveries. Default 1. Ordering and leases stay Postgres's business: a claim
   * never takes a conversation that has an event in flight, whichever lane holds it.
   */
  lanes?: number;
  /**
   * Claim at most this many events in this drain (a batch is never cut short). Hosted Supabase stops a
   * function at 2 s of CPU per request, so forward-events bounds its work by count as well as by time.
   */
  maxEvents?: number;
  /** Name of this drain in leases and attempt rows; made unique per call. Default "forwarder". */
  worker?: string;
  /** How each POST goes out. Default fetchTransport (the runtime's fetch, as in the Edge Functions). */
  transport?: DeliveryTransport;
  log?: Logger;
  /**
   * The caller has just seen that forwarding is not paused and has a target (the ingest call returns both),
   * so the drain starts claiming without reading relay_settings first. The claim still honours a pause, and
   * events claimed after the target was unset are handed back uncounted (release_webhook_events).
   */
  settingsChecked?: boolean;
  /**
   * Once aborted (a forwarder shutting down), no further batch is claimed; batches in flight still finish
   * and are written back, so a stop loses no outcome and leaves no lease behind. A write-back failing then
   * is not tried again (the stop would otherwise wait out a database outage), and is logged as given up.
   */
  signal?: AbortSignal;
  /**
   * performance.now() at which an Edge Function's worker is stopped (its wall-clock limit, less a margin).
   * No batch is claimed that could not be delivered and written back by then (the drain stops as "deadline"):
   * stopped mid-batch, its events would be sent again once their leases expired, an attempt spent. A failing
   * write-back is not tried again past it (WRITE_BACK_MIN_BUDGET_MS is still given), as the stop would cut
   * the retries short without the "gave up" line. Unset (deno task forward, the dev loop): no such limit, and
   * write-backs retried until WRITE_BACK_AFTER_LEASE_MS.
   */
  writeBackDeadline?: number;
}

/**
 * Why a drain stopped: nothing more due, its budgetMs spent, maxEvents reached, writeBackDeadline too near
 * for another batch, forwarding paused, a setting no delivery can go out with (ok false), or its signal.
 */
export type DrainStop = "idle" | "budget" | "limit" | "deadline" | "paused" | "not_configured" | "aborted";

export interface DrainSummary {
  ok: boolean;
  worker: string;
  stopped: DrainStop;
  batches: number;
  claimed: number;
  delivered: number;
  /** Delivered, but a newer version arrived meanwhile and is due next. */
  superseded: number;
  retried: number;
  dead: number;
  /** Reports that came after the lease had expired (the event was or will be sent again). */
  lease_lost: number;
  duration_ms: number;
  /** Why it stopped as not_configured: the setting to fix, named, never its value. */
  problem?: string;
}

interface ClaimedEvent {
  id: string;
  event_key: string;
  event: string;
  version: number;
  attempt: number;
  raw_body: string;
  agent_sdk_url_override: string | null;
  request_timeout_ms: number;
  /** How long the lease had left when the claim read it (ms; the database's clock, so only a duration). */
  lease_left_ms: number;
}

export interface AttemptResult {
  id: string;
  attempt: number;
  version: number;
  started_at: string;
  duration_ms: number;
  http_status: number | null;
  error: string | null;
  response_excerpt: string | null;
  retry_after_seconds: number | null;
}

interface Outcome {
  event_id: string;
  attempt: number;
  outcome: "delivered" | "superseded" | "retry" | "dead" | "lease_lost";
  status: string | null;
  next_attempt_at: Date | null;
}

/** One delivery as it goes on the wire. */
export interface DeliveryRequest {
  url: string;
  headers: Record<string, string>;
  body: Uint8Array<ArrayBuffer>;
  timeoutMs: number;
}

/** What the Agent SDK answered; `excerpt` holds at most EXCERPT_BYTES of the answer's body. */
export interface DeliveryAnswer {
  status: number;
  retryAfter: string | null;
  /** The answer's Date header: the clock a Retry-After date is written by. */
  date: string | null;
  excerpt: string | null;
}

/**
 * Sends one POST and reads at most EXCERPT_BYTES of the answer. Rejects only when no answer came (refused,
 * reset, timed out). Never follows a redirect: a redirect is not a delivery, and the body must not be
 * re-posted somewhere else.
 */
export type DeliveryTransport = (request: DeliveryRequest) => Promise<DeliveryAnswer>;

export const EXCERPT_BYTES = 300;
const encoder = new TextEncoder();

/** The runtime's fetch: what the Edge Functions use (hosted Supabase runs them with nothing else). */
export const fetchTransport: DeliveryTransport = async ({ url, headers, body, timeoutMs }) => {
  const response = await fetch(url, {
    method: "POST",
    headers,
    body,
    signal: AbortSignal.timeout(timeoutMs),
    redirect: "manual",
  });
  return {
    status: response.status,
    retryAfter: response.headers.get("retry-after"),
    date: response.headers.get("date"),
    excerpt: await readExcerpt(response.body),
  };
};

/** A drain's largest batch and most lanes: what it takes of the pool and of a lease's time is bounded. */
export const MAX_BATCH_SIZE = 100;
export const MAX_LANES = 8;
/**
 * ...and otherwise until this long after the leases expire. complete_webhook_deliveries takes a report for
 * an expired lease as long as no claim has taken the event since (claims find it only once due again), so a
 * write-back that lands late still spares the Agent SDK a second delivery; one that never lands does not.
 */
export const WRITE_BACK_AFTER_LEASE_MS = 5 * 60_000;
/** Pauses between write-back attempts: quick at first (a blip), then every few seconds (a restart, a failover). */
const WRITE_BACK_PAUSES_MS = [50, 150, 300, 500, 1_000, 2_000, 5_000];

export async function drain(
  sql: Sql,
  config: ForwarderConfig,
  options: DrainOptions = {},
): Promise<DrainSummary> {
  const started = performance.now();
  const budgetMs = options.budgetMs ?? 25_000;
  const batchSize = Math.max(1, Math.min(options.batchSize ?? 10, MAX_BATCH_SIZE));
  const log = options.log ?? jsonLogger;
  const transport = options.transport ?? fetchTransport;
  const worker = `${options.worker ?? "forwarder"}:${crypto.randomUUID().slice(0, 8)}`;
  const summary: DrainSummary = {
    ok: true,
    worker,
    stopped: "idle",
    batches: 0,
    claimed: 0,
    delivered: 0,
    superseded: 0,
    retried: 0,
    dead: 0,
    lease_lost: 0,
    duration_ms: 0,
  };
  const finish = (stopped: DrainStop, ok = true) => {
    summary.stopped = stopped;
    summary.ok = ok;
    summary.duration_ms = Math.round(performance.now() - started);
    return summary;
  };
  // Callers report it (forward-events answers 503, the loop logs when it changes).
  const notConfigured = (problem: string) => {
    summary.problem = problem;
    return finish("not_configured", false);
  };

  // The deadline: a batch takes up to its request timeout (its POSTs run concurrently), then its write-back
  // WRITE_BACK_MIN_BUDGET_MS; none is claimed with less time than that left. The claim's own round trip comes
  // out of the deadline's margin (runtime.ts). The timeout is relay_settings' as last seen, read below or
  // returned by the last claim (0 until then when the caller checked the settings); a claim carrying a longer
  // one (the setting raised meanwhile, or first seen) is handed back unsent.
  let requestTimeoutMs = 0;
  const batchFits = (timeoutMs: number) =>
    performance.now() + timeoutMs + WRITE_BACK_MIN_BUDGET_MS <= (options.writeBackDeadline ?? Infinity);

  // A target or a token no request can go to fails every delivery alike: claimed, each event would spend an
  // attempt on it and go dead on the last, a whole backlog dead-lettered by one typo. Nothing is claimed until
  // it is set right; the backlog waits, and the stalled-forwarding alarm (webhook_delivery_health) says so.
  if (options.settingsChecked) {
    // The target was seen; the claim checks its own copy of the override (below).
    const tokenProblem = headerTokenProblem("AGENT_SDK_TOKEN", config.agentSdkToken);
    if (tokenProblem) return notConfigured(tokenProblem);
  } else {
    const [settings] = await sql<
      { forwarding_paused: boolean; agent_sdk_url_override: string | null; request_timeout_ms: number }[]
    >`
      select forwarding_paused, agent_sdk_url_override, request_timeout_ms
        from public.relay_settings where id`;
    if (settings?.forwarding_paused) return finish("paused");
    const problem = sendingProblem(config, settings?.agent_sdk_url_override);
    if (problem) return notConfigured(problem);
    requestTimeoutMs = settings?.request_timeout_ms ?? 0;
  }

  let budgetSpent = false;
  let deadlineNear = false;
  let aborted = false;
  let noTarget: string | null = null;
  const maxEvents = options.maxEvents ?? Infinity;
  // Claimed plus asked for by claims in flight, so concurrent lanes never claim past maxEvents together.
  let reserved = 0;
  const runLane = async () => {
    for (;;) {
      if (options.signal?.aborted) {
        aborted = true;
        return;
      }
      if (noTarget) return;
      if (summary.batches > 0 && performance.now() - started >= budgetMs) {
        budgetSpent = true;
        return;
      }
      const want = Math.min(batchSize, maxEvents - reserved);
      if (want <= 0) return;
      if (!batchFits(requestTimeoutMs)) {
        deadlineNear = true;
        return;
      }
      reserved += want;
      // Monotonic: the write-back budget below must not jump with the wall clock (an NTP step).
      const claimSentAt = performance.now();
      const claimed = await sql<ClaimedEvent[]>`
        select id, event_key, event, version, attempt, raw_body, agent_sdk_url_override, request_timeout_ms,
               extract(epoch from lease_expires_at - clock_timestamp())::float8 * 1000 as lease_left_ms
          from public.claim_webhook_events(${worker}, ${want})`;
      reserved -= want - claimed.length;
      // Paused in the middle of a drain, or nothing due: either way nothing was claimed.
      if (claimed.length === 0) return;
      // The claim returns the override it saw. Unset (or set to no usable URL) since the caller's look at
      // relay_settings, or that look was the ingest's, seconds ago: nothing can be sent, and an attempt must
      // not be spent on it. Handed back as claimed, then this drain stops as one that found no target.
      // Resolved once for each override the batch holds (one relay_settings row: in practice one).
      const targets = new Map<string | null, DeliveryTarget>();
      let problem: string | null = null;
      for (const override of new Set(claimed.map((e) => e.agent_sdk_url_override))) {
        const target = deliveryTarget(override, config.agentSdkUrl);
        if ("problem" in target) {
          problem = target.problem;
          break;
        }
        targets.set(override, target);
      }
      // Handed back too: a batch whose request timeout leaves no time for its write-back by the deadline.
      const batchTimeoutMs = Math.max(...claimed.map((e) => e.request_timeout_ms));
      requestTimeoutMs = batchTimeoutMs;
      if (problem || !batchFits(batchTimeoutMs)) {
        const ids = claimed.map((e) => e.id);
        claimed.length = 0;
        reserved -= ids.length;
        if (problem) noTarget = problem;
        else deadlineNear = true;
        // Not handed back, the leases would expire and the reclaim count the attempt after all.
        await retryWithinBudget(
          () => sql`select public.release_webhook_events(${worker}, ${ids}::bigint[])`,
          { budgetMs: WRITE_BACK_MIN_BUDGET_MS },
        );
        return;
      }
      summary.batches++;
      summary.claimed += claimed.length;
      // Counted from before the claim was sent, so this end is never later than the leases' own.
      const leasesEndAt = claimSentAt + Math.min(...claimed.map((e) => e.lease_left_ms));

      const results = await Promise.all(
        claimed.map((event) =>
          deliver(event, targets.get(event.agent_sdk_url_override)!, config, log, transport)
        ),
      );
      // What the outcome lines name each event by: the key an operator finds in webhook_events, the type.
      const sent = new Map(claimed.map((e, i) => [
        String(e.id),
        { event_key: e.event_key, event: e.event, http_status: results[i].http_status },
      ]));
      // The claim's query object keeps this array, its result, until V8's next full collection (db.ts,
      // releaseStatementText): emptied, so that the batch's bodies are not copied into the old generation.
      claimed.length = 0;
      // If this write-back never lands, the events are claimed again once their leases expire and sent again
      // (using up an attempt, or dead on the last one though delivered): so it is retried through a database
      // restart, until WRITE_BACK_AFTER_LEASE_MS past the leases or the caller's deadline, whichever is first
      // (WRITE_BACK_MIN_BUDGET_MS at least), or until the forwarder stops.
      const untilLeases = leasesEndAt + WRITE_BACK_AFTER_LEASE_MS - performance.now();
      const untilDeadline = (options.writeBackDeadline ?? Infinity) - performance.now();
      let outcomes: Outcome[];
      try {
        outcomes = await retryWithinBudget(
          () =>
            sql<Outcome[]>`
              select event_id, attempt, outcome, status, next_attempt_at
                from public.complete_webhook_deliveries(${worker}, ${JSON.stringify(results)}::text::jsonb)`,
          {
            budgetMs: Math.max(WRITE_BACK_MIN_BUDGET_MS, Math.min(untilLeases, untilDeadline)),
            pausesMs: WRITE_BACK_PAUSES_MS,
            signal: options.signal,
          },
        );
      } catch (error) {
        const cause = lastDbError(error);
        log("error", "[Forwarder] Write-back gave up", {
          worker,
          event_ids: results.map((r) => Number(r.id)),
          delivered: results.filter((r) => r.http_status !== null && isSuccess(r.http_status)).length,
          stopped: options.signal?.aborted ? "aborted" : untilDeadline < untilLeases ? "deadline" : "budget",
          error: errorMessage(cause),
          code: dbErrorCode(cause),
        });
        throw error;
      }
      for (const o of outcomes) {
        if (o.outcome === "retry") summary.retried++;
        else summary[o.outcome]++;
        const fields = { event_id: Number(o.event_id), ...sent.get(String(o.event_id)), attempt: o.attempt };
        if (o.outcome === "dead") {
          // Dead letters wait for an operator, who needs the line to replay it. A 410 is the Agent SDK's own
          // "do not send again": told (a warning), but no failure of ours.
          const gone = fields.http_status === 410;
          log(gone ? "warn" : "error", "[Forwarder] Event dead", {
            ...fields,
            reason: gone ? "gone" : "attempts_exhausted",
            replay: `select public.replay_webhook_events('{${fields.event_id}}');`,
          });
        } else if (o.outcome === "lease_lost") {
          log("warn", "[Forwarder] Event lease lost", fields);
        }
      }
    }
  };
  const lanes = Math.max(1, Math.min(options.lanes ?? 1, MAX_LANES));
  // Every lane finishes before the drain reports, even when another one failed.
  const settled = await Promise.allSettled(Array.from({ length: lanes }, runLane));
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
  if (noTarget) return notConfigured(noTarget);
  return finish(
    aborted
      ? "aborted"
      : deadlineNear
      ? "deadline"
      : budgetSpent
      ? "budget"
      : summary.claimed >= maxEvents
      ? "limit"
      : "idle",
  );
}

/**
 * One POST of one event to `target`; never throws: every failure becomes an AttemptResult. drain() calls it
 * only with a usable target and token (sendingProblem, deliveryTarget).
 */
async function deliver(
  event: ClaimedEvent,
  target: DeliveryTarget,
  config: ForwarderConfig,
  log: Logger,
  transport: DeliveryTransport,
): Promise<AttemptResult> {
  const startedAt = new Date();
  const t0 = performance.now();
  const result: AttemptResult = {
    id: event.id,
    attempt: event.attempt,
    version: event.version,
    started_at: startedAt.toISOString(),
    duration_ms: 0,
    http_status: null,
    error: null,
    response_excerpt: null,
    retry_after_seconds: null,
  };
  const fields = {
    component: "forwarder",
    event_id: Number(event.id),
    event_key: event.event_key,
    event: event.event,
    attempt: event.attempt,
  };
  try {
    const body = encoder.encode(event.raw_body);
    const headers: Record<string, string> = {
      "Content-Type": "application/json",
      "Idempotency-Key": idempotencyKey(event.event_key, event.event, event.version, body),
      "X-Chatwoot-Event": event.event,
      "X-Relay-Event-Id": event.id,
      "X-Relay-Event-Version": String(event.version),
      "X-Relay-Attempt": String(event.attempt),
    };
    if (config.agentSdkSecret) {
      Object.assign(headers, chatwootSignatureHeaders(config.agentSdkSecret, body));
    }
    if (config.agentSdkToken) headers.Authorization = `Bearer ${config.agentSdkToken}`;
    else if (target.basic) headers.Authorization = target.basic;
    const answer = await transport({
      url: target.url,
      headers,
      body,
      timeoutMs: event.request_timeout_ms,
    });
    result.http_status = answer.status;
    // An answer may quote the request (a gateway's 401 page, a framework's debug page): the excerpt is logged
    // and stored, so what we sent that is secret is cut out of it first.
    result.response_excerpt = storableText(
      answer.excerpt === null ? null : withoutSentSecrets(answer.excerpt, sentSecrets(config, target)),
    );
    if (!isSuccess(answer.status)) {
      result.retry_after_seconds = parseRetryAfter(answer.retryAfter, answer.date);
    }
  } catch (error) {
    result.error = storableText(withoutSecrets(
      describeTransportError(error, event.request_timeout_ms),
      sentSecrets(config, target),
    ));
  }
  result.duration_ms = Math.round(performance.now() - t0);
  if (result.http_status !== null && isSuccess(result.http_status)) {
    log("info", "Processed successfully", {
      ...fields,
      status: result.http_status,
      duration_ms: result.duration_ms,
    });
  } else {
    log("warn", "Agent SDK error", {
      ...fields,
      status: result.http_status,
      error: result.error ?? `HTTP ${result.http_status}`,
      body: result.response_excerpt,
      duration_ms: result.duration_ms,
    });
  }
  return result;
}

/** The secrets a delivery to `target` carries: the token, the signing secret, and the URL's (deliveryTarget). */
function sentSecrets(config: ForwarderConfig, target: DeliveryTarget): string[] {
  const own = [config.agentSdkToken, config.agentSdkSecret].filter((v): v is string => (v?.length ?? 0) >= 8);
  return [...own, ...target.secrets];
}

/**
 * `text` without `secrets`, and without the start of one where the text ends: an excerpt is cut at
 * EXCERPT_BYTES, maybe in the middle of a token it quotes (4 characters or more are taken for its start).
 */
export function withoutSentSecrets(text: string, secrets: string[]): string {
  let out = withoutSecrets(text, secrets);
  for (const secret of secrets) {
    for (let n = Math.min(secret.length - 1, out.length); n >= 4; n--) {
      if (out.endsWith(secret.slice(0, n))) {
        out = `${out.slice(0, out.length - n)}***`;
        break;
      }
    }
  }
  return out;
}

/**
 * Text the write-back can store. jsonb and text refuse U+0000 (and a lone surrogate), and one such character
 * in any answer's excerpt failed the whole batch's write-back: every event in it was sent again once its lease
 * expired, though answered 2xx. Each becomes U+FFFD.
 */
export function storableText(text: string | null): string | null {
  return text === null ? null : text.replaceAll("\u0000", "\uFFFD").toWellFormed();
}

/** A 2xx answer: the only kind that counts as delivered. */
function isSuccess(status: number): boolean {
  return status >= 200 && status < 300;
}

/**
 * The event key identifies the event; retries of one body share the key, and a changed body gets its own, so
 * an Agent SDK that deduplicates by Idempotency-Key still receives the newer content. A message_updated (the
 * one event whose body changes under its key) is keyed by its body's hash, not by its version: retention may
 * delete a delivered event, and the next edit of that message then starts again at version 1, which would
 * have repeated the key its first edit was sent with.
 */
export function idempotencyKey(eventKey: string, event: string, version: number, body: Uint8Array): string {
  if (event === "message_updated") return `${eventKey}:${sha256Hex(body).slice(0, 16)}`;
  return version <= 1 ? eventKey : `${eventKey}:v${version}`;
}

/**
 * Retry-After as seconds (delta-seconds or an HTTP date); null when absent or unreadable. A date is read
 * against the answer's own Date header when it has a readable one: the sink's clock and ours may differ, and
 * the delay it means is the difference between its two times. Bounded by max_retry_after_seconds in SQL.
 */
export function parseRetryAfter(
  header: string | null,
  answerDate: string | null = null,
  now = Date.now(),
): number | null {
  if (!header) return null;
  const trimmed = header.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return null;
  const sentAt = answerDate === null ? NaN : Date.parse(answerDate);
  return Math.max(0, Math.ceil((at - (Number.isNaN(sentAt) ? now : sentAt)) / 1000));
}

/**
 * At most EXCERPT_BYTES of an answer's body, decoded leniently; null when blank. Takes any async iterable of
 * chunks (a fetch body stream, an undici body); leaving the loop early cancels the rest of the body.
 */
export async function readExcerpt(body: AsyncIterable<Uint8Array> | null): Promise<string | null> {
  if (!body) return null;
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      chunks.push(chunk);
      size += chunk.length;
      if (size >= EXCERPT_BYTES) break;
    }
  } catch {
    // A body cut off (timeout, reset) after the status arrived: the status is what counts.
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  const text = new TextDecoder().decode(bytes.subarray(0, EXCERPT_BYTES)).trim();
  return text === "" ? null : text;
}

function describeTransportError(error: unknown, timeoutMs: number): string {
  if (error instanceof DOMException && (error.name === "TimeoutError" || error.name === "AbortError")) {
    return `timeout after ${timeoutMs} ms`;
  }
  // Never echo credentials that might sit in a URL's user-info part or its query (fetch names the URL).
  const cause = (error as { cause?: unknown })?.cause;
  const message = [errorMessage(error), cause ? errorMessage(cause) : ""].join(": ")
    .replace(/\/\/[^/@\s]+@/g, "//***@")
    .replace(/\?[^\s()"'<>]*/g, "?***");
  if (/refused/i.test(message)) return "connection refused";
  return `connection error: ${message.slice(0, 300)}`;
}
