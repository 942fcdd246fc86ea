// Refusals counted in memory and written one statement at a time. Each refused request used to start its own
// upsert of one hot row: a flood of bad signatures, which costs its sender nothing, then held the function's
// few database connections that real events need to be stored within Chatwoot's 5 s.
import { runInBackground, type SingleFlight, singleFlight } from "./background.ts";
import type { Logger } from "./log.ts";

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
  /** One write at a time; the refusals counted while it runs go in one more write after it. */
  readonly #flush: SingleFlight;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #retryMs = REJECTION_RETRY_MS;
  #closed = false;
  #onUnload: () => void;

  constructor(write: RejectionWriter, private readonly log: Logger) {
    this.#flush = singleFlight(() => this.#writeGathered(write), log, "record_webhook_rejection");
    // The edge runtime stops a worker (its wall-clock limit, idle) with the counts kept: one last write.
    this.#onUnload = () => {
      if (this.#gathered.size > 0) runInBackground(() => this.close(), log, "record_webhook_rejection");
    };
    globalThis.addEventListener?.("beforeunload", this.#onUnload);
  }

  /** Counts one refusal and asks for a write (handed to the runtime, so the request waits for it). */
  add(reason: string, status: number): void {
    const entry = this.#gathered.get(reason);
    if (entry) entry.count++;
    else this.#gathered.set(reason, { reason, status, count: 1 });
    runInBackground(this.#flush, this.log, "record_webhook_rejection");
  }

  /**
   * Writes what is kept, once, and schedules no retry after: a host's stop, before its pool closes. Counts a
   * failed write kept are then lost (said by the single flight's log line).
   */
  async close(): Promise<void> {
    this.#closed = true;
    // Closed by its host, whose pool ends next: a later beforeunload (another app's, a test's) must not write
    // with it, nor keep this counter and its pool referenced for the rest of the process.
    globalThis.removeEventListener?.("beforeunload", this.#onUnload);
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    await this.#flush();
  }

  async #writeGathered(write: RejectionWriter): Promise<void> {
    if (this.#gathered.size === 0) return;
    // In one order everywhere: two instances writing the same reasons must not lock their rows crosswise.
    const counts = [...this.#gathered.values()].sort((a, b) =>
      a.reason < b.reason ? -1 : a.reason > b.reason ? 1 : 0
    );
    this.#gathered.clear();
    try {
      await write(counts);
      this.#retryMs = REJECTION_RETRY_MS;
    } catch (error) {
      // The database down or read-only: the counts are kept, added to those gathered meanwhile, and go in
      // the next write: the next refusal's, or the retry's (with no further refusal they were never written).
      // The failure is still logged by the single flight.
      for (const { reason, status, count } of counts) {
        const entry = this.#gathered.get(reason);
        if (entry) entry.count += count;
        else this.#gathered.set(reason, { reason, status, count });
      }
      this.#scheduleRetry();
      throw error;
    }
  }

  #scheduleRetry(): void {
    if (this.#closed || this.#retryTimer !== undefined) return;
    const timer = setTimeout(() => {
      this.#retryTimer = undefined;
      runInBackground(this.#flush, this.log, "record_webhook_rejection");
    }, this.#retryMs);
    // Never what keeps a process (deno task dev, a test) running.
    Deno.unrefTimer?.(timer);
    this.#retryTimer = timer;
    this.#retryMs = Math.min(this.#retryMs * 2, REJECTION_RETRY_MAX_MS);
  }
}
