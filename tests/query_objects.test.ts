// No body is left reachable from postgres.js' query objects once they have settled: neither from the ingest
// statement, which carries the whole body as a literal, nor from the forwarder's claim, whose result holds a
// batch of bodies. Such objects outlive their query until V8's next full collection
// (docs/benchmarks-history.md, "the body in the query object"). Checked on real postgres.js queries against a
// real Postgres (PGlite, or the server under DATABASE_URL) and a real Agent SDK stand-in on loopback: first
// that the walk below finds what postgres.js keeps, then that no body is left after storeEvent (succeeded or
// failed) and after a drain.
import assert from "node:assert/strict";
import type { Sql } from "../supabase/functions/_shared/db.ts";
import { drain } from "../supabase/functions/_shared/forwarder.ts";
import { BODY_PARAMETER_FROM_CHARS, storeEvent } from "../supabase/functions/_shared/ingest_store.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";
import { textLiteral } from "../supabase/functions/_shared/sql_literal.ts";
import { samplePayload } from "../scripts/lib/samples.ts";
import { dbTest, startTestDb } from "./_db.ts";
import { startAgentSdk } from "./_agent_sdk.ts";
import { eventToStore, fastSettings, statusOf, storeSample } from "./_forwarding.ts";

const db = await startTestDb();
const sql = db.sql;

/** Whether a string reachable from `root` through properties (symbol-keyed, hidden too) has `marker`. */
function reaches(root: unknown, marker: string): boolean {
  const seen = new Set<unknown>();
  const stack: unknown[] = [root];
  while (stack.length) {
    const value = stack.pop();
    if (typeof value === "string") {
      if (value.includes(marker)) return true;
      continue;
    }
    if ((typeof value !== "object" && typeof value !== "function") || value === null || seen.has(value)) {
      continue;
    }
    seen.add(value);
    for (const key of Reflect.ownKeys(value)) {
      const descriptor = Reflect.getOwnPropertyDescriptor(value, key);
      if (descriptor && "value" in descriptor) stack.push(descriptor.value);
    }
  }
  return false;
}

/** `sql` as storeEvent and drain use it, keeping each query object made for the test to look into. */
function observed(): { sql: Sql; queries: PromiseLike<unknown>[] } {
  const queries: PromiseLike<unknown>[] = [];
  const keep = <Q extends PromiseLike<unknown>>(query: Q): Q => (queries.push(query), query);
  const tagged = (strings: TemplateStringsArray, ...values: never[]) => keep(sql(strings, ...values));
  const unsafe = (...args: Parameters<Sql["unsafe"]>) => keep(sql.unsafe(...args));
  return { sql: Object.assign(tagged, { unsafe }) as unknown as Sql, queries };
}

const eventWithBody = (messageId: number, marker: string) =>
  eventToStore(JSON.stringify(samplePayload("message_created", { messageId, content: `body ${marker}` })));

dbTest(`query objects [${db.kind}]: postgres.js keeps a statement's text and its result`, async () => {
  // The controls: without them, the checks below could pass because the walk sees nothing.
  const marker = crypto.randomUUID();
  const query = sql.unsafe<{ n: number }[]>(`select length(${textLiteral(marker)}) as n`);
  const rows = await query;
  assert.equal(rows[0].n, marker.length);
  assert.ok(reaches(query, marker), "the settled query still holds its statement");
  assert.ok(reaches(rows, marker), "so does its result");
  const selected = sql`select ${marker}::text as body`;
  await selected;
  assert.ok(reaches(await selected, marker), "a settled query answers again with the rows it read");
});

dbTest(`query objects [${db.kind}]: storeEvent leaves no copy of the body in the query object`, async () => {
  const marker = crypto.randomUUID();
  const { sql: watched, queries } = observed();
  const stored = await storeEvent(watched, eventWithBody(991_001, marker));
  assert.equal(stored.outcome, "stored");
  assert.equal(queries.length, 1);
  assert.ok(!reaches(queries[0], marker), "the body is not reachable from the settled query");

  const [row] = await sql<{ raw_body: string }[]>`
    select raw_body from public.webhook_events where id = ${stored.id}`;
  assert.ok(row.raw_body.includes(marker), "and it was stored");
});

dbTest(`query objects [${db.kind}]: nor when its statement fails`, async () => {
  const marker = crypto.randomUUID();
  const { sql: watched, queries } = observed();
  // A body Postgres refuses as jsonb: the statement reaches the database and fails there.
  const event = { ...eventWithBody(991_002, marker), payloadJson: `{"not": "json" ${marker}` };
  await assert.rejects(storeEvent(watched, event), /json/i);
  assert.equal(queries.length, 1);
  assert.ok(!reaches(queries[0], marker), "the body is not reachable from the failed query");
});

dbTest(`query objects [${db.kind}]: nor when a long body goes as a parameter, stored or failed`, async () => {
  const marker = crypto.randomUUID();
  const { sql: watched, queries } = observed();
  const long = (messageId: number) =>
    eventToStore(JSON.stringify(samplePayload("message_created", {
      messageId,
      content: `body ${marker} ${"x".repeat(BODY_PARAMETER_FROM_CHARS)}`,
    })));
  const event = long(991_003);
  assert.ok(event.rawBody.length > BODY_PARAMETER_FROM_CHARS);
  const stored = await storeEvent(watched, event);
  assert.equal(stored.outcome, "stored");
  const failing = { ...long(991_004), payloadJson: `{"not": "json" ${marker}` };
  await assert.rejects(storeEvent(watched, failing), /json/i);
  assert.equal(queries.length, 2);
  assert.ok(!reaches(queries[0], marker), "the body is not reachable from the settled query");
  assert.ok(!reaches(queries[1], marker), "nor from the failed one");
  const [row] = await sql<{ raw_body: string }[]>`
    select raw_body from public.webhook_events where id = ${stored.id}`;
  assert.equal(row.raw_body, event.rawBody, "and it was stored, byte for byte");
});

dbTest(`query objects [${db.kind}]: a drain leaves no body in its claim's result`, async () => {
  const sdk = startAgentSdk();
  try {
    await fastSettings(sql);
    const marker = crypto.randomUUID();
    const id = await storeSample(sql, "message_created", { content: `body ${marker}` });
    const { sql: watched, queries } = observed();
    await drain(watched, { agentSdkUrl: sdk.url, agentSdkSecret: null, agentSdkToken: null }, {
      budgetMs: 10_000,
      log: memoryLogger(),
    });
    assert.equal(await statusOf(sql, id), "delivered");
    assert.ok(sdk.received.some((r) => r.text.includes(marker)), "the body was delivered");
    assert.ok(queries.length >= 2, "the drain's queries were observed");
    for (const query of queries) {
      assert.ok(!reaches(query, marker), "no body reachable from a query object");
      assert.ok(!reaches(await query, marker), "nor from what it answers with");
    }
  } finally {
    await sdk.close();
  }
});

dbTest(`query objects [${db.kind}]: close database`, () => db.close());
