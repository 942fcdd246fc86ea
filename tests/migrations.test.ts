import assert from "node:assert/strict";
import postgres from "postgres";
import { dbIndependentTest, startEmptyPglite, startTestDb, type TestDb } from "./_db.ts";
import { settledWithin } from "./_http.ts";
import {
  applyMigrations,
  listMigrations,
  MIGRATIONS_DIR,
  OutOfOrderMigrations,
} from "../scripts/lib/migrations.ts";
import { connect } from "../supabase/functions/_shared/db.ts";
import { EVENT_NAME } from "../supabase/functions/_shared/chatwoot_events.ts";

/**
 * A test on a freshly migrated database of its own (PGlite, or the server DATABASE_URL names). `migrated`:
 * migrated right here, file by file, rather than copied from startTestDb's migrated template or dump.
 */
function migrationTest(
  name: string,
  fn: (db: TestDb) => Promise<void>,
  { ignore = false, migrated = false } = {},
) {
  Deno.test({
    name,
    ignore,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const db = await startTestDb(migrated ? { migrationsDir: MIGRATIONS_DIR } : {});
      try {
        await fn(db);
      } finally {
        await db.close();
      }
    },
  });
}

migrationTest(
  "migrations: all applied, recorded like the Supabase CLI, and a second run applies nothing",
  async (db) => {
    const files = await listMigrations();
    const rows = await db.sql<{ version: string; name: string; statements: string[] }[]>`
      select version, name, statements from supabase_migrations.schema_migrations order by version`;
    assert.deepEqual(rows.map((r) => r.version), files.map((f) => f.version));
    assert.deepEqual(rows.map((r) => r.name), files.map((f) => f.name));
    assert.ok(rows.every((r) => r.statements.length > 0));
    assert.deepEqual(await applyMigrations(db.sql), []);
  },
  { migrated: true },
);

/** What a hosted Supabase project has before any migration: what postgres creates in public is granted. */
const HOSTED_DEFAULT_PRIVILEGES = `
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'anon') then create role anon nologin noinherit; end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
end
$$;
grant usage on schema public to anon, authenticated, service_role;
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;`;

/** Thrown to roll a transaction back once its attempts are made. */
class RolledBack extends Error {}

/** What `role` may do to `rel`: its privileges by has_*_privilege (column grants and PUBLIC's included). */
const RELATION_PRIVILEGES = `
  case when c.relkind = 'S' then has_sequence_privilege(r.role, c.oid, 'usage, select, update')
       else has_table_privilege(r.role, c.oid, 'select, insert, update, delete, truncate, references, trigger')
         or has_any_column_privilege(r.role, c.oid, 'select, insert, update, references') end`;

