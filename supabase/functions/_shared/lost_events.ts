// Events the late store gave up on ("[Chatwoot Webhook] Lost"), and Chatwoot's authenticated webhooks the
// function refused, recorded in public.webhook_lost_events. The logs of a hosted function are kept briefly
// and read by few; a row is what stats, readiness and the Data team see. The database may just have failed
// to store the event, so the record waits in memory (WriteBack) until it answers; no body, nothing secret.
import type postgres from "postgres";
import type { Sql } from "./db.ts";
import type { Logger } from "./log.ts";
import { WriteBack } from "./write_back.ts";

/** One loss, as written (snake_case: the table's columns). */
export interface LostEvent {
  /** Made here: a write retried after its answer was lost inserts the row once. */
  id: string;
  lost_at: string;
  event: string;
  event_key: string;
  delivery_id: string | null;
  inbox_id: number | null;
  account_id: number | null;
  received_at: string | null;
  message_created_at: string | null;
  recover_command: string | null;
  /** The database's error code (postgres.js's for a connection), why no attempt was made, or a refusal's. */
  error_code: string | null;
  tried_for_ms: number;
  /**
   * A refused request's body hash, as its store would have had it (not a column): the write leaves out a
   * refusal that its store would have left as stored (writeLostEvents), a replay or a superseded version.
   */
  body_sha256?: string | null;
  /** A refused request's signed time (X-Chatwoot-Timestamp, Unix seconds; not a column): orders versions. */
  sent_at_seconds?: number | null;
  /** A refused message_updated's conversation.updated_at as sent, its build time (not a column). */
  conversation_updated_at?: unknown;
  /**
   * How a refused request was authenticated (not a column): a webhook replaces a copy recovered from
   * Chatwoot's API even with the same build and signed times.
   */
  verified_by?: "signature" | "url_token";
  /** Of a row standing for losses counted past the bound (LostEvents): how many besides itself; else 0. */
  unrecorded_losses?: number;
}

/**
 * Codes an authenticated webhook is refused with (chatwoot_webhook.ts): Chatwoot's own event, lost for good.
 * A loss with any other code is one the database made us lose.
 */
export const REFUSAL_CODES = [
  "timestamp_stale",
  "timestamp_future",
  "timestamp_invalid",
  "invalid_json",
  "missing_event",
  "invalid_payload",
] as const;
export type RefusalCode = typeof REFUSAL_CODES[number];
export const isRefusalCode = (code: string | null): code is RefusalCode =>
  (REFUSAL_CODES as readonly (string | null)[]).includes(code);

/** A refusal for Chatwoot's clock (a timestamp), not for its body: the two causes warned of apart. */
export const isClockRefusal = (code: string): boolean => code.startsWith("timestamp_");

/** What an operator does about refusals of a code (readiness's warning, deno task stats). */
export function refusalAdvice(code: RefusalCode): string {
  return isClockRefusal(code)
    ? "Chatwoot's clock is off from ours by more than CHATWOOT_WEBHOOK_TOLERANCE_SECONDS (each " +
      "Rejected log line's skew_seconds says by how much): set Chatwoot's clock right (NTP), or widen " +
      "the tolerance"
    : "Chatwoot sent a body our checks refuse (a new Chatwoot version?): the [Chatwoot Webhook] " +
      "Rejected log line names its issues (paths, never values); report them";
}

/** Records an instance keeps unwritten at most; losses past it are counted only. */
export const LOST_EVENTS_KEPT_MAX = 10_000;
export const LOST_EVENTS_RETRY_MS = 5_000;
export const LOST_EVENTS_RETRY_MAX_MS = 60_000;
/** The event_key of a row standing for losses counted past the bound (its id after it): no event's. */
export const UNRECORDED_KEY_PREFIX = "unrecorded:";

export type LostEventWriter = (rows: LostEvent[]) => Promise<unknown>;

/**
 * Inserts a batch in one statement; a loss already written (same id) is left as it is, and so is a refusal
 * that lost nothing: its body is stored under its event key (a replay), or the version stored there is one
 * its store would have kept over it (ingest_webhook_event's rule, webhook_event_replaced_by of migration
 * 010700: a message_updated built, else signed, no later than the stored one; a message_created once stored).
 * Checked here, where the database answers, since the refusal's answer never waits on it. A refusal newer
 * than what is stored is written: it would have replaced it. A row of losses counted past the bound names no
 * body: written, and written again with more (the same id, after a write that failed, or whose answer was
 * lost, and the losses counted since): its count and last time move on, and its recorded_at, since the
 * losses added are not acknowledged by an acknowledgement before them.
 */
