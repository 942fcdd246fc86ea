// connect()'s pools read every result whole after a statement failed between its rows on the same connection.
// postgres.js 3.4.9 (porsager/postgres#1119, #1181) put that many empty slots before the next result's rows;
// withDenseResults in db.ts removes them.
import assert from "node:assert/strict";
import { dbTest, startTestDb, type TestDb } from "./_db.ts";
import { connect, type Sql } from "../supabase/functions/_shared/db.ts";

const db: TestDb = await startTestDb();

const TERMINATED = "its session terminated at its third row";
/** Statements that fail on the server after it sent some of their rows, as seen by the connection. */
const failures: Array<[string, string]> = [
  ["an error in its third row", "select 1 / (3 - x) as n from generate_series(1, 5) x"],
];
if (db.kind === "postgres") {
  failures.push(
    [
      TERMINATED,
      "select case when x = 3 then pg_terminate_backend(pg_backend_pid()) end as n from generate_series(1, 5) x",
    ],
    [
      "statement_timeout after its first row",
      "set statement_timeout = 100; select case when x = 2 then pg_sleep(30) end as n from generate_series(1, 2) x",
    ],
  );
}

type Rows = Array<Record<string, unknown>> & { count?: number | null; command?: string; columns?: unknown };

const RESERVED = "a reserved connection";
const THREE_ROWS = [{ x: 1 }, { x: 2 }, { x: 3 }];

/** Each way this codebase (or a later change to it) reads rows, and the rows it must read. */
const reads: Array<[string, (sql: Sql) => Promise<unknown>]> = [
  ["a tagged query", (sql) => sql`select x from generate_series(1, 3) x`],
  ["a tagged query with a parameter", (sql) => sql`select x from generate_series(1, ${3}::int) x`],
  ["unsafe()", (sql) => sql.unsafe("select x from generate_series(1, 3) x")],
  ["unsafe() with a parameter", (sql) => sql.unsafe("select x from generate_series(1, $1::int) x", [3])],
  [
    "unsafe().simple() of two statements (the first one's rows)",
    async (sql) => (await sql.unsafe("select x from generate_series(1, 3) x; select 4 as x").simple())[0],
  ],
  ["file()", async (sql) => {
    const path = await Deno.makeTempFile({ suffix: ".sql" });
    try {
      await Deno.writeTextFile(path, "select x from generate_series(1, 3) x");
      return await sql.file(path);
    } finally {
      await Deno.remove(path);
    }
  }],
  [RESERVED, async (sql) => {
    const reserved = await sql.reserve();
    try {
      return await reserved`select x from generate_series(1, 3) x`;
    } finally {
      reserved.release();
    }
  }],
  // Whole without the shim too: a transaction's BEGIN completes first, which resets postgres.js' count.
  ["a transaction", (sql) => sql.begin((tx) => tx`select x from generate_series(1, 3) x`)],
];

dbTest(
  `db [${db.kind}]: after a statement failed between its rows, the connection's next result has its rows ` +
    `only (no empty slots first), with its count, command and columns`,
  async () => {
    for (const [failure, statement] of failures) {
      for (const [read, readRows] of reads) {
        // After an ended session postgres.js 3.4.9 fails a reserve() with the session's error (57P01) and
        // then hands the connection to that failed reserve(): with max 1, the next reserve() waits forever.
        if (read === RESERVED && failure === TERMINATED) continue;
        const what = `${read}, after ${failure}`;
        const sql = connect(db.url, { max: 1 }); // one connection: the next statement takes the same one
        try {
          await sql`select 1`;
          await assert.rejects(sql.unsafe(statement), what);
          const rows = await retriedOnceIfTerminated(() => readRows(sql)) as Rows;
          assert.equal(rows.length, 3, `${what}: ${JSON.stringify(rows)}`);
          assert.deepEqual([...rows], THREE_ROWS, what);
          assert.equal(rows.count, 3, what);
          assert.equal(rows.command, "SELECT", what);
          assert.ok(Array.isArray(rows.columns), what);
        } finally {
          await sql.end({ timeout: 1 });
        }
      }
    }
  },
);

dbTest(`db [${db.kind}]: results without empty slots are left as they are`, async () => {
  const sql = connect(db.url, { max: 1 });
  try {
    const none = await sql`select 1 as x where false`;
    assert.deepEqual([none.length, none.count, none.command], [0, 0, "SELECT"]);
    const rows = await sql`select x from generate_series(1, 3) x`.values();
    assert.deepEqual([...rows], [[1], [2], [3]]);
    const [statement] = await Promise.all([sql`select ${1}::int as x`.describe()]);
    assert.deepEqual(statement.columns.map((c) => c.name), ["x"]);
  } finally {
    await sql.end({ timeout: 1 });
  }
});

/**
 * After pg_terminate_backend, postgres.js 3.4.9 also fails the connection's next query with the ended
 * session's own error (57P01) before sending it; callers retry it as a transient error, so this does too.
 */
async function retriedOnceIfTerminated<T>(read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (error) {
    if ((error as { code?: string }).code !== "57P01") throw error;
    return await read();
  }
}

dbTest("db: close the database", async () => {
  await db.close();
});
