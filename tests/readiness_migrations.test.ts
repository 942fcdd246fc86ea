// The readiness schema's own guarantees: the migration list the function carries is current, every item change
// lands in the history whatever the write path, statuses are the fixed set, credentials hold no secrets.
import assert from "node:assert/strict";
import { dbIndependentTest, dbTest, HOLDS_DB, migrationsBefore, startTestDb, type TestDb } from "./_db.ts";
import { applyMigrations, listMigrations } from "../scripts/lib/migrations.ts";
import { migrationVersionsSource } from "../scripts/migration_versions.ts";
import { MIGRATION_VERSIONS } from "../supabase/functions/_shared/migration_versions.ts";
import { STATUS_DISPLAY, STATUSES } from "../supabase/functions/_shared/readiness_model.ts";
import { createReadinessApp } from "../supabase/functions/_shared/readiness.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";
import { connect } from "../supabase/functions/_shared/db.ts";
import { fullEnv, startChatwootStandIn } from "./_readiness.ts";

dbIndependentTest(
  "readiness: _shared/migration_versions.ts lists exactly supabase/migrations/ (run `deno task migration-versions`)",
  async () => {
    const files = await listMigrations();
    assert.deepEqual(
      [...MIGRATION_VERSIONS],
      files.map((f) => f.version),
      "stale: run `deno task migration-versions` and commit the result",
    );
    const onDisk = await Deno.readTextFile(
      new URL("../supabase/functions/_shared/migration_versions.ts", import.meta.url),
    );
    assert.equal(onDisk, await migrationVersionsSource(), "stale: run `deno task migration-versions`");
  },
);

const db: TestDb = await startTestDb();

type HistoryRow = {
  item_key: string;
  section: string;
  operation: string;
  changed_by: string;
  old_status: string | null;
  new_status: string | null;
  old_evidence: string | null;
  new_evidence: string | null;
  note: string | null;
};

async function historyOf(key: string): Promise<HistoryRow[]> {
  return [
    ...await db.sql<HistoryRow[]>`
    select item_key, section, operation, changed_by, old_status, new_status, old_evidence, new_evidence, note
      from public.readiness_item_history where item_key = ${key} order by id`,
  ];
}

dbTest("readiness: the status catalogue is the fixed set, with the document's glyphs", async () => {
  const rows = await db.sql<{ status: string; label: string; glyph: string }[]>`
    select status, label, glyph from public.readiness_statuses order by position`;
  assert.deepEqual(rows.map((r) => ({ ...r })), STATUSES.map((s) => ({ status: s, ...STATUS_DISPLAY[s] })));
  await assert.rejects(
    db.sql`insert into public.readiness_statuses (status, label, glyph, position) values ('maybe', 'Maybe', '⏳', 9)`,
    /check constraint/,
  );
  await assert.rejects(
    db.sql`update public.readiness_tasks set status = 'almost' where key = 'task-2'`,
    /foreign key/,
  );
});

dbTest(
  "readiness: history starts empty and records readiness_update_item with actor, note, old → new",
  async () => {
    assert.equal((await db.sql`select 1 from public.readiness_item_history`).length, 0);
    const [item] = await db
      .sql`select * from public.readiness_update_item('task-3', 'done', true, '/hc 200 at 10:02',
    'checked by hand', 'admin:alice')`;
    assert.equal(item.status, "done");
    assert.equal(item.updated_by, "admin:alice");
    assert.deepEqual(await historyOf("task-3"), [{
      item_key: "task-3",
      section: "tasks",
      operation: "update",
      changed_by: "admin:alice",
      old_status: "pending",
      new_status: "done",
      old_evidence: null,
      new_evidence: "/hc 200 at 10:02",
      note: "checked by hand",
    }]);
    // Status only: the evidence stays.
    await db
      .sql`select public.readiness_update_item('task-3', 'in_progress', false, null, null, 'admin:bob')`;
    const rows = await historyOf("task-3");
    assert.equal(rows.length, 2);
    assert.deepEqual(
      { ...rows[1] },
      {
        item_key: "task-3",
        section: "tasks",
        operation: "update",
        changed_by: "admin:bob",
        old_status: "done",
        new_status: "in_progress",
        old_evidence: "/hc 200 at 10:02",
        new_evidence: "/hc 200 at 10:02",
        note: null,
      },
    );
    // Unknown key: no row, nothing recorded. Unknown status: refused, naming the allowed values.
    assert.equal(
      (await db.sql`select * from public.readiness_update_item('task-99', 'done', false, null, null, 'x')`)
        .length,
      0,
    );
    await assert.rejects(
      db.sql`select * from public.readiness_update_item('task-3', 'finished', false, null, null, 'x')`,
      /unknown readiness status/,
    );
    assert.equal((await historyOf("task-99")).length, 0);
  },
);