export const writeLostEvents = (sql: Sql): LostEventWriter => (rows) => {
  const json = JSON.stringify(rows.map((row) => ({ ...row, unrecorded_losses: row.unrecorded_losses ?? 0 })));
  // The store's rule (webhook_event_replaced_by, migration 010700) with the refusal as the incoming copy
  // (r, v); the store's receipt check is not asked: a refusal was no receipt. A row it would not replace
  // supersedes the refusal.
  return sql`
    insert into public.webhook_lost_events as l (id, lost_at, event, event_key, delivery_id, inbox_id,
      account_id, received_at, message_created_at, recover_command, error_code, tried_for_ms, unrecorded_losses)
    select r.id, r.lost_at, r.event, r.event_key, r.delivery_id, r.inbox_id, r.account_id, r.received_at,
           r.message_created_at, r.recover_command, r.error_code, r.tried_for_ms, r.unrecorded_losses
      from jsonb_to_recordset(${json}::text::jsonb)
        as r(id uuid, lost_at timestamptz, event text, event_key text, delivery_id text, inbox_id bigint,
             account_id bigint, received_at timestamptz, message_created_at timestamptz, recover_command text,
             error_code text, tried_for_ms bigint, unrecorded_losses integer, body_sha256 text,
             sent_at_seconds bigint, conversation_updated_at jsonb, verified_by text)
      -- offset 0 keeps v a relation of its own: its columns reach the rule as plain columns, cheap enough
      -- for the planner to inline webhook_event_replaced_by (a chatwoot_timestamp() call as an argument used
      -- more than once is not).
      cross join lateral (
        select to_timestamp(r.sent_at_seconds) as sent_at,
               case when r.event = 'message_updated'
                    then public.chatwoot_timestamp(r.conversation_updated_at) end as built_at
        offset 0) v
     where r.body_sha256 is null
        or not exists (
          select 1 from public.webhook_events e
           where e.event_key = r.event_key
             and (e.body_sha256 = r.body_sha256
                  or not public.webhook_event_replaced_by(e, r.body_sha256, v.sent_at, v.built_at,
                                                          r.verified_by)))
    on conflict (id) do update
      set unrecorded_losses = excluded.unrecorded_losses,
          lost_at = greatest(l.lost_at, excluded.lost_at),
          recorded_at = excluded.recorded_at
      where excluded.unrecorded_losses > l.unrecorded_losses`;
};

/**
 * Losses kept in memory until the database takes them (WriteBack), at most `maxKept` one by one. Those past
 * the bound are counted per error_code, each code's on a row of its own (countedRow: event "unknown", key
 * UNRECORDED_KEY_PREFIX + its id, lost_at the last of them; the row one of them, unrecorded_losses the rest):
 * a loss's own row may be a refusal the write leaves out (a replay), and carrying the count there made the
 * replay a loss, and every overflow its code's. Whether one counted was a replay is not known: it counts.
 */
export class LostEvents {
  #kept: LostEvent[] = [];
  /** The row of each code's counted losses; few: the refusal codes, or the database's error codes. */
  #counted = new Map<string | null, LostEvent>();
  readonly #writes: WriteBack<LostEvent[]>;

  constructor(write: LostEventWriter, log: Logger, private readonly maxKept = LOST_EVENTS_KEPT_MAX) {
    this.#writes = new WriteBack<LostEvent[]>(
      {
        take: () => {
          if (this.#kept.length === 0 && this.#counted.size === 0) return null;
          const rows = [...this.#kept, ...this.#counted.values()];
          this.#kept = [];
          this.#counted.clear();
          return rows;
        },
        // A failed write's row of counted losses takes those counted since (it keeps its id: the write may
        // have stored it, and is then written again with the sum); a loss cut off by the bound is counted.
        putBack: (rows) => {
          const since = this.#counted;
          this.#counted = new Map();
          const losses: LostEvent[] = [];
          for (const row of rows) {
            if (isCountedRow(row)) this.#count(row);
            else losses.push(row);
          }
          for (const row of since.values()) this.#count(row);
          const all = [...losses, ...this.#kept];
          this.#kept = all.slice(0, this.maxKept);
          for (const row of all.slice(this.maxKept)) this.#count(row);
        },
        pending: () => this.#kept.length > 0 || this.#counted.size > 0,
      },
      write,
      log,
      {
        what: "record_webhook_lost_event",
        retryMs: LOST_EVENTS_RETRY_MS,
        maxRetryMs: LOST_EVENTS_RETRY_MAX_MS,
      },
    );
  }

  /** Keeps one loss (counts it only past the bound) and asks for a write. */
  add(lost: LostEvent): void {
    if (this.#kept.length < this.maxKept) this.#kept.push(lost);
    else this.#count(lost);
    this.#writes.request();
  }

  /** Writes what is kept, once (a host's stop, before its pool closes). */
  close(): Promise<void> {
    return this.#writes.close();
  }

  /** Counts `lost` (a loss, or a row of counted losses: all it stands for) on its code's row. */
  #count(lost: LostEvent): void {
    const n = 1 + (lost.unrecorded_losses ?? 0);
    const row = this.#counted.get(lost.error_code);
    if (!row) {
      // A row of counted losses stays itself (its id); a loss is counted on a new one.
      this.#counted.set(
        lost.error_code,
        isCountedRow(lost) ? lost : countedRow(lost.error_code, n, lost.lost_at),
      );
      return;
    }
    this.#counted.set(lost.error_code, {
      ...row,
      unrecorded_losses: (row.unrecorded_losses ?? 0) + n,
      lost_at: Date.parse(row.lost_at) >= Date.parse(lost.lost_at) ? row.lost_at : lost.lost_at,
    });
  }
}

