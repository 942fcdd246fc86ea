// Refusals counted in memory and written one statement at a time. Each refused request used to start its own
// upsert of one hot row: a flood of bad signatures, which costs its sender nothing, then held the function's
// few database connections that real events need to be stored within Chatwoot's 5 s.
import type { Logger } from "./log.ts";
import { WriteBack } from "./write_back.ts";

export interface RejectionCount {
  reason: string;
  status: number;
  count: number;
}

export type RejectionWriter = (counts: RejectionCount[]) => Promise<unknown>;

/** After a failed write, the counts kept are written again this long after (doubling, up to the max). */
export const REJECTION_RETRY_MS = 5_000;
export const REJECTION_RETRY_MAX_MS = 60_000;

export class RejectionCounter {
  #gathered = new Map<string, RejectionCount>();
  readonly #writes: WriteBack<RejectionCount[]>;

  constructor(write: RejectionWriter, log: Logger) {
    this.#writes = new WriteBack(
      {
        take: () => {
          if (this.#gathered.size === 0) return null;
          // In one order everywhere: two instances writing the same reasons must not lock their rows crosswise.
          const counts = [...this.#gathered.values()].sort((a, b) =>
            a.reason < b.reason ? -1 : a.reason > b.reason ? 1 : 0
          );
          this.#gathered.clear();
          return counts;
        },
        // Added to those gathered meanwhile (with no further refusal they go in on the retry).
        putBack: (counts) => {
          for (const { reason, status, count } of counts) this.#count(reason, status, count);
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
    this.#count(reason, status, 1);
    this.#writes.request();
  }

  /** Writes what is kept, once, and schedules no retry after (WriteBack.close). */
  close(): Promise<void> {
    return this.#writes.close();
  }

  #count(reason: string, status: number, count: number): void {
    const entry = this.#gathered.get(reason);
    if (entry) entry.count += count;
    else this.#gathered.set(reason, { reason, status, count });
  }
}
