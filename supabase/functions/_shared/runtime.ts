// What every function is built from: its environment, one database pool and a logger. index.ts files build
// it from the process; the dev server and tests build it themselves and share one pool across functions.
import { connect, DatabaseUrlError, databaseUrlFromEnv, type Sql } from "./db.ts";
import { type Defaulted, type Env, intFromEnvOrDefault } from "./env.ts";
import { jsonLogger, type Logger } from "./log.ts";

export interface Runtime {
  env: Env;
  sql: Sql | null;
  log: Logger;
  /** Why `sql` is null although a database URL is set (the URL refused); names, no values. */
  databaseProblem?: string | null;
  /**
   * Registers work for the host's stop, run before its pool closes (deno task dev's stop()). A deployed
   * function has none: the edge runtime's own is its "beforeunload" event.
   */
  onStop?: (task: () => Promise<unknown>) => void;
  /**
   * performance.now() by which a drain is done: it claims no batch it could not deliver and write back by
   * then ("deadline"), and gives up a failing write-back at it. The hosted runtime stops a worker at its
   * wall-clock limit, counted from the worker's start: a batch cut off so is sent again, a retry cut off so
   * says nothing. Unset: no limit (deno task dev, tests); runtimeFromEnv (the deployed functions) sets it.
   */
  workerDeadline?: number;
}

/** The answer's message when a function has no database. */
export const NO_DATABASE = "No database configured: set SUPABASE_DB_URL or DATABASE_URL";

/**
 * Connections one function instance may open: it serves requests concurrently. A refused value is no reason
 * to answer every request 503 (a webhook so answered is lost): the default 5, and a warning.
 */
export function poolSizeFromEnv(env: Env): Defaulted<number> {
  return intFromEnvOrDefault(env, "DATABASE_POOL_SIZE", 5, 1, MAX_POOL_SIZE);
}

/**
 * Postgres allows 100 connections by default, all instances together. And postgres.js builds every one of
 * `max` connections' objects at start: 100 000 took 6 s and 900 MB (a hosted function has 256 MB), a million
 * ran out of memory, and 2^53 - 1 crashed the process at once (V8: "invalid array length").
 */
export const MAX_POOL_SIZE = 100;

/**
 * Hosted Supabase stops a worker this long after its start (150 s on the free plan, 400 s on paid ones: the
 * lower, as the plan is not known here), less time to say what it gives up before that.
 */
export const EDGE_WALL_CLOCK_MS = 150_000;
export const EDGE_WALL_CLOCK_MARGIN_MS = 10_000;
/**
 * The forwarder's write-back is retried for at least this long, even when the leases are about to expire.
 * Here, not in forwarder.ts, so the readiness function can read it without the forwarder's graph (zod).
 */
export const WRITE_BACK_MIN_BUDGET_MS = 5_000;
/** When this module was loaded: the worker's start, as near as it can know it. */
const workerStarted = performance.now();

export function runtimeFromEnv(env: Env = Deno.env.toObject(), log: Logger = jsonLogger): Runtime {
  const url = databaseUrlFromEnv(env);
  if (!url) return { env, sql: null, log };
  const workerDeadline = workerStarted + EDGE_WALL_CLOCK_MS - EDGE_WALL_CLOCK_MARGIN_MS;
  const pool = poolSizeFromEnv(env);
  // Once, at start (index.ts builds the runtime once); the readiness page and deno task dev say it too.
  if (pool.warning) log("warn", "[Runtime] Setting refused", { problem: pool.warning });
  try {
    return { env, sql: connect(url, { max: pool.value }), log, workerDeadline };
  } catch (error) {
    // Thrown here, it was the worker's boot error: a stack trace in the boot log, and every request failing
    // without a word. Each function answers 503 not_configured with it instead; the message has no value.
    if (!(error instanceof DatabaseUrlError)) throw error;
    log("error", "[Runtime] Not configured", { problem: error.message });
    return { env, sql: null, log, databaseProblem: error.message };
  }
}
