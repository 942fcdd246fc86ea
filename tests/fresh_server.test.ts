// A server these migrations have never run on, as on a newcomer's machine: none of the roles they create
// exists yet, and the suite's test files create and migrate their databases at once. CI passes
// FRESH_SERVER_URL, a throwaway cluster it creates anew on every run; without it this test is skipped.
import assert from "node:assert/strict";
import postgres from "postgres";
import { startTestDb, type TestDb } from "./_db.ts";

const FRESH_SERVER_URL = Deno.env.get("FRESH_SERVER_URL");
/** The roles the migrations create where they are missing (roles belong to the server, not a database). */
const CREATED_ROLES = ["anon", "authenticated", "service_role", "data_analyst"];

Deno.test({
  name: "fresh server: eight test databases created and migrated at once all succeed",
  ignore: !FRESH_SERVER_URL,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const admin = postgres(FRESH_SERVER_URL!, { max: 1, onnotice: () => {} });
    const countRoles = async () =>
      (await admin<{ n: number }[]>`
        select count(*)::int as n from pg_roles where rolname = any (${CREATED_ROLES})`)[0].n;
    const started: PromiseSettledResult<TestDb>[] = [];
    try {
      assert.equal(await countRoles(), 0, "FRESH_SERVER_URL must name a server without these roles");
      started.push(
        ...await Promise.allSettled(
          Array.from({ length: 8 }, () => startTestDb({ serverUrl: FRESH_SERVER_URL })),
        ),
      );
      assert.deepEqual(
        started.map((r) => r.status === "fulfilled" ? "migrated" : String(r.reason?.message ?? r.reason)),
        Array(8).fill("migrated"),
      );
      assert.equal(await countRoles(), CREATED_ROLES.length);
    } finally {
      for (const r of started) if (r.status === "fulfilled") await r.value.close();
      await admin.end({ timeout: 1 });
    }
  },
});
