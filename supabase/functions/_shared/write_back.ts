// Small records kept in memory and written to Postgres later, one write at a time, kept again when a write
// fails and retried on a timer: refusal counts (rejection_counter.ts), lost events (lost_events.ts). A record's
// own request must never wait on, or hold connections for, a database that may be down.
import { runInBackground, type SingleFlight, singleFlight } from "./background.ts";
import type { Logger } from "./log.ts";

/** What a WriteBack writes, and how its records are kept between writes. */
export interface WriteBackBuffer<Batch> {
  /** Takes out what is kept (nothing is kept after), or null when nothing is. */
  take(): Batch | null;
  /** A failed write's batch, kept again with what was gathered meanwhile. */
  putBack(batch: Batch): void;
  /** Whether anything is kept. */
  pending(): boolean;
}

export interface WriteBackOptions {
  /** Logged as the task of a failed write. */
  what: string;
  /** After a failed write, what is kept is written again this long after (doubling, up to maxRetryMs). */
  retryMs: number;
  maxRetryMs: number;
}

export class WriteBack<Batch> {
  /** One write at a time; the records kept while it runs go in one more write after it. */
  readonly #flush: SingleFlight;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #retryMs: number;
  #closed = false;
  readonly #onUnload: () => void;

  constructor(
    private readonly buffer: WriteBackBuffer<Batch>,
    write: (batch: Batch) => Promise<unknown>,
    private readonly log: Logger,
    private readonly options: WriteBackOptions,
  ) {
    this.#retryMs = options.retryMs;
    this.#flush = singleFlight(() => this.#write(write), log, options.what);
    // The edge runtime stops a worker (its wall-clock limit, idle) with records kept: one last write.
    this.#onUnload = () => {
      if (buffer.pending()) runInBackground(() => this.close(), log, options.what);
    };
    globalThis.addEventListener?.("beforeunload", this.#onUnload);
  }

  /** Asks for a write of what is kept (handed to the runtime, so the request waits for it). */
  request(): void {
    runInBackground(this.#flush, this.log, this.options.what);
  }

  /**
   * Writes what is kept, once, and schedules no retry after: a host's stop, before its pool closes. Records a
   * failed write kept are then lost (said by the single flight's log line).
   */
  async close(): Promise<void> {
    this.#closed = true;
    // Closed by its host, whose pool ends next: a later beforeunload (another app's, a test's) must not write
    // with it, nor keep this buffer and its pool referenced for the rest of the process.
    globalThis.removeEventListener?.("beforeunload", this.#onUnload);
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    await this.#flush();
  }

  async #write(write: (batch: Batch) => Promise<unknown>): Promise<void> {
    const batch = this.buffer.take();
    if (batch === null) return;
    try {
      await write(batch);
      this.#retryMs = this.options.retryMs;
    } catch (error) {
      // The database down or read-only: the batch is kept, with what was gathered meanwhile, and goes in the
      // next write: the next request's, or the retry's. The failure is still logged by the single flight.
      this.buffer.putBack(batch);
      this.#scheduleRetry();
      throw error;
    }
  }

  #scheduleRetry(): void {
    if (this.#closed || this.#retryTimer !== undefined) return;
    const timer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.request();
    }, this.#retryMs);
    // Never what keeps a process (deno task dev, a test) running.
    Deno.unrefTimer?.(timer);
    this.#retryTimer = timer;
    this.#retryMs = Math.min(this.#retryMs * 2, this.options.maxRetryMs);
  }
}