Deno.test({
  name:
    "migrations: RLS on every public table, and anon/authenticated get no privileges, under hosted defaults: " +
    "each relation, sequence and routine tried as them is refused; SECURITY DEFINER fixes its search_path",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const db = await startTestDb({ beforeMigrations: HOSTED_DEFAULT_PRIVILEGES });
    try {
      const tables = await db.sql<{ relname: string; relrowsecurity: boolean }[]>`
        select c.relname, c.relrowsecurity from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'public' and c.relkind in ('r', 'p')`;
      assert.ok(tables.length >= 2);
      for (const t of tables) assert.equal(t.relrowsecurity, true, `RLS off on ${t.relname}`);
      const grants = await db.sql`
        select table_name, grantee, privilege_type from information_schema.role_table_grants
        where table_schema = 'public' and grantee in ('anon', 'authenticated')`;
      assert.deepEqual([...grants], []);
      const routines = await db.sql`
        select routine_name, grantee from information_schema.role_routine_grants
        where routine_schema = 'public' and grantee in ('anon', 'authenticated', 'PUBLIC')`;
      assert.deepEqual([...routines], []);
      // Sequences too: setval() as anon could park webhook_events' ids at their maximum.
      const sequences = await db.sql<{ seq: string }[]>`
        select r.role || ' on ' || c.relname as seq
          from pg_class c join pg_namespace n on n.oid = c.relnamespace
         cross join (values ('anon'), ('authenticated')) r(role)
         where n.nspname = 'public' and c.relkind = 'S'
           and has_sequence_privilege(r.role, c.oid, 'usage, select, update')`;
      assert.ok((await db.sql`select 1 from pg_class where relkind = 'S'`).length >= 2);
      assert.deepEqual(sequences.map((s) => s.seq), []);

      // By the catalog's own functions, which count PUBLIC's grants and column grants; and no role to become.
      const granted = await db.sql<{ what: string }[]>`
        select r.role || ' on ' || c.relname as what
          from pg_class c join pg_namespace n on n.oid = c.relnamespace
         cross join (values ('anon'), ('authenticated')) r(role)
         where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
           and ${db.sql.unsafe(RELATION_PRIVILEGES)}
        union all
        select r.role || ' executes ' || p.oid::regprocedure from pg_proc p
          join pg_namespace n on n.oid = p.pronamespace
         cross join (values ('anon'), ('authenticated')) r(role)
         where n.nspname = 'public' and has_function_privilege(r.role, p.oid, 'execute')
        union all
        select r.role || ' creates in public' from (values ('anon'), ('authenticated')) r(role)
         where has_schema_privilege(r.role, 'public', 'create')
        union all
        select m.member::regrole || ' may become ' || m.roleid::regrole from pg_auth_members m
         where m.member in ('anon'::regrole, 'authenticated'::regrole)`;
      assert.deepEqual(granted.map((g) => g.what), []);
      // A definer's routine runs with its owner's rights: an unqualified name must not resolve through a
      // schema its caller put first on the search_path.
      const definers = await db.sql<{ routine: string; config: string[] | null }[]>`
        select p.oid::regprocedure::text as routine, p.proconfig as config from pg_proc p
          join pg_namespace n on n.oid = p.pronamespace
         where n.nspname = 'public' and p.prosecdef`;
      assert.ok(definers.length >= 1);
      for (const d of definers) {
        assert.ok(d.config?.some((c) => c.startsWith("search_path=")), `${d.routine}: no fixed search_path`);
      }

      // And tried, as PostgREST would run them: each statement alone, refused for want of a privilege (42501).
      const relations = await db.sql<{ name: string; kind: string }[]>`
        select format('public.%I', c.relname) as name, c.relkind::text as kind
          from pg_class c join pg_namespace n on n.oid = c.relnamespace
         where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S') order by 1`;
      const calls = await db.sql<{ call: string }[]>`
        select (case when p.prokind = 'p' then 'call ' else 'select ' end) || format('public.%I', p.proname) ||
               '(' || coalesce((select string_agg('null::' || format_type(t, null), ', ' order by i)
                                  from unnest(p.proargtypes) with ordinality a(t, i)), '') || ')' as call
          from pg_proc p join pg_namespace n on n.oid = p.pronamespace
         where n.nspname = 'public' order by 1`;
      assert.ok(relations.length >= 20 && calls.length >= 20, `${relations.length}, ${calls.length}`);
      const attempts = [
        ...relations.flatMap(({ name, kind }) =>
          kind === "S" ? [`select nextval('${name}')`, `select setval('${name}', 1)`] : [
            `select * from ${name} limit 1`,
            // A view that cannot take writes says so before any privilege is checked: tables only.
            ...(kind === "r" || kind === "p"
              ? [`insert into ${name} default values`, `delete from ${name}`, `truncate ${name}`]
              : []),
          ]
        ),
        ...calls.map((r) => r.call),
        "create table public.made_by_api_role (id int)",
        "create function public.made_by_api_role() returns int language sql as 'select 1'",
      ];
      const allowed: string[] = [];
      for (const role of ["anon", "authenticated"]) {
        // One transaction per role, rolled back at the end; each attempt in a savepoint of its own.
        await db.sql.begin(async (tx) => {
          await tx.unsafe(`set local role ${role}`);
          for (const statement of attempts) {
            const outcome = await tx.savepoint((sp) => sp.unsafe(statement)).then(
              () => "done",
              (e: { code?: string }) => e.code,
            );
            if (outcome !== "42501") allowed.push(`${role}: ${statement} -> ${outcome}`);
          }
          throw new RolledBack();
        }).catch((e) => {
          if (!(e instanceof RolledBack)) throw e;
        });
      }
      assert.deepEqual(allowed, []);
    } finally {
      await db.close();
    }
  },
});

