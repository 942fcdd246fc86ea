// What every function is built from: its environment, one database pool and a logger. index.ts files build
// it from the process; the dev server and tests build it themselves and share one pool across functions.
import { connect, DatabaseUrlError, databaseUrlFromEnv, type Sql } from "./db.ts";
import { ConfigError, type Env, intFromEnv } from "./env.ts";
import { jsonLogger, type Logger } from "./log.ts";

export interface Runtime {
  env: Env;
  sql: Sql | null;
  log: Logger;
  /** Why `sql` is null although a database URL is set (it or DATABASE_POOL_SIZE refused); names, no values. */
  databaseProblem?: string | null;
}

/** The answer's message when a function has no database. */
export const NO_DATABASE = "No database configured: set SUPABASE_DB_URL or DATABASE_URL";

export function runtimeFromEnv(env: Env = Deno.env.toObject(), log: Logger = jsonLogger): Runtime {
  const url = databaseUrlFromEnv(env);
  if (!url) return { env, sql: null, log };
  try {
    // A function instance serves requests concurrently; DATABASE_POOL_SIZE bounds its connections (default 5).
    const max = intFromEnv(env, "DATABASE_POOL_SIZE", 5);
    return { env, sql: connect(url, { max }), log };
  } catch (error) {
    // Thrown here, it was the worker's boot error: a stack trace in the boot log, and every request failing
    // without a word. Each function answers 503 not_configured with it instead; neither message has a value.
    if (!(error instanceof ConfigError || error instanceof DatabaseUrlError)) throw error;
    log("error", "[Runtime] Not configured", { problem: error.message });
    return { env, sql: null, log, databaseProblem: error.message };
  }
}
