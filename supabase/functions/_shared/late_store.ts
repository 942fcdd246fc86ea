// Storing an event after chatwoot-webhook has answered 503. Chatwoot never re-sends an account webhook, so
// when the store budget is spent (a database restart, a failover, a long lock) the event would be lost. The
// instance keeps trying instead, in the background (EdgeRuntime.waitUntil on the edge runtime), and logs the
// end either way: "Stored late", or "Lost" with the event key and delivery id, so that an operator can fetch
// exactly those from Chatwoot's API (deno task recover).
//
// A statement is never abandoned: postgres.js keeps one queued while it cannot connect and sends it once it
// can, however late, and cancelling it safely is not possible in every state (a statement handed to a
// connection that is still connecting wedges that connection when cancelled). So the window bounds when new
// attempts start, and the event is held (and counted against the memory bound) until its last statement has
// settled; "Lost" is said only then, or when the worker is shut down with it still pending.
import { errorMessage, runInBackground } from "./background.ts";
import { dbErrorCode, isTransientDbError } from "./db.ts";
import type { EventToStore, StoredEvent } from "./ingest_store.ts";
import type { Logger } from "./log.ts";
import type { LostEvent } from "./lost_events.ts";

export interface LateStoreOptions {
  /** How long after the 503 new attempts are started; 0 turns late stores off. */
  windowMs: number;
  /** Memory an instance holds for late stores at most (lateStoreBytes); a hosted function has 256 MB. */
  maxHeldBytes: number;
}

/** Pauses between attempts (the last repeats), each ±25 %: a database coming back is not hammered. */
const PAUSES_MS = [250, 500, 1000, 2000, 4000];

/** Why an event refused by refuseIfFull was not stored. */
export const NOT_TRIED_WHEN_FULL =
  "not tried: the instance holds its limit of events waiting for the database";

export type LateStoreRefusal = "off" | "memory_bound";

/**
 * What an event's late store holds, counted generously: its texts at two bytes a character (a body with any
 * character past U+00FF is kept that way), twice (the strings and the statement built from them).
 */
export function lateStoreBytes(event: EventToStore): number {
  return 4 * (event.rawBody.length + (event.payloadJson?.length ?? 0));
}

/**
 * When an event's store began: `wall` is the time shown (recover_since), `mono` measures how long it has been
 * tried (performance.now(): a wall clock stepped by NTP would cut the window short or stretch it).
 */
interface Started {
  wall: number;
  mono: number;
}

const startedNow = (): Started => ({ wall: Date.now(), mono: performance.now() });

interface Pending {
  event: EventToStore;
  started: Started;
}

export class LateStores {
  #heldBytes = 0;
  #running = new Map<Promise<void>, Pending>();