migrationTest(
  "migrations: raw_body and payload are compressed with lz4 where the server has it, pglz elsewhere",
  async (db) => {
    // Servers built with lz4 list it among default_toast_compression's values (PGlite is built without).
    const [{ lz4 }] = await db.sql<{ lz4: boolean }[]>`
      select 'lz4' = any (enumvals) as lz4 from pg_settings where name = 'default_toast_compression'`;
    const words = ["order", "refund", "tracking", "package", "delayed", "invoice", "thanks", "support"];
    const content = Array.from({ length: 1500 }, (_, i) => words[(i * 7 + (i >> 3)) % words.length]).join(
      " ",
    );
    const body = JSON.stringify({ event: "message_created", id: 424242, content });
    await db.sql`select * from public.ingest_webhook_event('message:424242:message_created',
      'message_created', 424242, 1, 1, 1, null, ${body}::jsonb, ${body}, repeat('a', 64), 'signature')`;
    const [stored] = await db.sql<{ raw_body: string | null; payload: string | null }[]>`
      select pg_column_compression(raw_body) as raw_body, pg_column_compression(payload) as payload
        from public.webhook_events where message_id = 424242`;
    const expected = lz4 ? "lz4" : "pglz";
    assert.deepEqual(
      stored,
      { raw_body: expected, payload: expected },
      `${db.kind}, lz4 available: ${lz4}`,
    );
  },
);

migrationTest(
  "migrations: body_sha256 takes exactly 64 lowercase hex digits, and the check is validated",
  async (db) => {
    const insert = (sha: string) =>
      db.sql`insert into public.webhook_events (event_key, event, payload, raw_body, body_sha256, verified_by)
             values (${"sha:" + crypto.randomUUID()}, 'contact_created', '{}', '{}', ${sha}, 'signature')`;
    const hex64 = "0123456789abcdef".repeat(4);
    for (const sha of [hex64, "a".repeat(64)]) await insert(sha);
    const refused = [
      "",
      hex64.slice(1), // 63
      hex64 + "0", // 65
      hex64.toUpperCase(),
      "g" + hex64.slice(1),
      hex64.slice(1) + "\n",
      hex64.slice(0, 32) + " " + hex64.slice(33),
      "é" + hex64.slice(2), // 63 characters, 64 bytes
    ];
    for (const sha of refused) {
      await assert.rejects(insert(sha), (e: { code?: string }) => e.code === "23514", JSON.stringify(sha));
    }
    const [{ n }] = await db.sql<{ n: number }[]>`select count(*)::int as n from public.webhook_events`;
    assert.equal(n, 2);
    const [check] = await db.sql<{ convalidated: boolean }[]>`
      select convalidated from pg_constraint where conname = 'webhook_events_body_sha256_check'`;
    assert.deepEqual({ ...check }, { convalidated: true });
  },
);

migrationTest(
  "migrations: relay_settings.forward_events takes only names the webhook stores (its EVENT_NAME), no null",
  async (db) => {
    // '{"message_created "}' or '{Message_Created}' matched no event: every one was stored 'skipped', unsaid.
    const samples: (string | null)[][] = [
      ["message_created"],
      ["message_created", "message_updated", "conversation.priority_changed"],
      ["message_create"], // the right form: Chatwoot may add events (readiness warns about unknown names)
      [], // storing without forwarding is a choice (readiness warns)
      ["a" + "b".repeat(63)],
      ["message_created "],
      [" message_created"],
      ["message_created", ""],
      [null],
      ["message_created", null],
      ["Message_Created"],
      ["message-created"],
      ["1st_event"],
      ["a" + "b".repeat(64)],
      ["message_created\n"],
      ["évent"],
    ];
    let refused = 0;
    for (const events of samples) {
      const expected = events.every((name) => name !== null && EVENT_NAME.test(name));
      const error = await db.sql`update public.relay_settings set forward_events = ${events}::text[]`.then(
        () => null,
        (e: { code?: string }) => e,
      );
      assert.equal(error === null, expected, `${JSON.stringify(events)}: ${error}`);
      if (error) {
        assert.equal(error.code, "23514", JSON.stringify(events));
        refused++;
      }
    }
    assert.equal(refused, 11);
    const [{ forward_events }] = await db.sql`select forward_events from public.relay_settings`;
    assert.deepEqual(forward_events, ["a" + "b".repeat(63)]);
    // A setting beside it still changes (Postgres checks every constraint of the row at each UPDATE), also
    // as service_role, the functions' role: the check's function is granted to it.
    await db.sql.begin(async (tx) => {
      await tx`set local role service_role`;
      await tx`update public.relay_settings set forwarding_paused = true`;
      await tx`update public.relay_settings set forwarding_paused = false, forward_events = '{message_created}'`;
    });
    const [after] = await db.sql`select forwarding_paused, forward_events from public.relay_settings`;
    assert.deepEqual({ ...after }, { forwarding_paused: false, forward_events: ["message_created"] });
  },
);

