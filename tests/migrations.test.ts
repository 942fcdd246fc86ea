import assert from "node:assert/strict";
import { startTestDb, type TestDb } from "./_db.ts";
import { applyMigrations, listMigrations } from "../scripts/lib/migrations.ts";
import { connect } from "../supabase/functions/_shared/db.ts";

/** A test on a freshly migrated database of its own (PGlite, or the server DATABASE_URL names). */
function migrationTest(name: string, fn: (db: TestDb) => Promise<void>, { ignore = false } = {}) {
  Deno.test({
    name,
    ignore,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const db = await startTestDb();
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
);

migrationTest(
  "migrations: RLS on every public table, and anon/authenticated get no privileges",
  async (db) => {
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
  },
);

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

// Two sessions at once: the PostgreSQL server only.
migrationTest(
  "migrations: the lz4 migration gives up after 2 s on a table a long query holds, changing nothing",
  async (db) => {
    const migration = (await listMigrations()).find((m) => m.name === "lz4_bodies");
    assert.ok(migration, "supabase/migrations/*_lz4_bodies.sql");
    const text = await Deno.readTextFile(migration.path);
    const reader = connect(db.url, { max: 1 });
    /** The column's compression setting: "p" pglz, "l" lz4. */
    const rawBodyCompression = async () =>
      (await db.sql<{ c: string }[]>`
        select attcompression as c from pg_attribute
         where attrelid = 'public.webhook_events'::regclass and attname = 'raw_body'`)[0].c;
    try {
      await db.sql`alter table public.webhook_events alter column raw_body set compression pglz`;
      const started = Date.now();
      await reader.begin(async (tx) => {
        await tx`select count(*) from public.webhook_events`; // a long analyst query, still open
        let timer: ReturnType<typeof setTimeout> | undefined;
        const error = await Promise.race([
          db.sql.unsafe(text).simple().then(() => ({ code: "applied", message: "" }), (e) => e),
          new Promise((resolve) => {
            timer = setTimeout(() => resolve({ code: "none", message: "still waiting after 10 s" }), 10_000);
          }),
        ]) as { code?: string; message?: string };
        clearTimeout(timer);
        assert.equal(error.code, "55P03", String(error.message));
        assert.match(String(error.message), /run the migration again/);
      });
      assert.ok(Date.now() - started < 5_000, "gave up within the lock timeout");
      assert.equal(await rawBodyCompression(), "p", "nothing changed");
      // Once the query is done, the same migration applies.
      await db.sql.unsafe(text).simple();
      assert.equal(await rawBodyCompression(), "l");
    } finally {
      await reader.end();
    }
  },
  { ignore: Deno.env.get("DATABASE_URL") === undefined },
);
