// Refusals counted in memory and written one statement at a time. Each refused request used to start its own
// upsert of one hot row: a flood of bad signatures, which costs its sender nothing, then held the function's
// few database connections that real events need to be stored within Chatwoot's 5 s.
import type { Sql } from "./db.ts";
import type { Logger } from "./log.ts";
import { WriteBack } from "./write_back.ts";

export interface RejectionCount {
  reason: string;
  status: number;
  count: number;
  /** The latest of these refusals (the counter's clock, ms): a count's refusals are of one minute. */
  refused_at: number;
  /** How long before its write the latest was refused (set as the write takes it): the database's row. */
  age_ms: number;
}

export interface RejectionCounterOptions {
  /** The clock refusals are timed by (ms); Date.now. */
  now?: () => number;
}

export type RejectionWriter = (counts: RejectionCount[]) => Promise<unknown>;

/**
 * Adds the counts to webhook_rejections, one statement (record_webhook_rejection per reason and minute), each
 * in the minute it was refused in: the write may come minutes later (retried while the database does not
 * answer), and readiness tells a refusal before the last verified webhook from one after it (migration
 * 010010). Its age, not its time: the database's clock need not agree with ours. A database without the
 * four-argument form (this function deployed before the migration) gets the counts at the write's time.
 */
export const writeRejections = (sql: Sql): RejectionWriter => async (counts) => {
  const json = JSON.stringify(counts);
  try {
    return await sql`select public.record_webhook_rejection(r.reason, r.status, r.count, r.age_ms)
                       from jsonb_to_recordset(${json}::text::jsonb)
                         as r(reason text, status integer, count integer, age_ms bigint)`;
  } catch (error) {
    if ((error as { code?: string }).code !== "42883") throw error; // undefined_function
    return await sql`select public.record_webhook_rejection(r.reason, r.status, r.count)
                       from jsonb_to_recordset(${json}::text::jsonb)
                         as r(reason text, status integer, count integer)`;
  }
};

/** After a failed write, the counts kept are written again this long after (doubling, up to the max). */
export const REJECTION_RETRY_MS = 5_000;
export const REJECTION_RETRY_MAX_MS = 60_000;

export class RejectionCounter {
  /** Per reason and minute of refusal: counts kept across minutes (a write retried) keep their minutes. */
  #gathered = new Map<string, RejectionCount>();
  readonly #writes: WriteBack<RejectionCount[]>;
  readonly #now: () => number;

  constructor(write: RejectionWriter, log: Logger, options: RejectionCounterOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#writes = new WriteBack(
      {
        take: () => {
          if (this.#gathered.size === 0) return null;
          // In one order everywhere: two instances writing the same reasons must not lock their rows crosswise.
          const now = this.#now();
          const counts = [...this.#gathered.values()]
            .sort((a, b) => a.reason < b.reason ? -1 : a.reason > b.reason ? 1 : a.refused_at - b.refused_at)
            .map((c) => ({ ...c, age_ms: Math.max(0, now - c.refused_at) }));
          this.#gathered.clear();
          return counts;
        },
        // Added to those gathered meanwhile (with no further refusal they go in on the retry).
        putBack: (counts) => {
          for (const { reason, status, count, refused_at } of counts) {
            this.#count(reason, status, count, refused_at);
          }
        },
        pending: () => this.#gathered.size > 0,
      },
      write,
      log,
      {
        what: "record_webhook_rejection",
        retryMs: REJECTION_RETRY_MS,
        maxRetryMs: REJECTION_RETRY_MAX_MS,
      },
    );
  }

  /** Counts one refusal and asks for a write (handed to the runtime, so the request waits for it). */
  add(reason: string, status: number): void {
    this.#count(reason, status, 1, this.#now());
    this.#writes.request();
  }

  /** Writes what is kept, once, and schedules no retry after (WriteBack.close). */
  close(): Promise<void> {
    return this.#writes.close();
  }

  #count(reason: string, status: number, count: number, refusedAt: number): void {
    const key = `${reason} ${Math.floor(refusedAt / 60_000)}`;
    const entry = this.#gathered.get(key);
    if (entry) {
      entry.count += count;
      entry.refused_at = Math.max(entry.refused_at, refusedAt);
    } else this.#gathered.set(key, { reason, status, count, refused_at: refusedAt, age_ms: 0 });
  }
}
