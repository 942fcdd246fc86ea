-- Forwarding: webhook_events is an outbox. Forwarders claim due events with a lease (one SQL call), POST them
-- to the Agent SDK and write every outcome of a batch back in one statement. Per conversation, at most one
-- event is in flight and it is the earliest undelivered one. Applies on hosted Supabase, PG15+ and PGlite.

-- Added later (review): changes below take locks on webhook_events that ingests queue behind; with a long
-- query or an open writing transaction on the table they would wait without end, and every webhook with
-- them. Wait at most 2 s (ingests retry for 2.5 s); a busy table fails the migration, which changes nothing.
select set_config('lock_timeout', '2s', true);

-- Operator settings: exactly one row, changed with SQL one-liners (see README "Forwarding").
create table public.relay_settings (
  id boolean primary key default true check (id),
  -- Kill switch: while true nothing is claimed; events keep arriving and stay pending.
  forwarding_paused boolean not null default false,
  -- Target base URL (e.g. staging) instead of the AGENT_SDK_URL env var; null = use the env var.
  agent_sdk_url_override text check (agent_sdk_url_override ~ '^https?://'),
  -- Events forwarded; others are stored as 'skipped'.
  forward_events text[] not null default '{message_created}',
  -- Attempts in total (first one included) before an event is dead.
  max_attempts integer not null default 9 check (max_attempts between 1 and 100),
  -- Wait after failed attempt n is retry_schedule_seconds[n] (the last entry repeats), ± jitter.
  retry_schedule_seconds integer[] not null default '{5,30,120,600,1800,3600,10800,21600}'
    check (cardinality(retry_schedule_seconds) >= 1 and 0 <= all (retry_schedule_seconds)),
  retry_jitter numeric not null default 0.2 check (retry_jitter >= 0 and retry_jitter < 1),
  -- Longest Retry-After we honour (a broken header must not park an event for a year).
  max_retry_after_seconds integer not null default 86400 check (max_retry_after_seconds >= 0),
  -- Per-request timeout of a delivery (headers and body).
  request_timeout_ms integer not null default 10000 check (request_timeout_ms >= 50),
  -- A claimed event is another forwarder's again after this long without a write-back.
  lease_seconds integer not null default 60 check (lease_seconds >= 1),
  updated_at timestamptz not null default now(),
  -- A lease must outlive the request it covers, or a slow success would be delivered twice.
  constraint relay_settings_lease_covers_timeout check (lease_seconds * 1000 >= request_timeout_ms + 1000)
);

comment on table public.relay_settings is
  'Forwarding settings, one row. E.g. update public.relay_settings set forwarding_paused = true;';

insert into public.relay_settings default values;

-- Status a newly stored event starts in: only the configured events are forwarded.
create or replace function public.webhook_initial_status(p_event text)
returns text
language sql
stable
as $$
  select case when p_event = any (coalesce((select s.forward_events from public.relay_settings s), '{}'))
    then 'pending' else 'skipped' end
$$;

-- The lease of a claimed ('delivering') event.
alter table public.webhook_events
  add column leased_by text,
  add column leased_at timestamptz,
  add column lease_expires_at timestamptz,
  add column leased_version integer;

-- Due work, expired leases, and the per-conversation "earlier undelivered event?" check.
create index webhook_events_due_idx on public.webhook_events (next_attempt_at, id) where status = 'pending';
create index webhook_events_lease_idx on public.webhook_events (lease_expires_at) where status = 'delivering';
create index webhook_events_open_conversation_idx on public.webhook_events (conversation_id, account_id, id)
  where status in ('pending', 'delivering') and conversation_id is not null;
create index webhook_events_dead_idx on public.webhook_events (received_at) where status = 'dead';

-- One row per delivery attempt (and per lease that expired without a report).
create table public.webhook_delivery_attempts (
  id bigint generated always as identity primary key,
  event_id bigint not null references public.webhook_events (id) on delete cascade,
  attempt integer not null,
  version integer not null,
  worker text,
  started_at timestamptz not null,
  duration_ms integer,
  http_status integer,
  -- True for a 2xx answer.
  succeeded boolean not null,
  -- What the attempt did to the event: delivered | superseded (a newer version is now due) | retry | dead |
  -- lease_lost (the report came after the lease was gone) | lease_expired (the forwarder never reported).
  outcome text not null
    check (outcome in ('delivered', 'superseded', 'retry', 'dead', 'lease_lost', 'lease_expired')),
  error text,
  response_excerpt text,
  recorded_at timestamptz not null default now()
);

