// Migrations 20261121007100 (retention_days bounded) and 007200 (prune_webhook_events): numbers retention accepted
// and then misbehaved on are refused, naming them. The database is migrated to just before 007100, given a
// retention the bound lowers, then migrated the rest of the way. Migration 008100: the lease rule, without
// overflow.
import assert from "node:assert/strict";
import postgres from "postgres";
import { dbTest, migrationsBefore, startTestDb } from "./_db.ts";
import { applyMigrations } from "../scripts/lib/migrations.ts";

const BOUNDED = "20261121007100";

const before = await migrationsBefore(BOUNDED);
const db = await startTestDb({ migrationsDir: before });
const sql = db.sql;

// "Keep for ever", as an operator may have written it: it worked, and the migration must not fail on it.
await sql`update public.relay_settings set retention_days = 99999`;
const notices: string[] = [];
const noticing = postgres(db.url, { max: 1, onnotice: (n) => void notices.push(String(n.message)) });
try {
  await applyMigrations(noticing);
} finally {
  await noticing.end();
}
await Deno.remove(before, { recursive: true });

/** The SQLSTATE and message `statement` fails with; it must fail, and within 20 s (a loop must not spin). */
async function failure(statement: string): Promise<{ code: string; message: string }> {
  // A call that commits cannot run in a transaction block: a connection of its own, its timeout reset after.
  const conn = await sql.reserve();
  try {
    await conn`set statement_timeout = '20s'`;
    await conn.unsafe(statement);
  } catch (error) {
    const { code, message } = error as { code: string; message: string };
    return { code, message };
  } finally {
    await conn`reset statement_timeout`.catch(() => {});
    conn.release();
  }
  throw new Error(`${statement} did not fail`);
}

dbTest(`settings bounds [${db.kind}]: a retention past a century is lowered to it, said once`, async () => {
  const [{ retention_days }] = await sql`select retention_days from public.relay_settings`;
  assert.equal(retention_days, 36500);
  assert.deepEqual(notices.filter((n) => /retention_days/.test(n)).length, 1, notices.join("\n"));
  assert.match(notices.find((n) => /retention_days/.test(n))!, /was 99999, lowered to 36500/);
});

dbTest(`settings bounds [${db.kind}]: relay_settings.retention_days over 36500 is refused`, async () => {
  // 3 000 000 days put prune's cutoff before Postgres' first timestamp: every prune failed, nothing pruned.
  for (const days of [36501, 3_000_000]) {
    const refused = await failure(`update public.relay_settings set retention_days = ${days}`);
    assert.equal(refused.code, "23514", refused.message);
    assert.match(refused.message, /relay_settings_retention_days_bounded/);
  }
  await sql`update public.relay_settings set retention_days = 36500`;
  const [{ deleted }] = await sql`call public.prune_webhook_events()`;
  assert.equal(Number(deleted), 0);
  await sql`update public.relay_settings set retention_days = 30`;
});

dbTest(
  `settings bounds [${db.kind}]: prune_webhook_events refuses a batch_size under 1, not spinning`,
  async () => {
    // batch_size => 0 deleted nothing a round and never saw a round smaller than 0: it committed empty rounds
    // until cancelled (here by the statement timeout). null never compared either.
    for (const size of ["0", "-1", "null"]) {
      const refused = await failure(`call public.prune_webhook_events(batch_size => ${size})`);
      assert.equal(refused.code, "22023", `${size}: ${refused.message}`);
      assert.match(refused.message, /batch_size must be 1 or more/, size);
    }
  },
);

dbTest(`settings bounds [${db.kind}]: prune_webhook_events refuses a negative older_than`, async () => {
  // The cutoff in the future: delivered events received since deleted, and pruned_before moved past now, so
  // deno task recover refused every window until then.
  await sql`insert into public.webhook_events (event_key, event, payload, raw_body, body_sha256, verified_by,
              status, received_at, last_received_at)
            values ('bounds:recent', 'message_created', '{}', '{}', repeat('d', 64), 'signature', 'delivered',
                    now(), now())`;
  const [{ pruned_before: pruned }] = await sql`select pruned_before from public.relay_settings`;
  const refused = await failure(`call public.prune_webhook_events(older_than => interval '-1 day')`);
  assert.equal(refused.code, "22023", refused.message);
  assert.match(refused.message, /older_than must not be negative/);
  const [{ n }] =
    await sql`select count(*)::int as n from public.webhook_events where event_key = 'bounds:recent'`;
  assert.equal(n, 1, "nothing deleted");
  const [after] = await sql`select pruned_before from public.relay_settings`;
  assert.deepEqual(after.pruned_before, pruned, "the recovery horizon untouched");
  // Zero still means "everything delivered up to now".
  await sql`call public.prune_webhook_events(older_than => interval '0')`;
  const [{ left }] =
    await sql`select count(*)::int as left from public.webhook_events where event_key = 'bounds:recent'`;
  assert.equal(left, 0);
});

dbTest(
  `settings bounds [${db.kind}]: lease against timeout is checked without overflow (migration 008100)`,
  async () => {
    try {
      // request_timeout_ms + 1000 overflowed integer: "integer out of range", naming neither column nor rule.
      // Far beyond what a 60 s lease covers, it is refused as that rule.
      const refused = await failure(`update public.relay_settings set request_timeout_ms = 2147483000`);
      assert.equal(refused.code, "23514", refused.message);
      assert.match(refused.message, /relay_settings_lease_covers_timeout/);
      // lease_seconds * 1000 overflowed too; such a lease covers any timeout, so the rule lets it be.
      await sql`update public.relay_settings set lease_seconds = 2147484`;
      // Both sides past integer's range, and the lease still a second longer.
      await sql`update public.relay_settings set request_timeout_ms = 2147483000`;
      const [row] = await sql`select lease_seconds, request_timeout_ms from public.relay_settings`;
      assert.deepEqual({ ...row }, { lease_seconds: 2147484, request_timeout_ms: 2147483000 });
      const over = await failure(`update public.relay_settings set request_timeout_ms = 2147483001`);
      assert.equal(over.code, "23514", over.message);
      // The rule itself is unchanged: a lease must outlive its request by a second.
      await sql`update public.relay_settings set request_timeout_ms = 10000, lease_seconds = 11`;
      const short = await failure(`update public.relay_settings set lease_seconds = 10`);
      assert.equal(short.code, "23514", short.message);
      assert.match(short.message, /relay_settings_lease_covers_timeout/);
    } finally {
      await sql`update public.relay_settings set request_timeout_ms = 10000, lease_seconds = 60`;
    }
  },
);

Deno.test({
  name: `settings bounds [${db.kind}]: close database`,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () => db.close(),
});