migrationTest(
  "migrations: forward_events_names_checked drops from a live row only names no event can have, and says so",
  async (db) => {
    const migration = (await listMigrations()).find((f) => f.name === "forward_events_names_checked");
    assert.ok(migration, "supabase/migrations/*_forward_events_names_checked.sql");
    const text = await Deno.readTextFile(migration.path);
    const notices: string[] = [];
    const sql = postgres(db.url, { max: 1, onnotice: (n) => notices.push(`${n.severity}: ${n.message}`) });
    const settings = async () =>
      (await sql<{ forward_events: (string | null)[]; checked: boolean }[]>`
        select forward_events,
               exists (select 1 from pg_constraint where conname = 'relay_settings_forward_events_check'
                          and convalidated) as checked
          from public.relay_settings`)[0];
    try {
      await sql`alter table public.relay_settings drop constraint relay_settings_forward_events_check`;
      await sql`update public.relay_settings set forward_events =
        '{message_created,"message_updated ",NULL,"",message_create,Contact_Created}'`;
      await sql.unsafe(text).simple();
      // What it forwards is the same: the dropped names matched no event; message_create stays (readiness).
      assert.deepEqual({ ...await settings() }, {
        forward_events: ["message_created", "message_create"],
        checked: true,
      });
      assert.deepEqual(notices.filter((n) => n.startsWith("WARNING")), [
        "WARNING: public.relay_settings.forward_events held 'message_updated ', null, '', 'Contact_Created', " +
        "names no event can have (so they forwarded nothing): dropped. Re-add a name meant, written as the " +
        "event is (README, Forwarding)",
      ]);

      // A row that is right is left alone.
      notices.length = 0;
      await sql`alter table public.relay_settings drop constraint relay_settings_forward_events_check`;
      const [before] = await sql`select updated_at from public.relay_settings`;
      await sql.unsafe(text).simple();
      const [after] = await sql`select updated_at from public.relay_settings`;
      assert.deepEqual([(await settings()).forward_events, after.updated_at], [
        ["message_created", "message_create"],
        before.updated_at,
      ]);
      assert.deepEqual(notices.filter((n) => n.startsWith("WARNING")), []);
    } finally {
      await sql.end();
    }
  },
);

// Two sessions at once: the PostgreSQL server only. The migrations that need webhook_events to themselves
// wait at most 2 s for it, then fail with a clear message and change nothing.
const LOCKING_MIGRATIONS: Array<{
  name: string;
  /** Puts the database back in the state before the migration. */
  undo: string;
  /** What the migration changes, read from the catalog. */
  state: string;
  before: string;
  after: string;
  /** What holds the table meanwhile: by default a long analyst query, still open. */
  hold?: string;
  /** The error's message: the migrations that say more than PostgreSQL's own. */
  message?: RegExp;
}> = [
  {
    name: "lz4_bodies",
    undo: "alter table public.webhook_events alter column raw_body set compression pglz",
    // "p" pglz, "l" lz4
    state: `select attcompression::text as s from pg_attribute
             where attrelid = 'public.webhook_events'::regclass and attname = 'raw_body'`,
    before: "p",
    after: "l",
  },
  {
    name: "body_sha256_check_without_bounded_repeat",
    undo: `alter table public.webhook_events drop constraint webhook_events_body_sha256_check,
             add constraint webhook_events_body_sha256_check check (body_sha256 ~ '^[0-9a-f]{64}$')`,
    state: `select pg_get_constraintdef(oid) as s from pg_constraint
             where conname = 'webhook_events_body_sha256_check'`,
    before: "CHECK ((body_sha256 ~ '^[0-9a-f]{64}$'::text))",
    after: "CHECK (((octet_length(body_sha256) = 64) AND (body_sha256 ~ '^[0-9a-f]+$'::text))) NOT VALID",
  },
  {
    // CREATE INDEX waits for writers (a reader does not stop it): an operator's update left open, say.
    name: "dead_letters_last_received",
    undo: "drop index public.webhook_events_dead_last_received_idx",
    state:
      `select count(*)::text as s from pg_indexes where indexname = 'webhook_events_dead_last_received_idx'`,
    before: "0",
    after: "1",
    hold: "update public.webhook_events set attempts = attempts where false",
    message: /lock timeout/,
  },
  {
    name: "ingest_receipts_and_recovered_copies",
    undo: "alter table public.webhook_events drop column recent_receipts",
    state: `select count(*)::text as s from pg_attribute
             where attrelid = 'public.webhook_events'::regclass and attname = 'recent_receipts'
               and not attisdropped`,
    before: "0",
    after: "1",
  },
  {
    // ADD CONSTRAINT waits for every reader of relay_settings (an ingest reads it): a long query holding it.
    name: "forward_events_names_checked",
    undo: "alter table public.relay_settings drop constraint relay_settings_forward_events_check",
    state:
      `select count(*)::text as s from pg_constraint where conname = 'relay_settings_forward_events_check'`,
    before: "0",
    after: "1",
    hold: "select count(*) from public.relay_settings",
  },
  {
    name: "recover_from_chatwoot_api",
    undo: `alter table public.webhook_events drop constraint webhook_events_verified_by_check,
             add constraint webhook_events_verified_by_check check (verified_by in ('signature', 'url_token'))`,
    state: `select pg_get_constraintdef(oid) as s from pg_constraint
             where conname = 'webhook_events_verified_by_check'`,
    before: "CHECK ((verified_by = ANY (ARRAY['signature'::text, 'url_token'::text])))",
    after:
      "CHECK ((verified_by = ANY (ARRAY['signature'::text, 'url_token'::text, 'chatwoot_api'::text]))) NOT VALID",
  },
];

