// A migrated database for one test file: in-memory PGlite by default, or a fresh database on the server
// named by DATABASE_URL (created here, dropped on close), so the same suite runs against both.
import { PGlite } from "@electric-sql/pglite";
import { tmpdir } from "node:os";
import postgres from "postgres";
import { connect, type Sql } from "../supabase/functions/_shared/db.ts";
import { type EmbeddedDb, startEmbeddedDb } from "../scripts/lib/embedded_db.ts";
import { applyMigrations, listMigrations, MIGRATIONS_DIR } from "../scripts/lib/migrations.ts";

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
  /**
   * The migrations to apply (a folder of files); default supabase/migrations/. Without any of these options
   * the database is a copy of one migrated once (TEMPLATE_PREFIX, startMigratedPglite); given (even
   * supabase/migrations/ itself), it is migrated file by file here.
   */
  migrationsDir?: URL;
}

/** The advisory lock under which test databases on one server are migrated one at a time. */
const MIGRATION_TURNS = "relay tests: one migration at a time";

/**
 * The comment on each server database startTestDb makes. Its admin session bears the database's name as
 * application_name for as long as it lives; a database so marked whose session is gone was left by a run that
 * ended before dropping it (ctrl-C exits `deno test` at once, running no hook), and the next startTestDb on
 * that server drops it. Unmarked ones (made before this, or by anything else) are never dropped here.
 */
const LEFT_BY_A_RUN = "relay test database: a later test run drops it once no session bears its name";

/**
 * This test file's databases not closed yet. Its last hook closes them: a --filter or --fail-fast run skips
 * the file's closing test, and `deno test` runs afterAll hooks even then (unlike a test registered for it).
 */
const unclosed = new Set<() => Promise<void>>();
Deno.test.afterAll(async () => {
  for (const close of [...unclosed]) {
    try {
      await close();
    } catch (error) {
      // Not the run's failure: a later run drops a server database whose session is gone.
      console.warn(`tests/_db.ts: a test database did not close: ${error}`);
    }
  }
});

/** `close`, run once however often called, and by the file's last hook unless a test ran it first. */
function closedOnce(close: () => Promise<void>): () => Promise<void> {
  let closing: Promise<void> | undefined;
  const once = () => closing ??= close().finally(() => unclosed.delete(once));
  unclosed.add(once);
  return once;
}

