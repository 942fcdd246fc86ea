// Recovering message_created events that never reached us, from Chatwoot's REST API (`deno task recover`).
// Chatwoot sends an account webhook once and never again, so an event we did not store (an outage past the
// late stores' window, a worker stopped with events pending: logged "[Chatwoot Webhook] Lost") exists only in
// Chatwoot. The API lists conversations by last activity and a conversation's messages 20 at a time (or an
// id range, up to 1000); the messages of a time window that webhook_events lacks are reported, and with
// `store` rebuilt in the webhook's shape and stored (recover_webhook_event, migration 002000), to be
// forwarded like any new event.
//
// No API call returns a message in the webhook's shape, so the rebuilt payload differs in what the API does not
// give; `relay_recovered` in it names those fields. Only message_created is recovered: the API shows a
// message's current state, not its edits, and conversation events leave nothing to list.
import { errorMessageWithCause } from "../../supabase/functions/_shared/background.ts";
import { beginSurvivingClose, isDatabaseError, type Sql } from "../../supabase/functions/_shared/db.ts";
import type { TransactionSql } from "postgres";
import {
  eventColumns,
  messageEventKey,
  parseChatwootEvent,
} from "../../supabase/functions/_shared/chatwoot_payload.ts";
import { sha256Hex } from "../../supabase/functions/_shared/signature.ts";

export interface ChatwootApi {
  /** Without a trailing slash. */
  baseUrl: string;
  apiToken: string;
  accountId: string;
  /** Pauses before retrying a 429, a 5xx or a network error (one retry per entry). */
  retryPausesMs?: number[];
  /** How long one request may take, its answer read in full (30 s). */
  requestTimeoutMs?: number;
  /** At most how many messages Chatwoot answers for an id range (1000; a stand-in's may differ). */
  messagesPerIdRange?: number;
  /** Told of each retry, a line: without it a run waiting out a rate limit says nothing for a minute. */
  onRetry?: (line: string) => void;
  /** Aborted: a request or a pause before a retry in progress ends at once, with RecoveryInterrupted. */
  signal?: AbortSignal;
}

type Json = Record<string, unknown>;

export interface ApiMessage extends Json {
  id: number;
  message_type: number;
  created_at: number;
}

export class ChatwootApiError extends Error {
  constructor(readonly status: number | null, path: string, detail: string) {
    super(`Chatwoot API ${path}: ${detail}`);
  }
}

/** recover_webhook_event's refusal of a message created before the horizon a prune has just moved (55000). */
function isHorizonRefusal(error: unknown): error is Error {
  return error instanceof Error && (error as { code?: unknown }).code === "55000" &&
    error.message.startsWith("recover_webhook_event:");
}

/** A window reaching back past what retention may have deleted (recover_horizon()). */
export class RecoveryWindowError extends Error {}

/**
 * A message whose payload, rebuilt from the API's answer, is not an event the webhook would take (checked
 * before the store): no failure of the database, and a run again meets the same message.
 */
export class RebuiltPayloadInvalid extends Error {
  constructor(readonly messageId: number, conversationId: number, detail: string) {
    super(
      `message ${messageId} in conversation ${conversationId}: the payload rebuilt from Chatwoot's API ` +
        `is not a valid event: ${detail}`,
    );
  }
}

/**
 * The database failed before any messages were read (recover_horizon()); `cause` is its error. Told apart
 * where it happens: an error of neither the database nor Chatwoot's API is not reported as the database's.
 */
export class RecoveryDatabaseError extends Error {
  constructor(override readonly cause: unknown) {
    super(errorMessageWithCause(cause), { cause });
  }
}

/** ChatwootApi.signal (ScanOptions.signal) was aborted: the reading in progress was abandoned. */
export class RecoveryInterrupted extends Error {
  constructor() {
    super("interrupted");
  }
}

/** Message types whose messages Chatwoot sends as message_created (activity messages, 2, are never sent). */
const WEBHOOK_MESSAGE_TYPES: Record<number, string> = { 0: "incoming", 1: "outgoing", 3: "template" };

/** What the API does not give, so a rebuilt payload cannot hold it as the webhook had it. */
const NOT_FROM_API = [
  "additional_attributes",
  "created_at milliseconds",
  "content as rendered for the webhook (the API gives the stored text)",
  "conversation as it was when the message was sent (this is the API's listing of it when recovered, " +
  "without contact_inbox, and without its latest message; its messages hold this message unless it is private)",
];

