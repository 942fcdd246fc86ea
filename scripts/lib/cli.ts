// What the command-line scripts share: the database they work on, and how they show it. Kept apart from the
// dev server so a short CLI run does not load PGlite and every function.
import { parseArgs, type ParseArgsConfig } from "node:util";
import { databaseUrlFromEnv } from "../../supabase/functions/_shared/db.ts";
import { urlCredentials } from "../../supabase/functions/_shared/env.ts";

/** DATABASE_URL / SUPABASE_DB_URL (after the caller loaded .env), or exit 2 saying what to set. */
export function requireDatabaseUrl(purpose: string): string {
  const url = databaseUrlFromEnv();
  if (url) return url;
  console.error(
    `Set DATABASE_URL (or SUPABASE_DB_URL) to ${purpose}; for \`deno task dev\`'s database, export ` +
      `DATABASE_URL=postgresql://postgres:postgres@127.0.0.1:54322/postgres in this shell (not in .env)`,
  );
  Deno.exit(2);
}

/**
 * URLs (connection strings, the Agent SDK's) are shown without their password, found in the text itself
 * (urlCredentials): a password holding an unencoded "#", "/" or "?" is one `new URL()` does not see.
 */
export function redact(url: string): string {
  const credentials = urlCredentials(url);
  if (credentials?.password) return `${credentials.prefix}${credentials.user}:***@${credentials.rest}`;
  if (credentials) return url;
  try {
    return new URL(url).toString();
  } catch {
    return "(unparseable URL)";
  }
}

/**
 * SIGINT/SIGTERM: the first runs `stop`, which lets what is in flight finish (a delivery cut off is sent again
 * once its lease expires); a second one quits at once, with 130.
 */
export function onStopSignals(stop: () => unknown): void {
  let signalled = false;
  const handle = () => {
    if (signalled) Deno.exit(130);
    signalled = true;
    stop();
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, handle);
}

/** The command line parsed by `config`, or exit 2 with what was wrong and the usage (a usage error). */
export function parseArgsOrExit<T extends ParseArgsConfig>(
  config: T,
  usage: string,
): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (error) {
    console.error(`${(error as Error).message}\n${usage}`);
    Deno.exit(2);
  }
}
