// A connection lost while a readiness transaction's statement is in flight (a database restart, a backend
// terminated): postgres.js 3.4 then sent ROLLBACK on the closed connection from a timer, and its TypeError
// ("Cannot read properties of null (reading 'write')", porsager/postgres#1066, #1154, #1208) ended the
// process: in `deno task dev` every function with it. Run in a child process, so that this runner survives.
import assert from "node:assert/strict";
import { dbTest, startTestDb, type TestDb } from "./_db.ts";
import { startDbProxy } from "./_proxy.ts";

const db: TestDb = await startTestDb();
const CHILD = new URL("./_connection_lost_child.ts", import.meta.url).pathname;

/**
 * The readiness app in a child process (method GET or PATCH of `key`), asked twice: the first request's
 * statement holding `held` has its answer held, then its connection cut, and the proxy lets connections
 * through again at once. Resolves with the child's two answers, having checked that it ended well.
 */
async function askTwiceCuttingFirst(
  method: "GET" | "PATCH" | "BEGIN",
  held: string,
  args: string[],
): Promise<{ status: number; body: Record<string, unknown> }[]> {
  const proxy = startDbProxy(db.url);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CHILD, proxy.url, method, ...args],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Not an assertion on time: a child that never ends would hold the run.
  const stuck = setTimeout(() => child.kill(), 60_000);
  try {
    // Resolves once the server has answered the statement (in its transaction, not committed).
    await proxy.when(held, "hold");
    proxy.cut();
    proxy.restore();
    const { code, stdout, stderr } = await child.output();
    const err = new TextDecoder().decode(stderr);
    assert.doesNotMatch(err, /TypeError|Uncaught/, err);
    assert.equal(code, 0, err);
    const answers = new TextDecoder().decode(stdout).trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(answers.length, 2, JSON.stringify(answers));
    return answers;
  } finally {
    clearTimeout(stuck);
    await proxy.close();
  }
}

async function taskState(key: string): Promise<{ status: string; evidence: string | null }> {
  const [row] = await db.sql<{ status: string; evidence: string | null }[]>`
    select status, evidence from public.readiness_tasks where key = ${key}`;
  return { status: row.status, evidence: row.evidence };
}

dbTest(
  "readiness PATCH: the connection cut while its statement's answer is on the way is 503 " +
    "database_unavailable, nothing changed; the process lives on and the next PATCH on its pool is stored",
  async () => {
    const key = "task-8";
    const before = await taskState(key);
    const cutEvidence = "held, then the connection cut";
    const nextEvidence = "stored once the database is back";
    try {
      const [first, next] = await askTwiceCuttingFirst("PATCH", cutEvidence, [
        key,
        cutEvidence,
        nextEvidence,
      ]);
      assert.equal(first.status, 503, JSON.stringify(first));
      assert.deepEqual([first.body.error, first.body.message, first.body.reason], [
        "database_unavailable",
        "The item could not be updated; nothing changed",
        "unreachable",
      ]);
      assert.equal(next.status, 200, JSON.stringify(next));
      assert.deepEqual(await taskState(key), { status: "done", evidence: nextEvidence });
    } finally {
      await db.sql`select public.readiness_update_item(${key}, ${before.status}, true, ${before.evidence},
                                                       null, 'test')`;
    }
  },
);

dbTest(
  "readiness GET: the connection cut while the checklist's answer is on the way is 503 " +
    "database_unavailable; the process lives on and the next GET on its pool reads the checklist",
  async () => {
    const [first, next] = await askTwiceCuttingFirst("GET", "readiness_snapshot()", ["-", "-", "-"]);
    assert.equal(first.status, 503, JSON.stringify(first));
    assert.deepEqual([first.body.error, first.body.reason], ["database_unavailable", "unreachable"]);
    assert.equal(next.status, 200, JSON.stringify(next));
    assert.equal(next.body.ok, true);
  },
);

dbTest(
  "beginSurvivingClose (the CLIs' transactions): a work that catches its statement's lost connection and " +
    "returns fails CONNECTION_CLOSED, no COMMIT sent on it; the process lives on, the next one commits",
  async () => {
    const held = "held in a transaction of a CLI's";
    const [first, next] = await askTwiceCuttingFirst("BEGIN", held, ["-", held, "the next one"]);
    assert.deepEqual(first, { status: 503, body: { error: "CONNECTION_CLOSED" } });
    assert.deepEqual(next, { status: 200, body: { value: "the next one" } });
  },
);

dbTest("connection_lost: close the database", () => db.close());
