-- A newer version is never made to pay for an older one's failures, and a report written twice counts once.
--
-- complete_webhook_deliveries reset the attempt count for a newer version only when the older one's delivery
-- succeeded. When it failed, the newer version (a message_updated that arrived while the older was in
-- flight) kept the older one's attempts and backoff, and on the last attempt went straight to 'dead' without
-- ever being sent. The reclaim of an expired lease in claim_webhook_events had the same rule. Now, in both, a
-- version other than the one attempted starts afresh: pending, due now, attempts 0 (what ingest does for an
-- event that is not in flight). A 410 still makes the event dead.
--
-- The forwarder retries its write-back through a database restart (forwarder.ts); when the first call
-- committed but its reply was lost, the second found the leases gone and recorded every result again as
-- 'lease_lost'. A report already recorded (same event, attempt, version and worker) is now answered with its
-- recorded outcome and not written again. Since attempt numbers now start again with each version, a report
-- also matches its lease by version (leased_version), not by worker and attempt alone.
--
-- Both functions are otherwise as they were (claim_webhook_events: migration 001100, with migration 001200's
-- settings repeated, as a CREATE OR REPLACE resets them; complete_webhook_deliveries: migration 000200).

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
set plan_cache_mode = force_generic_plan
set jit = off
as $$
declare
  s public.relay_settings;
  v_ids bigint[] := '{}';
  -- The due-order position of the last candidate taken: the lease below looks no further than this.
  v_last_due timestamptz;
  v_last_id bigint;
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
    select e.id, e.leased_by, e.leased_at, e.leased_version, e.attempts, e.version
      from public.webhook_events e
     where e.status = 'delivering' and e.lease_expires_at <= now()
     order by e.lease_expires_at
     limit 1000
       for update skip locked
  ), reclaimed as (
    update public.webhook_events e
       -- A version newer than the one leased was never sent: it starts its own count of attempts.
       set status = case when x.attempts >= s.max_attempts and x.version = coalesce(x.leased_version, x.version)
                           then 'dead'
                         else 'pending' end,
           attempts = case when x.version = coalesce(x.leased_version, x.version) then x.attempts else 0 end,
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
    select e.id, e.account_id, e.conversation_id, e.next_attempt_at
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
      v_last_due := c.next_attempt_at;
      v_last_id := c.id;
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
       and (e.next_attempt_at, e.id) <= (v_last_due, v_last_id)
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
             when r.http_status = 410 then 'dead'
             when e.version <> r.version then 'pending'
             when e.attempts >= s.max_attempts then 'dead'
             else 'pending' end,
           delivered_at = case when r.ok and e.version = r.version then now() else e.delivered_at end,
           next_attempt_at = case
             when r.ok or r.http_status = 410 or e.version <> r.version or e.attempts >= s.max_attempts then now()
             else now() + make_interval(secs => r.wait_seconds) end,
           -- A newer version starts its own count of attempts, whatever became of the older one's.
           attempts = case when e.version <> r.version then 0 else e.attempts end,
           last_error = case when r.ok then null
             else left(coalesce(r.error, 'HTTP ' || r.http_status), 500) end,
           leased_by = null, leased_at = null, lease_expires_at = null, leased_version = null
      from r, s
     -- The lease this report is for: attempt numbers start again with each version, so the version is
     -- matched too (another lane of the same drain may hold a newer version's lease at the same number).
     where e.id = r.id and e.status = 'delivering' and e.leased_by = p_worker and e.attempts = r.attempt
       and e.leased_version = r.version
    returning e.id, e.status, e.next_attempt_at,
      case when r.ok and e.version = r.version then 'delivered'
           when r.ok then 'superseded'
           when e.status = 'dead' then 'dead'
           else 'retry' end as outcome
  ), reported as materialized (
    -- Each result with what its lease became, joined before anything narrows the planner's estimate of the
    -- results: a narrower one made it scan `updated` once per result (100 x 100 rows for a batch of 100).
    select r.*, u.outcome as lease_outcome, u.status as lease_status, u.next_attempt_at as lease_next_attempt_at
      from r
      left join updated u on u.id = r.id
  ), earlier as (
    -- A result that matched no lease, already recorded by this very report: the forwarder retried a
    -- write-back whose reply it never got. Probed one by one (LATERAL ... LIMIT 1 on the attempts' event
    -- index), and only for such results, so the usual write-back reads nothing more.
    select l.id, p.outcome, p.status, p.next_attempt_at
      from reported l
     cross join lateral (
       select a.outcome, e.status, e.next_attempt_at
         from public.webhook_delivery_attempts a
         join public.webhook_events e on e.id = a.event_id
        where a.event_id = l.id and a.attempt = l.attempt and a.version = l.version and a.worker = p_worker
          -- The reclaim of an expired lease records under the lease holder's name too: not a report.
          and a.outcome <> 'lease_expired'
        order by a.id
        limit 1) p
     where l.lease_outcome is null
  ), recorded as (
    insert into public.webhook_delivery_attempts (event_id, attempt, version, worker, started_at, duration_ms,
      http_status, succeeded, outcome, error, response_excerpt)
    select r.id, r.attempt, r.version, p_worker, coalesce(r.started_at, now()), r.duration_ms, r.http_status,
           r.ok, coalesce(r.lease_outcome, 'lease_lost'), left(r.error, 500), left(r.response_excerpt, 300)
      from reported r
     where exists (select 1 from public.webhook_events e where e.id = r.id)
       and not exists (select 1 from earlier x where x.id = r.id)
  )
  select r.id, r.attempt, coalesce(r.lease_outcome, x.outcome, 'lease_lost'), coalesce(r.lease_status, x.status),
         coalesce(r.lease_next_attempt_at, x.next_attempt_at)
    from reported r
    left join earlier x on x.id = r.id
$$;