export async function startTestDb(options: TestDbOptions = {}): Promise<TestDb> {
  const serverUrl = options.serverUrl ?? Deno.env.get("DATABASE_URL");
  if (!serverUrl) {
    const { embedded, sql } = await startMigratedPglite(options);
    return {
      kind: "pglite",
      url: embedded.url,
      sql,
      close: closedOnce(async () => {
        await sql.end({ timeout: 1 });
        await embedded.stop();
      }),
    };
  }
  const name = `relay_test_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
  // The session bearing the database's name (LEFT_BY_A_RUN) opens before the database exists and is never
  // recycled (postgres.js would end it after 30 to 60 minutes); in the URL, as a URL's parameter wins.
  const adminUrl = new URL(serverUrl);
  adminUrl.searchParams.set("application_name", name);
  const admin = postgres(adminUrl.toString(), { max: 1, max_lifetime: null, onnotice: () => {} });
  await dropLeftByEndedRuns(admin);
  // Most files' databases (no options) are copies of a migrated template (TEMPLATE_NAME), once it exists.
  const template = !options.serverUrl && !options.owner && !options.beforeMigrations && !options.migrationsDir
    ? `${TEMPLATE_PREFIX}${await shortHash(await migrationsKey())}`
    : null;
  // Not there yet (this run's first files), or being dropped by a run of other migrations: migrated here.
  const copied = template !== null &&
    await admin.unsafe(`create database ${name} template ${template}`).then(() => true, () => false);
  if (!copied) await admin.unsafe(`create database ${name}${options.owner ? ` owner ${options.owner}` : ""}`);
  await admin.unsafe(`comment on database ${name} is '${LEFT_BY_A_RUN}'`);
  const url = withDatabase(serverUrl, name, options.owner);
  let sql = connect(url, { max: 10 });
  const close = closedOnce(async () => {
    await sql.end({ timeout: 1 });
    await admin.unsafe(`drop database if exists ${name} with (force)`);
    await admin.end({ timeout: 1 });
  });
  if (!copied) {
    // Roles belong to the whole server. On a fresh one, test files migrating their databases at once all find
    // Supabase's API roles missing, and every CREATE ROLE but the first fails (tests/fresh_server.test.ts).
    // So they take turns, under a lock in the server's own database (advisory locks are per database).
    await admin`select pg_advisory_lock(hashtext(${MIGRATION_TURNS}))`;
    try {
      await migrate(sql, options);
    } finally {
      await admin`select pg_advisory_unlock(hashtext(${MIGRATION_TURNS}))`;
    }
    if (template) {
      await sql.end({ timeout: 1 }); // a template must have no session
      await makeTemplate(admin, name, template);
      sql = connect(url, { max: 10 });
    }
  }
  return { kind: "postgres", url, sql, close };
}

/**
 * The migrated template's name, before a hash of the migration files and the runner: startTestDb copies it
 * (CREATE DATABASE … TEMPLATE, ~0.5 s) rather than migrating each test file's database anew (2-3 s on a busy
 * machine, and one file at a time). It stays on the server for the next run; a changed migration makes a new
 * one, and the older ones are dropped. The same as a database migrated anew: no migration sets anything per
 * database, which a copy would not keep.
 */
const TEMPLATE_PREFIX = "relay_test_template_";

/**
 * Copies the just-migrated `source` (which must have no session) as `template`. CREATE DATABASE is atomic, so
 * a template that exists is whole; when two files (or runs) make it at once, the second finds it made. Then
 * drops the templates of other migrations, except where a run is copying one (it waits for that, or fails).
 */
async function makeTemplate(admin: postgres.Sql, source: string, template: string): Promise<void> {
  try {
    await admin.unsafe(`create database ${template} template ${source}`);
  } catch (error) {
    if ((error as { code?: string }).code !== "42P04") { // duplicate_database: made meanwhile
      console.warn(`tests/_db.ts: no template ${template} made (each test database is migrated): ${error}`);
    }
  }
  const older = await admin<{ datname: string }[]>`
    select datname from pg_database
     where datname ~ ${`^${TEMPLATE_PREFIX}[0-9a-f]{16}$`} and datname <> ${template}`;
  for (const { datname } of older) await admin.unsafe(`drop database if exists ${datname}`).catch(() => {});
}

/**
 * Drops the test databases (LEFT_BY_A_RUN) whose runs ended without dropping them: no session bears their
 * names. Another test file's of the same run, or another developer's live run, has its session. Only where
 * every session's application_name is visible (a superuser, pg_read_all_stats): another role's reads as null.
 */
async function dropLeftByEndedRuns(admin: postgres.Sql): Promise<void> {
  const left = await admin<{ datname: string }[]>`
    select d.datname from pg_database d
     where shobj_description(d.oid, 'pg_database') = ${LEFT_BY_A_RUN}
       and d.datname ~ '^relay_test_[0-9a-f]{16}$'
       and pg_has_role('pg_read_all_stats', 'member')
       and not exists (select 1 from pg_stat_activity a where a.application_name = d.datname)`;
  for (const { datname } of left) {
    try {
      await admin.unsafe(`drop database if exists ${datname} with (force)`);
      console.warn(`tests/_db.ts: dropped ${datname}, left by a test run that ended before dropping it`);
    } catch (error) {
      // Test files starting at once all find it: one drops it, and the others' drops may fail meanwhile.
      const [{ gone }] = await admin<{ gone: boolean }[]>`
        select not exists (select 1 from pg_database where datname = ${datname}) as gone`;
      if (!gone) console.warn(`tests/_db.ts: could not drop ${datname}, left by an ended test run: ${error}`);
    }
  }
}

/**
 * PGlite, migrated as `options` say. Creating PGlite on an empty directory runs initdb, and with the 70-odd
 * migrations after it that cost 10 to 25 s per test file on a busy 2-core machine; loading a dump of the data
 * directory costs a few. So the empty cluster is dumped once (pgliteImage) and every start loads it, and the
 * default migrated database (no options: most test files) is dumped once too, keyed by the migration files'
 * names and texts, the runner and the PGlite version, so a changed migration makes a new one. The database a
 * test gets is the same either way: these dumps are what the same PGlite and applyMigrations made.
 */
async function startMigratedPglite(options: TestDbOptions): Promise<{ embedded: EmbeddedDb; sql: Sql }> {
  const startFrom = async (image: Blob) => {
    const embedded = await startEmbeddedDb({ open: () => PGlite.create({ loadDataDir: image }) });
    return { embedded, sql: connect(embedded.url, { max: 10 }) };
  };
  if (options.beforeMigrations || options.migrationsDir) {
    const started = await startFrom(await emptyPgliteImage());
    await migrate(started.sql, options);
    return started;
  }
  const migrated = await pgliteImage("migrated", PGLITE_VERSION + (await migrationsKey()), async () => {
    const { embedded, sql } = await startFrom(await emptyPgliteImage());
    try {
      await migrate(sql, options);
      await sql.end({ timeout: 1 });
      return await embedded.pglite.dumpDataDir("none");
    } finally {
      await sql.end({ timeout: 1 });
      await embedded.stop();
    }
  });
  return startFrom(migrated);
}

/** The dump of an empty PGlite cluster (what PGlite.create() makes, initdb's), made once (pgliteImage). */
export function emptyPgliteImage(): Promise<Blob> {
  return pgliteImage("blank", PGLITE_VERSION, async () => {
    const pglite = await PGlite.create();
    try {
      return await pglite.dumpDataDir("none");
    } finally {
      await pglite.close();
    }
  });
}

/** An empty in-memory PGlite behind the wire protocol, as startEmbeddedDb() opens it, without its initdb. */
export async function startEmptyPglite(): Promise<EmbeddedDb> {
  const image = await emptyPgliteImage();
  return startEmbeddedDb({ open: () => PGlite.create({ loadDataDir: image }) });
}

/** The PGlite version deno.json pins (the data directory's format is the version's). */
const PGLITE_VERSION: string = JSON.parse(
  await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
).imports["@electric-sql/pglite"];

/** What the default migrated database is made of: the runner and each migration file. */
async function migrationsKey(): Promise<string> {
  const parts = [await Deno.readTextFile(new URL("../scripts/lib/migrations.ts", import.meta.url))];
  for (const file of await listMigrations(MIGRATIONS_DIR)) {
    parts.push(`${file.version}_${file.name}`, await Deno.readTextFile(file.path));
  }
  return parts.join("\0");
}

/**
 * The dump `make` returns (an uncompressed tar of PGlite's data directory, ~40 MB: gzipped, it loads
 * slower), kept in the system's temp folder as relay-tests-pglite-<kind>-<hash of key>.tar, made anew when
 * missing or unreadable. Written under a temporary name and renamed, so a test file starting meanwhile never
 * reads half of one; test files starting at once may each make it, and the last rename wins. A new one
 * replaces the older ones of its kind (made before a migration changed).
 */
async function pgliteImage(kind: string, key: string, make: () => Promise<Blob>): Promise<Blob> {
  const hash = await shortHash(key);
  const prefix = `relay-tests-pglite-${kind}-`;
  const path = `${tmpdir()}/${prefix}${hash}.tar`;
  try {
    return new Blob([await Deno.readFile(path)]);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) console.warn(`tests/_db.ts: making ${path} anew: ${error}`);
  }
  const image = await make();
  const partial = `${path}.${crypto.randomUUID()}.partial`;
  await Deno.writeFile(partial, new Uint8Array(await image.arrayBuffer()));
  await Deno.rename(partial, path);
  for await (const entry of Deno.readDir(tmpdir())) {
    if (
      entry.name.startsWith(prefix) && entry.name.endsWith(".tar") && `${tmpdir()}/${entry.name}` !== path
    ) {
      await Deno.remove(`${tmpdir()}/${entry.name}`).catch(() => {});
    }
  }
  return image;
}

/** 16 hex digits of `text`'s SHA-256. */
async function shortHash(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return Array.from(digest.slice(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
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