/**
 * Whether `row` is a row of counted losses (countedRow): its key is the prefix and its own id. A refused
 * event's key (<event>:<body sha256>) can start with the prefix too, its event named "unrecorded".
 */
const isCountedRow = (row: LostEvent) => row.event_key === UNRECORDED_KEY_PREFIX + row.id;

/** A row of `count` losses of one code counted past the bound: itself one of them, the rest counted on it. */
function countedRow(code: string | null, count: number, lostAt: string): LostEvent {
  const id = crypto.randomUUID();
  return {
    id,
    lost_at: lostAt,
    event: "unknown",
    event_key: UNRECORDED_KEY_PREFIX + id,
    delivery_id: null,
    inbox_id: null,
    account_id: null,
    received_at: null,
    message_created_at: null,
    recover_command: null,
    error_code: code,
    tried_for_ms: 0,
    unrecorded_losses: count - 1,
  };
}

/**
 * Losses recorded since a time: how many (those past the bound included), how many of them are still missing,
 * the last, and the recover command of the latest still missing. A loss counts as made good once its event key
 * has been stored at or after the loss (recovered from Chatwoot's API, or sent again); losses past the bound
 * (unrecorded_losses) name no event, so they stay missing.
 */
export interface LostSince {
  count: number;
  missing: number;
  last_lost_at: Date | null;
  recover_command: string | null;
  /**
   * Of the losses not made good, those recorded at or before relay_settings.lost_acknowledged_at (migration
   * 010000, acknowledge_lost_events()): left out of `missing` and `missing_by_code`, which readiness warns of.
   */
  acknowledged: number;
  /**
   * The missing per error_code ("unknown" for none), the last of them, and the recover_command of the latest
   * missing that has one, with its lost_at: a warning per cause, each with its own command.
   */
  missing_by_code: Record<
    string,
    { missing: number; last: string | null; recover_command: string | null; recover_lost_at: string | null }
  >;
}

/**
 * Read by deno task stats and readiness's webhook_pipeline check; the table must exist (to_regclass first).
 * `viaFunction`: webhook_lost_events_since() exists (migration 009400), which runs the read with JIT off:
 * one probe of webhook_events per loss, costed ~8.7 each, passed jit_above_cost at ~12 000 losses and every
 * read compiled its plan first (30-100 ms). Without it (a database not yet migrated), the same query as is.
 */
export async function lostEventsSince(
  sql: Sql | postgres.TransactionSql,
  since: Date,
  viaFunction = true,
): Promise<LostSince> {
  if (viaFunction) {
    // Every column: the function of 009400-009800, before acknowledgements (010000), has no `acknowledged`.
    const [row] = await sql<(Omit<LostSince, "acknowledged"> & { acknowledged?: number })[]>`
      select * from public.webhook_lost_events_since(${since}::timestamptz)`;
    return { ...row, acknowledged: row.acknowledged ?? 0 };
  }
  // A database without the function predates acknowledgements (migration 010000 comes after 009400):
  // nothing is acknowledged there, and the query says 0.
  const [row] = await sql<LostSince[]>`
    with lost as (
      select l.lost_at, l.unrecorded_losses, l.recover_command, coalesce(l.error_code, 'unknown') as code,
             exists (select 1 from public.webhook_events e
                      where e.event_key = l.event_key and e.last_received_at >= l.lost_at) as stored_since
        from public.webhook_lost_events l
       where l.lost_at > ${since}::timestamptz),
    by_code as (
      select lost.code,
             sum(lost.unrecorded_losses + case when lost.stored_since then 0 else 1 end)::int as missing,
             max(lost.lost_at) filter (where lost.unrecorded_losses > 0 or not lost.stored_since) as last,
             (array_agg(lost.recover_command order by lost.lost_at desc)
                filter (where lost.recover_command is not null and not lost.stored_since))[1]
               as recover_command,
             max(lost.lost_at) filter (where lost.recover_command is not null and not lost.stored_since)
               as recover_lost_at
        from lost group by lost.code)
    select coalesce(sum(1 + lost.unrecorded_losses), 0)::int as count,
           coalesce(sum(lost.unrecorded_losses + case when lost.stored_since then 0 else 1 end), 0)::int
             as missing,
           max(lost.lost_at) as last_lost_at,
           (select m.recover_command from lost m
             where m.recover_command is not null and not m.stored_since
             order by m.lost_at desc limit 1) as recover_command,
           (select coalesce(
                     jsonb_object_agg(b.code, jsonb_build_object('missing', b.missing, 'last', b.last,
                                                                 'recover_command', b.recover_command,
                                                                 'recover_lost_at', b.recover_lost_at)),
                     '{}'::jsonb)
              from by_code b where b.missing > 0) as missing_by_code,
           0 as acknowledged
      from lost`;
  return row;
}
