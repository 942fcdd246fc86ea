// deno task dev — see README.md ("Run it locally").
import { DatabaseUrlError, databaseUrlFromEnv } from "../supabase/functions/_shared/db.ts";
import { ConfigError, intFromEnv } from "../supabase/functions/_shared/env.ts";
import { onStopSignals, parseArgsOrExit, redact } from "./lib/cli.ts";
import { loadDotenv } from "./lib/dotenv.ts";
import { startDevServer } from "./lib/dev_server.ts";
import { sweepMsFrom } from "./lib/forwarder_loop.ts";
import { DataDirInUse } from "./lib/embedded_db.ts";
import { OutOfOrderMigrations } from "./lib/migrations.ts";

/** Network errors (Node codes), postgres.js' connect timeout, and refusals by the server (SQLSTATE). */
const CONNECT_ERRORS = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "CONNECT_TIMEOUT",
  "28000", // invalid_authorization_specification
  "28P01", // invalid_password
  "3D000", // invalid_catalog_name: no such database
]);

/** The database a postgres URL names (its path), or null when it names none or cannot be read. */
function databaseName(url: string): string | null {
  try {
    return decodeURIComponent(new URL(url.trim()).pathname.slice(1)) || null;
  } catch {
    return null;
  }
}

// No options: settings are environment variables (or .env), so `--port 8000` must not go unnoticed.
parseArgsOrExit(
  { args: Deno.args, options: {} },
  "usage: deno task dev (no arguments; set PORT, DB_PORT, DATABASE_URL, … in the environment or .env)",
);
await loadDotenv(".env");
const env = Deno.env.toObject();
console.log("chatwoot-relay dev server");
/**
 * A setting read by `read`; one refused is said in a line (ConfigError names it), not as a stack trace, and
 * exits 2 as every task's usage or setting error does (scripts/lib/cli.ts); 1 is for failures at work.
 */
function setting<T>(read: () => T): T {
  try {
    return read();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    Deno.exit(2);
  }
}
// A port past 65535 was a stack trace from Deno.serve.
const port = setting(() => intFromEnv(env, "PORT", 54321, 0, 65_535));
const dbPort = setting(() => intFromEnv(env, "DB_PORT", 54322, 0, 65_535));
const server = await startDevServer({
  port,
  dbPort,
  // deno task forward --sweep-ms's rule too.
  forwarderSweepMs: setting(() => sweepMsFrom("FORWARDER_SWEEP_MS", env.FORWARDER_SWEEP_MS)),
}).catch((error) => {
  // The functions listen through Deno.serve (Deno.errors.AddrInUse), the embedded database through node:net
  // (a Node error with code EADDRINUSE, which Deno's error carries too: hence this order).
  const taken: [string, number, string] | null = error instanceof Deno.errors.AddrInUse
    ? ["PORT", port, "the functions"]
    : error?.code === "EADDRINUSE"
    ? ["DB_PORT", dbPort, "the embedded database"]
    : null;
  if (error instanceof DataDirInUse) {
    console.error(
      `The embedded database in ${error.dataDir} is in use: is another \`deno task dev\` running? Stop it first.`,
    );
    Deno.exit(1);
  }
  const external = databaseUrlFromEnv(env);
  if (error instanceof DatabaseUrlError) {
    console.error(`${error.message}: fix it, or unset both to use the embedded database.`);
    Deno.exit(1);
  }
  if (error instanceof OutOfOrderMigrations && external) {
    console.error(
      `${error.message}\nin the database in DATABASE_URL/SUPABASE_DB_URL (${redact(external)}). Apply them ` +
        "with `deno task migrate --include-all` if they still make sense after the newer ones, then start again.",
    );
    Deno.exit(1);
  }
  if (!taken && external && CONNECT_ERRORS.has(error?.code)) {
    // A server that answers but lacks the database: create it (the migrations run at start), not start it.
    const database = databaseName(external);
    const remedy = error?.code !== "3D000"
      ? "Start it or fix the URL"
      : database && /^[a-z_][a-z0-9_]*$/.test(database)
      ? `Create it (\`createdb ${database}\`, or \`create database ${database}\` in psql) or fix the URL`
      : "Create it or fix the URL";
    console.error(
      `Cannot connect to the database in DATABASE_URL/SUPABASE_DB_URL (${redact(external)}): ` +
        `${error.message}. ${remedy}; unset both to use the embedded database.`,
    );
    Deno.exit(1);
  }
  if (!taken) throw error;
  const [setting, value, what] = taken;
  console.error(
    `${setting}=${value} (${what}) is already in use: is another \`deno task dev\` running? ` +
      `Stop it, or set ${setting} to a free port (0 picks one).`,
  );
  Deno.exit(1);
});
console.log(`Ready: ${server.url}/functions/v1/ (Ctrl-C stops)`);

onStopSignals(async () => {
  await server.stop();
  Deno.exit(0);
});