comment on table public.webhook_delivery_attempts is
  'Every attempt to deliver an event to the Agent SDK: status, error, a short response excerpt.';

create index webhook_delivery_attempts_event_idx on public.webhook_delivery_attempts (event_id, id);
create index webhook_delivery_attempts_success_idx on public.webhook_delivery_attempts (recorded_at)
  where succeeded;
create index webhook_delivery_attempts_failure_idx on public.webhook_delivery_attempts (recorded_at)
  where not succeeded and outcome <> 'lease_expired';

-- Claims up to p_batch due events for p_worker (a name unique to one drain) and leases them. Expired leases
-- are reclaimed first (back to pending, or dead when their attempts are spent). Per conversation
-- (account_id, conversation_id) only the earliest pending event is claimable, and only while no event of
-- that conversation is being delivered; events without a conversation are independent.
--
-- Concurrency: a statement snapshot cannot see another forwarder's uncommitted claim, so two forwarders
-- could each pick a different "head" of one conversation (e.g. after a replay). Claimers therefore take a
-- per-conversation advisory transaction lock first (try-lock: a busy conversation is skipped, never
-- waited on), and re-check the head rule in a later statement, whose fresh snapshot sees every claim
-- committed before that lock was granted. Requires READ COMMITTED (the default).
--
-- The "earlier open event in this conversation?" test names the open statuses and uses a CASE, not an OR:
-- with the OR the planner combined webhook_events_lease_idx (every event in flight, of every conversation)
-- into a BitmapOr, so each candidate visited every in-flight row. This form is one range of
-- webhook_events_open_conversation_idx: that conversation's open events only (docs/benchmarks.md).
create or replace function public.claim_webhook_events(
  p_worker text,
  p_batch integer default 10,
  p_lease_seconds integer default null
)
returns table (
  id bigint,
  event_key text,
  event text,
  account_id bigint,
  conversation_id bigint,
  version integer,
  attempt integer,
  raw_body text,
  agent_sdk_url_override text,
  request_timeout_ms integer,
  lease_expires_at timestamptz
)
language plpgsql
volatile
set search_path = ''
as $$
declare
  s public.relay_settings;
  v_ids bigint[] := '{}';
  c record;
begin
  if p_worker is null or p_worker = '' then
    raise exception 'claim_webhook_events: worker name required';
  end if;
  select * into s from public.relay_settings r where r.id;
  if not found then
    raise exception 'claim_webhook_events: the public.relay_settings row is missing';
  end if;
  if s.forwarding_paused then
    return;
  end if;

  -- Leases whose forwarder never reported (crashed, killed, cut off): reclaim and record.
  with expired as (
    select e.id, e.leased_by, e.leased_at, e.leased_version, e.attempts
      from public.webhook_events e
     where e.status = 'delivering' and e.lease_expires_at <= now()
     order by e.lease_expires_at
     limit 1000
       for update skip locked
  ), reclaimed as (
    update public.webhook_events e
       set status = case when x.attempts >= s.max_attempts then 'dead' else 'pending' end,
           next_attempt_at = now(),
           last_error = format('lease expired: %s did not report attempt %s', x.leased_by, x.attempts),
           leased_by = null, leased_at = null, lease_expires_at = null, leased_version = null
      from expired x
     where e.id = x.id
    returning e.id, e.status, x.leased_by, x.leased_at, x.leased_version, x.attempts
  )
  insert into public.webhook_delivery_attempts
    (event_id, attempt, version, worker, started_at, succeeded, outcome, error)
  select r.id, r.attempts, coalesce(r.leased_version, 0), r.leased_by, coalesce(r.leased_at, now()), false,
         'lease_expired', 'lease expired without a report' || case when r.status = 'dead'
           then '; attempts exhausted' else '' end
    from reclaimed r;

  -- Candidates from this snapshot; lock their conversations (skip those another claimer holds).
  for c in
    select e.id, e.account_id, e.conversation_id
      from public.webhook_events e
     where e.status = 'pending' and e.next_attempt_at <= now()
       and (e.conversation_id is null or not exists (
         select 1 from public.webhook_events p
          where p.conversation_id = e.conversation_id
            and p.account_id is not distinct from e.account_id
            and p.status in ('pending', 'delivering')
            and p.id <> e.id
            and case when p.status = 'delivering' then true else p.id < e.id end))
     order by e.next_attempt_at, e.id
     limit greatest(p_batch, 1) * 4
  loop
    exit when cardinality(v_ids) >= p_batch;
    if c.conversation_id is null
       or pg_try_advisory_xact_lock(
            hashtext('public.webhook_events conversation'),
            hashtext(coalesce(c.account_id::text, '') || ':' || c.conversation_id::text)) then
      v_ids := v_ids || c.id;
    end if;
  end loop;
  if cardinality(v_ids) = 0 then
    return;
  end if;

  -- Fresh snapshot: re-check the head rule under the conversation locks, then lease.
  return query
  with claimable as (
    select e.id
      from public.webhook_events e
     where e.id = any (v_ids)
       and e.status = 'pending' and e.next_attempt_at <= now()
       and (e.conversation_id is null or not exists (
         select 1 from public.webhook_events p
          where p.conversation_id = e.conversation_id
            and p.account_id is not distinct from e.account_id
            and p.status in ('pending', 'delivering')
            and p.id <> e.id
            and case when p.status = 'delivering' then true else p.id < e.id end))
       for update skip locked
  )
  update public.webhook_events e
     set status = 'delivering',
         attempts = e.attempts + 1,
         leased_by = p_worker,
         leased_at = now(),
         lease_expires_at = now() + make_interval(secs => coalesce(p_lease_seconds, s.lease_seconds)),
         leased_version = e.version
    from claimable k
   where e.id = k.id
  returning e.id, e.event_key, e.event, e.account_id, e.conversation_id, e.version, e.attempts, e.raw_body,
            s.agent_sdk_url_override, s.request_timeout_ms, e.lease_expires_at;