dbTest(
  "readiness: a direct SQL update is recorded too, as the database user, and the actor does not leak",
  async () => {
    await db.sql.begin(async (tx) => {
      await tx`select public.readiness_update_item('inbox-1', 'in_progress', false, null, 'started', 'admin:carol')`;
      // A later statement in the same transaction is not attributed to carol.
      await tx`update public.readiness_inbox_config set status = 'blocked' where key = 'inbox-1'`;
    });
    await db.sql`update public.readiness_validations set evidence = 'curl log' where key = 'validation-1'`;
    const [user] = await db.sql<{ u: string }[]>`select current_user as u`;
    const inbox = await historyOf("inbox-1");
    assert.deepEqual(inbox.map((r) => [r.changed_by, r.old_status, r.new_status, r.note]), [
      ["admin:carol", "pending", "in_progress", "started"],
      [user.u, "in_progress", "blocked", null],
    ]);
    const validation = await historyOf("validation-1");
    assert.deepEqual(validation.map((r) => [r.changed_by, r.old_status, r.new_status, r.new_evidence]), [
      [user.u, "pending", "pending", "curl log"],
    ]);
    // A write that changes nothing and carries no note is not history.
    await db.sql`update public.readiness_blockers set status = status where key = 'blocker-1'`;
    assert.equal((await historyOf("blocker-1")).length, 0);
    // Inserts and deletes are recorded as well.
    await db
      .sql`insert into public.readiness_validations (key, position, description) values ('validation-6', 6, 'Load test')`;
    await db.sql`delete from public.readiness_validations where key = 'validation-6'`;
    assert.deepEqual(
      (await historyOf("validation-6")).map((r) => [r.operation, r.old_status, r.new_status]),
      [
        ["insert", null, "pending"],
        ["delete", "pending", null],
      ],
    );
  },
);

dbTest("readiness: credential rows refuse secret-looking values", async () => {
  await assert.rejects(
    db.sql`select public.readiness_update_item('credential-chatwoot_token_prod', null, true,
      'token is Xk29aPq7LmN4vB8sT1wZ3yR6', null, 'x')`,
    /readiness_credentials_no_secret_values/,
  );
  await db.sql`select public.readiness_update_item('credential-chatwoot_token_prod', 'done', true,
    'stored in vault/occ/chatwoot/api_token_prod.env on 2025-10-13', null, 'x')`;
  const columns = await db.sql<{ column_name: string }[]>`
    select column_name from information_schema.columns
     where table_schema = 'public' and table_name = 'readiness_credentials'`;
  assert.ok(!columns.some((c) => /value|secret|token/.test(c.column_name)), "no column for a secret value");
});

const PUBLISHED_SECTIONS = ["credentials", "inbox_config", "blockers", "tasks", "validations"];

dbTest(
  "readiness: no row's evidence holds a token-shaped value or a line break, whatever the write path",
  async () => {
    // The page is public: a credential row refused such a value, a task or an inbox item took it.
    const token = "Xk29aPq7LmN4vB8sT1wZ3yR6";
    for (
      const [key, evidence] of [
        ["task-5", `token ${token} generated`],
        ["inbox-2", `scopes for ${token}`],
        ["blocker-2", `see run ${"0123456789abcdef".repeat(2)}`],
        ["validation-3", `payload signed with ${token}`],
        // A line break would end a blocker's or validation's line in the Markdown, and start another there.
        ["blocker-1", "fixed\n## Readiness Checklist"],
        ["validation-1", "ok\r- [x] forged"],
        ["task-2", "tab\tseparated"],
      ]
    ) {
      await assert.rejects(
        db.sql`select public.readiness_update_item(${key}, null, true, ${evidence}, null, 'x')`,
        (e: { code?: string }) => e.code === "23514",
        `${key}: ${JSON.stringify(evidence)}`,
      );
    }
    // Long runs of one kind only are ordinary text: a Supabase project ref, a long word.
    await db.sql`select public.readiness_update_item('inbox-4', null, true,
    'https://abcdefghijklmnopqrst.supabase.co/functions/v1/chatwoot-webhook; Internationalization', null, 'x')`;
    await db.sql`select public.readiness_update_item('inbox-4', null, true, null, null, 'x')`;
  },
);

