// A run that stops short of a test file's closing test (a --filter skipping it, --fail-fast, ctrl-C) must not
// leave the file's relay_test_* database on the server for good (tests/_db.ts). Each case runs
// tests/_leftover_fixture.ts in a child `deno test` against DATABASE_URL's server and looks for its database
// afterwards. PostgreSQL server only: PGlite's database lives in the test's memory and goes with it.
import assert from "node:assert/strict";
import postgres from "postgres";
import { HOLDS_DB } from "./_db.ts";
import { eventually } from "./_http.ts";

const SERVER_URL = Deno.env.get("DATABASE_URL");
const ROOT = new URL("..", import.meta.url).pathname;
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

interface Fixture {
  /** `deno test -A <args> tests/_leftover_fixture.ts` (inheriting DATABASE_URL) to its end. */
  run(
    args: string[],
    env?: Record<string, string>,
  ): Promise<{ code: number; printed: string; database: string }>;
  /** The same, started: its output file (the database's name, then `.waiting` beside it) and the process. */
  spawn(args: string[], env?: Record<string, string>): Promise<{ out: string; child: Deno.ChildProcess }>;
  exists(database: string): Promise<boolean>;
}

/** A server-only test; any database a fixture run made is dropped afterwards, should the case have failed. */
function leftoverTest(name: string, fn: (fixture: Fixture) => Promise<void>) {
  Deno.test({
    name: `leftover databases: ${name}`,
    ignore: !SERVER_URL,
    ...HOLDS_DB,
    async fn() {
      const admin = postgres(SERVER_URL!, { max: 1, onnotice: () => {} });
      const outs: string[] = [];
      const spawn: Fixture["spawn"] = async (args, env = {}) => {
        const out = await Deno.makeTempFile({ prefix: "relay_leftover_fixture_" });
        outs.push(out);
        const child = new Deno.Command(Deno.execPath(), {
          args: ["test", "-A", ...args, "tests/_leftover_fixture.ts"],
          cwd: ROOT,
          env: { NO_COLOR: "1", LEFTOVER_FIXTURE_OUT: out, ...env },
          stdin: "piped",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        return { out, child };
      };
      const fixture: Fixture = {
        spawn,
        async run(args, env) {
          const { out, child } = await spawn(args, env);
          await child.stdin.close();
          const result = await child.output();
          const printed = decode(result.stdout) + decode(result.stderr);
          const database = await Deno.readTextFile(out);
          assert.match(database, /^relay_test_/, `the fixture did not start its database:\n${printed}`);
          return { code: result.code, printed, database };
        },
        async exists(database) {
          const [{ found }] = await admin<{ found: boolean }[]>`
            select exists (select 1 from pg_database where datname = ${database}) as found`;
          return found;
        },
      };
      try {
        await fn(fixture);
      } finally {
        for (const out of outs) {
          const database = await Deno.readTextFile(out).catch(() => "");
          if (/^relay_test_\w+$/.test(database)) {
            await admin.unsafe(`drop database if exists ${database} with (force)`);
          }
          await Deno.remove(out).catch(() => {});
          await Deno.remove(`${out}.waiting`).catch(() => {});
        }
        await admin.end({ timeout: 1 });
      }
    },
  });
}

leftoverTest("a run filtered past the closing test drops its database", async (fixture) => {
  const run = await fixture.run(["--filter", "leftover fixture: a query"]);
  assert.equal(run.code, 0, run.printed);
  assert.match(run.printed, /ok \| 1 passed \| 0 failed \| 3 filtered out/);
  assert.equal(await fixture.exists(run.database), false, `${run.database} was left on the server`);
});

leftoverTest("a run stopped at its first failure (--fail-fast) drops its database", async (fixture) => {
  const run = await fixture.run(["--fail-fast"], { LEFTOVER_FIXTURE_FAIL: "1" });
  assert.notEqual(run.code, 0, run.printed);
  assert.match(run.printed, /failing as LEFTOVER_FIXTURE_FAIL asks/);
  assert.doesNotMatch(run.printed, /leftover fixture: close/, "the run went on to the closing test");
  assert.equal(await fixture.exists(run.database), false, `${run.database} was left on the server`);
});

leftoverTest(
  "one a run cut off by ctrl-C left is dropped by the next run, never a live run's",
  async (fixture) => {
    const { out, child } = await fixture.spawn([], { LEFTOVER_FIXTURE_HANG: "1" });
    let exited = false;
    const output = child.output().finally(() => exited = true);
    try {
      // Its database is made and one of its tests runs (waiting on its stdin).
      await eventually(
        async () => {
          if (exited) throw new Error(`the fixture exited:\n${decode((await output).stdout)}`);
          return await Deno.stat(`${out}.waiting`).then(() => true, () => false);
        },
        120_000,
        "the fixture's waiting test",
      );
      const held = await Deno.readTextFile(out);
      assert.equal(await fixture.exists(held), true);

      // Another run meanwhile (another file of the same `deno test --parallel`, or another developer's) leaves
      // the live run's database alone.
      const meanwhile = await fixture.run(["--filter", "leftover fixture: a query"]);
      assert.equal(meanwhile.code, 0, meanwhile.printed);
      assert.equal(await fixture.exists(held), true, `a run dropped ${held}, which a live run holds`);

      // Ctrl-C: the test runner exits at once, running no afterAll hook or unload listener, and the database
      // stays (not asserted: in the suite, another test file starting its database may drop it meanwhile)...
      child.kill("SIGINT");
      assert.notEqual((await output).code, 0);

      // ...until the next run against the server starts its own.
      const next = await fixture.run(["--filter", "leftover fixture: a query"]);
      assert.equal(next.code, 0, next.printed);
      assert.equal(
        await fixture.exists(held),
        false,
        `${held}, left by a run cut off by ctrl-C, is still there`,
      );
    } finally {
      if (!exited) child.kill("SIGKILL");
      await child.stdin.close().catch(() => {});
      await output.catch(() => {});
    }
  },
);
