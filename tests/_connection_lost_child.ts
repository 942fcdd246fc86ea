// Run by tests/connection_lost.test.ts in a process of its own, on a one-connection pool through the test's
// proxy, asked twice the same way: the readiness app's GET of the checklist or PATCH of `key` (its evidence
// given per request), or BEGIN: beginSurvivingClose (the CLIs' transactions) with a work that catches its
// statement's failure and returns, so that postgres.js would send COMMIT. The test holds the server's answer
// to the first request and cuts its connection; the second goes on the same pool. Each answer is printed as
// one JSON line. A child, because the bug this guards against (postgres.js' ROLLBACK or COMMIT on a closed
// connection, porsager/postgres#1066) ends the process.
import { createReadinessApp } from "../supabase/functions/_shared/readiness.ts";
import { beginSurvivingClose, connect, dbErrorCode } from "../supabase/functions/_shared/db.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";
import { ADMIN_TOKEN, fullEnv } from "./_readiness.ts";

const [url, method, key, ...evidences] = Deno.args;
const sql = connect(url, { max: 1 });
const app = createReadinessApp({
  sql,
  env: fullEnv("http://127.0.0.1:9"),
  log: memoryLogger(),
  cacheMs: 0,
  checkTimeoutMs: 10_000,
  writeTimeoutMs: 10_000,
});
const inTransaction = async (text: string) => {
  try {
    const value = await beginSurvivingClose(sql, "", async (tx) => {
      try {
        const [{ text: echoed }] = await tx<{ text: string }[]>`select ${text}::text as text`;
        return echoed;
      } catch (error) {
        return `caught ${dbErrorCode(error)}`;
      }
    });
    return Response.json({ value }, { status: 200 });
  } catch (error) {
    return Response.json({ error: dbErrorCode(error) }, { status: 503 });
  }
};
const ask = (evidence: string) =>
  method === "BEGIN"
    ? inTransaction(evidence)
    : method === "GET"
    ? app.request("/readiness")
    : app.request(`/readiness/items/${key}`, {
      method: "PATCH",
      headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN_TOKEN}` },
      body: JSON.stringify({ status: "done", evidence, by: "dana" }),
    });
for (const evidence of evidences) {
  const res = await ask(evidence);
  console.log(JSON.stringify({ status: res.status, body: await res.json() }));
}
await sql.end({ timeout: 1 });