dbTest("readiness: migration 003800 redacts what an existing database already publishes", async () => {
  const migration = (await listMigrations()).find((m) => m.version === "20261121003800")!;
  const text = await Deno.readTextFile(migration.path);
  for (const section of PUBLISHED_SECTIONS) {
    await db.sql.unsafe(`alter table public.readiness_${section}
      drop constraint readiness_${section}_evidence_publishable`);
  }
  const token = "Xk29aPq7LmN4vB8sT1wZ3yR6";
  await db.sql`select public.readiness_update_item(k, null, true, e, null, 'x') from (values
    ('task-5', ${`token ${token} generated, sha ${"0123456789abcdef".repeat(3)}.`}),
    ('validation-3', ${`first line\r\nsecond\tline ${token}`}),
    ('credential-chatwoot_base_url_prod', ${"set\nin vault"}),
    ('task-6', ${"Support call, notes in artifacts/"})) v(k, e)`;
  const history = await historyOf("task-5");
  await db.sql.unsafe(text).simple();
  const rows = await db.sql<{ key: string; evidence: string; updated_by: string }[]>`
    select key, evidence, updated_by from public.readiness_items
     where key in ('task-5', 'validation-3', 'credential-chatwoot_base_url_prod', 'task-6') order by key`;
  assert.deepEqual(rows.map((r) => [r.key, r.evidence, r.updated_by]), [
    ["credential-chatwoot_base_url_prod", "set in vault", "migration 20261121003800"],
    ["task-5", "token [redacted] generated, sha [redacted].", "migration 20261121003800"],
    ["task-6", "Support call, notes in artifacts/", "x"],
    ["validation-3", "first line second line [redacted]", "migration 20261121003800"],
  ]);
  // The value leaves the page; the history (service_role only) keeps what was there, and says why.
  const after = await historyOf("task-5");
  assert.equal(after.length, history.length + 1);
  assert.match(after.at(-1)!.old_evidence!, new RegExp(token));
  assert.match(after.at(-1)!.note!, /public/);
  for (const section of PUBLISHED_SECTIONS) {
    const [{ convalidated }] = await db.sql<{ convalidated: boolean }[]>`
      select convalidated from pg_constraint where conname = ${`readiness_${section}_evidence_publishable`}`;
    assert.equal(convalidated, true, section);
  }
  // Later statements of the migration's transaction name their own writer, not the migration.
  const [{ actor }] = await db.sql<{ actor: string }[]>`select public.readiness_actor() as actor`;
  assert.notEqual(actor, "migration 20261121003800");
  await db.sql`select public.readiness_update_item(k, null, true, null, null, 'x')
    from unnest(array['task-5', 'validation-3', 'credential-chatwoot_base_url_prod', 'task-6']) k`;
});

// updated_by is on the public JSON as evidence is on the page: the same rule (migration 007600).
const REFUSED = (e: { code?: string }) => e.code === "23514";
const TOKEN_SHAPED_ACTORS = [
  "admin:dana Xk29aPq7LmN4vB8sT1wZ3yR6",
  "admin:ghp_4f9Kq2Lm7Xz0Rt5Wv8Yb3Nc6Hd1Ja2Ps9Qe",
  `admin:${"0123456789abcdef".repeat(2)}`,
  "admin:dana\nforged line",
  "cron\t",
];

