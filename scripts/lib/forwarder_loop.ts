// A forwarder that runs continuously (dev server, `deno task forward`): drains whenever the database announces
// a due event (NOTIFY webhook_events_due) and on a periodic sweep, which also catches retries coming due and
// expired leases. It drains once at start, so events stored while it was stopped go out right away. Its POSTs
// go through undici (undici_transport.ts), not fetch.
import { errorMessage, singleFlight } from "../../supabase/functions/_shared/background.ts";
import { connect, dbErrorCode, type Sql } from "../../supabase/functions/_shared/db.ts";
import { drain, type DrainSummary } from "../../supabase/functions/_shared/forwarder.ts";
import type { ForwarderConfig } from "../../supabase/functions/_shared/forwarder_config.ts";
import type { Logger } from "../../supabase/functions/_shared/log.ts";
import { intFromEnv } from "../../supabase/functions/_shared/env.ts";
import { undiciTransport } from "./undici_transport.ts";

export const DUE_CHANNEL = "webhook_events_due";

/** How a standalone forwarder's connections show in pg_stat_activity. */
export const FORWARDER_APPLICATION_NAME = "chatwoot-relay-forwarder";

/** A standalone forwarder's pool: the LISTEN connection and a few for claims and write-backs. */
export function connectForwarder(url: string): Sql {
  return connect(url, { max: 4, connectTimeout: 10, applicationName: FORWARDER_APPLICATION_NAME });
}

/** Subscribes `onNotify` to DUE_CHANNEL; resolves to an unsubscribe function. */
export type Subscribe = (onNotify: () => void) => Promise<() => Promise<void>>;

/**
 * The longest sweep (deno task forward --sweep-ms, FORWARDER_SWEEP_MS): setInterval past 2^31 - 1 ms fires at
 * once, every time, and the loop polled the database without pause. An hour: the sweep is what finds retries
 * due (new events come by NOTIFY), and a longer one would hold each retry back more than its schedule does.
 */
export const MAX_SWEEP_MS = 3_600_000;

/**
 * The shortest sweep: each one is a claim query, and at 1 ms the loop kept the database busy polling for
 * nothing (new events come by NOTIFY; the sweep only finds retries come due).
 */
export const MIN_SWEEP_MS = 10;

export const DEFAULT_SWEEP_MS = 1_000;

/**
 * The sweep as written, `FORWARDER_SWEEP_MS` (deno task dev) or `--sweep-ms` (deno task forward): one rule
 * for both, intFromEnv's (digits only) from MIN_SWEEP_MS to MAX_SWEEP_MS; DEFAULT_SWEEP_MS when unset or
 * empty. Refused: ConfigError, "<name> must be an integer from 10 to 3600000".
 */
export function sweepMsFrom(name: string, text: string | undefined): number {
  return intFromEnv({ [name]: text }, name, DEFAULT_SWEEP_MS, MIN_SWEEP_MS, MAX_SWEEP_MS);
}

export interface ForwarderLoopOptions {
  sql: Sql;
  config: ForwarderConfig;
  log: Logger;
  subscribe?: Subscribe;
  sweepMs?: number;
  batchSize?: number;
  /** Batches in flight at once (drain's `lanes`). */
  lanes?: number;
  budgetMs?: number;
  worker?: string;
  onDrain?: (summary: DrainSummary) => void;
  /** Called with each drain that threw (the database down, say). */
  onDrainFailed?: (error: unknown) => void;
  /** While drains keep failing, "Drain failed" is logged at most this often. Default 60 s. */
  failureLogEveryMs?: number;
}

export interface ForwarderLoop {
  /** Ask for a drain now (coalesced with one already running). */
  wake(): void;
  stop(): Promise<void>;
}

/**
 * postgres.js LISTEN on a dedicated connection, which postgres.js re-establishes by itself after a drop (at
 * once after a pg_terminate_backend; after an outage when its reconnect backoff allows, up to 20 s later).
 * A NOTIFY sent meanwhile reaches no one, so each LISTEN, the first and every one after a drop, also counts
 * as a notification (onlisten): what was stored while not listening goes out then, not at the next sweep.
 */
export function postgresSubscribe(sql: Sql): Subscribe {
  return async (onNotify) => {
    const { unlisten } = await sql.listen(DUE_CHANNEL, onNotify, onNotify);
    return unlisten;
  };
}

