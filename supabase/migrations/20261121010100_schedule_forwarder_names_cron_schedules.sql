-- schedule_forwarder('*/2 * * * *') answered "scheduled relay-forward-events every */2 * * * *": its answer
-- was written for schedules in seconds ('10 seconds' reads "every 10 seconds") and read wrong for a cron
-- schedule, which is what pg_cron before 1.5 takes alone. Now a cron schedule is named as one: "scheduled
-- relay-forward-events on cron schedule '*/2 * * * *'"; one in seconds still reads "every 10 seconds", and
-- the default's answers (every 30 seconds, or every minute on pg_cron 1.4) are as migration 009300 wrote them.
-- Everything else is 009300's function as it was: same arguments, so CREATE OR REPLACE keeps its grants (its
-- owner's alone, revoked again below as 009300 did).

create or replace function public.schedule_forwarder(p_schedule text default null)
returns text
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_problem text;
  v_pg_cron text;
  v_schedule constant text := 'select cron.schedule($1, $2, $3)';
  -- pg_cron's schedules in seconds (1.5 or later); any other it takes is a cron schedule.
  v_in_seconds constant text := '^\s*[0-9]+\s*seconds?\s*$';
  -- The job's command, whatever its schedule: the one migration 003400 scheduled.
  v_command constant text := $cmd$
    select net.http_post(
      url := (select decrypted_secret from vault.decrypted_secrets where name = 'relay_forwarder_url'),
      headers := jsonb_build_object(
        'Content-Type', 'application/json',
        'Authorization', 'Bearer ' || (select decrypted_secret from vault.decrypted_secrets
                                       where name = 'relay_forwarder_token')),
      body := '{}'::jsonb,
      timeout_milliseconds := 60000
    )
  $cmd$;
begin
  if to_regnamespace('cron') is null then
    return 'not scheduled: pg_cron is not installed (create extension pg_cron)';
  end if;
  if to_regnamespace('net') is null then
    return 'not scheduled: pg_net is not installed (create extension pg_net)';
  end if;
  v_problem := public.forwarder_secrets_problem();
  if v_problem is not null then
    return 'not scheduled: ' || v_problem;
  end if;
  v_pg_cron := coalesce('pg_cron ' || (select e.extversion from pg_catalog.pg_extension e
                                        where e.extname = 'pg_cron'), 'this pg_cron');
  if p_schedule is null then
    begin
      execute v_schedule using 'relay-forward-events', '30 seconds', v_command;
      return 'scheduled relay-forward-events every 30 seconds';
    exception when invalid_parameter_value then
      -- pg_cron before 1.5 refuses the schedule so; name and command are fixed, and every version takes them.
      execute v_schedule using 'relay-forward-events', '* * * * *', v_command;
      return 'scheduled relay-forward-events every minute (''* * * * *''), not every 30 seconds: '
        || v_pg_cron || ' takes no schedules in seconds (pg_cron 1.5 or later does)';
    end;
  end if;
  begin
    execute v_schedule using 'relay-forward-events', p_schedule, v_command;
  exception when invalid_parameter_value then
    if p_schedule ~* v_in_seconds then
      return 'not scheduled: ' || v_pg_cron || ' refuses it (' || sqlerrm || '): schedules in seconds need '
        || 'pg_cron 1.5 or later, and 1 to 59 seconds; select public.schedule_forwarder(); schedules the '
        || 'default (every 30 seconds where pg_cron takes it, else every minute), or give a cron schedule '
        || 'such as ''* * * * *''';
    end if;
    return 'not scheduled: ' || v_pg_cron || ' refuses it (' || sqlerrm || '): give a cron schedule such as '
      || '''* * * * *'' (every minute), or from pg_cron 1.5 one in seconds such as ''30 seconds''';
  end;
  if p_schedule ~* v_in_seconds then
    return 'scheduled relay-forward-events every ' || p_schedule;
  end if;
  return format('scheduled relay-forward-events on cron schedule %L', p_schedule);
end
$$;

revoke all on function public.schedule_forwarder(text) from public, anon, authenticated;
