// What every function is built from: its environment, one database pool and a logger. index.ts files build
// it from the process; the dev server and tests build it themselves and share one pool across functions.
import { connect, databaseUrlFromEnv, type Sql } from "./db.ts";
import { type Env, intFromEnv } from "./env.ts";
import { jsonLogger, type Logger } from "./log.ts";

export interface Runtime {
  env: Env;
  sql: Sql | null;
  log: Logger;
}

export function runtimeFromEnv(): Runtime {
  const env = Deno.env.toObject();
  const url = databaseUrlFromEnv(env);
  // A function instance serves requests concurrently; DATABASE_POOL_SIZE bounds its connections (default 5).
  const max = intFromEnv(env, "DATABASE_POOL_SIZE", 5);
  return { env, sql: url ? connect(url, { max }) : null, log: jsonLogger };
}
