// Work that must outlive the HTTP answer. On Supabase's edge runtime an un-awaited promise may be cut off
// when the response is sent, so it is handed to EdgeRuntime.waitUntil; elsewhere it simply runs on.
import type { Logger } from "./log.ts";

type EdgeRuntimeLike = { waitUntil?: (promise: Promise<unknown>) => void };

export function runInBackground(task: () => unknown, log: Logger, what: string): void {
  const promise = Promise.resolve().then(task).catch((error) => {
    log("error", "Background task failed", { task: what, error: errorMessage(error) });
  });
  const edgeRuntime = (globalThis as { EdgeRuntime?: EdgeRuntimeLike }).EdgeRuntime;
  edgeRuntime?.waitUntil?.(promise);
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * errorMessage, then its cause's after ": ": fetch says only "fetch failed", and what went wrong (refused, no
 * such host) is in its cause.
 */
export function errorMessageWithCause(error: unknown): string {
  const cause = error instanceof Error ? error.cause : undefined;
  return cause instanceof Error && cause.message
    ? `${errorMessage(error)}: ${cause.message}`
    : errorMessage(error);
}

/** Asks for a run; see singleFlight. */
export interface SingleFlight {
  (): Promise<void>;
  /** Settles when no run is going (at once when none is); asks for none. */
  idle(): Promise<void>;
}

/**
 * `task` one run at a time. A call while a run is going asks for one more run after it (however many calls
 * came meanwhile: they share it), because the running one may already be past the point where it would have
 * seen what the caller wants handled. Each call's promise settles once a run that started after the call has
 * finished; a failed run is logged and does not cancel the next one.
 */
export function singleFlight(task: () => Promise<unknown>, log: Logger, what: string): SingleFlight {
  let wanted = false;
  let running: Promise<void> | null = null;
  const loop = async () => {
    while (wanted) {
      wanted = false;
      try {
        await task();
      } catch (error) {
        log("error", "Background task failed", { task: what, error: errorMessage(error) });
      }
    }
    // In the same turn as the check above: a call from here on starts a new loop.
    running = null;
  };
  const request = () => {
    wanted = true;
    running ??= loop();
    return running;
  };
  return Object.assign(request, { idle: () => running ?? Promise.resolve() });
}
