-- schedule_forwarder() scheduled every '30 seconds' by default, a schedule pg_cron takes only from 1.5. Debian's
-- postgresql-15-cron (1.4) and older self-hosted Supabase images refuse it, and the call failed with pg_cron's
-- raw "invalid schedule: 30 seconds" (hosted Supabase has 1.6). Now, with no schedule given, it schedules
-- every 30 seconds where pg_cron takes it and every minute ('* * * * *', the finest 1.4 has) where it does not,
-- saying so; a schedule given by name that pg_cron refuses (seconds on 1.4) schedules nothing and says why and
-- what to run instead, as its other refusals do.
--
-- Which one pg_cron takes is asked of pg_cron itself: it is tried, and its refusal (SQLSTATE 22023, "invalid
-- schedule: …"; the block that tried is rolled back alone, the job as it was stays) answered.
-- pg_extension.extversion does not decide: it is the version of the extension's SQL objects, while the schedule
-- is parsed by the library loaded at start-up, and the two differ after a package upgrade until ALTER
-- EXTENSION … UPDATE and a restart have both happened; its spelling varies too (Debian's 1.4.2 is '1.4-1').
-- It only names the version in the answers.
--
-- The default becomes null (no schedule given), so that a '30 seconds' asked for by name can be refused where
-- the default falls back. The argument types stay (text): CREATE OR REPLACE keeps the function, its grants
-- (its owner's alone: migrations 000200 and 003400 revoked the rest, as below does again) and every call as
-- documented.

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
    if p_schedule ~* '^\s*[0-9]+\s*seconds?\s*$' then
      return 'not scheduled: ' || v_pg_cron || ' refuses it (' || sqlerrm || '): schedules in seconds need '
        || 'pg_cron 1.5 or later, and 1 to 59 seconds; select public.schedule_forwarder(); schedules the '
        || 'default (every 30 seconds where pg_cron takes it, else every minute), or give a cron schedule '
        || 'such as ''* * * * *''';
    end if;
    return 'not scheduled: ' || v_pg_cron || ' refuses it (' || sqlerrm || '): give a cron schedule such as '
      || '''* * * * *'' (every minute), or from pg_cron 1.5 one in seconds such as ''30 seconds''';
  end;
  return 'scheduled relay-forward-events every ' || p_schedule;
end
$$;

revoke all on function public.schedule_forwarder(text) from public, anon, authenticated;
