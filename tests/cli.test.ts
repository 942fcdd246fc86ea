// The operator CLIs (scripts/*.ts) as an operator runs them: from a folder holding a .env, against a
// database that is there, refuses, or rejects the password. Real subprocesses, a real database.
import assert from "node:assert/strict";
import { dbTest, startTestDb } from "./_db.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const db = await startTestDb();

/** A postgres URL on which nothing listens, with a password that must never be shown. */
function refusedDatabaseUrl(): string {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return `postgresql://postgres:hunter2-secret@127.0.0.1:${port}/postgres`;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * `deno run -A <script> <args>` from `cwd` (where it reads .env) with exactly `env` on top of the test run's
 * environment less its database settings.
 */
async function run(script: string, args: string[], env: Record<string, string>, cwd = ROOT): Promise<Run> {
  const parentEnv = Deno.env.toObject();
  delete parentEnv.DATABASE_URL;
  delete parentEnv.SUPABASE_DB_URL;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `--config=${ROOT}deno.json`, `${ROOT}${script}`, ...args],
    cwd,
    clearEnv: true,
    env: { ...parentEnv, NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

dbTest(`cli [${db.kind}]: a database URL exported as SUPABASE_DB_URL beats .env's DATABASE_URL`, async () => {
  const dir = await Deno.makeTempDir({ prefix: "relay-cli-env-" });
  try {
    await Deno.writeTextFile(`${dir}/.env`, `DATABASE_URL=${refusedDatabaseUrl()}\n`);
    const out = await run("scripts/stats.ts", ["--json"], { SUPABASE_DB_URL: db.url }, dir);
    assert.equal(out.code, 0, out.stdout + out.stderr);
    assert.equal(typeof JSON.parse(out.stdout).health.backlog, "number");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

dbTest(`cli [${db.kind}]: (close the database)`, () => db.close());
