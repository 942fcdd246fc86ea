// A claim must cost the same with a big backlog as with a small one, also when the planner's statistics
// predate the backlog (the table analyzed while nothing was pending, as after an Agent SDK outage on a big
// table). Measured as index entries read (pg_stat_user_indexes), not time: a count does not depend on the
// machine's load.
import assert from "node:assert/strict";
import { dbTest, type TestDb } from "./_db.ts";
import { closeSharedDb, fastSettings, freshForwardingDb } from "./_forwarding.ts";
import postgres from "postgres";
import { connect, type Sql } from "../supabase/functions/_shared/db.ts";

const BACKLOG = 3_000;

/** Index entries read from webhook_events_due_idx so far, with this session's counts flushed first. */
async function dueIndexEntriesRead(sql: Sql): Promise<number> {
  await sql`select pg_stat_force_next_flush()`;
  await sql`select pg_stat_clear_snapshot()`;
  const [{ n }] = await sql<{ n: string }[]>`
    select idx_tup_read::text as n from pg_stat_user_indexes where indexrelname = 'webhook_events_due_idx'`;
  return Number(n);
}

/** Delivered history, analyzed, then a backlog the statistics do not know of. */
async function loadUnseenBacklog(db: TestDb): Promise<void> {
  await db.sql.unsafe(`
      insert into public.webhook_events (event_key, event, message_id, conversation_id, account_id, inbox_id,
        payload, raw_body, body_sha256, verified_by, status, attempts, received_at, last_received_at,
        delivered_at, next_attempt_at)
      select 'filler:' || g, 'message_created', 500000000 + g, 1 + g % 500, 1, 1,
        jsonb_build_object('event', 'message_created', 'id', 500000000 + g), '{"event":"message_created"}',
        md5(g::text) || md5((g + 1)::text), 'signature', 'delivered', 1, now(), now(), now(), null
      from generate_series(1, 5000) g`);
  await db.sql`analyze public.webhook_events`; // the statistics now say nothing is pending
  await db.sql.unsafe(
    `insert into public.webhook_events (event_key, event, message_id, conversation_id, account_id, inbox_id,
       payload, raw_body, body_sha256, verified_by, status, received_at, last_received_at, next_attempt_at)
     select 'backlog:' || g, 'message_created', 800000000 + g, 800000000 + g, 1, 1,
       jsonb_build_object('event', 'message_created', 'id', 800000000 + g), '{"event":"message_created"}',
       md5(g::text) || md5((g + 2)::text), 'signature', 'pending', now(), now(),
       now() - interval '1 hour' + g * interval '1 ms'
     from generate_series(1, $1::int) g`,
    [BACKLOG],
  );
}

dbTest("claim: a backlog the statistics do not know of is not read whole by each claim", async () => {
  const db = await freshForwardingDb();
  await fastSettings(db.sql);
  await loadUnseenBacklog(db);
  const [{ first }] = await db.sql<{ first: string[] }[]>`
    select array_agg(id::text order by next_attempt_at, id) as first from (
      select id, next_attempt_at from public.webhook_events where status = 'pending'
      order by next_attempt_at, id limit 10) f`;

  // One connection: a backend flushes its statistics between transactions, when asked to.
  const sql = connect(db.url, { max: 1 });
  try {
    const before = await dueIndexEntriesRead(sql);
    const claimed = await sql<
      { id: string }[]
    >`select id::text from public.claim_webhook_events('probe', 10)`;
    const read = await dueIndexEntriesRead(sql) - before;
    assert.deepEqual(claimed.map((r) => r.id).sort(), [...first].sort(), "the ten earliest due events");
    // The candidates' window is 4 × 10 entries, read twice (candidates, then the lease); the whole backlog is
    // 3 000. Before migration 001100 this claim read 3 040 on PG15 (PGlite's planner fetched by key anyway).
    assert.ok(read <= 200, `one claim of 10 read ${read} entries of webhook_events_due_idx`);
  } finally {
    await sql.end({ timeout: 1 });
  }
});

// The claim's plans, as auto_explain shows them: a generic plan refers to the function's variables as
// parameters ($1, …); a custom plan, made afresh for the call, has their values written in. A compiled plan
// has a JIT section; the session asks for JIT at any cost, so that only the function's own setting prevents it.
Deno.test({
  name: "claim: a connection plans the claim's statements once (generic plans), and never compiles them",
  // auto_explain is loaded per session, which takes a superuser; the test server's postgres is one.
  ignore: !Deno.env.get("DATABASE_URL"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const db = await freshForwardingDb();
    await fastSettings(db.sql);
    await loadUnseenBacklog(db);
    const plans: string[] = [];
    const sql = postgres(db.url, { max: 1, prepare: false, onnotice: (n) => plans.push(n.message) });
    try {
      const [{ jit }] = await sql<{ jit: boolean }[]>`select pg_jit_available() as jit`;
      await sql.unsafe(`load 'auto_explain'`);
      await sql.unsafe(`set auto_explain.log_min_duration = 0; set auto_explain.log_nested_statements = on;
        set auto_explain.log_analyze = on; set auto_explain.log_level = notice; set client_min_messages = notice;
        set jit = on; set jit_above_cost = 0; set jit_inline_above_cost = 0; set jit_optimize_above_cost = 0`)
        .simple();
      for (let i = 0; i < 10; i++) {
        const claimed = await sql`select id from public.claim_webhook_events('plans', 10)`;
        assert.equal(claimed.length, 10);
      }
      const leases = plans.filter((p) => p.includes("with claimable as")).map((p) =>
        p.slice(p.indexOf("->"))
      );
      assert.equal(leases.length, 10, "one lease plan per claim");
      const custom = leases.map((plan, i) => /\$\d/.test(plan) ? null : i + 1).filter((call) =>
        call !== null
      );
      assert.deepEqual(custom, [], `calls planned with their values:\n${leases.at(-1)}`);
      const nested = plans.filter((p) => !p.includes("from public.claim_webhook_events"));
      const compiled = nested.filter((p) => p.includes("JIT:"));
      assert.deepEqual(compiled, [], `JIT ${jit ? "available" : "not built in"}; compiled inside the claim`);
      // The session's own statement is compiled where the server can: the check above could see it.
      if (jit) {
        assert.ok(plans.some((p) => p.includes("from public.claim_webhook_events") && p.includes("JIT:")));
      }
    } finally {
      await sql.end({ timeout: 1 });
    }
  },
});

dbTest("claim backlog: close the database", closeSharedDb);
