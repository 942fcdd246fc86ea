// On a real PostgreSQL with pg_cron preloaded (CI makes a throwaway cluster and sets PG_CRON_URL, which names
// the database pg_cron serves; each test empties and migrates it afresh, so it must be the tests' own): the
// migrations enable pg_cron, schedule retention, leave the forwarder unscheduled with a clear reason while
// pg_net is absent, and the scheduled commands themselves run, by hand and under pg_cron itself; with stand-ins
// for pg_net and Vault, schedule_forwarder() schedules what this pg_cron takes.
import assert from "node:assert/strict";
import postgres from "postgres";
import { applyMigrations } from "../scripts/lib/migrations.ts";
import { netAndVaultStandIns } from "./_hosted.ts";

const url = Deno.env.get("PG_CRON_URL");

/**
 * Brings PG_CRON_URL's database back to what the migrations start from, and migrates it (`prepare` first:
 * stand-ins made before the migrations), so that each test checks what the migrations do, not what an earlier
 * run left, and runs again on a database kept between runs (a developer's). It cannot be a fresh database per
 * run: pg_cron lives in one database alone (cron.database_name, read at start-up), and dropping that one stops
 * pg_cron 1.4's scheduler until a restart. Its extension stays too, its jobs unscheduled: dropped (with schema
 * public, where migration 000200 creates it) and created again by the migrations, it left pg_cron 1.4 holding
 * on to the dropped cron.job: its scheduler ran no job, and cron.unschedule() failed ("could not open relation
 * with OID …"), until a restart. So "the migrations enable pg_cron" is checked where the database is new, as in
 * CI. A database holding webhooks these tests did not store is refused, never emptied.
 */
async function migrateAfresh(sql: postgres.Sql, prepare?: string): Promise<void> {
  const [{ stored }] = await sql`select to_regclass('public.webhook_events') is not null as stored`;
  if (stored) {
    const [{ others }] = await sql`select count(*)::int as others from public.webhook_events
                                    where event_key not like 'cron-%'`;
    if (others > 0) {
      throw new Error(
        `PG_CRON_URL's database holds ${others} webhooks these tests did not store: give the ` +
          "tests a database of their own (the one cron.database_name names on a throwaway cluster, as .ci/run)",
      );
    }
  }
  const [{ cron }] = await sql`select to_regclass('cron.job') is not null as cron`;
  if (cron) await sql`select cron.unschedule(jobid) from cron.job`;
  // Public's own objects, not the schema: pg_cron's extension lives in it (created there by migration 000200).
  await sql.unsafe(`
    do $$
    declare
      v_drop text;
    begin
      -- Named before the first drop: one drop's cascade takes others along, whose oids then name nothing.
      -- Left out: what belongs to an extension (pg_cron's), and sequences that go with their columns.
      foreach v_drop in array array(
        select format('drop %s if exists %s cascade', case c.relkind when 'v' then 'view'
                 when 'm' then 'materialized view' when 'S' then 'sequence' else 'table' end, c.oid::regclass)
          from pg_class c
         where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p', 'v', 'm', 'S')
           and not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass
                              and d.objid = c.oid and d.deptype in ('e', 'a', 'i'))
        union all
        select format('drop routine if exists %s cascade', p.oid::regprocedure)
          from pg_proc p
         where p.pronamespace = 'public'::regnamespace
           and not exists (select 1 from pg_depend d where d.classid = 'pg_proc'::regclass
                              and d.objid = p.oid and d.deptype = 'e'))
      loop
        execute v_drop;
      end loop;
    end
    $$;
    drop schema if exists net cascade;
    drop schema if exists vault cascade;
    drop schema if exists supabase_migrations cascade;
    ${prepare ?? ""}`).simple();
  await applyMigrations(sql);
}

