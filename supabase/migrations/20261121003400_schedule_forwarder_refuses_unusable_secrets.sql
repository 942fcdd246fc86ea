-- schedule_forwarder() took any non-empty Vault secret. A token pasted with its line break (or spaces, or the
-- "old,new" pair FORWARDER_TOKEN may hold) was scheduled as "Bearer <token>\n", which forward-events refuses
-- with 401 on every run, and a URL without its scheme was scheduled to fail in pg_net, while the function
-- answered "scheduled". Now it says which secret is unusable and why, and schedules nothing.
create or replace function public.schedule_forwarder(p_schedule text default '30 seconds')
returns text
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_missing text[];
  v_url text;
  v_token text;
begin
  if to_regnamespace('cron') is null then
    return 'not scheduled: pg_cron is not installed (create extension pg_cron)';
  end if;
  if to_regnamespace('net') is null then
    return 'not scheduled: pg_net is not installed (create extension pg_net)';
  end if;
  if to_regclass('vault.decrypted_secrets') is null then
    return 'not scheduled: Supabase Vault is not available';
  end if;
  execute $q$
    select coalesce(array_agg(n), '{}') from unnest(array['relay_forwarder_url', 'relay_forwarder_token']) n
     where not exists (select 1 from vault.decrypted_secrets v where v.name = n and v.decrypted_secret <> '')
  $q$ into v_missing;
  if cardinality(v_missing) > 0 then
    return 'not scheduled: missing Vault secrets ' || array_to_string(v_missing, ', ');
  end if;
  -- The job reads the secrets at each run, as these do (the first of a name, should there be two).
  execute $q$ select (select decrypted_secret from vault.decrypted_secrets where name = 'relay_forwarder_url' limit 1),
                     (select decrypted_secret from vault.decrypted_secrets where name = 'relay_forwarder_token' limit 1)
  $q$ into v_url, v_token;
  if v_url !~ '^https?://[^[:space:][:cntrl:]]+$' then
    return 'not scheduled: Vault secret relay_forwarder_url must be the forward-events URL, '
      || 'http(s)://… with no spaces or line breaks';
  end if;
  if v_token ~ '[[:space:][:cntrl:],]' then
    return 'not scheduled: Vault secret relay_forwarder_token holds spaces, a line break or a comma '
      || '(store one FORWARDER_TOKEN value, as it is)';
  end if;
  if char_length(v_token) < 24 then
    return 'not scheduled: Vault secret relay_forwarder_token is shorter than 24 characters, '
      || 'which forward-events never accepts as FORWARDER_TOKEN';
  end if;
  execute 'select cron.schedule($1, $2, $3)' using 'relay-forward-events', p_schedule, $cmd$
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
  return 'scheduled relay-forward-events every ' || p_schedule;
end
$$;

revoke all on function public.schedule_forwarder(text) from public, anon, authenticated;
