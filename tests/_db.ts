// A migrated database for one test file: in-memory PGlite by default, or a fresh database on the server
// named by DATABASE_URL (created here, dropped on close), so the same suite runs against both.
import postgres from "postgres";
import { connect, type Sql } from "../supabase/functions/_shared/db.ts";
import { startEmbeddedDb } from "../scripts/lib/embedded_db.ts";
import { applyMigrations, listMigrations } from "../scripts/lib/migrations.ts";

export interface TestDb {
  kind: "pglite" | "postgres";
  url: string;
  /** A pool for the test's own queries. */
  sql: Sql;
  close(): Promise<void>;
}

export interface TestDbOptions {
  /** SQL run on the empty database before the migrations (e.g. stand-ins for extensions). */
  beforeMigrations?: string;
  /** The server to create the database on. Default: DATABASE_URL, and PGlite when that is unset. */
  serverUrl?: string;
  /** A role (existing, able to log in) that owns the database and applies the migrations; server only. */
  owner?: string;
  /** The migrations to apply (a folder of files); default supabase/migrations/. */
  migrationsDir?: URL;
}

/** The advisory lock under which test databases on one server are migrated one at a time. */
const MIGRATION_TURNS = "relay tests: one migration at a time";

export async function startTestDb(options: TestDbOptions = {}): Promise<TestDb> {
  const serverUrl = options.serverUrl ?? Deno.env.get("DATABASE_URL");
  if (!serverUrl) {
    const embedded = await startEmbeddedDb();
    const sql = connect(embedded.url, { max: 10 });
    await migrate(sql, options);
    return {
      kind: "pglite",
      url: embedded.url,
      sql,
      async close() {
        await sql.end({ timeout: 1 });
        await embedded.stop();
      },
    };
  }
  const name = `relay_test_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}${options.owner ? ` owner ${options.owner}` : ""}`);
  const url = withDatabase(serverUrl, name, options.owner);
  const sql = connect(url, { max: 10 });
  // Roles belong to the whole server. On a fresh one, test files migrating their databases at once all find
  // Supabase's API roles missing, and every CREATE ROLE but the first fails (tests/fresh_server.test.ts).
  // So they take turns, under a lock in the server's own database (advisory locks are per database).
  await admin`select pg_advisory_lock(hashtext(${MIGRATION_TURNS}))`;
  try {
    await migrate(sql, options);
  } finally {
    await admin`select pg_advisory_unlock(hashtext(${MIGRATION_TURNS}))`;
  }
  return {
    kind: "postgres",
    url,
    sql,
    async close() {
      await sql.end({ timeout: 1 });
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end({ timeout: 1 });
    },
  };
}

async function migrate(sql: Sql, { beforeMigrations, migrationsDir }: TestDbOptions): Promise<void> {
  if (beforeMigrations) await sql.unsafe(beforeMigrations).simple();
  await applyMigrations(sql, migrationsDir ? { dir: migrationsDir } : {});
}

export function withDatabase(url: string, database: string, user?: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  if (user) u.username = user;
  return u.toString();
}

/** The sanitizer settings of dbTest: a database held for the whole file (its pools outlive single tests). */
export const HOLDS_DB = { sanitizeOps: false, sanitizeResources: false } as const;

/** Deno.test for tests that hold a database for the whole file (pools outlive single tests). */
export function dbTest(name: string, fn: () => Promise<void>) {
  Deno.test({ name, fn, ...HOLDS_DB });
}

/** CI's second run of the suite, on the PostgreSQL server DATABASE_URL names (the default run is on PGlite). */
const SERVER_RUN = Boolean(Deno.env.get("DATABASE_URL"));

type TestFn = (t: Deno.TestContext) => void | Promise<void>;

/**
 * Deno.test for a test whose run does not depend on DATABASE_URL: no startTestDb or dbTest database, no
 * DATABASE_URL given to (or inherited by) a process it spawns, no database the code under test picks by it.
 * It would run exactly the same in CI's two runs, so it runs in the default (PGlite) run only and the
 * PostgreSQL run lists it as ignored: CI's time goes to what the server can change.
 */
export function dbIndependentTest(
  name: string,
  fn: TestFn,
  options?: Omit<Deno.TestDefinition, "name" | "fn">,
): void;
export function dbIndependentTest(definition: Deno.TestDefinition): void;
export function dbIndependentTest(
  nameOrDefinition: string | Deno.TestDefinition,
  fn?: TestFn,
  options: Omit<Deno.TestDefinition, "name" | "fn"> = {},
): void {
  const definition = typeof nameOrDefinition === "string"
    ? { ...options, name: nameOrDefinition, fn: fn! }
    : nameOrDefinition;
  Deno.test({ ...definition, ignore: SERVER_RUN || definition.ignore });
}

/**
 * Holds webhook_events locked (access exclusive, as a migration or a careless query would) in a transaction of
 * `sql`'s, until `release()`: every ingest waits on the lock meanwhile. Resolves once the lock is held.
 */
export async function lockWebhookEvents(sql: Sql): Promise<{ release: () => Promise<void> }> {
  let release!: () => void;
  const released = new Promise<void>((resolve) => release = resolve);
  let locked!: () => void;
  const held = new Promise<void>((resolve) => locked = resolve);
  const holder = sql.begin(async (tx) => {
    await tx`lock table public.webhook_events in access exclusive mode`;
    locked();
    await released;
  });
  await Promise.race([held, holder]);
  return {
    release: async () => {
      release();
      await holder;
    },
  };
}

/** A folder holding the migrations before `version`: a database as the release before that migration left it. */
export async function migrationsBefore(version: string): Promise<URL> {
  const dir = await Deno.makeTempDir({ prefix: `relay_before_${version}_` });
  for (const file of await listMigrations()) {
    if (file.version.localeCompare(version) < 0) {
      await Deno.copyFile(file.path, `${dir}/${file.version}_${file.name}.sql`);
    }
  }
  return new URL(`file://${dir}/`);
}
