-- Where pg_cron, pg_net and usable Vault secrets are all there but no relay-forward-events job is, this says
-- so loudly (a WARNING naming the command to run), and schedules nothing.
--
-- Why: on pg_cron before 1.5 (Debian's postgresql-15-cron, older self-hosted Supabase images), with pg_net and
-- the secrets made before the migrations ran, migration 000200 tried its default of the time, every 30
-- seconds, which 1.4 refuses (a notice, no job); 009300 taught schedule_forwarder() to fall back to every
-- minute, but nothing called it again. No job calls forward-events then: events not delivered at once (every
-- retry, a backlog after a pause) wait for good unless a forwarder runs elsewhere, and nothing said so.
--
-- Why not schedule here: that database cannot be told from one whose operator unscheduled the job on purpose
-- (unschedule_forwarder() before an upgrade, forwarding with `deno task forward` instead); a migration
-- scheduling it would undo that decision. Both leave no job, the same secrets and the same pg_cron, and:
-- - 000200's refused try leaves no trace: its notice went to the client alone, and pg_cron refuses a schedule
--   before it takes a job id;
-- - unschedule_forwarder() deletes the job's row. cron.job_run_details keeps the runs of a job that ran, but
--   it is optional (cron.log_run), often purged, and a job unscheduled before its first run left none there:
--   no runs proves nothing;
-- - supabase_migrations.schema_migrations records no times, so whether 000200 applied in this same run (a
--   fresh install, no operator in between) cannot be read; each file is a transaction of its own;
-- - a mark written by unschedule_forwarder() from now on would tell only of unschedules after this migration,
--   and this migration runs once, on exactly the upgrades that mark cannot cover.
-- Scheduling is one call, and the warning names it. A job switched off (cron.alter_job(active := false)) is a
-- job: no warning. Where the owner may not look into pg_cron's schema (self-hosted), a notice says it was not
-- checked, as migration 003400's check does.

do $$
declare
  v_scheduled boolean;
  v_pg_cron text;
begin
  if to_regclass('cron.job') is null or to_regnamespace('net') is null
     or public.forwarder_secrets_problem() is not null then
    return;
  end if;
  execute 'select exists (select 1 from cron.job where jobname = $1)' into v_scheduled
    using 'relay-forward-events';
  if v_scheduled then
    return;
  end if;
  v_pg_cron := coalesce('pg_cron ' || (select e.extversion from pg_catalog.pg_extension e
                                        where e.extname = 'pg_cron'), 'pg_cron');
  raise warning 'forwarding: no relay-forward-events job, so pg_cron never calls forward-events: events not '
    'delivered at once (retries, a backlog after a pause) wait unless a forwarder runs elsewhere. A pg_cron '
    'before 1.5 refused migration 000200''s try to schedule it every 30 seconds (this server has %). Unless '
    'it was unscheduled on purpose, run: select public.schedule_forwarder();', v_pg_cron;
exception when others then
  raise notice 'forwarding: whether a relay-forward-events job exists was not checked: %', sqlerrm;
end
$$;
