// A test file shaped as the suite's are (its database opened at module level, dropped by a closing test), run
// by tests/leftover_databases.test.ts in a child `deno test` that stops short of that closing test.
// LEFTOVER_FIXTURE_OUT names the file the database's name is written to; LEFTOVER_FIXTURE_FAIL makes one test
// fail; LEFTOVER_FIXTURE_HANG makes one wait on stdin (a run to cut off by ctrl-C), writing <that file>.waiting.
import { dbTest, HOLDS_DB, startTestDb } from "./_db.ts";

const db = await startTestDb();
await Deno.writeTextFile(Deno.env.get("LEFTOVER_FIXTURE_OUT")!, new URL(db.url).pathname.slice(1));

dbTest("leftover fixture: a query", async () => {
  await db.sql`select 1`;
});

Deno.test({
  name: "leftover fixture: fails when asked to",
  ...HOLDS_DB,
  fn() {
    if (Deno.env.get("LEFTOVER_FIXTURE_FAIL")) throw new Error("failing as LEFTOVER_FIXTURE_FAIL asks");
  },
});

dbTest("leftover fixture: waits on stdin when asked to", async () => {
  if (!Deno.env.get("LEFTOVER_FIXTURE_HANG")) return;
  await Deno.writeTextFile(`${Deno.env.get("LEFTOVER_FIXTURE_OUT")}.waiting`, "");
  await Deno.stdin.read(new Uint8Array(1));
});

dbTest("leftover fixture: close", () => db.close());
