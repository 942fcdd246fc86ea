// Applies supabase/migrations/*.sql in order and records them in supabase_migrations.schema_migrations,
// the table the Supabase CLI keeps, so `supabase migration up` and this runner agree on what is applied.
import { beginSurvivingClose, type Sql } from "../../supabase/functions/_shared/db.ts";

export const MIGRATIONS_DIR = new URL("../../supabase/migrations/", import.meta.url);

export interface MigrationFile {
  version: string;
  name: string;
  path: URL;
}

export async function listMigrations(dir: URL = MIGRATIONS_DIR): Promise<MigrationFile[]> {
  const files: MigrationFile[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const match = /^(\d+)_(.+)\.sql$/.exec(entry.name);
    if (entry.isFile && match) {
      files.push({ version: match[1], name: match[2], path: new URL(entry.name, dir) });
    }
  }
  return files.sort((a, b) => a.version.localeCompare(b.version));
}

const HISTORY_DDL = `
  create schema if not exists supabase_migrations;
  create table if not exists supabase_migrations.schema_migrations (
    version text not null primary key,
    statements text[],
    name text
  );`;

export async function appliedVersions(sql: Sql): Promise<Set<string>> {
  const [{ exists }] = await sql<{ exists: boolean }[]>`
    select to_regclass('supabase_migrations.schema_migrations') is not null as exists`;
  if (!exists) return new Set();
  const rows = await sql<{ version: string }[]>`select version from supabase_migrations.schema_migrations`;
  return new Set(rows.map((row) => row.version));
}

/**
 * Pending files older than the newest version applied. `supabase migration up` refuses to apply them without
 * --include-all: each was written before migrations the database already has, and runs after them.
 */
export class OutOfOrderMigrations extends Error {
  constructor(readonly files: MigrationFile[], readonly lastApplied: string, lastAppliedHasFile = true) {
    super(
      `Found local migration files to be inserted before the last migration on the database ` +
        `(${lastApplied}${lastAppliedHasFile ? "" : ", which has no file here: see the warning above"}):\n` +
        files.map((f) => `  ${f.version}_${f.name}.sql`).join("\n"),
    );
  }
}

/**
 * Versions applied in the database that have no file in `files`: another branch's, applied by hand, or this
 * checkout is behind. The Supabase CLI refuses to migrate then (its `migration repair` is the way out); here
 * it is a warning (unknownVersionsWarning), since a pending file older than one of them is refused anyway.
 */
export function unknownVersions(files: MigrationFile[], applied: Set<string>): string[] {
  const local = new Set(files.map((f) => f.version));
  return [...applied].filter((v) => !local.has(v)).sort((a, b) => a.localeCompare(b));
}

export function unknownVersionsWarning(versions: string[]): string {
  return `warning: applied in the database but not in supabase/migrations/: ${versions.join(", ")} ` +
    "(another branch's, or applied by hand? this checkout may be behind the database)";
}

/** The files of `files` not applied yet, each marked when it is older than the newest version applied. */
export function pendingMigrations(
  files: MigrationFile[],
  applied: Set<string>,
): { file: MigrationFile; outOfOrder: boolean }[] {
  const last = lastVersion(applied);
  return files.filter((f) => !applied.has(f.version))
    .map((file) => ({ file, outOfOrder: last !== null && file.version.localeCompare(last) < 0 }));
}

function lastVersion(applied: Set<string>): string | null {
  return [...applied].reduce<string | null>((a, b) => a === null || b.localeCompare(a) > 0 ? b : a, null);
}

/**
 * Applies every pending migration, each in its own transaction; returns the versions applied. A pending file
 * older than the newest version applied is refused (OutOfOrderMigrations, nothing applied) unless
 * `includeAll`, as `supabase migration up` does. A fresh database has none such.
 */
export async function applyMigrations(
  sql: Sql,
  { dir = MIGRATIONS_DIR, log = (_line: string) => {}, includeAll = false }: {
    dir?: URL;
    log?: (line: string) => void;
    includeAll?: boolean;
  } = {},
): Promise<string[]> {
  await sql.unsafe(HISTORY_DDL).simple();
  const files = await listMigrations(dir);
  const appliedBefore = await appliedVersions(sql);
  const unknown = unknownVersions(files, appliedBefore);
  if (unknown.length > 0) log(unknownVersionsWarning(unknown));
  if (!includeAll) {
    const outOfOrder = pendingMigrations(files, appliedBefore).filter((p) => p.outOfOrder).map((p) => p.file);
    const last = lastVersion(appliedBefore)!;
    if (outOfOrder.length > 0) throw new OutOfOrderMigrations(outOfOrder, last, !unknown.includes(last));
  }
  const applied: string[] = [];
  for (const migration of files) {
    const text = await Deno.readTextFile(migration.path);
    // beginSurvivingClose: a connection lost meanwhile is a failure reported, not a crash (postgres.js#1066).
    const done = await beginSurvivingClose(sql, "", async (tx) => {
      // Two runners starting at once (several dev servers, CI jobs) must not apply a file twice.
      await tx`select pg_advisory_xact_lock(hashtext('supabase_migrations.schema_migrations'))`;
      const [seen] =
        await tx`select 1 from supabase_migrations.schema_migrations where version = ${migration.version}`;
      if (seen) return false;
      await tx.unsafe(text).simple();
      await tx`insert into supabase_migrations.schema_migrations (version, statements, name)
               values (${migration.version}, ${[text]}, ${migration.name})`;
      return true;
    });
    if (done) {
      applied.push(migration.version);
      log(`applied migration ${migration.version}_${migration.name}`);
    }
  }
  return applied;
}