Deno.test({
  name: "pg_cron: migrations schedule retention on a server with pg_cron, and the job's command runs",
  ignore: !url,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const sql = postgres(url!, { max: 1, prepare: false, onnotice: () => {} });
    try {
      await migrateAfresh(sql);
      const [{ extversion }] = await sql`select extversion from pg_extension where extname = 'pg_cron'`;
      assert.ok(extversion, "pg_cron enabled (by the migration, where the database is new)");
      const jobs = await sql`select jobname, schedule, command from cron.job order by jobname`;
      const prune = jobs.find((j) => j.jobname === "relay-prune-webhook-events");
      assert.ok(prune, JSON.stringify(jobs));
      assert.equal(prune.schedule, "17 3 * * *");
      // Where pg_cron is enabled after the migrations, nothing schedules retention: README (Operations) gives
      // the command. Run as written, it makes the job the migration makes.
      const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
      const readmeSchedule = /`(select cron\.schedule\('relay-prune-webhook-events'[^`]*)`/.exec(readme);
      assert.ok(readmeSchedule, "README: the command that schedules retention");
      await sql`select cron.unschedule('relay-prune-webhook-events')`;
      await sql.unsafe(readmeSchedule[1]);
      const [again] = await sql`select schedule, command from cron.job
                                 where jobname = 'relay-prune-webhook-events'`;
      assert.deepEqual({ ...again }, { schedule: prune.schedule, command: prune.command });
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

// pg_cron sends a job's command over its own session (libpq mode, the default and hosted Supabase's), and
// prune_webhook_events() commits between batches: a COMMIT there fails ("invalid transaction termination")
// unless the CALL is a top-level statement of its own. Only pg_cron itself running the command shows it works.
Deno.test({
  name: "pg_cron: the scheduled prune runs under pg_cron itself, committing between batches",
  ignore: !url,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const sql = postgres(url!, { max: 1, prepare: false, onnotice: () => {} });
    let jobId: number | undefined;
    try {
      await migrateAfresh(sql);
      const [{ command }] =
        await sql`select command from cron.job where jobname = 'relay-prune-webhook-events'`;
      // More delivered events than one batch (5 000), so the procedure commits before it is done.
      await sql`insert into webhook_events (event_key, event, payload, raw_body, body_sha256, verified_by, status,
                  received_at, last_received_at)
                select 'cron-run-' || i, 'message_created', '{}', '{}', md5(i::text) || md5(i::text), 'signature',
                       'delivered', now() - interval '40 days', now() - interval '40 days'
                  from generate_series(1, 5001) i`;
      // The same command, on a schedule that comes round within a minute (pg_cron 1.4 has no seconds).
      const [{ schedule }] = await sql`select cron.schedule('relay-prune-test-run', '* * * * *', ${command})`;
      jobId = Number(schedule);
      let run: postgres.Row | undefined;
      for (let waited = 0; !run && waited < 90; waited++) {
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        [run] = await sql`select status, return_message from cron.job_run_details
                           where jobid = ${jobId} and status in ('succeeded', 'failed')`;
      }
      assert.ok(run, "pg_cron ran the job within 90 s");
      assert.equal(run.status, "succeeded", run.return_message);
      const [{ left }] =
        await sql`select count(*)::int as left from webhook_events where event_key like 'cron-run-%'`;
      assert.equal(left, 0);
      const [{ pruned }] = await sql`select pruned_before is not null as pruned from relay_settings`;
      assert.ok(pruned);
    } finally {
      if (jobId !== undefined) await sql`select cron.unschedule(${jobId}::bigint)`.catch(() => {});
      await sql.end({ timeout: 1 });
    }
  },
});

// Schedules in seconds came with pg_cron 1.5: CI's Debian package is 1.4, hosted Supabase has 1.6. Whichever
// runs here, schedule_forwarder() asks pg_cron itself and must schedule what it takes, or say why not.
// pg_net and Vault are stand-ins (pg_net cannot run here), made after the migrations; the job and they go again
// at the end, so that no job is left calling a stand-in every minute.
Deno.test({
  name: "pg_cron: schedule_forwarder() schedules every 30 s where pg_cron takes seconds, else every minute",
  ignore: !url,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const sql = postgres(url!, { max: 1, prepare: false, onnotice: () => {} });
    let standIns = false;
    try {
      await migrateAfresh(sql);
      const [{ present }] = await sql`select to_regnamespace('net') is not null
                                             or to_regnamespace('vault') is not null as present`;
      assert.ok(!present, "no pg_net or Vault here to stand in for");
      await sql.unsafe(netAndVaultStandIns()).simple();
      standIns = true;
      const [{ extversion }] = await sql`select extversion from pg_extension where extname = 'pg_cron'`;
      const [major, minor] = String(extversion).split(/[.-]/).map(Number);
      const seconds = major > 1 || minor >= 5;
      const job = async () => {
        const rows = await sql`select schedule, command from cron.job where jobname = 'relay-forward-events'`;
        return rows.map((r) => ({ ...r }));
      };

      const [{ result }] = await sql`select public.schedule_forwarder() as result`;
      const [scheduled] = await job();
      if (seconds) {
        assert.equal(result, "scheduled relay-forward-events every 30 seconds");
        assert.equal(scheduled?.schedule, "30 seconds");
      } else {
        assert.equal(
          result,
          `scheduled relay-forward-events every minute ('* * * * *'), not every 30 seconds: pg_cron ${extversion} ` +
            "takes no schedules in seconds (pg_cron 1.5 or later does)",
        );
        assert.equal(scheduled?.schedule, "* * * * *");
      }
      // The command is the one every schedule gets: it posts to the Vault URL with the Vault token.
      await sql.unsafe(scheduled.command).simple();
      const [call] = await sql`select url, headers from net.calls`;
      assert.equal(call.url, "https://ref.supabase.co/functions/v1/forward-events");
      assert.equal(call.headers.Authorization, "Bearer forwarder-token-from-vault");

      const [{ explicit }] = await sql`select public.schedule_forwarder('10 seconds') as explicit`;
      if (seconds) {
        assert.equal(explicit, "scheduled relay-forward-events every 10 seconds");
        assert.deepEqual(await job(), [{ schedule: "10 seconds", command: scheduled.command }]);
      } else {
        assert.match(
          explicit,
          new RegExp(`^not scheduled: pg_cron ${extversion} refuses it \\(invalid schedule: 10 s`),
        );
        assert.match(explicit, /schedules in seconds need pg_cron 1\.5 or later/);
        assert.match(explicit, /select public\.schedule_forwarder\(\);/, "what to run instead");
        assert.deepEqual(await job(), [scheduled], "the job stays as it was");
      }
      // A cron schedule, which every version takes, is named as one; one in seconds (above) reads "every …".
      for (const cron of ["*/2 * * * *", "@hourly"]) {
        const [{ answer }] = await sql`select public.schedule_forwarder(${cron}) as answer`;
        assert.equal(answer, `scheduled relay-forward-events on cron schedule '${cron}'`);
        assert.deepEqual(await job(), [{ schedule: cron, command: scheduled.command }]);
      }
      const before = await job();
      const [{ nonsense }] = await sql`select public.schedule_forwarder('every minute') as nonsense`;
      assert.match(nonsense, /^not scheduled: pg_cron .* refuses it \(invalid schedule: every minute\)/);
      assert.match(nonsense, /'\* \* \* \* \*'/, "an example of a schedule it takes");
      assert.deepEqual(await job(), before);
    } finally {
      await sql`select public.unschedule_forwarder()`.catch(() => {});
      if (standIns) await sql.unsafe("drop schema net cascade; drop schema vault cascade").simple();
      await sql.end({ timeout: 1 });
    }
  },
});

// A fresh install where pg_net and the Vault secrets come first (stand-ins here). On pg_cron 1.4 migration
// 000200's try, every 30 seconds, is refused and nothing schedules the job after it: the migrations must say
// so, naming the command, which then schedules what 1.4 takes. From 1.5 000200 schedules it, and none warns.
Deno.test({
  name: "pg_cron: secrets made before the migrations: the job scheduled, or a warning naming the command",
  ignore: !url,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const warnings: string[] = [];
    const sql = postgres(url!, {
      max: 1,
      prepare: false,
      onnotice: (n) => n.severity === "WARNING" && warnings.push(n.message),
    });
    try {
      await migrateAfresh(sql, netAndVaultStandIns());
      const [{ extversion }] = await sql`select extversion from pg_extension where extname = 'pg_cron'`;
      const [major, minor] = String(extversion).split(/[.-]/).map(Number);
      const jobs = async () =>
        [...await sql`select schedule from cron.job where jobname = 'relay-forward-events'`].map((j) =>
          j.schedule
        );
      const about = warnings.filter((w) => w.includes("relay-forward-events"));
      if (major > 1 || minor >= 5) {
        assert.deepEqual(await jobs(), ["30 seconds"]);
        assert.deepEqual(about, []);
        return;
      }
      assert.deepEqual(await jobs(), [], "pg_cron 1.4 refused migration 000200's every 30 seconds");
      assert.equal(about.length, 1, JSON.stringify(warnings));
      assert.match(
        about[0],
        /^forwarding: no relay-forward-events job, so pg_cron never calls forward-events/,
      );
      assert.match(
        about[0],
        new RegExp(`before 1\\.5 refused .*\\(this server has pg_cron ${extversion}\\)`),
      );
      const named = /run: (select public\.schedule_forwarder\(\);)$/.exec(about[0]);
      assert.ok(named, about[0]);
      const [{ schedule_forwarder: result }] = await sql.unsafe(named[1]);
      assert.match(result, /^scheduled relay-forward-events every minute/);
      assert.deepEqual(await jobs(), ["* * * * *"]);
    } finally {
      await sql`select public.unschedule_forwarder()`.catch(() => {});
      await sql.unsafe("drop schema if exists net cascade; drop schema if exists vault cascade").simple();
      await sql.end({ timeout: 1 });
    }
  },
});