export async function startForwarderLoop(options: ForwarderLoopOptions): Promise<ForwarderLoop> {
  const { sql, config, log } = options;
  const transport = undiciTransport(); // closed by stop()
  let stopped = false;
  // Aborted by stop(): the drain running then claims no further batch, finishing only those in flight.
  const stopping = new AbortController();
  let lastStop = "";
  // A database that is down fails every sweep (each second): its outage is logged when it starts, then at
  // most once per failureLogEveryMs, then once when a drain succeeds again.
  const failureLogEveryMs = options.failureLogEveryMs ?? 60_000;
  // `code`: the last failure's SQLSTATE (or postgres.js' code, ECONNREFUSED), what an operator searches for.
  let outage: { since: number; failures: number; loggedAt: number; code: string | null } | null = null;

  const drainOnce = async () => {
    if (stopped) return;
    try {
      const summary = await drain(sql, config, {
        budgetMs: options.budgetMs ?? 5_000,
        batchSize: options.batchSize ?? 10,
        lanes: options.lanes ?? 1,
        worker: options.worker ?? "dev-forwarder",
        log,
        transport: transport.send,
        signal: stopping.signal,
      });
      if (outage) {
        log("info", "[Forwarder] Drain recovered", {
          outage_ms: Math.round(performance.now() - outage.since),
          failed_drains: outage.failures,
          last_code: outage.code,
        });
        outage = null;
      }
      options.onDrain?.(summary);
      // A problem's text is part of the stop: fixing one setting and breaking another is news too.
      const stop = summary.stopped === "not_configured"
        ? `not_configured: ${summary.problem}`
        : summary.stopped;
      // The end of a pause is news too: the operator who resumed sees it taken up.
      if (lastStop === "paused" && summary.stopped !== "paused" && summary.stopped !== "aborted") {
        log("info", "[Forwarder] Resumed (public.relay_settings.forwarding_paused is false)");
      }
      if (summary.claimed > 0) log("info", "[Forwarder] Drained", { ...summary });
      // Only a pause or a setting to fix is news (a stop() before any claim ends as "aborted").
      else if (stop !== lastStop && summary.stopped === "paused") {
        log("warn", "[Forwarder] Paused (public.relay_settings.forwarding_paused)");
      } else if (stop !== lastStop && summary.stopped === "not_configured") {
        log("warn", `[Forwarder] Not configured: ${summary.problem}`);
      }
      lastStop = stop;
      // More is due: one more drain right after this one.
      if (summary.stopped === "budget" || summary.stopped === "limit") void drains();
    } catch (error) {
      // The next sweep tries again; the database may be restarting.
      // performance.now(): an outage's length and the repeat interval must not jump with the wall clock.
      const now = performance.now();
      const code = dbErrorCode(error);
      if (!outage) {
        outage = { since: now, failures: 1, loggedAt: now, code };
        log("error", "[Forwarder] Drain failed", { error: errorMessage(error), code });
      } else {
        outage.failures++;
        outage.code = code;
        if (now - outage.loggedAt >= failureLogEveryMs) {
          outage.loggedAt = now;
          log("error", "[Forwarder] Drain failed", {
            error: errorMessage(error),
            code,
            failing_for_ms: Math.round(now - outage.since),
            failed_drains: outage.failures,
          });
        }
      }
      options.onDrainFailed?.(error);
    }
  };
  // One drain at a time; a wake during one (NOTIFY, the sweep) gets one more after it.
  const drains = singleFlight(drainOnce, log, "forwarder");
  const wake = () => {
    if (!stopped) void drains();
  };

  let unsubscribe: (() => Promise<void>) | null = null;
  if (options.subscribe) {
    try {
      unsubscribe = await options.subscribe(wake);
    } catch (error) {
      log("warn", "[Forwarder] LISTEN failed; relying on the sweep", { error: errorMessage(error) });
    }
  }
  const timer = setInterval(wake, options.sweepMs ?? 1_000);
  wake();

  return {
    wake,
    async stop() {
      stopped = true;
      stopping.abort();
      clearInterval(timer);
      await unsubscribe?.().catch(() => {});
      await drains.idle();
      await transport.close();
    },
  };
}