Deno.test({
  name: "migrations: apply for a database owner that is not a superuser, on a server that ships pg_cron",
  // A managed server, or hosted Supabase, whose postgres role is no superuser. PostgreSQL server only.
  ignore: Deno.env.get("DATABASE_URL") === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const admin = postgres(Deno.env.get("DATABASE_URL")!, { max: 1, onnotice: () => {} });
    const owner = `relay_test_owner_${crypto.randomUUID().replaceAll("-", "").slice(0, 8)}`;
    try {
      const [{ available }] = await admin`
        select exists (select 1 from pg_available_extensions where name = 'pg_cron') as available`;
      // Migration 000200 looks for pg_cron only where it is available (CI installs it).
      if (!available) console.warn("pg_cron is not available on this server: the case is not exercised");
      await admin.unsafe(`create role ${owner} login createrole`);
      const db = await startTestDb({ owner }); // throws when a migration fails
      try {
        const [{ superuser, applied }] = await db.sql`
          select (select rolsuper from pg_roles where rolname = current_user) as superuser,
                 (select count(*)::int from supabase_migrations.schema_migrations) as applied`;
        assert.deepEqual([superuser, applied], [false, (await listMigrations()).length]);
      } finally {
        await db.close();
      }
    } finally {
      // A database whose migrations failed is left behind by startTestDb: the role can go only after it.
      const owned = await admin<{ datname: string }[]>`
        select datname from pg_database where datdba = (select oid from pg_roles where rolname = ${owner})`;
      for (const { datname } of owned) await admin.unsafe(`drop database if exists ${datname} with (force)`);
      await admin.unsafe(`drop role if exists ${owner}`);
      await admin.end({ timeout: 1 });
    }
  },
});

dbIndependentTest(
  "migrations: each one that locks webhook_events or relay_settings waits for it at most 2 s",
  async () => {
    // Ingests read relay_settings and write webhook_events: a migration waiting without end for either (behind
    // a long query or an open writing transaction) would hold every webhook behind it. The one creating them
    // has nothing to wait for; validating a constraint does not stop writes.
    const locking =
      /\b(alter\s+table(\s+if\s+exists)?|create\s+(unique\s+)?index(\s+if\s+not\s+exists)?\s+\w+\s+on|create\s+policy\s+\w+\s+on|create\s+(or\s+replace\s+)?trigger\s+\w+[^;]*?\bon)\s+(public\.)?(webhook_events|relay_settings)\b(?!\s+validate\s+constraint)/i;
    const unguarded = [];
    for (const m of await listMigrations()) {
      const text = (await Deno.readTextFile(m.path)).replace(/--.*$/gm, "");
      if (/create\s+table\s+public\.webhook_events\b/i.test(text)) continue;
      if (locking.test(text) && !text.includes("set_config('lock_timeout', '2s', true)")) {
        unguarded.push(m.name);
      }
    }
    assert.deepEqual(unguarded, []);
  },
);