  constructor(
    private readonly options: LateStoreOptions,
    private readonly store: (event: EventToStore) => Promise<StoredEvent>,
    private readonly log: Logger,
    private readonly logPrefix: string,
    private readonly onStored: (stored: StoredEvent, event: EventToStore) => void,
    /** Told of every loss logged, to be recorded (public.webhook_lost_events, lost_events.ts). */
    private readonly onLost: (lost: LostEvent) => void = () => {},
  ) {
    // The edge runtime stops a worker at its wall-clock limit even with work pending: say what goes with it.
    globalThis.addEventListener?.("beforeunload", () => this.#logPendingLost("worker_shutdown"));
    // Deno.exit() (deno task dev's second Ctrl-C) dispatches only "unload": the events it ends are lost too.
    globalThis.addEventListener?.("unload", () => this.#logPendingLost("process_exit"));
  }

  /** Each event still pending is said Lost once, whichever of the two events comes first (or both). */
  #logPendingLost(reason: "worker_shutdown" | "process_exit"): void {
    for (const [task, { event, started }] of this.#running) {
      this.#running.delete(task);
      const error = reason === "worker_shutdown" ? "the worker is shutting down" : "the process is exiting";
      this.#logLost(event, started, error, { reason });
    }
  }

  /**
   * `store`, the request's own attempts within its budget, with `event` pending meanwhile: a worker or process
   * that ends first leaves Chatwoot without an answer (it sends an account webhook once), so it says the
   * event Lost as it does the late stores'.
   */
  async answering<T>(event: EventToStore, store: Promise<T>): Promise<T> {
    const task = store.then(() => {}, () => {});
    this.#running.set(task, { event, started: startedNow() });
    try {
      return await store;
    } finally {
      this.#running.delete(task);
    }
  }

  /**
   * Asked before the first attempt: an instance that already holds as many unstored events as it may answers
   * 503 at once rather than queue one more statement (each holds its body) behind a database that does not
   * answer. True when `event` is refused so; it is then logged Lost.
   */
  refuseIfFull(event: EventToStore): boolean {
    if (this.#refusal(event) !== "memory_bound") return false;
    this.#logLost(event, startedNow(), NOT_TRIED_WHEN_FULL, { reason: "memory_bound" });
    return true;
  }

  /** Why `event` would not be taken over now, or null. */
  #refusal(event: EventToStore): LateStoreRefusal | null {
    if (this.options.windowMs <= 0) return "off";
    // One event is always taken (a body is at most 6 MiB by default).
    const full = this.#heldBytes > 0 && this.#heldBytes + lateStoreBytes(event) > this.options.maxHeldBytes;
    return full ? "memory_bound" : null;
  }

  /**
   * Takes over an event whose store ran out of budget. `inFlight` is the attempt still running when it did
   * (queued while the database is unreachable, or waiting on a lock): its outcome is awaited first, so that
   * the event is not stored twice. Returns why it was not taken, or null when it was.
   */
  take(event: EventToStore, inFlight: Promise<StoredEvent> | null): LateStoreRefusal | null {
    const refusal = this.#refusal(event);
    if (refusal) return refusal;
    const bytes = lateStoreBytes(event);
    this.#heldBytes += bytes;
    const started = startedNow();
    const task: Promise<void> = this.#storeLate(event, inFlight, started).finally(() => {
      this.#heldBytes -= bytes;
      this.#running.delete(task);
    });
    this.#running.set(task, { event, started });
    runInBackground(() => task, this.log, "late_store");
    return null;
  }

  async #storeLate(
    event: EventToStore,
    inFlight: Promise<StoredEvent> | null,
    started: Started,
  ): Promise<void> {
    const deadline = started.mono + this.options.windowMs;
    let current = inFlight;
    let stored: StoredEvent | undefined;
    for (let i = 0; !stored; i++) {
      try {
        stored = await (current ?? this.store(event));
      } catch (error) {
        current = null;
        const pause = PAUSES_MS[Math.min(i, PAUSES_MS.length - 1)] * (0.75 + Math.random() / 2);
        if (!worthRetrying(error) || performance.now() + pause >= deadline) {
          return this.#logLost(event, started, errorMessage(error), { code: dbErrorCode(error) });
        }
        await new Promise((resolve) => setTimeout(resolve, pause));
      }
    }
    this.log("info", `${this.logPrefix} Stored late`, {
      event: event.event,
      event_key: event.eventKey,
      delivery_id: event.deliveryId,
      event_id: stored.id,
      outcome: stored.outcome,
      receive_count: stored.receiveCount,
      late_by_ms: Math.round(performance.now() - started.mono),
    });
    this.onStored(stored, event);
  }

  #logLost(
    event: EventToStore,
    started: Started,
    error: string,
    extra: { code?: string | null; reason?: string } = {},
  ): void {
    const triedForMs = Math.round(performance.now() - started.mono);
    // The command that fetches it back from Chatwoot's API (it recovers message_created only).
    const recover = event.event === "message_created" ? recoverCommand(event, started.wall) : null;
    this.log("error", `${this.logPrefix} Lost`, {
      event: event.event,
      event_key: event.eventKey,
      delivery_id: event.deliveryId,
      tried_for_ms: triedForMs,
      error,
      ...recover,
      ...extra,
    });
    const time = (ms: number | null | undefined) => ms == null ? null : new Date(ms).toISOString();
    this.onLost({
      id: crypto.randomUUID(),
      lost_at: new Date().toISOString(),
      event: event.event,
      event_key: event.eventKey,
      delivery_id: event.deliveryId,
      inbox_id: event.inboxId,
      account_id: event.accountId,
      received_at: time(event.receivedAtMs),
      message_created_at: time(event.messageCreatedAtMs),
      recover_command: recover?.recover ?? null,
      error_code: extra.code ?? extra.reason ?? null,
      tried_for_ms: triedForMs,
    });
  }
}

const MINUTE_MS = 60_000;
const DAY_MS = 24 * 60 * MINUTE_MS;
const minuteText = (ms: number) => new Date(ms).toISOString();

/**
 * `deno task recover` for a lost message_created: its window holds both the receipt and the message's
 * created_at (Chatwoot's clock, which the task filters by; a message created before it was sent, or a clock
 * behind ours, would otherwise fall before --since), a minute either side, and names --until (its default,
 * 5 minutes ago, would leave out an event lost just now). `started` stands in for an unknown receipt time.
 * created_at counts within a day of the receipt only.
 */
export function recoverCommand(
  event: Pick<EventToStore, "receivedAtMs" | "messageCreatedAtMs" | "inboxId">,
  started: number,
): { recover: string; recover_since: string } {
  const received = event.receivedAtMs ?? started;
  // Within a day of the receipt: a bogus created_at (0, a year off) would make the window years wide, and
  // recover would page through every conversation since.
  const created = Math.min(
    Math.max(event.messageCreatedAtMs ?? received, received - DAY_MS),
    received + DAY_MS,
  );
  const since = minuteText(Math.floor((Math.min(received, created) - MINUTE_MS) / MINUTE_MS) * MINUTE_MS);
  const until = minuteText(Math.ceil((Math.max(received, created) + MINUTE_MS) / MINUTE_MS) * MINUTE_MS);
  const inbox = event.inboxId === null ? "" : ` --inbox ${event.inboxId}`;
  return {
    recover: `deno task recover --since ${since} --until ${until}${inbox} --store`,
    recover_since: since,
  };
}

/** Connection trouble may pass; a pool that was ended (the instance stopping) will not come back. */
function worthRetrying(error: unknown): boolean {
  const code = (error as { code?: string } | null)?.code;
  return isTransientDbError(error) && code !== "CONNECTION_ENDED" && code !== "CONNECTION_DESTROYED";
}
