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
