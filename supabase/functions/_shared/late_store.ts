// Storing an event after chatwoot-webhook has answered 503. Chatwoot never re-sends an account webhook, so
// when the store budget is spent (a database restart, a failover, a long lock) the event would be lost. The
// instance keeps trying instead, in the background (EdgeRuntime.waitUntil on the edge runtime), for a bounded
// time and with a bounded number of body bytes held, and logs the end either way: "Stored late", or "Lost"
// with the event key and delivery id, so that an operator can fetch exactly those from Chatwoot's API.
import { errorMessage, runInBackground } from "./background.ts";
import { isTransientDbError } from "./db.ts";
import { DeadlineExceeded, type EventToStore, retryWithinBudget, type StoredEvent } from "./ingest_store.ts";
import type { Logger } from "./log.ts";

export interface LateStoreOptions {
  /** How long after the 503 an event is still tried; 0 turns late stores off. */
  windowMs: number;
  /** Body bytes held at once by an instance; an event past this is lost at once (memory is 256 MB hosted). */
  maxHeldBytes: number;
  /** Pauses between attempts (the last repeats): a database coming back is not hammered. */
  pausesMs?: number[];
}

export type LateStoreRefusal = "off" | "memory_bound";

export class LateStores {
  #heldBytes = 0;
  #running = new Set<Promise<void>>();

  constructor(
    private readonly options: LateStoreOptions,
    private readonly store: (event: EventToStore) => Promise<StoredEvent>,
    private readonly log: Logger,
    private readonly logPrefix: string,
    private readonly onStored: (stored: StoredEvent, event: EventToStore) => void,
  ) {}

  /** Body bytes of the events being tried now. */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  /**
   * Takes over an event whose store ran out of budget. `inFlight` is the attempt still running when it did
   * (a statement waiting on a lock, say): its outcome is awaited first, so that the event is not stored twice.
   * Returns why it was not taken, or null when it was.
   */
  take(event: EventToStore, inFlight: Promise<StoredEvent> | null): LateStoreRefusal | null {
    if (this.options.windowMs <= 0) return "off";
    const bytes = event.rawBody.length + (event.payloadJson?.length ?? 0);
    if (this.#heldBytes + bytes > this.options.maxHeldBytes) return "memory_bound";
    this.#heldBytes += bytes;
    const task = this.#tryUntilDeadline(event, inFlight, Date.now() + this.options.windowMs)
      .finally(() => {
        this.#heldBytes -= bytes;
        this.#running.delete(task);
      });
    this.#running.add(task);
    runInBackground(() => task, this.log, "late_store");
    return null;
  }

  /** Settles when no event is being tried (tests, and a clean stop). */
  async idle(): Promise<void> {
    while (this.#running.size > 0) await Promise.allSettled([...this.#running]);
  }

  async #tryUntilDeadline(
    event: EventToStore,
    inFlight: Promise<StoredEvent> | null,
    deadline: number,
  ): Promise<void> {
    const started = Date.now();
    const fields = { event: event.event, event_key: event.eventKey, delivery_id: event.deliveryId };
    try {
      let stored = inFlight ? await settledWithin(inFlight, deadline) : undefined;
      stored ??= await retryWithinBudget(() => this.store(event), {
        budgetMs: Math.max(0, deadline - Date.now()),
        pausesMs: this.options.pausesMs ?? [250, 500, 1000, 2000, 4000],
      });
      this.log("info", `${this.logPrefix} Stored late`, {
        ...fields,
        event_id: stored.id,
        outcome: stored.outcome,
        receive_count: stored.receiveCount,
        late_by_ms: Date.now() - started,
      });
      this.onStored(stored, event);
    } catch (error) {
      const cause = error instanceof DeadlineExceeded ? error.lastError : error;
      this.log("error", `${this.logPrefix} Lost`, {
        ...fields,
        tried_for_ms: Date.now() - started,
        error: errorMessage(cause),
        // A statement still waiting (on a lock, say) may yet store it.
        ...(error instanceof DeadlineExceeded && error.inFlight ? { statement_still_waiting: true } : {}),
      });
    }
  }
}

/**
 * The attempt's result if it succeeds before `deadline`; undefined if it fails in a way a new attempt may
 * not (connection trouble) or is still running at the deadline; any other failure is thrown.
 */
async function settledWithin(
  attempt: Promise<StoredEvent>,
  deadline: number,
): Promise<StoredEvent | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      attempt,
      new Promise<undefined>((resolve) =>
        timer = setTimeout(() => resolve(undefined), deadline - Date.now())
      ),
    ]);
  } catch (error) {
    if (isTransientDbError(error)) return undefined;
    throw error;
  } finally {
    clearTimeout(timer);
  }
}
