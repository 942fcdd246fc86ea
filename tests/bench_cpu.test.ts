// The benchmark's reading of Postgres' CPU, on the PostgreSQL server (it reads /proc for the server's
// processes; PGlite has none). Skipped without DATABASE_URL.
import assert from "node:assert/strict";
import postgres from "postgres";
import { postgresCpuByPid, postgresCpuSince, procCpuSeconds } from "../bench/lib/proc.ts";

const SERVER_URL = Deno.env.get("DATABASE_URL");

/** A connection and its backend's pid. */
async function backend(url: string) {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const [{ pid }] = await sql<{ pid: number }[]>`select pg_backend_pid() as pid`;
  return { sql, pid };
}

/** Keeps the backend busy with arithmetic for about `ms`. */
async function burn(sql: postgres.Sql, ms: number) {
  await sql`select count(*) from generate_series(1, ${ms * 7_000}::int) g where g % 7 = 3`;
}

Deno.test({
  name:
    "bench: Postgres' CPU since a reading counts each backend's own use; one that closes takes nothing away",
  ignore: !SERVER_URL,
  async fn() {
    const closing = await backend(SERVER_URL!);
    const working = await backend(SERVER_URL!);
    try {
      await burn(closing.sql, 600); // spent before the reading: no part of what follows
      const before = await postgresCpuByPid();
      assert.ok(before.has(closing.pid) && before.has(working.pid), "both backends are read");
      const workingBefore = await procCpuSeconds(working.pid);
      await closing.sql.end();
      for (let i = 0; i < 100 && (await postgresCpuByPid()).has(closing.pid); i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      await burn(working.sql, 200);
      const workingUsed = await procCpuSeconds(working.pid) - workingBefore;
      const since = await postgresCpuSince(before);
      assert.ok(workingUsed > 0, "the working backend used CPU");
      // Other backends (tests running beside this one) can only add to it.
      assert.ok(since >= workingUsed, `${since} s counted, the working backend alone used ${workingUsed} s`);
    } finally {
      await closing.sql.end();
      await working.sql.end();
    }
  },
});
