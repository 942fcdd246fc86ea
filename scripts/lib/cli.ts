// What the command-line scripts share: the database they work on, and how they show it. Kept apart from the
// dev server so a short CLI run does not load PGlite and every function.
import { parseArgs, type ParseArgsConfig } from "node:util";
import { errorMessageWithCause } from "../../supabase/functions/_shared/background.ts";
import {
  connect,
  type ConnectOptions,
  databaseUrlFromEnv,
  type Sql,
} from "../../supabase/functions/_shared/db.ts";
import {
  CREDENTIAL_PARAMETER,
  credentialParameters,
  safeDecode,
  urlCredentials,
  withoutSecrets,
  withoutSurroundingSpace,
} from "../../supabase/functions/_shared/env.ts";

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
 * (urlCredentials): a password holding an unencoded "#", "/" or "?" is one `new URL()` does not see. A URL not
 * of the form scheme://user:password@host shows nothing before its last "@"; a query parameter named like a
 * credential (password=, token=, api_key=, …) shows ***.
 */
export function redact(url: string): string {
  const text = withoutSurroundingSpace(url);
  const credentials = urlCredentials(text);
  let shown: string;
  if (credentials?.password != null) {
    shown = `${credentials.prefix}${credentials.user}:***@${credentials.rest}`;
  } else if (credentials) shown = text;
  else if (text.includes("@")) shown = `***@${text.slice(text.lastIndexOf("@") + 1)}`;
  else {
    try {
      shown = new URL(text).toString();
    } catch {
      return "(unparseable URL)";
    }
  }
  return shown.replace(CREDENTIAL_PARAMETER, (_, name: string) => `${name}***`);
}

/** What in `url` is secret, as written and percent-decoded: the password, credential query parameters. */
export function urlSecrets(url: string): string[] {
  const text = withoutSurroundingSpace(url);
  const credentials = urlCredentials(text);
  // Not scheme://user:password@host: whatever stands before the last "@", past a scheme, may be one.
  const info = credentials
    ? credentials.password
    : text.includes("@")
    ? text.slice(0, text.lastIndexOf("@")).replace(/^[a-z][a-z0-9+.-]*:\/*/i, "").replace(/^[^:]*:/, "")
    : null;
  const found = [info ?? "", ...credentialParameters(text).map((p) => p.value)];
  return [...new Set(found.flatMap((s) => [s, safeDecode(s)]))].filter((s) => s !== "");
}

/**
 * Says on one line (stderr) what failed and where, `target` redacted, and sets exit code 1. A database that
 * refuses or is not there, a role or password rejected, an SQL error, a server not answering: news for the
 * operator, not a bug of ours, so no stack trace; and whatever the error quotes, never the password.
 */
export function reportFailure(
  what: string,
  target: string | null,
  error: unknown,
  secrets: string[] = [],
): void {
  console.error(
    `${what} failed${target ? ` (${redact(target)})` : ""}: ${failureText(error, target, secrets)}`,
  );
  Deno.exitCode = 1;
}

/** reportFailure, then exit 1 at once (for failures before there is anything to close). */
export function exitWithFailure(
  what: string,
  target: string | null,
  error: unknown,
  secrets: string[] = [],
): never {
  reportFailure(what, target, error, secrets);
  Deno.exit(1);
}

/** `connect(url, options)`, or exit 1 saying why (an unparseable URL), before any query. */
export function connectOrExit(what: string, url: string, options: ConnectOptions): Sql {
  try {
    return connect(url, options);
  } catch (error) {
    exitWithFailure(what, url, error);
  }
}

function failureText(error: unknown, target: string | null, secrets: string[]): string {
  const text = errorMessageWithCause(error);
  const hidden = [...secrets, ...(target ? urlSecrets(target) : [])].filter((s) => s !== "");
  return withoutSecrets(text, hidden).replace(/\s+/g, " ").trim();
}

/**
 * SIGINT/SIGTERM: the first runs `stop` (told which), which lets what is in flight finish (a delivery cut off
 * is sent again once its lease expires); a second one quits at once, with 130.
 */
export function onStopSignals(stop: (signal: "SIGINT" | "SIGTERM") => unknown): void {
  let signalled = false;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      if (signalled) Deno.exit(130);
      signalled = true;
      stop(signal);
    });
  }
}

type ParsedArgs<T extends ParseArgsConfig> = ReturnType<typeof parseArgs<T>>;

/**
 * The command line parsed by `config`, or exit 2 with what was wrong and the usage (a usage error). Every
 * script takes --help (-h): the usage on stdout, exit 0.
 */
export function parseArgsOrExit<T extends ParseArgsConfig>(config: T, usage: string): ParsedArgs<T> {
  let parsed: ParsedArgs<T>;
  try {
    const help = { type: "boolean", short: "h" } as const;
    // The same config with one more boolean: the values the caller declared keep their types.
    parsed = parseArgs({ ...config, options: { ...config.options, help } }) as ParsedArgs<T>;
  } catch (error) {
    usageError((error as Error).message, usage);
  }
  const values = parsed.values as Record<string, unknown>;
  if (values.help) {
    console.log(usage);
    Deno.exit(0);
  }
  delete values.help;
  return parsed;
}

/** A command line the script cannot run: what was wrong, then the usage, on stderr; exit 2. */
export function usageError(message: string, usage: string): never {
  console.error(`${message}\n${usage}`);
  Deno.exit(2);
}
