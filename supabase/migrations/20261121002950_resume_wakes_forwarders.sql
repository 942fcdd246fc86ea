-- Resuming forwarding (or setting a target) wakes the forwarders, so what waited goes out at once.
--
-- While forwarding is paused, or has no target, events wait as pending and no drain claims them; the
-- immediate drain after a store is not even started. Resumed, they waited for whatever ran next: hosted,
-- pg_cron's call of forward-events, up to its interval (30 s) later; `deno task forward` and the dev loop
-- sweep every second but listen for NOTIFY webhook_events_due, which said nothing about a resume.
-- Now an update of relay_settings that lets forwarding go on (unpaused, or a new override while not paused)
-- notifies webhook_events_due, and where the hosted forwarder is scheduled (pg_cron's job
-- relay-forward-events) makes the job's call once, now: pg_net posts to the Vault URL with the Vault token,
-- after the update commits (never, should it roll back). The drain it starts runs beside any other: claims
-- never overlap and each conversation stays in order, so a resume racing a scheduled call, an immediate drain
-- or another resume only shares the work out. The job's own command is not run: a job of that name scheduled
-- by another role would run with this function's rights. Nothing here can fail the operator's update: a
-- failed call is a warning, and the schedule still runs.
-- The look for pg_cron, pg_net and Vault is inside the exception handler too (where the owner has no USAGE on
-- one of those schemas, self-hosted, it raises), and a relay-forward-events job switched off
-- (cron.alter_job(active := false)) is not called.

-- CREATE TRIGGER takes a lock on relay_settings, which every ingest reads: wait for it at most 2 s.
select set_config('lock_timeout', '2s', true);

create or replace function public.wake_forwarders_on_resume()
returns trigger
language plpgsql
-- The Vault secrets and pg_net are the owner's to use, whichever role (postgres, service_role) resumes.
security definer
set search_path = ''
as $$
begin
  perform pg_notify('webhook_events_due', '');
  begin
    if to_regclass('cron.job') is null or to_regnamespace('net') is null
       or to_regclass('vault.decrypted_secrets') is null then
      return null;
    end if;
    -- Dynamic: cron, net and vault exist only where pg_cron, pg_net and Vault do (hosted Supabase).
    execute $q$
      select net.http_post(
        url := (select decrypted_secret from vault.decrypted_secrets where name = 'relay_forwarder_url'),
        headers := jsonb_build_object(
          'Content-Type', 'application/json',
          'Authorization', 'Bearer ' || (select decrypted_secret from vault.decrypted_secrets
                                         where name = 'relay_forwarder_token')),
        body := '{}'::jsonb,
        timeout_milliseconds := 60000)
       where exists (select 1 from cron.job where jobname = 'relay-forward-events' and active)
    $q$;
  exception when others then
    raise warning 'forwarding resumed; forward-events not called now (pg_cron will): %', sqlerrm;
  end;
  return null;
end
$$;

comment on function public.wake_forwarders_on_resume() is
  'Trigger: forwarding may go on again (resumed, or given a target); wakes the forwarders now.';

create trigger relay_settings_wake_forwarders
  after update of forwarding_paused, agent_sdk_url_override on public.relay_settings
  for each row
  when (not new.forwarding_paused and (old.forwarding_paused or (new.agent_sdk_url_override is not null
        and new.agent_sdk_url_override is distinct from old.agent_sdk_url_override)))
  execute function public.wake_forwarders_on_resume();

revoke all on function public.wake_forwarders_on_resume() from public, anon, authenticated;