end
$$;

-- Writes back the outcomes of one batch in one statement and records every attempt. p_results is a JSON
-- array of {id, attempt, version, started_at, duration_ms, http_status, error, response_excerpt,
-- retry_after_seconds}. An outcome applies only while the lease is still p_worker's (same attempt number);
-- a late report is recorded as lease_lost and changes nothing. If the event's version changed during the
-- delivery, a success puts it back to pending, due now, so the newer body is delivered after the older one.
create or replace function public.complete_webhook_deliveries(p_worker text, p_results jsonb)
returns table (event_id bigint, attempt integer, outcome text, status text, next_attempt_at timestamptz)
language sql
volatile
set search_path = ''
as $$
  with s as (
    -- limit 1 tells the planner it is one row: unanalysed, it guessed ~200, and the per-result "event still
    -- exists" check became a scan of the whole primary key instead of one probe per result.
    select * from public.relay_settings where id limit 1
  ), r as (
    select x.*,
           coalesce(x.http_status between 200 and 299, false) as ok,
           -- Wait before the next attempt: schedule entry (the last repeats) ± jitter, at least Retry-After.
           greatest(
             s.retry_schedule_seconds[least(greatest(x.attempt, 1), cardinality(s.retry_schedule_seconds))]
               * (1 + s.retry_jitter * (2 * random() - 1)),
             least(coalesce(x.retry_after_seconds, 0), s.max_retry_after_seconds)
           )::double precision as wait_seconds
      from jsonb_to_recordset(p_results) as x(
        id bigint, attempt integer, version integer, started_at timestamptz, duration_ms integer,
        http_status integer, error text, response_excerpt text, retry_after_seconds numeric)
     cross join s
  ), updated as (
    -- The decision reads e.* as locked by this UPDATE, so a version bumped by a concurrent ingest counts.
    update public.webhook_events e
       set status = case
             when r.ok and e.version = r.version then 'delivered'
             when r.ok then 'pending'
             when r.http_status = 410 or e.attempts >= s.max_attempts then 'dead'
             else 'pending' end,
           delivered_at = case when r.ok and e.version = r.version then now() else e.delivered_at end,
           next_attempt_at = case
             when r.ok or r.http_status = 410 or e.attempts >= s.max_attempts then now()
             else now() + make_interval(secs => r.wait_seconds) end,
           -- A newer version starts its own count of attempts.
           attempts = case when r.ok and e.version <> r.version then 0 else e.attempts end,
           last_error = case when r.ok then null
             else left(coalesce(r.error, 'HTTP ' || r.http_status), 500) end,
           leased_by = null, leased_at = null, lease_expires_at = null, leased_version = null
      from r, s
     where e.id = r.id and e.status = 'delivering' and e.leased_by = p_worker and e.attempts = r.attempt
    returning e.id, e.status, e.next_attempt_at,
      case when r.ok and e.version = r.version then 'delivered'
           when r.ok then 'superseded'
           when e.status = 'dead' then 'dead'
           else 'retry' end as outcome
  ), recorded as (
    insert into public.webhook_delivery_attempts (event_id, attempt, version, worker, started_at, duration_ms,
      http_status, succeeded, outcome, error, response_excerpt)
    select r.id, r.attempt, r.version, p_worker, coalesce(r.started_at, now()), r.duration_ms, r.http_status,
           r.ok, coalesce(u.outcome, 'lease_lost'), left(r.error, 500), left(r.response_excerpt, 300)
      from r
      left join updated u on u.id = r.id
     where exists (select 1 from public.webhook_events e where e.id = r.id)
  )
  select r.id, r.attempt, coalesce(u.outcome, 'lease_lost'), u.status, u.next_attempt_at
    from r
    left join updated u on u.id = r.id