dbTest(
  "readiness: no row's updated_by holds a token-shaped value or a line break, whatever the write path",
  async () => {
    const items = () =>
      db.sql`select key, status, evidence, updated_by, updated_at from public.readiness_items order by key`;
    const before = {
      items: await items(),
      history: (await db.sql`select id from public.readiness_item_history`).length,
    };
    for (const actor of TOKEN_SHAPED_ACTORS) {
      const what = JSON.stringify(actor);
      // The function's calls, made directly (SQL editor, a script) with such an actor.
      await assert.rejects(
        db.sql`select public.readiness_update_item('task-4', 'in_progress', false, null, null, ${actor})`,
        REFUSED,
        `readiness_update_item ${what}`,
      );
      await assert.rejects(
        db.sql`select * from public.readiness_update_item_if_unchanged('inbox-3', 'done', true, 'seen', null,
          ${actor}, null::timestamptz)`,
        REFUSED,
        `readiness_update_item_if_unchanged ${what}`,
      );
      // The SQL editor: readiness.actor set, then a plain UPDATE or INSERT, on every section.
      for (
        const [table, key] of [
          ["readiness_credentials", "credential-chatwoot_account_id_prod"],
          ["readiness_inbox_config", "inbox-3"],
          ["readiness_blockers", "blocker-3"],
          ["readiness_tasks", "task-7"],
          ["readiness_validations", "validation-2"],
        ]
      ) {
        await assert.rejects(
          db.sql.begin(async (tx) => {
            await tx`select set_config('readiness.actor', ${actor}, true)`;
            await tx.unsafe(`update public.${table} set status = 'done' where key = '${key}'`);
          }),
          REFUSED,
          `${table} ${what}`,
        );
      }
      await assert.rejects(
        db.sql.begin(async (tx) => {
          await tx`select set_config('readiness.actor', ${actor}, true)`;
          await tx`insert into public.readiness_validations (key, position, description)
                   values ('validation-7', 7, 'Load test')`;
        }),
        REFUSED,
        `insert ${what}`,
      );
    }
    // updated_by set by hand: readiness_touch names the writer itself, and with it off the check refuses.
    await assert.rejects(
      db.sql.begin(async (tx) => {
        await tx`alter table public.readiness_tasks disable trigger readiness_touch`;
        await tx`update public.readiness_tasks set updated_by = ${
          TOKEN_SHAPED_ACTORS[0]
        } where key = 'task-7'`;
      }),
      REFUSED,
    );
    assert.deepEqual(await items(), before.items, "nothing stored");
    assert.equal((await db.sql`select id from public.readiness_item_history`).length, before.history);
    // Names stay names: an email, a short commit id, a long word, a migration's version, the database user.
    for (
      const actor of [
        "admin:dana",
        "admin:dana.smith@example.com",
        "cron",
        "admin:dana (deploy 4f3a9c1)",
        "admin:integrations-oncall-secondary",
        "admin:abcdefghijklmnopqrstuvwxyz",
        "migration 20261121007600",
        "postgres",
      ]
    ) {
      const [item] = await db.sql<{ updated_by: string }[]>`
        select updated_by from public.readiness_update_item('task-4', 'in_progress', false, null, 'name',
                                                            ${actor})`;
      assert.equal(item.updated_by, actor);
    }
    await db.sql`select public.readiness_update_item('task-4', 'pending', false, null, null, 'x')`;
  },
);

