// Applies supabase/migrations/*.sql in order and records them in supabase_migrations.schema_migrations,
// the table the Supabase CLI keeps, so `supabase migration up` and this runner agree on what is applied.
import type { Sql } from "../../supabase/functions/_shared/db.ts";

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

/** Applies every pending migration, each in its own transaction; returns the versions applied. */
export async function applyMigrations(
  sql: Sql,
  { dir = MIGRATIONS_DIR, log = (_line: string) => {} }: { dir?: URL; log?: (line: string) => void } = {},
): Promise<string[]> {
  await sql.unsafe(HISTORY_DDL).simple();
  const applied: string[] = [];
  for (const migration of await listMigrations(dir)) {
    const text = await Deno.readTextFile(migration.path);
    const done = await sql.begin(async (tx) => {
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
