// deno task migrate [--check]: apply pending migrations to DATABASE_URL / SUPABASE_DB_URL, or with --check
// only list what is pending and exit 1 if anything is. Same history table as `supabase migration up`.
import { connectOrExit, parseArgsOrExit, redact, reportFailure, requireDatabaseUrl } from "./lib/cli.ts";
import { loadDotenv } from "./lib/dotenv.ts";
import { appliedVersions, applyMigrations, listMigrations } from "./lib/migrations.ts";

const USAGE =
  "usage: deno task migrate [--check]   (--check: list what is pending, apply nothing; exit 1 if any)";
// Strict: a mistyped --check must not apply every pending migration.
const parsed = parseArgsOrExit(
  {
    args: Deno.args,
    options: {
      check: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  },
  USAGE,
);
if (parsed.values.help) {
  console.log(USAGE);
  Deno.exit(0);
}
await loadDotenv(".env");
const url = requireDatabaseUrl("the database to migrate");
const sql = connectOrExit("migrate", url, { max: 1, connectTimeout: 10 });
try {
  console.log(`database ${redact(url)}`);
  if (parsed.values.check) {
    const applied = await appliedVersions(sql);
    const pending = (await listMigrations()).filter((m) => !applied.has(m.version));
    for (const m of pending) console.log(`pending ${m.version}_${m.name}`);
    console.log(pending.length === 0 ? "migrations up to date" : `${pending.length} pending`);
    Deno.exitCode = pending.length === 0 ? 0 : 1;
  } else {
    const done = await applyMigrations(sql, { log: console.log });
    console.log(done.length === 0 ? "migrations up to date" : `${done.length} applied`);
  }
} catch (error) {
  reportFailure("migrate", url, error);
} finally {
  await sql.end({ timeout: 2 });
}
