// storeEvent leaves no copy of the body in postgres.js' query object once the statement has run. Such
// objects outlive their query until V8's next full collection (docs/benchmarks.md, "the body in the query
// object"), and the ingest statement carries the whole body as a literal. Checked on real postgres.js queries
// against a real Postgres (PGlite, or the server under DATABASE_URL): first that the walk below finds a body
// postgres.js keeps, then that none is left after storeEvent, whether the statement succeeded or failed.
import assert from "node:assert/strict";
import {
  eventColumns,
  jsonbText,
  parseChatwootEvent,
} from "../supabase/functions/_shared/chatwoot_payload.ts";
import type { Sql } from "../supabase/functions/_shared/db.ts";
import { type EventToStore, storeEvent } from "../supabase/functions/_shared/ingest_store.ts";
import { sha256Hex } from "../supabase/functions/_shared/signature.ts";
import { textLiteral } from "../supabase/functions/_shared/sql_literal.ts";
import { samplePayload } from "../scripts/lib/samples.ts";
import { dbTest, startTestDb } from "./_db.ts";

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

/** `sql` as storeEvent uses it, keeping each query object it creates for the test to look into. */
function observed(): { sql: Sql; queries: object[] } {
  const queries: object[] = [];
  const unsafe = ((...args: Parameters<Sql["unsafe"]>) => {
    const query = sql.unsafe(...args);
    queries.push(query);
    return query;
  }) as Sql["unsafe"];
  return { sql: { unsafe } as unknown as Sql, queries };
}

function eventWithBody(messageId: number, marker: string): EventToStore {
  const text = JSON.stringify(samplePayload("message_created", { messageId, content: `body ${marker}` }));
  const parsed = parseChatwootEvent(text);
  assert.ok(parsed.ok);
  const bodySha256 = sha256Hex(text);
  return {
    ...eventColumns(parsed.payload, parsed.event, bodySha256),
    deliveryId: null,
    payloadJson: jsonbText(text, parsed.payload),
    rawBody: text,
    bodySha256,
    verifiedBy: "signature",
  };
}

dbTest(`ingest store [${db.kind}]: postgres.js keeps a statement's text in its query object`, async () => {
  // The control: without this, the checks below could pass because the walk sees nothing.
  const marker = crypto.randomUUID();
  const query = sql.unsafe<{ n: number }[]>(`select length(${textLiteral(marker)}) as n`);
  const rows = await query;
  assert.equal(rows[0].n, marker.length);
  assert.ok(reaches(query, marker), "the settled query still holds its statement");
  assert.ok(reaches(rows, marker), "so does its result");
});

dbTest(`ingest store [${db.kind}]: storeEvent leaves no copy of the body in the query object`, async () => {
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

dbTest(`ingest store [${db.kind}]: nor when the statement fails`, async () => {
  const marker = crypto.randomUUID();
  const { sql: watched, queries } = observed();
  // A body Postgres refuses as jsonb: the statement reaches the database and fails there.
  const event = { ...eventWithBody(991_002, marker), payloadJson: `{"not": "json" ${marker}` };
  await assert.rejects(storeEvent(watched, event), /json/i);
  assert.equal(queries.length, 1);
  assert.ok(!reaches(queries[0], marker), "the body is not reachable from the failed query");
});

dbTest(`ingest store [${db.kind}]: close database`, () => db.close());
