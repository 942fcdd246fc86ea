// pg_cron, pg_net and Vault as on hosted Supabase: stand-in schemas with their functions' signatures (pg_net
// cannot run here); net.calls records each http_post.
import { textLiteral } from "../supabase/functions/_shared/sql_literal.ts";

/** SQL creating the stand-ins, with the Vault secrets a scheduled forwarder reads (its URL and `token`). */
export function hostedStandIns(token = "forwarder-token-from-vault"): string {
  return `
  create schema cron;
  create table cron.job (jobid bigserial primary key, jobname text unique, schedule text, command text,
    active boolean not null default true);
  create function cron.schedule(job_name text, schedule text, command text) returns bigint language sql as $$
    insert into cron.job (jobname, schedule, command) values (job_name, schedule, command)
    on conflict (jobname) do update set schedule = excluded.schedule, command = excluded.command
    returning jobid $$;
  create function cron.unschedule(job_id bigint) returns boolean language sql as $$
    delete from cron.job where jobid = job_id returning true $$;
  create schema net;
  create table net.calls (url text, headers jsonb, body jsonb, timeout_milliseconds integer);
  create function net.http_post(url text, body jsonb default '{}', params jsonb default '{}',
      headers jsonb default '{}', timeout_milliseconds integer default 5000) returns bigint language sql as $$
    insert into net.calls values (url, headers, body, timeout_milliseconds) returning 1::bigint $$;
  create schema vault;
  create table vault.decrypted_secrets (name text, decrypted_secret text);
  insert into vault.decrypted_secrets values
    ('relay_forwarder_url', 'https://ref.supabase.co/functions/v1/forward-events'),
    ('relay_forwarder_token', ${textLiteral(token)});`;
}
