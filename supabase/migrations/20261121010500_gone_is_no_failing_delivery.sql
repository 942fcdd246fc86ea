-- A 410 is no failing delivery. The Agent SDK answers 410 Gone to refuse an event for good: a healthy service
-- saying "do not send this again", and the event is dead at once (README, Forwarding; readiness reports it
-- through dead_unacknowledged). webhook_delivery_health counted it as any other failure, so one 410 with no
-- success after it set failing_since, and 5 minutes later escalate was true: the readiness probe answered 503
-- and an uptime monitor paged someone about an idle, healthy pipeline until the next delivery succeeded. The
-- runbook's escalation ("repeated 5xx responses persist > 5 minutes ... check downstream health") is about
-- the Agent SDK's health, which a 410 says nothing against.
--
-- Now an attempt answered 410, however recorded ('dead'; 'retry' when it refused an older version; 'lease_lost'
-- when reported late), neither starts nor extends failing_since and is no last_failure_at. Nor is it a
-- success: failing_since is still the first failure after the last success, so 500s with 410s between them
-- stay failing from the first 500. It still shows a forwarder at work (last_activity_at, for stalled_since),
-- and the dead counts are unchanged. The columns, their order and types are migration 008500's (the Data team
-- reads them through webhook_pipeline_health, which reads these and is unchanged).
--
-- The failure lookups (the last failure, the first since the last success) read their own partial index,
-- failure_idx's rows without the 410s: on failure_idx they filtered the 410s out row by row from the heap,
-- as many as the Agent SDK refused in a row (every one of a tenant's events, say). failure_idx stays for the
-- dead counts and the activity's last attempt. Building it holds a SHARE lock on webhook_delivery_attempts
-- (write-backs wait; they retry): it indexes the failures only. Wait at most 2 s for the lock.
select set_config('lock_timeout', '2s', true);

create index webhook_delivery_attempts_failing_idx on public.webhook_delivery_attempts (recorded_at)
  where not succeeded and outcome <> 'lease_expired' and http_status is distinct from 410;

create or replace view public.webhook_delivery_health
with (security_invoker = false) -- as 000400 set it: analysts read it through webhook_pipeline_health
as
with open_events as (
  -- Pending and delivering counted apart, so each reads its own partial index (due_idx, lease_idx); the
  -- single "status in (...)" matched neither and scanned the whole table.
  select sum(o.n) as backlog, min(o.oldest) as oldest_pending_at
    from (
      select count(*) as n, min(e.last_received_at) as oldest
        from public.webhook_events e where e.status = 'pending'
      union all
      select count(*), min(e.last_received_at) from public.webhook_events e where e.status = 'delivering'
    ) o
), dead as (
  -- Counted once (index-only, webhook_events_dead_idx), for dead_count and dead_unacknowledged.
  select count(*)::bigint as dead_count from public.webhook_events e where e.status = 'dead'
), outcomes as (
  -- Failures are the attempts that were no success, less the 410s (the Agent SDK refusing an event: see the
  -- top of this file), from failing_idx; a 410 is no success either, so it ends no failing spell.
  select
    (select max(a.recorded_at) from public.webhook_delivery_attempts a where a.succeeded) as last_success_at,
    (select max(a.recorded_at) from public.webhook_delivery_attempts a
      where not a.succeeded and a.outcome <> 'lease_expired' and a.http_status is distinct from 410)
      as last_failure_at
), failing as (
  select o.*,
         (select min(a.recorded_at) from public.webhook_delivery_attempts a
           where not a.succeeded and a.outcome <> 'lease_expired' and a.http_status is distinct from 410
             and a.recorded_at > coalesce(o.last_success_at, '-infinity')
             and o.last_failure_at > coalesce(o.last_success_at, '-infinity')) as failing_since
    from outcomes o
), activity as (
  -- The last sign of a forwarder at work: an attempt recorded (success_idx; failure_idx, a 410 included), a
  -- lease reclaimed (lease_expired_idx), or a claim not yet reported (the few delivering rows, lease_idx).
  select f.*,
         greatest(
           f.last_success_at,
           (select max(a.recorded_at) from public.webhook_delivery_attempts a
             where not a.succeeded and a.outcome <> 'lease_expired'),
           (select max(a.recorded_at) from public.webhook_delivery_attempts a
             where a.outcome = 'lease_expired'),
           (select max(e.leased_at) from public.webhook_events e where e.status = 'delivering')
         ) as last_activity_at,
         coalesce((select s.forwarding_paused from public.relay_settings s where s.id), false) as paused
    from failing f
), waiting as materialized ( -- computed once, though escalate and stalled_since both read it
  -- Looked for only when no forwarder has been at work for 5 minutes. The oldest event a claim would take
  -- that has waited that long: due pending events from the start of due_idx, skipping those held back by an
  -- earlier open event of their conversation (claim_webhook_events' head rule, as migration 002400 has it),
  -- and expired leases (lease_idx).
  select a.*,
         case when not a.paused
                   and coalesce(a.last_activity_at, '-infinity') < now() - interval '5 minutes' then
           least(
             (select e.next_attempt_at from public.webhook_events e
               where e.status = 'pending' and e.next_attempt_at < now() - interval '5 minutes'
                 and (e.conversation_id is null or not exists (
                   select 1 from public.webhook_events p
                    where p.conversation_id = e.conversation_id
                      and (p.account_id = e.account_id or p.account_id is null or e.account_id is null)
                      and p.status in ('pending', 'delivering')
                      and p.id <> e.id
                      and case when p.status = 'delivering' then true else p.id < e.id end))
               order by e.next_attempt_at, e.id
               limit 1),
             (select min(e.lease_expires_at) from public.webhook_events e
               where e.status = 'delivering' and e.lease_expires_at < now() - interval '5 minutes')
           )
         end as claimable_since
    from activity a
)
select
  oe.backlog::bigint as backlog,
  oe.oldest_pending_at,
  round(extract(epoch from now() - oe.oldest_pending_at)::numeric, 3) as oldest_pending_age_seconds,
  d.dead_count,
  w.last_success_at,
  w.last_failure_at,
  w.failing_since,
  coalesce(w.failing_since < now() - interval '5 minutes', false) or w.claimable_since is not null
    as escalate,
  w.paused,
  case when w.claimable_since is not null then greatest(w.claimable_since, w.last_activity_at) end
    as stalled_since,
  -- Dead events the operator has not acknowledged, counted by a function: see migration 008500.
  public.dead_unacknowledged_count(d.dead_count)
    as dead_unacknowledged
from open_events oe
cross join dead d
cross join waiting w;

comment on view public.webhook_delivery_health is
  'One row: backlog, oldest pending, dead count, last success/failure, failing_since, stalled_since, '
  'escalate (failing for more than 5 min, or stalled: claimable events and no forwarder at work for 5 min; '
  'a 410, the Agent SDK refusing an event, is no failure, nor a success) '
  'and dead_unacknowledged (dead events that died after relay_settings.dead_acknowledged_at, or all of them '
  'while it is null).';
