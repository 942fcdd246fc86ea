// deno task migrate [--check] [--include-all]: apply pending migrations to DATABASE_URL / SUPABASE_DB_URL, or
// with --check only list what is pending and exit 1 if anything is. Same history table as `supabase migration
// up`, and like it, a file older than the last one applied is refused unless --include-all.
import { connectOrExit, parseArgsOrExit, redact, reportFailure, requireDatabaseUrl } from "./lib/cli.ts";
import { loadDotenv } from "./lib/dotenv.ts";
import {
  appliedVersions,
  applyMigrations,
  listMigrations,
  OutOfOrderMigrations,
  pendingMigrations,
  unknownVersions,
  unknownVersionsWarning,
} from "./lib/migrations.ts";

const USAGE = "usage: deno task migrate [--check] [--include-all]\n" +
  "  --check: list what is pending, apply nothing; exit 1 if any\n" +
  "  --include-all: also apply files older than the last migration applied (refused without it)";
// Strict: a mistyped --check must not apply every pending migration.
const parsed = parseArgsOrExit(
  {
    args: Deno.args,
    options: {
      check: { type: "boolean", default: false },
      "include-all": { type: "boolean", default: false },
    },
  },
  USAGE,
);
await loadDotenv(".env");
const url = requireDatabaseUrl("the database to migrate");
// The migrations' warnings are for the operator (a job unscheduled, a setting dropped, what to run): shown.
const sql = connectOrExit("migrate", url, {
  max: 1,
  connectTimeout: 10,
  onNotice: (notice) => {
    if (notice.severity === "WARNING") console.warn(`WARNING: ${notice.message}`);
  },
});
try {
  console.log(`database ${redact(url)}`);
  if (parsed.values.check) {
    const applied = await appliedVersions(sql);
    const files = await listMigrations();
    const unknown = unknownVersions(files, applied);
    if (unknown.length > 0) console.log(unknownVersionsWarning(unknown));
    const pending = pendingMigrations(files, applied);
    for (const { file, outOfOrder } of pending) {
      const note = outOfOrder ? " (older than the last migration applied: needs --include-all)" : "";
      console.log(`pending ${file.version}_${file.name}${note}`);
    }
    console.log(pending.length === 0 ? "migrations up to date" : `${pending.length} pending`);
    Deno.exitCode = pending.length === 0 ? 0 : 1;
  } else {
    const done = await applyMigrations(sql, { log: console.log, includeAll: parsed.values["include-all"] });
    console.log(done.length === 0 ? "migrations up to date" : `${done.length} applied`);
  }
} catch (error) {
  if (error instanceof OutOfOrderMigrations) {
    console.error(`${error.message}\nRerun with --include-all to apply them (after the newer ones applied).`);
    Deno.exitCode = 1;
  } else {
    reportFailure("migrate", url, error);
  }
} finally {
  await sql.end({ timeout: 2 });
}
