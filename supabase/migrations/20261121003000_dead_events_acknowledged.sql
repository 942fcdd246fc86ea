-- Dead events can be acknowledged, so that they stop holding readiness back.
--
-- The readiness check warned while any event was dead, and `ready` wants every check to pass: after one event
-- died (an Agent SDK answering 410, whose replay dies again; or one the operator decided not to send) the probe
-- answered 503 for good, and the only way back was a replay. The runbook escalates an ongoing failure (5xx
-- for more than 5 minutes: escalate, which stays as it was); a dead event is the record of one that ended.
-- relay_settings.dead_acknowledged_at is when the operator last looked at the dead events and let them be;
-- webhook_delivery_health.dead_unacknowledged counts those that died after it, which the check warns about.
-- The events stay dead (replay_webhook_events still takes them; the Data team's views count them as before).
-- The view keeps its columns, in their order, and gains dead_unacknowledged at the end.
-- Only a death counts as one after the acknowledgement: a 'dead' report, or a reclaim whose attempts were
-- exhausted (the rows webhook_pipeline_health counts as deaths), not any attempt row: a forwarder that
-- outlived its lease reports late (lease_lost) on an event already dead, which must not make it count again.

-- relay_settings is read by every ingest: wait at most 2 s for the ALTER's lock, then fail (run it again).
select set_config('lock_timeout', '2s', true);

alter table public.relay_settings add column if not exists dead_acknowledged_at timestamptz;
comment on column public.relay_settings.dead_acknowledged_at is
  'When the operator last acknowledged the dead events; only those dying after it hold readiness back.';

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
), activity as (
  -- The last sign of a forwarder at work: an attempt recorded (success_idx, failure_idx), a lease reclaimed
  -- (lease_expired_idx), or a claim not yet reported (the few delivering rows, lease_idx).
  select f.*,
         greatest(
           f.last_success_at,
           f.last_failure_at,
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
  (select count(*) from public.webhook_events e where e.status = 'dead')::bigint as dead_count,
  w.last_success_at,
  w.last_failure_at,
  w.failing_since,
  coalesce(w.failing_since < now() - interval '5 minutes', false) or w.claimable_since is not null
    as escalate,
  w.paused,
  case when w.claimable_since is not null then greatest(w.claimable_since, w.last_activity_at) end
    as stalled_since,
  -- Dead events the operator has not acknowledged: every one while none ever was, else those whose death
  -- was recorded after the acknowledgement (one replayed since that died again). A death is what
  -- webhook_pipeline_health counts as one: a 'dead' report, or a reclaim that exhausted the attempts; a late
  -- report of an event dead before (lease_lost) is none. The few dead rows by dead_idx, their attempts by
  -- event_idx.
  (select count(*) from public.webhook_events e, public.relay_settings s
    where e.status = 'dead' and s.id
      and (s.dead_acknowledged_at is null or exists (
        select 1 from public.webhook_delivery_attempts a
         where a.event_id = e.id and a.recorded_at > s.dead_acknowledged_at
           and (a.outcome = 'dead'
                or (a.outcome = 'lease_expired' and a.error like '%attempts exhausted')))))::bigint
    as dead_unacknowledged
from open_events oe
cross join waiting w;

comment on view public.webhook_delivery_health is
  'One row: backlog, oldest pending, dead count, last success/failure, failing_since, stalled_since, '
  'escalate (failing for more than 5 min, or stalled: claimable events and no forwarder at work for 5 min) '
  'and dead_unacknowledged (dead events that died after relay_settings.dead_acknowledged_at, or all of them '
  'while it is null).';
