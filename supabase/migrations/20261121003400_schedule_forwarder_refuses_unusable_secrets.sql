-- schedule_forwarder() took any non-empty Vault secret. A token pasted with its line break (or spaces, or the
-- "old,new" pair FORWARDER_TOKEN may hold) was scheduled as "Bearer <token>\n", which forward-events refuses
-- with 401 on every run, and a URL without its scheme was scheduled to fail in pg_net, while the function
-- answered "scheduled". Now it says which secret is unusable and why, and schedules nothing.
--
-- Spaces, control characters and commas are not all: a token pasted with an invisible character (a no-break
-- space, a zero-width space from a chat or a document) or holding a letter past ASCII was scheduled too:
-- pg_net sends its UTF-8 bytes, forward-events reads
-- header bytes one character each (Latin-1) and never finds its FORWARDER_TOKEN in them, so every run was
-- refused (401). The same character at the end of the URL sent every run to a path that does not exist.
-- Now the token must be visible ASCII, as AGENT_SDK_TOKEN must (env.ts, headerTokenProblem), and so must the
-- URL (a non-ASCII host is written in its xn-- form).
--
-- And the checks did not reach every schedule: where the secrets existed before the migrations ran (hosted,
-- set up in that order), migration 000200 scheduled the job with its own version of schedule_forwarder(),
-- which checked nothing but their presence. A job whose secrets it could never use is unscheduled below, with
-- a warning saying which secret and why; the job reads its secrets at each run, so it was only failing.
--
-- forwarder_secrets_problem() holds the checks, so that schedule_forwarder() and this migration share them.

create or replace function public.forwarder_secrets_problem()
returns text
language plpgsql
stable
set search_path = ''
as $$
declare
  v_missing text[];
  v_url text;
  v_token text;
begin
  if to_regclass('vault.decrypted_secrets') is null then
    return 'Supabase Vault is not available';
  end if;
  execute $q$
    select coalesce(array_agg(n), '{}') from unnest(array['relay_forwarder_url', 'relay_forwarder_token']) n
     where not exists (select 1 from vault.decrypted_secrets v where v.name = n and v.decrypted_secret <> '')
  $q$ into v_missing;
  if cardinality(v_missing) > 0 then
    return 'missing Vault secrets ' || array_to_string(v_missing, ', ');
  end if;
  -- The job reads the secrets at each run, as these do (the first of a name, should there be two).
  execute $q$
    select (select decrypted_secret from vault.decrypted_secrets where name = 'relay_forwarder_url' limit 1),
           (select decrypted_secret from vault.decrypted_secrets where name = 'relay_forwarder_token' limit 1)
  $q$ into v_url, v_token;
  -- Visible ASCII is "!" to "~" (bytes 0x21-0x7e), spelled as a range so no locale widens it.
  if v_url !~ '^https?://[!-~]+$' then
    return 'Vault secret relay_forwarder_url must be the forward-events URL, http(s)://… in visible ASCII: '
      || 'no spaces, line breaks or characters past ASCII (an invisible one pasted with it?)';
  end if;
  if v_token ~ '[[:space:][:cntrl:],]' then
    return 'Vault secret relay_forwarder_token holds spaces, a line break or a comma '
      || '(store one FORWARDER_TOKEN value, as it is)';
  end if;
  if v_token !~ '^[!-~]+$' then
    return 'Vault secret relay_forwarder_token holds a character past ASCII (an invisible one pasted with '
      || 'it?), which an HTTP header cannot carry as forward-events compares it';
  end if;
  if char_length(v_token) < 24 then
    return 'Vault secret relay_forwarder_token is shorter than 24 characters, '
      || 'which forward-events never accepts as FORWARDER_TOKEN';
  end if;
  return null;
end
$$;

comment on function public.forwarder_secrets_problem() is
  'Why the Vault secrets the relay-forward-events job reads are missing or unusable; null when usable.';

create or replace function public.schedule_forwarder(p_schedule text default '30 seconds')
returns text
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_problem text;
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

revoke all on function public.forwarder_secrets_problem() from public, anon, authenticated;
revoke all on function public.schedule_forwarder(text) from public, anon, authenticated;

-- A job scheduled with secrets it can never use (see the top): unscheduled, saying why and what to run.
do $$
declare
  v_scheduled boolean;
  v_problem text;
begin
  if to_regclass('cron.job') is null then
    return;
  end if;
  execute 'select exists (select 1 from cron.job where jobname = $1)' into v_scheduled
    using 'relay-forward-events';
  if not v_scheduled then
    return;
  end if;
  v_problem := public.forwarder_secrets_problem();
  if v_problem is not null then
    perform public.unschedule_forwarder();
    raise warning 'forwarding: relay-forward-events unscheduled, it could never run: %; '
      'fix the secret, then select public.schedule_forwarder();', v_problem;
  end if;
exception when others then
  raise notice 'forwarding: the relay-forward-events job was not checked: %', sqlerrm;
end
$$;
