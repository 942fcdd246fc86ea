// On a real PostgreSQL with pg_cron preloaded (CI makes a throwaway cluster and sets PG_CRON_URL): the
// migrations enable pg_cron, schedule retention, leave the forwarder unscheduled with a clear reason while
// pg_net is absent, and the scheduled commands themselves run.
import assert from "node:assert/strict";
import postgres from "postgres";
import { applyMigrations } from "../scripts/lib/migrations.ts";

const url = Deno.env.get("PG_CRON_URL");

Deno.test({
  name: "pg_cron: migrations schedule retention on a server with pg_cron, and the job's command runs",
  ignore: !url,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const sql = postgres(url!, { max: 1, prepare: false, onnotice: () => {} });
    try {
      await applyMigrations(sql);
      const [{ extversion }] = await sql`select extversion from pg_extension where extname = 'pg_cron'`;
      assert.ok(extversion, "the migration enabled pg_cron");
      const jobs = await sql`select jobname, schedule, command from cron.job order by jobname`;
      const prune = jobs.find((j) => j.jobname === "relay-prune-webhook-events");
      assert.ok(prune, JSON.stringify(jobs));
      assert.equal(prune.schedule, "17 3 * * *");
      assert.ok(!jobs.some((j) => j.jobname === "relay-forward-events"), "no forwarder job without pg_net");
      const [{ schedule_forwarder: reason }] = await sql`select public.schedule_forwarder()`;
      assert.match(reason, /pg_net is not installed/);
      // What pg_cron will run: a delivered event 40 days old goes, a pending one stays.
      await sql`insert into webhook_events (event_key, event, payload, raw_body, body_sha256, verified_by, status,
                  received_at, last_received_at)
                values ('cron-old', 'message_created', '{}', '{}', repeat('a', 64), 'signature', 'delivered',
                        now() - interval '40 days', now() - interval '40 days'),
                       ('cron-pending', 'message_created', '{}', '{}', repeat('b', 64), 'signature', 'pending',
                        now() - interval '40 days', now() - interval '40 days')`;
      await sql.unsafe(prune.command);
      const left = await sql`select event_key from webhook_events where event_key like 'cron-%' order by 1`;
      assert.deepEqual(left.map((r) => r.event_key), ["cron-pending"]);
    } finally {
      await sql.end({ timeout: 1 });
    }
  },
});
