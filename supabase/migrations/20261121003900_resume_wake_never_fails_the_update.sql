-- wake_forwarders_on_resume() (migration 002950), two gaps:
--   * its look for pg_cron, pg_net and Vault ran outside its exception handler: where the function's owner has
--     no USAGE on one of those schemas (a self-hosted server), the look raised "permission denied for schema"
--     and failed the operator's resume itself;
--   * it called forward-events whenever a job named relay-forward-events existed, also one the operator had
--     switched off (cron.alter_job(active := false)).
-- Now the look is inside the handler (a failure is a warning; the resume stands) and only an active job counts.

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

revoke all on function public.wake_forwarders_on_resume() from public, anon, authenticated;
