// pg_cron, pg_net and Vault as on hosted Supabase: stand-in schemas with their functions' signatures (pg_net
// cannot run here); net.calls records each http_post.
import { textLiteral } from "../supabase/functions/_shared/sql_literal.ts";

export interface CronStandIn {
  /**
   * Whether cron.schedule takes schedules in seconds ('30 seconds'), as pg_cron does from 1.5 (hosted Supabase
   * has 1.6); the default. False: it refuses them as 1.4 does (Debian's postgresql-15-cron, older self-hosted
   * images), with 1.4's error: SQLSTATE 22023, "invalid schedule: 30 seconds" (seen on 1.4.2).
   */
  seconds?: boolean;
}

/** SQL creating the stand-ins, with the Vault secrets a scheduled forwarder reads (its URL and `token`). */
export function hostedStandIns(token = "forwarder-token-from-vault", { seconds = true }: CronStandIn = {}) {
  return `
  create schema cron;
  create table cron.job (jobid bigserial primary key, jobname text unique, schedule text, command text,
    active boolean not null default true);
  create function cron.check_schedule(schedule text) returns void language plpgsql as $$
    begin
      if ${seconds ? "false" : "schedule ~* 'second'"} then
        raise exception 'invalid schedule: %', schedule using errcode = '22023';
      end if;
    end $$;
  create function cron.schedule(job_name text, schedule text, command text) returns bigint language sql as $$
    select cron.check_schedule(schedule);
    insert into cron.job (jobname, schedule, command) values (job_name, schedule, command)
    on conflict (jobname) do update set schedule = excluded.schedule, command = excluded.command
    returning jobid $$;
  create function cron.unschedule(job_id bigint) returns boolean language sql as $$
    delete from cron.job where jobid = job_id returning true $$;
  ${netAndVaultStandIns(token)}`;
}

/** pg_net and Vault alone, for a server whose pg_cron is real (tests/pg_cron.test.ts). */
export function netAndVaultStandIns(token = "forwarder-token-from-vault"): string {
  return `
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