dbTest(
  "readiness: migration 007600 redacts the updated_by a database already publishes; the JSON no longer " +
    "shows it, who else and when stay",
  async () => {
    // A database migrated up to the migration before 007600, as the release before it left one.
    const dir = await migrationsBefore("20261121007600");
    const old: TestDb = await startTestDb({ migrationsDir: dir });
    const chatwoot = startChatwootStandIn();
    try {
      const token = "ghp_4f9Kq2Lm7Xz0Rt5Wv8Yb3Nc6Hd1Ja2Ps9Qe";
      // Written the ways that release let through: readiness_update_item's p_actor, readiness.actor in the
      // SQL editor (a token alone, a line break), next to names that are fine.
      await old.sql`select public.readiness_update_item('task-4', 'in_progress', false, null, 'started',
                                                        ${`admin:dana ${token}`})`;
      await old.sql.begin(async (tx) => {
        await tx`select set_config('readiness.actor', ${`admin:${token}`}, true)`;
        await tx`update public.readiness_credentials set status = 'done'
                  where key = 'credential-chatwoot_account_id_prod'`;
      });
      await old.sql.begin(async (tx) => {
        await tx`select set_config('readiness.actor', ${"ops\n- [x] forged"}, true)`;
        await tx`update public.readiness_blockers set evidence = 'DSN fixed' where key = 'blocker-3'`;
      });
      await old.sql`select public.readiness_update_item('inbox-2', 'in_progress', false, null, null,
                                                        'admin:dana.smith@example.com')`;
      await old
        .sql`select public.readiness_update_item('validation-2', 'done', true, 'curl 200', null, 'cron')`;
      type Item = {
        key: string;
        status: string;
        evidence: string | null;
        updated_by: string;
        updated_at: Date;
      };
      const items = async () =>
        (await old.sql<
          Item[]
        >`select key, status, evidence, updated_by, updated_at from public.readiness_items
                                order by key`).map((r) => ({ ...r }));
      const before = await items();
      const [{ n: historyBefore }] = await old.sql<{ n: number }[]>`
        select count(*)::int as n from public.readiness_item_history`;

      const applied = await applyMigrations(old.sql);
      const after = await items();
      const redacted: Record<string, string> = {
        "task-4": "admin:dana ghp_[redacted]",
        "credential-chatwoot_account_id_prod": "admin:ghp_[redacted]",
        "blocker-3": "ops - [x] forged",
      };
      // Only updated_by changes, and only where it held such a value: status, evidence and when stay.
      assert.deepEqual(
        after,
        before.map((r) => (r.key in redacted ? { ...r, updated_by: redacted[r.key] } : r)),
      );
      assert.equal(after.find((r) => r.key === "inbox-2")!.updated_by, "admin:dana.smith@example.com");
      assert.equal(after.find((r) => r.key === "validation-2")!.updated_by, "cron");
      // The history says the migration did it, and why.
      const repairs = await old.sql<{ item_key: string; changed_by: string; note: string }[]>`
        select item_key, changed_by, note from public.readiness_item_history order by id offset ${historyBefore}`;
      assert.deepEqual(repairs.map((h) => h.item_key).sort(), Object.keys(redacted).sort());
      for (const h of repairs) {
        assert.equal(h.changed_by, "migration 20261121007600");
        assert.match(h.note, /public page/);
      }
      const [{ checked }] = await old.sql<{ checked: number }[]>`
        select count(*)::int as checked from pg_constraint
         where conname like 'readiness\_%\_updated\_by\_publishable' and convalidated`;
      assert.equal(checked, 5);
      // Later statements of the migration's transaction name their own writer, not the migration.
      const [{ actor }] = await old.sql<{ actor: string }[]>`select public.readiness_actor() as actor`;
      assert.notEqual(actor, "migration 20261121007600");

      // The function serves the repaired rows: the token is nowhere, the name before it stays.
      const app = createReadinessApp({
        sql: old.sql,
        env: fullEnv(chatwoot.url),
        log: memoryLogger(),
        cacheMs: 0,
        checkTimeoutMs: 10_000,
      });
      for (const path of ["/readiness", "/readiness?format=markdown", "/readiness?format=html"]) {
        const res = await app.request(path);
        const text = await res.text();
        assert.ok([200, 503].includes(res.status), `${path}: ${res.status} ${text.slice(0, 200)}`);
        assert.ok(!text.includes(token), path);
      }
      const json = await (await app.request("/readiness")).json();
      const task4 = json.sections.tasks.find((t: { key: string }) => t.key === "task-4");
      assert.equal(task4.updated_by, "admin:dana ghp_[redacted]");
      assert.ok(applied.includes("20261121007600"), applied.join(", "));
    } finally {
      await chatwoot.close();
      await old.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

dbTest("readiness: keys are unique across sections and follow each section's prefix", async () => {
  const [{ n, distinct }] = await db.sql<{ n: number; distinct: number }[]>`
    select count(*)::int as n, count(distinct key)::int as distinct from public.readiness_items`;
  assert.equal(n, 26);
  assert.equal(distinct, n);
  await assert.rejects(
    db.sql`insert into public.readiness_blockers (key, position, title, detail) values ('task-11', 9, 'x', 'y')`,
    /check constraint/,
  );
});

dbTest(
  "readiness: readiness_update_item_if_unchanged writes only on the copy given (else the row as it is, " +
    "stale), no row for an unknown key; service_role only",
  async () => {
    type Row = { key: string; status: string; evidence: string | null; updated_at: Date; stale: boolean };
    const call = (key: string, status: string, ifUpdatedAt: Date | null) =>
      db.sql<Row[]>`
        select (r.item).key, (r.item).status, (r.item).evidence, (r.item).updated_at, r.stale
          from public.readiness_update_item_if_unchanged(${key}, ${status}, true, 'checked', null, 'test',
                                                         ${ifUpdatedAt}::timestamptz) r`;
    const [{ updated_at: seen }] = await db.sql<{ updated_at: Date }[]>`
      select updated_at from public.readiness_tasks where key = 'task-10'`;
    const historyBefore = (await historyOf("task-10")).length;
    // A copy older than the row: the row as it is, flagged, nothing written.
    const stale = await call("task-10", "done", new Date(seen.getTime() - 1000));
    assert.deepEqual(stale.map((r) => [r.key, r.status, r.evidence, r.stale]), [
      ["task-10", "pending", null, true],
    ]);
    assert.equal((await historyOf("task-10")).length, historyBefore);
    // The copy as read (to the millisecond): written, the new row returned.
    const written = await call("task-10", "done", seen);
    assert.deepEqual(written.map((r) => [r.key, r.status, r.evidence, r.stale]), [
      ["task-10", "done", "checked", false],
    ]);
    assert.equal((await historyOf("task-10")).length, historyBefore + 1);
    // Without a copy: written as readiness_update_item writes. An unknown key: no row, with or without one.
    const plain = await call("task-10", "pending", null);
    assert.deepEqual(plain.map((r) => [r.status, r.stale]), [["pending", false]]);
    assert.deepEqual([...await call("task-99", "done", seen), ...await call("task-99", "done", null)], []);
    await db.sql`select public.readiness_update_item('task-10', 'pending', true, null, null, 'test')`;

    const [grants] = await db.sql<{ service_role: boolean; anon: boolean; authenticated: boolean }[]>`
      select has_function_privilege('service_role', f, 'execute') as service_role,
             has_function_privilege('anon', f, 'execute') as anon,
             has_function_privilege('authenticated', f, 'execute') as authenticated
        from (select 'public.readiness_update_item_if_unchanged(text, text, boolean, text, text, text, '
                     'timestamptz)'::regprocedure as f) p`;
    assert.deepEqual({ ...grants }, { service_role: true, anon: false, authenticated: false });
  },
);

type Stamped = { status: string; evidence: string | null; updated_at: Date; stale: boolean };

/** readiness_update_item_if_unchanged on an editor's copy (a Date: to the ms, as a PATCH answers it). */
async function writeOnCopy(key: string, evidence: string, copy: Date): Promise<Stamped> {
  const [row] = await db.sql<Stamped[]>`
    select (r.item).status, (r.item).evidence, (r.item).updated_at, r.stale
      from public.readiness_update_item_if_unchanged(${key}, 'blocked', true, ${evidence}, null,
                                                     'admin:editor', ${copy}::timestamptz) r`;
  return { ...row };
}

dbTest(
  "readiness: two writes to an item within one millisecond (one transaction: one now()) leave updated_at a " +
    "millisecond apart at least, so an editor holding the first write's copy is refused",
  async () => {
    const [first, second] = await db.sql.begin(async (tx) => {
      const write = async (status: string, evidence: string) =>
        (await tx<{ updated_at: Date }[]>`
          select updated_at from public.readiness_update_item('validation-3', ${status}, true, ${evidence},
                                                             null, 'admin:script')`)[0].updated_at;
      return [await write("in_progress", "first run"), await write("done", "second run")];
    });
    const refused = await writeOnCopy("validation-3", "on the first write's copy", first);
    assert.deepEqual(
      [refused.stale, refused.status, refused.evidence],
      [true, "done", "second run"],
      "a write on the first write's copy overwrote the second unseen",
    );
    assert.ok(
      second.getTime() > first.getTime(),
      `the second write's updated_at ${second.toISOString()}, the first's ${first.toISOString()}`,
    );
    await db.sql`select public.readiness_update_item('validation-3', 'pending', true, null, null, 'test')`;
  },
);

dbTest(
  "readiness: a write never moves updated_at back, even when the row's is ahead of the writer's clock (as " +
    "a write whose transaction began later leaves it)",
  async () => {
    // Set by hand, with readiness_touch off for that statement, as migration 007600 does for its repair.
    const ahead = await db.sql.begin(async (tx) => {
      await tx`alter table public.readiness_validations disable trigger readiness_touch`;
      const [{ updated_at }] = await tx<{ updated_at: Date }[]>`
        update public.readiness_validations set updated_at = now() + interval '1 hour'
         where key = 'validation-4' returning updated_at`;
      await tx`alter table public.readiness_validations enable trigger readiness_touch`;
      return updated_at;
    });
    const [{ updated_at: next }] = await db.sql<{ updated_at: Date }[]>`
      select updated_at from public.readiness_update_item('validation-4', 'done', true, 'mail seen', null,
                                                         'admin:bea')`;
    assert.ok(
      next.getTime() > ahead.getTime(),
      `the write's updated_at ${next.toISOString()}, the row's before it ${ahead.toISOString()}`,
    );
    const refused = await writeOnCopy("validation-4", "on the copy before bea's", ahead);
    assert.deepEqual([refused.stale, refused.evidence], [true, "mail seen"]);
    // A write that changes nothing still leaves updated_at as it was (migration 002800).
    const [{ updated_at: same }] = await db.sql<{ updated_at: Date }[]>`
      select updated_at from public.readiness_update_item('validation-4', 'done', false, null, null, 'x')`;
    assert.equal(same.getTime(), next.getTime());
    await db.sql`select public.readiness_update_item('validation-4', 'pending', true, null, null, 'test')`;
    await db.sql.begin(async (tx) => {
      await tx`alter table public.readiness_validations disable trigger readiness_touch`;
      await tx`update public.readiness_validations set updated_at = now() where key = 'validation-4'`;
      await tx`alter table public.readiness_validations enable trigger readiness_touch`;
    });
  },
);

// Two transactions interleaved on one row: PGlite runs one at a time (scripts/lib/embedded_db.ts).
Deno.test({
  name: "readiness: a write that waited on the row's lock while a write begun after it committed gets the " +
    "later updated_at, so the other write's copy is stale (PostgreSQL)",
  ignore: db.kind !== "postgres",
  ...HOLDS_DB,
  fn: async () => {
    const early = connect(db.url, { max: 1 });
    const late = connect(db.url, { max: 1 });
    let lateWrote!: () => void;
    const lateHolds = new Promise<void>((resolve) => (lateWrote = resolve));
    let letLateCommit!: () => void;
    const earlyWaits = new Promise<void>((resolve) => (letLateCommit = resolve));
    // Commit after a minute whatever happens, so a failing run ends.
    const guard = setTimeout(() => letLateCommit(), 60_000);
    try {
      // The early writer's transaction begins (its now() is fixed here) before the late one's.
      let earlyPid = 0;
      let earlyBegan!: () => void;
      const begun = new Promise<void>((resolve) => (earlyBegan = resolve));
      const earlyWrite = early.begin(async (tx) => {
        const [{ pid }] = await tx<{ pid: number }[]>`select pg_backend_pid() as pid`;
        earlyPid = pid;
        earlyBegan();
        await lateHolds;
        const [{ updated_at }] = await tx<{ updated_at: Date }[]>`
          select updated_at from public.readiness_update_item('inbox-4', 'done', true, 'early writer', null,
                                                             'admin:early')`;
        return updated_at;
      });
      await begun;
      const lateWrite = late.begin(async (tx) => {
        const [{ updated_at }] = await tx<{ updated_at: Date }[]>`
          select updated_at from public.readiness_update_item('inbox-4', 'in_progress', true, 'late writer',
                                                             null, 'admin:late')`;
        lateWrote();
        await earlyWaits;
        return updated_at;
      });
      await lateHolds;
      // Polled until the early write waits on the row's lock (20 s at most, so a failing run ends).
      const deadline = performance.now() + 20_000;
      for (;;) {
        const [{ waiting }] = await db.sql<{ waiting: boolean }[]>`
          select coalesce(bool_or(wait_event_type = 'Lock'), false) as waiting
            from pg_stat_activity where pid = ${earlyPid}`;
        if (waiting) break;
        assert.ok(performance.now() < deadline, "the early write waiting on the row's lock: not within 20 s");
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      letLateCommit();
      const lateAt = await lateWrite;
      const earlyAt = await earlyWrite;
      assert.ok(
        earlyAt.getTime() > lateAt.getTime(),
        `the write that waited: ${earlyAt.toISOString()}, the one it waited on: ${lateAt.toISOString()}`,
      );
      const refused = await writeOnCopy("inbox-4", "on the late writer's copy", lateAt);
      assert.deepEqual([refused.stale, refused.evidence], [true, "early writer"]);
    } finally {
      clearTimeout(guard);
      letLateCommit();
      await early.end({ timeout: 1 });
      await late.end({ timeout: 1 });
      await db.sql`select public.readiness_update_item('inbox-4', 'pending', true, null, null, 'test')`;
    }
  },
});

dbTest("readiness migrations: close the database", () => db.close());