$$;

-- Replay: dead events back to pending, due now, with a fresh count of attempts. Returns how many.
create or replace function public.replay_webhook_events(p_ids bigint[])
returns bigint
language sql
volatile
set search_path = ''
as $$
  with replayed as (
    update public.webhook_events e
       set status = 'pending', attempts = 0, next_attempt_at = now(), delivered_at = null
     where e.id = any (p_ids) and e.status = 'dead'
    returning 1
  )
  select count(*) from replayed
$$;

-- Replay dead events received in [p_since, p_until), optionally of one event type, at most p_limit of them
-- (oldest first) so a caller can work through a large range in chunks. Returns how many.
create or replace function public.replay_webhook_events_between(
  p_since timestamptz,
  p_until timestamptz,
  p_event text default null,
  p_limit integer default null
)
returns bigint
language sql
volatile
set search_path = ''
as $$
  with chosen as (
    select e.id
      from public.webhook_events e
     where e.status = 'dead'
       and e.received_at >= p_since and e.received_at < p_until
       and (p_event is null or e.event = p_event)
     order by e.id
     limit p_limit
       for update skip locked
  ), replayed as (
    update public.webhook_events e
       set status = 'pending', attempts = 0, next_attempt_at = now(), delivered_at = null
      from chosen c
     where e.id = c.id
    returning 1
  )
  select count(*) from replayed
$$;

-- Wakes listening forwarders (the dev server) when an event becomes due now. Payload: the event id only.
create or replace function public.notify_webhook_event_due()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  perform pg_notify('webhook_events_due', new.id::text);
  return null;
end
$$;

create trigger webhook_events_due_on_insert
  after insert on public.webhook_events
  for each row when (new.status = 'pending')
  execute function public.notify_webhook_event_due();

create trigger webhook_events_due_on_requeue
  after update of status on public.webhook_events
  for each row when (new.status = 'pending' and old.status <> 'pending' and new.next_attempt_at <= now())
  execute function public.notify_webhook_event_due();

-- Delivery health in one row, for the readiness checks. escalate is the runbook's rule: deliveries have
-- failed without a success in between for more than 5 minutes.
create or replace view public.webhook_delivery_health
with (security_invoker = true)
as
with open_events as (
  select count(*) as backlog, min(e.last_received_at) as oldest_pending_at
    from public.webhook_events e
   where e.status in ('pending', 'delivering')
), outcomes as (
  select
    (select max(a.recorded_at) from public.webhook_delivery_attempts a where a.succeeded) as last_success_at,
    (select max(a.recorded_at) from public.webhook_delivery_attempts a
      where not a.succeeded and a.outcome <> 'lease_expired') as last_failure_at
), failing as (
  select o.*,
         (select min(a.recorded_at) from public.webhook_delivery_attempts a
           where not a.succeeded and a.outcome <> 'lease_expired'
             and a.recorded_at > coalesce(o.last_success_at, '-infinity')
             and o.last_failure_at > coalesce(o.last_success_at, '-infinity')) as failing_since
    from outcomes o
)
select
  oe.backlog::bigint as backlog,
  oe.oldest_pending_at,
  round(extract(epoch from now() - oe.oldest_pending_at)::numeric, 3) as oldest_pending_age_seconds,
  (select count(*) from public.webhook_events e where e.status = 'dead')::bigint as dead_count,
  f.last_success_at,
  f.last_failure_at,
  f.failing_since,
  coalesce(f.failing_since < now() - interval '5 minutes', false) as escalate,
  coalesce((select s.forwarding_paused from public.relay_settings s where s.id), false) as paused