for (const m of LOCKING_MIGRATIONS) {
  migrationTest(
    `migrations: ${m.name} gives up after 2 s on a table a long query holds, changing nothing`,
    async (db) => {
      const migration = (await listMigrations()).find((f) => f.name === m.name);
      assert.ok(migration, `supabase/migrations/*_${m.name}.sql`);
      const text = await Deno.readTextFile(migration.path);
      const reader = connect(db.url, { max: 1 });
      const state = async () => (await db.sql.unsafe<{ s: string }[]>(m.state))[0].s;
      try {
        await db.sql.unsafe(m.undo);
        assert.equal(await state(), m.before);
        await reader.begin(async (tx) => {
          await tx.unsafe(m.hold ?? "select count(*) from public.webhook_events");
          // The give-up is the lock timeout's error (55P03); the bound is only there to fail, not hang, without it.
          const error = await settledWithin(
            db.sql.unsafe(text).simple().then(() => ({ code: "applied", message: "" }), (e) => e),
            60_000,
            "the migration",
          ) as { code?: string; message?: string };
          assert.equal(error.code, "55P03", String(error.message));
          assert.match(String(error.message), m.message ?? /run the migration again/);
        });
        assert.equal(await state(), m.before, "nothing changed");
        // Once the query is done, the same migration applies.
        await db.sql.unsafe(text).simple();
        assert.equal(await state(), m.after);
      } finally {
        await reader.end();
      }
    },
    { ignore: Deno.env.get("DATABASE_URL") === undefined },
  );
}

dbIndependentTest({
  name:
    "migrations: a file older than the last one applied is refused, unless includeAll, like the Supabase CLI",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "relay-migrations-" });
    const embedded = await startEmptyPglite();
    const sql = connect(embedded.url, { max: 1 });
    const file = (version: string, table: string) =>
      Deno.writeTextFile(`${dir}/${version}_${table}.sql`, `create table ${table} (id int);`);
    try {
      const dirUrl = new URL(`file://${dir}/`);
      await file("20990101000100", "first");
      await file("20990101000300", "third");
      assert.deepEqual(await applyMigrations(sql, { dir: dirUrl }), ["20990101000100", "20990101000300"]);
      // A branch merged late brings a file between the two.
      await file("20990101000200", "second");
      await file("20990101000400", "fourth");
      await assert.rejects(applyMigrations(sql, { dir: dirUrl }), (error: unknown) => {
        assert.ok(error instanceof OutOfOrderMigrations);
        assert.deepEqual(error.files.map((f) => f.version), ["20990101000200"]);
        assert.match(error.message, /inserted before the last migration/);
        return true;
      });
      const tables = async () =>
        (await sql<{ name: string }[]>`
          select table_name as name from information_schema.tables where table_schema = 'public' order by 1`)
          .map((r) => r.name);
      assert.deepEqual(await tables(), ["first", "third"], "nothing applied, the newer file neither");
      assert.deepEqual(
        await applyMigrations(sql, { dir: dirUrl, includeAll: true }),
        ["20990101000200", "20990101000400"],
      );
      assert.deepEqual(await tables(), ["first", "fourth", "second", "third"]);
    } finally {
      await sql.end({ timeout: 1 });
      await embedded.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

dbIndependentTest({
  name:
    "migrations: versions applied in the database without a file here are named in a warning, not refused",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "relay-migrations-" });
    const embedded = await startEmptyPglite();
    const sql = connect(embedded.url, { max: 1 });
    const file = (version: string, table: string) =>
      Deno.writeTextFile(`${dir}/${version}_${table}.sql`, `create table ${table} (id int);`);
    const elsewhere = (version: string) =>
      sql`insert into supabase_migrations.schema_migrations (version, name) values (${version}, 'elsewhere')`;
    try {
      const dirUrl = new URL(`file://${dir}/`);
      await file("20990101000100", "first");
      await applyMigrations(sql, { dir: dirUrl });
      // Applied by another branch or by hand, older than what is pending: said, and the newer file applies.
      await elsewhere("20990101000150");
      await file("20990101000200", "second");
      const lines: string[] = [];
      assert.deepEqual(await applyMigrations(sql, { dir: dirUrl, log: (l) => lines.push(l) }), [
        "20990101000200",
      ]);
      assert.match(
        lines[0],
        /^warning: applied in the database but not in supabase\/migrations\/: 20990101000150 /,
      );
      // Newer than a pending file: refused as out of order, the message saying the newest has no file here.
      await elsewhere("20990101000900");
      await file("20990101000300", "third");
      await assert.rejects(applyMigrations(sql, { dir: dirUrl }), (error: unknown) => {
        assert.ok(error instanceof OutOfOrderMigrations);
        assert.match(error.message, /\(20990101000900, which has no file here/);
        return true;
      });
    } finally {
      await sql.end({ timeout: 1 });
      await embedded.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