/** About a minute in all: long enough for a rate limit (Chatwoot counts per minute) or a restart to pass. */
const DEFAULT_RETRY_PAUSES_MS = [1000, 2000, 4000, 8000, 16000, 32000];

/** `path` under the account (`/api/v1/accounts/<id>`), or under `/api/v1` when `path` starts with `//`. */
function apiUrl(api: ChatwootApi, path: string): URL {
  return new URL(
    path.startsWith("//")
      ? `${api.baseUrl}/api/v1/${path.slice(2)}`
      : `${api.baseUrl}/api/v1/accounts/${encodeURIComponent(api.accountId)}${path}`,
  );
}

/**
 * The URL path of `path` (apiUrl) as failures name it: without the base URL's user info, nor the query (the
 * token goes in a header, never in either).
 */
function apiPath(api: ChatwootApi, path: string): string {
  return apiUrl(api, path).pathname;
}

/** GET `path` (apiUrl). */
async function getJson(api: ChatwootApi, path: string, params: Record<string, string | number> = {}) {
  const url = apiUrl(api, path);
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, String(value));
  const pauses = api.retryPausesMs ?? DEFAULT_RETRY_PAUSES_MS;
  for (let attempt = 0;; attempt++) {
    if (api.signal?.aborted) throw new RecoveryInterrupted();
    let retryable: string;
    let retryAfterMs: number | null = null;
    const timeout = AbortSignal.timeout(api.requestTimeoutMs ?? 30_000);
    try {
      const response = await fetch(url, {
        headers: { api_access_token: api.apiToken, accept: "application/json" },
        redirect: "manual",
        signal: api.signal ? AbortSignal.any([api.signal, timeout]) : timeout,
      });
      if (response.ok) {
        // Read in full first: a body cut off (the timeout, a connection dropped) fails on the way, like an
        // answer that never came, and is tried again; only one that arrived and does not parse is not JSON.
        const text = await response.text();
        try {
          return JSON.parse(text) as unknown;
        } catch {
          throw new ChatwootApiError(response.status, url.pathname, "the answer is not JSON");
        }
      }
      await response.body?.cancel().catch(() => {});
      if (response.status !== 429 && response.status < 500) {
        const hint = response.status === 401 || response.status === 403
          ? " (check CHATWOOT_API_TOKEN: a user's access token, of an administrator to see every inbox)"
          : response.status === 404
          ? " (check CHATWOOT_BASE_URL and CHATWOOT_ACCOUNT_ID)"
          : "";
        throw new ChatwootApiError(response.status, url.pathname, `answered ${response.status}${hint}`);
      }
      retryable = `answered ${response.status}`;
      const seconds = Number(response.headers.get("retry-after"));
      if (Number.isFinite(seconds) && seconds > 0) retryAfterMs = Math.min(seconds, 60) * 1000;
    } catch (error) {
      if (error instanceof ChatwootApiError) throw error;
      if (api.signal?.aborted) throw new RecoveryInterrupted();
      // With the cause (refused, no such host, TLS). The caller hides secrets in it, as in any failure it
      // reports (it quotes the URL, without its user info).
      retryable = errorMessageWithCause(error);
    }
    if (attempt >= pauses.length) {
      throw new ChatwootApiError(null, url.pathname, `${retryable}, after ${attempt + 1} tries`);
    }
    const pauseMs = retryAfterMs ?? pauses[attempt];
    api.onRetry?.(
      `Chatwoot API ${url.pathname}: ${retryable}; trying again in ${pauseMs / 1000} s ` +
        `(retry ${attempt + 1} of ${pauses.length})`,
    );
    await pause(pauseMs, api.signal);
  }
}