from open_events oe
cross join failing f;

comment on view public.webhook_delivery_health is
  'One row: backlog, oldest pending, dead count, last success/failure, failing_since and escalate (> 5 min).';

-- Hosted Supabase: pg_cron calls the forward-events function through pg_net. URL and token come from Vault
-- at every run, so rotating a secret needs no re-schedule. Call once after creating the Vault secrets
-- relay_forwarder_url and relay_forwarder_token; returns what it did.
create or replace function public.schedule_forwarder(p_schedule text default '30 seconds')
returns text
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_missing text[];
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

create or replace function public.unschedule_forwarder()
returns text
language plpgsql
volatile
set search_path = ''
as $$
begin
  if to_regnamespace('cron') is null then
    return 'pg_cron is not installed';
  end if;
  execute 'select cron.unschedule(jobid) from cron.job where jobname = $1' using 'relay-forward-events';
  return 'unscheduled relay-forward-events';
end
$$;

-- Where pg_cron and pg_net can run (hosted Supabase), enable them and schedule the forwarder if the Vault
-- secrets already exist. Anywhere else (plain Postgres, PGlite, a database pg_cron does not serve) this
-- only leaves a notice: every step is guarded and a failure rolls back just that step.
-- shared_preload_libraries is read through pg_settings, which leaves out what a role may not see (a database
-- owner that is no superuser lacks pg_read_all_settings): current_setting() raised for such an owner and
-- stopped the migration (found by review). Unseen counts as not preloaded.
do $$
begin
  if exists (select 1 from pg_available_extensions where name = 'pg_cron')
     and (select setting from pg_settings where name = 'shared_preload_libraries') like '%pg_cron%'
     and coalesce(current_setting('cron.database_name', true), 'postgres') = current_database() then
    begin
      create extension if not exists pg_cron;
    exception when others then
      raise notice 'forwarding: pg_cron not enabled: %', sqlerrm;
    end;
  end if;
  if exists (select 1 from pg_available_extensions where name = 'pg_net')
     and (select setting from pg_settings where name = 'shared_preload_libraries') like '%pg_net%' then
    begin
      create extension if not exists pg_net;
    exception when others then
      raise notice 'forwarding: pg_net not enabled: %', sqlerrm;
    end;
  end if;
  begin
    raise notice 'forwarding: %', public.schedule_forwarder();
  exception when others then
    raise notice 'forwarding: not scheduled: %', sqlerrm;
  end;
end
$$;

alter table public.relay_settings enable row level security;
alter table public.webhook_delivery_attempts enable row level security;

revoke all on table public.relay_settings, public.webhook_delivery_attempts, public.webhook_delivery_health
  from public, anon, authenticated;
grant select, update on table public.relay_settings to service_role;
grant select, insert, update, delete on table public.webhook_delivery_attempts to service_role;
grant select on table public.webhook_delivery_health to service_role;

revoke all on function public.claim_webhook_events(text, integer, integer) from public, anon, authenticated;
revoke all on function public.complete_webhook_deliveries(text, jsonb) from public, anon, authenticated;
revoke all on function public.replay_webhook_events(bigint[]) from public, anon, authenticated;
revoke all on function public.replay_webhook_events_between(timestamptz, timestamptz, text, integer)
  from public, anon, authenticated;
revoke all on function public.notify_webhook_event_due() from public, anon, authenticated;
revoke all on function public.schedule_forwarder(text) from public, anon, authenticated;
revoke all on function public.unschedule_forwarder() from public, anon, authenticated;
revoke all on function public.webhook_initial_status(text) from public, anon, authenticated;
grant execute on function public.claim_webhook_events(text, integer, integer) to service_role;
grant execute on function public.complete_webhook_deliveries(text, jsonb) to service_role;
grant execute on function public.replay_webhook_events(bigint[]) to service_role;
grant execute on function public.replay_webhook_events_between(timestamptz, timestamptz, text, integer)
  to service_role;
grant execute on function public.webhook_initial_status(text) to service_role;