/** Waits `ms`, or less when `signal` is aborted (then throws RecoveryInterrupted). */
async function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort = () => {};
  try {
    await new Promise<void>((resolve) => {
      // Aborted already (a listener added now would never be called): no wait at all.
      if (signal?.aborted) return resolve();
      timer = setTimeout(resolve, ms);
      onAbort = () => resolve();
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  }
  if (signal?.aborted) throw new RecoveryInterrupted();
}

function valueAt(value: unknown, path: string[]): unknown {
  let at = value;
  for (const key of path) at = (at as Json | null)?.[key];
  return at;
}

const isObject = (value: unknown): value is Json =>
  typeof value === "object" && value !== null && !Array.isArray(value);

function kindOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

/**
 * The array at `path` in an answer of Chatwoot's API (`where`: the request's URL path), each entry an object
 * (`entry` says what: a conversation, a message). A list that is missing, or an entry that is no object (null,
 * a number), is Chatwoot's answer gone wrong, said as that (a ChatwootApiError naming `where`, the entry and
 * what it is), not an unexpected error of this code reading it, nor skipped unsaid.
 */
function arrayAt(value: unknown, path: string[], where: string, entry: string): Json[] {
  const at = path.length === 0 ? value : valueAt(value, path);
  const what = path.length === 0 ? "the answer" : path.join(".");
  if (!Array.isArray(at)) throw new ChatwootApiError(null, where, `no ${what} array in the answer`);
  const index = at.findIndex((item) => !isObject(item));
  if (index >= 0) {
    const which = path.length === 0 ? `entry ${index} of the answer` : `${what}[${index}]`;
    throw new ChatwootApiError(null, where, `${which} is ${kindOf(at[index])}, not ${entry}`);
  }
  return at;
}

/** Whole seconds, as the API gives times: a `since` within a second keeps that second's messages. */
const seconds = (date: Date) => Math.floor(date.getTime() / 1000);

/** How far Chatwoot's clock may be behind ours, as far as telling the conversations active since a pass. */
const CLOCK_SKEW_S = 60;
const MAX_PASSES = 10;
/** A progress line every this many pages of the conversation list, and conversations read. */
const PROGRESS_EVERY = 100;

/**
 * Conversations with activity at or after `since`, most recent first: the API sorts by last activity, so
 * paging stops at the first one older than that. Only the conversations the token's user may see are listed.
 *
 * Pages are offsets into that order, and Chatwoot is live: a conversation with new activity moves to the
 * first page, maybe after that page was read, and would be missed. Such a move pushes the rest down a place,
 * so a conversation already read in the pass shows again on its next page. So each further pass reads from
 * the first page again, as far as the conversations active since the previous pass began, until one is quiet:
 * nothing new, nothing seen twice. A conversation deleted meanwhile moves the later ones up a place instead,
 * and the one that moved onto a page already read is skipped, however old its activity: the list's count
 * (all_count) going down says so, and the next pass reads again as far as `since`. A page with nothing this
 * pass has not read (an API that ignores `page` answers the first one again) ends the pass the same way.
 * `settled` is false when the list was still moving after MAX_PASSES: what was found is kept, but may lack one.
 */
export async function conversationsActiveSince(
  api: ChatwootApi,
  since: Date,
  progress: (line: string) => void = () => {},
): Promise<{ conversations: Json[]; settled: boolean }> {
  const found = new Map<number, Json>();
  let floor = seconds(since);
  let lastCount: number | null = null;
  for (let pass = 0;; pass++) {
    if (pass === MAX_PASSES) {
      progress(
        `warning: the conversation list was still changing after ${MAX_PASSES} passes; a conversation that ` +
          `moved to the first page, or past a deleted one, during the last one may be missed: run again ` +
          `for the same window`,
      );
      return { conversations: [...found.values()], settled: false };
    }
    const passStarted = seconds(new Date());
    const seenThisPass = new Set<number>();
    let added = 0;
    let moved = false;
    let shrank = false;
    let repeated = false;
    pages: for (let page = 1;; page++) {
      const answer = await getJson(api, "/conversations", {
        status: "all",
        sort_by: "last_activity_at_desc",
        page,
      });
      const where = `${apiPath(api, "/conversations")} (page ${page})`;
      const conversations = arrayAt(answer, ["data", "payload"], where, "a conversation");
      // Counted with the page, so a deletion just before it is seen at the next one (or the next pass).
      const count = Number(valueAt(answer, ["data", "meta", "all_count"]) ?? NaN);
      if (Number.isSafeInteger(count)) {
        if (lastCount !== null && count < lastCount) shrank = true;
        lastCount = count;
      }
      if (conversations.length === 0) break;
      let newThisPass = 0;
      for (const conversation of conversations) {
        const activity = Number(conversation.last_activity_at ?? conversation.timestamp);
        if (Number.isFinite(activity) && activity < floor) break pages;
        const id = Number(conversation.id);
        if (!Number.isSafeInteger(id)) continue;
        if (seenThisPass.has(id)) moved = true;
        else newThisPass++;
        seenThisPass.add(id);
        if (found.has(id)) continue;
        // Kept for the rebuilt payloads, without the latest messages the listing carries: the webhook's
        // conversation holds the message sent, and no last_non_activity_message (one later than the message
        // recovered); an email's can be megabytes.
        const { messages: _last, last_non_activity_message: _lastNonActivity, ...listing } = conversation;
        found.set(id, listing);
        added++;
      }
      // Nothing on the page not read already in this pass: the list moved a page or more at once, or the API
      // answers the same page whatever `page` says, and paging on would never end. The next pass reads again
      // from the first page as far as `since`.
      if (newThisPass === 0) {
        moved = repeated = true;
        break;
      }
      if (page % PROGRESS_EVERY === 0) {
        const again = pass > 0 ? ` (read again, pass ${pass + 1})` : "";
        progress(`conversation list${again}: read ${page} pages, ${seenThisPass.size} conversations`);
      }
    }
    if (pass > 0 && added === 0 && !moved && !shrank) break;
    floor = shrank || repeated ? seconds(since) : Math.max(seconds(since), passStarted - CLOCK_SKEW_S);
  }
  return { conversations: [...found.values()], settled: true };
}

/** Chatwoot's answer for an id range (`after` and `before`) holds at most this many messages (MessageFinder). */
const MESSAGES_PER_ID_RANGE = 1000;
/** Above any message id: the open end of an id range. */
const NO_ID_ABOVE = Number.MAX_SAFE_INTEGER;

/**
 * A conversation's messages created in [since, until). The pages read back from the newest, 20 at a time,
 * find where the window starts; an id range from there reads what they cannot promise to hold.
 */
export async function messagesBetween(
  api: ChatwootApi,
  conversationId: number,
  since: Date,
  until: Date,
): Promise<ApiMessage[]> {
  const path = `/conversations/${conversationId}/messages`;
  const found = new Map<number, ApiMessage>();
  let before: number | null = null;
  let lowestId: number | null = null;
  for (;;) {
    const page = messagesOf(api, await getJson(api, path, before === null ? {} : { before }), path);
    if (page.length === 0) break;
    for (const message of page) found.set(message.id, message);
    const smallestId = Math.min(...page.map((m) => m.id));
    const earliest = Math.min(...page.map((m) => m.created_at));
    lowestId = Math.min(lowestId ?? smallestId, smallestId);
    // An id that does not go down would page forever.
    if (earliest < seconds(since) || (before !== null && smallestId >= before)) break;
    before = smallestId;
  }
  // A `before` page is the latest 20 by created_at among the smaller ids, and the next one starts below its
  // smallest id: a message with a greater id but an earlier created_at than that one's (imported with its
  // own time, or saved concurrently with it) is on neither. Those below the last `before` are older than the
  // window (the last page was the latest of them, and reached past `since`); from the lowest id read up, an id
  // range holds every message, whatever its created_at.
  if (lowestId !== null) {
    for (const message of await messagesInIdRange(api, path, lowestId, NO_ID_ABOVE)) {
      found.set(message.id, message);
    }
  }
  return [...found.values()]
    .filter((m) => m.created_at >= seconds(since) && m.created_at < seconds(until))
    .sort((a, b) => a.created_at - b.created_at || a.id - b.id);
}

function messagesOf(api: ChatwootApi, answer: unknown, path: string): ApiMessage[] {
  return arrayAt(answer, ["payload"], apiPath(api, path), "a message")
    .filter((m): m is ApiMessage => Number.isSafeInteger(m.id) && typeof m.created_at === "number");
}

/** The messages with ids in [fromId, belowId); a range answered in full is split at its middle id. */
async function messagesInIdRange(
  api: ChatwootApi,
  path: string,
  fromId: number,
  belowId: number,
): Promise<ApiMessage[]> {
  const answer = messagesOf(api, await getJson(api, path, { after: fromId, before: belowId }), path)
    .filter((m) => m.id >= fromId && m.id < belowId);
  if (answer.length < Math.max(2, api.messagesPerIdRange ?? MESSAGES_PER_ID_RANGE)) return answer;
  // Maybe cut short (the first by created_at, not by id). Both halves hold fewer: each lacks half the answer.
  const ids = answer.map((m) => m.id).sort((a, b) => a - b);
  const middle = ids[Math.floor(ids.length / 2)];
  return [
    ...await messagesInIdRange(api, path, fromId, middle),
    ...await messagesInIdRange(api, path, middle, belowId),
  ];
}

export interface MissingMessage {
  message: ApiMessage;
  conversation: Json;
}

/** A missing message as a report names it (its content is in the database once stored). */
export interface MissingLine {
  id: number;
  conversationId: number | null;
  createdAt: number;
  private: boolean;
}

export interface RecoveryScan {
  conversations: number;
  /** Messages in the window that Chatwoot sends as message_created (in the conversations read in full). */
  messages: number;
  alreadyStored: number;
  /** The missing messages, to store (storeRecovered); none with ScanOptions.store: they were stored as read. */
  missing: MissingMessage[];
  /** Every missing message as a report names it, stored or not, by created_at. */
  missingLines: MissingLine[];
  /** With ScanOptions.store, what was stored (in the conversations read in full); otherwise null. */
  stored: StoreSummary | null;
  /** False when the conversation list was still changing after MAX_PASSES: a conversation may be missed. */
  listSettled: boolean;
  /** Set when the scan stopped part-way through the conversations' messages. */
  stopped: ScanStop | null;
  /** The account's details for storeRecovered, when asked for (ScanOptions.readAccountDetails, store). */
  details: AccountDetails | null;
}

/**
 * Where a scan stopped, and why: Chatwoot's API failing (after its retries) or answering what is no list of
 * messages, the database failing (an error it threw checking or storing a conversation's messages: that
 * conversation's are all rolled back), a message's payload rebuilt from the API refused before its store (the
 * conversation's rolled back too), a prune's horizon (retention), an unexpected error while a conversation's
 * messages were read or stored (neither the API's nor the database's: a bug of ours), or ScanOptions.signal.
 * What the conversations handled in full before lack is kept (`missing`), or stored (`stored`); the one in
 * flight keeps none of its messages (some of its pages were read, maybe not all).
 */
export interface ScanStop {
  reason: "chatwoot" | "database" | "payload" | "retention" | "unexpected" | "interrupted";
  /**
   * The failure (a ChatwootApiError for "chatwoot", RebuiltPayloadInvalid for "payload", the database's
   * refusal naming the new horizon for "retention", whatever was thrown for "unexpected"), or
   * RecoveryInterrupted.
   */
  error: Error;
  /** How many conversations were handled in full (read, and stored with `store`; or found gone) before it. */
  conversationsRead: number;
  /** The ids of the conversation in flight when it stopped and of those after it, in reading order. */
  notReached: number[];
}

export interface ScanOptions {
  /** Only these inboxes (an API inbox's or agent bot's webhook covers only its own); all the token sees when unset. */
  inboxIds?: number[];
  /** Progress and warnings, a line at a time. */
  progress?: (line: string) => void;
  /**
   * Read the account's details (accountDetails) before the messages, to store what is found: a failure then
   * comes before the long part, and none after it can lose what was read.
   */
  readAccountDetails?: boolean;
  /**
   * Store each conversation's missing messages as soon as that conversation is read in full, in one
   * transaction (storeRecovered's upsert): a stop later in a long scan (Ctrl-C, Chatwoot or the database
   * failing) keeps what was read before it, and a re-run finds it stored. Implies readAccountDetails.
   */
  store?: { forward?: boolean; now?: Date };
  /** Aborted: the conversation being read is abandoned, no later one is read, and the scan ends (`stopped`). */
  signal?: AbortSignal;
}

/**
 * The window's messages that Chatwoot would have sent as message_created, and which of them we lack (with
 * `store`, stored a conversation at a time). Chatwoot's API failing part-way through the messages (after its
 * retries), the database failing, an unexpected error reading or storing them, or `signal` ends the scan with
 * what was handled before (`stopped`): a long scan is not lost, and a re-run against an API that is already
 * struggling finds that stored. A failure before the messages (the list, the token) is thrown, as is
 * RecoveryInterrupted; the database's own error then is a RecoveryDatabaseError.
 */
export async function scanForMissing(
  api: ChatwootApi,
  sql: Sql,
  since: Date,
  until: Date,
  { inboxIds, progress = () => {}, readAccountDetails = false, store, signal }: ScanOptions = {},
): Promise<RecoveryScan> {
  if (signal) api = { ...api, signal };
  let horizon: Date | null;
  try {
    [{ horizon }] = await sql<{ horizon: Date | null }[]>`select public.recover_horizon() as horizon`;
  } catch (error) {
    // A bug of ours reading its answer (no row) is thrown as it is, said as unexpected: not as the database's.
    throw isDatabaseError(error) ? new RecoveryDatabaseError(error) : error;
  }
  if (horizon && since < horizon) {
    throw new RecoveryWindowError(
      `--since ${since.toISOString()} is before ${horizon.toISOString()}: retention may have deleted events ` +
        `delivered before then, and a message whose event was deleted would be stored and delivered again; ` +
        `start from ${horizon.toISOString()} or later`,
    );
  }
  const role = await tokenRole(api);
  if (role !== "administrator") {
    progress(
      `warning: the token's user is ${role === null ? "of an unknown role" : `an ${role}`}: only the ` +
        `conversations of the inboxes it belongs to are listed (an administrator's token lists them all)`,
    );
  }
  const details = readAccountDetails || store ? await accountDetails(api) : null;
  const listing = await conversationsActiveSince(api, since, progress);
  const conversations = listing.conversations
    .filter((c) => inboxIds === undefined || inboxIds.includes(Number(c.inbox_id)));
  progress(`conversations with activity since ${since.toISOString()}: ${conversations.length}`);
  // Checked against webhook_events a conversation at a time, keeping only what is missing (with `store`, only
  // its line): a long window of a busy account holds more messages (an email's HTML in each) than a process
  // can hold at once.
  const missing: MissingMessage[] = [];
  const missingLines: MissingLine[] = [];
  const stored: StoreSummary | null = store ? { stored: 0, storedMeanwhile: 0 } : null;
  const seen = new Set<number>();
  let candidates = 0;
  let stopped: ScanStop | null = null;
  const stop = (reason: ScanStop["reason"], error: unknown, index: number) => ({
    reason,
    error: error instanceof Error ? error : new Error(String(error)),
    conversationsRead: index,
    notReached: conversations.slice(index).map((c) => Number(c.id)),
  });
  for (const [index, conversation] of conversations.entries()) {
    if (signal?.aborted) {
      stopped = stop("interrupted", new RecoveryInterrupted(), index);
      break;
    }
    // A busy account's window takes many minutes: say how far it is, rather than nothing until the end.
    if (index > 0 && index % PROGRESS_EVERY === 0) {
      progress(
        `read the messages of ${index} of ${conversations.length} conversations; missing so far: ` +
          `${missingLines.length}${stored ? `, stored: ${stored.stored}` : ""}`,
      );
    }
    const id = Number(conversation.id);
    let messages: ApiMessage[];
    try {
      messages = await messagesBetween(api, id, since, until);
    } catch (error) {
      if (error instanceof RecoveryInterrupted) {
        stopped = stop("interrupted", error, index);
        break;
      }
      if (!(error instanceof ChatwootApiError)) {
        // Thrown on, it ended the run saying nothing of what was stored before, nor of the rest.
        stopped = stop("unexpected", error, index);
        break;
      }
      if (error.status !== 404) {
        // None of this conversation's messages is kept: what its pages held so far may lack some.
        stopped = stop("chatwoot", error, index);
        break;
      }
      // Deleted since it was listed: nothing of it can be recovered, and the others still can.
      progress(`warning: conversation ${id} is gone (404); its messages are not recovered`);
      continue;
    }
    // Own keys only: `in` also finds "toString" and the like, which Chatwoot's JSON may name as well.
    const sent = messages.filter((m) =>
      Object.hasOwn(WEBHOOK_MESSAGE_TYPES, m.message_type) && !seen.has(m.id)
    );
    if (sent.length === 0) continue;
    let lacking: MissingMessage[];
    try {
      const keys = sent.map((m) => messageEventKey(m.id, "message_created"));
      const storedKeys = new Set(
        (await sql<{ event_key: string }[]>`
          select event_key from public.webhook_events where event_key = any(${keys}::text[])`)
          .map((r) => r.event_key),
      );
      lacking = sent
        .filter((m) => !storedKeys.has(messageEventKey(m.id, "message_created")))
        .map((message) => ({ message, conversation }));
      if (store && lacking.length > 0) {
        // All of the conversation's or none: a stop never leaves one half stored, nor its counts half added.
        // A connection lost meanwhile is a stop (database), not a crash (beginSurvivingClose, postgres.js#1066).
        const summary = await beginSurvivingClose(
          sql,
          "",
          (tx) => storeRecovered(api, tx, lacking, { forward: store.forward, now: store.now, details }),
        );
        stored!.stored += summary.stored;
        stored!.storedMeanwhile += summary.storedMeanwhile;
      }
    } catch (error) {
      // Whatever failed, what was stored before stays. A rebuilt payload refused before its store is no
      // failure of the database (and a run again meets it again), nor is a store refused because a prune
      // moved the horizon past the message during the scan (recover_webhook_event, 55000: a run again is
      // refused for this window). The database's is what it threw (a SQLSTATE, a connection's code); the
      // rest (a bug of ours, such as a TypeError on its answer or in a payload's rebuilding) is unexpected.
      stopped = error instanceof RebuiltPayloadInvalid
        ? stop("payload", error, index)
        : isHorizonRefusal(error)
        ? stop("retention", error, index)
        : isDatabaseError(error)
        ? stop("database", error, index)
        : stop("unexpected", error, index);
      break;
    }
    for (const message of sent) seen.add(message.id);
    candidates += sent.length;
    for (const item of lacking) {
      const { message } = item;
      missingLines.push({
        id: message.id,
        conversationId: typeof message.conversation_id === "number" ? message.conversation_id : null,
        createdAt: message.created_at,
        private: message.private === true,
      });
      if (!store) missing.push(item);
    }
  }
  missing.sort((a, b) => a.message.created_at - b.message.created_at || a.message.id - b.message.id);
  missingLines.sort((a, b) => a.createdAt - b.createdAt || a.id - b.id);
  return {
    conversations: conversations.length,
    messages: candidates,
    alreadyStored: candidates - missingLines.length,
    missing,
    missingLines,
    stored,
    listSettled: listing.settled,
    stopped,
    details,
  };
}

/** The token's user's role in the account (administrator or agent), or null when the profile does not say. */
async function tokenRole(api: ChatwootApi): Promise<string | null> {
  try {
    const profile = await getJson(api, "//profile") as Json | null;
    const accounts = Array.isArray(profile?.accounts) ? profile.accounts as unknown[] : [];
    // Only a warning hangs on it: an entry that is no account (null) is passed over, as a missing list is.
    const role = accounts.find((a): a is Json => isObject(a) && String(a.id) === api.accountId)?.role;
    return typeof role === "string" ? role : null;
  } catch (error) {
    if (error instanceof ChatwootApiError && error.status !== null && error.status !== 401) return null;
    throw error;
  }
}

/**
 * The webhook's sender shapes: a contact has no `type` (and `avatar` beside `thumbnail`); a user is
 * {id, name, email, type} (the API gives no email: it comes from the agents list); a bot {id, name, type}.
 */
function webhookSender(sender: unknown, account: Json, agentEmails: Map<number, string>): unknown {
  const s = sender as Json | null | undefined;
  if (!s || typeof s !== "object") return null;
  if (s.type === "user") {
    const email = s.email ?? agentEmails.get(Number(s.id));
    return { id: s.id, name: s.name, ...(email !== undefined ? { email } : {}), type: "user" };
  }
  if (s.type === "agent_bot") return { id: s.id, name: s.name, type: "agent_bot" };
  if (s.type === "contact") {
    const { type: _type, ...contact } = s;
    return { ...contact, avatar: contact.avatar ?? contact.thumbnail ?? "", account };
  }
  return s;
}

/** The conversation as the webhook carries it, as near as the API's listing allows (NOT_FROM_API). */
function webhookConversation(conversation: Json, message: ApiMessage): Json {
  const meta = (conversation.meta ?? {}) as Json;
  return {
    ...conversation,
    ...(conversation.channel === undefined && meta.channel !== undefined ? { channel: meta.channel } : {}),
    // The webhook's holds the last message that is neither private nor activity: this one, when it is sent.
    messages: message.private === true ? [] : [message],
  };
}

/** The message_created payload Chatwoot would have sent, as near as the API allows (NOT_FROM_API). */
export function rebuildMessageCreated(
  { message, conversation }: MissingMessage,
  { account, inboxNames, agentEmails }: AccountDetails,
  recoveredAt: Date,
): Json {
  const inboxId = Number(message.inbox_id ?? conversation.inbox_id);
  const attachments = message.attachments;
  return {
    id: message.id,
    content: message.content ?? null,
    content_type: message.content_type ?? "text",
    content_attributes: message.content_attributes ?? {},
    message_type: WEBHOOK_MESSAGE_TYPES[message.message_type],
    private: message.private === true,
    created_at: new Date(message.created_at * 1000).toISOString(),
    source_id: message.source_id ?? null,
    sender: webhookSender(message.sender, account, agentEmails),
    conversation: webhookConversation(conversation, message),
    account,
    ...(Number.isSafeInteger(inboxId)
      ? { inbox: { id: inboxId, name: inboxNames.get(inboxId) ?? null } }
      : {}),
    ...(Array.isArray(attachments) && attachments.length > 0 ? { attachments } : {}),
    event: "message_created",
    relay_recovered: {
      from: "chatwoot_api",
      recovered_at: recoveredAt.toISOString(),
      not_available: NOT_FROM_API,
    },
  };
}

export interface AccountDetails {
  account: { id: number; name: string | null };
  inboxNames: Map<number, string>;
  agentEmails: Map<number, string>;
}

/** The account's name, its inboxes' names and its agents' emails, for the rebuilt payloads; left out when
 * the token may not read them. */
export async function accountDetails(api: ChatwootApi): Promise<AccountDetails> {
  const readable = async <T>(read: () => Promise<T>, fallback: T): Promise<T> => {
    try {
      return await read();
    } catch (error) {
      if (error instanceof ChatwootApiError && (error.status === 401 || error.status === 403)) {
        return fallback;
      }
      throw error;
    }
  };
  const accountName = await readable(async () => {
    const name = ((await getJson(api, "")) as Json | null)?.name;
    return typeof name === "string" ? name : null;
  }, null);
  const inboxNames = await readable(async () => {
    const names = new Map<number, string>();
    const answer = await getJson(api, "/inboxes");
    for (const inbox of arrayAt(answer, ["payload"], apiPath(api, "/inboxes"), "an inbox")) {
      if (Number.isSafeInteger(inbox.id) && typeof inbox.name === "string") {
        names.set(inbox.id as number, inbox.name);
      }
    }
    return names;
  }, new Map<number, string>());
  const agentEmails = await readable(async () => {
    const emails = new Map<number, string>();
    const answer = await getJson(api, "/agents");
    // A list, or one under `payload` (as the inboxes are).
    const path = Array.isArray(answer) ? [] : ["payload"];
    for (const agent of arrayAt(answer, path, apiPath(api, "/agents"), "an agent")) {
      if (Number.isSafeInteger(agent.id) && typeof agent.email === "string") {
        emails.set(agent.id as number, agent.email);
      }
    }
    return emails;
  }, new Map<number, string>());
  return { account: { id: Number(api.accountId), name: accountName }, inboxNames, agentEmails };
}

export interface StoreSummary {
  stored: number;
  /** Stored by someone else between the scan and now (a webhook after all, another run). */
  storedMeanwhile: number;
}

/**
 * Stores each missing message as a message_created event (verified_by chatwoot_api), unless stored meanwhile:
 * to be forwarded, or with `forward: false` kept as skipped (a record for the Data team, nothing sent). The
 * account's details are read here unless given (the scan's, read before its messages).
 */
export async function storeRecovered(
  api: ChatwootApi,
  sql: Sql | TransactionSql,
  missing: MissingMessage[],
  { forward = true, now = new Date(), details = null }: {
    forward?: boolean;
    now?: Date;
    details?: AccountDetails | null;
  } = {},
): Promise<StoreSummary> {
  const summary: StoreSummary = { stored: 0, storedMeanwhile: 0 };
  if (missing.length === 0) return summary;
  details ??= await accountDetails(api);
  for (const item of missing) {
    if (await storeOne(sql, item, details, forward, now)) summary.stored++;
    else summary.storedMeanwhile++;
  }
  return summary;
}

/** Stores one missing message (recover_webhook_event); false when it was stored meanwhile. */
async function storeOne(
  sql: Sql | TransactionSql,
  item: MissingMessage,
  details: AccountDetails,
  forward: boolean,
  now: Date,
): Promise<boolean> {
  const raw = JSON.stringify(rebuildMessageCreated(item, details, now));
  const parsed = parseChatwootEvent(raw);
  if (!parsed.ok) {
    // Paths and reasons only (never values: they may hold personal data), as the webhook's 400 gives them.
    const issues = (parsed.issues ?? []).map((i) => `${i.path || "(the payload)"}: ${i.message}`).join("; ");
    throw new RebuiltPayloadInvalid(
      item.message.id,
      Number(item.conversation.id),
      parsed.message + (issues ? ` (${issues})` : ""),
    );
  }
  const sha = sha256Hex(raw);
  const c = eventColumns(parsed.payload, parsed.event, sha);
  const [{ id }] = await sql<{ id: string | null }[]>`
    select public.recover_webhook_event(${c.eventKey}::text, ${c.event}::text, ${c.messageId}::bigint,
      ${c.conversationId}::bigint, ${c.accountId}::bigint, ${c.inboxId}::bigint, ${raw}::text, ${sha}::text,
      ${forward}::boolean) as id`;
  return id !== null;
}
