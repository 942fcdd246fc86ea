-- webhook_pipeline_health and webhook_delivery_health without full scans (issue 6, cost as the table grows).
-- At 1 M events a read of webhook_pipeline_health took ~1.1 s (deno task stats, the readiness checks,
-- dashboards): the backlog, last_received_at and last_delivered_at scanned all of webhook_events, and the
-- delivered/dead counts all of webhook_delivery_attempts, because no partial index matched their predicates.
-- Same columns; each part now reads an index. The counts name the index predicates they imply
-- ('delivered' attempts are successes; 'dead' ones are failures other than lease_expired).
-- last_delivered_at now comes from the successful 'delivered' attempt rows, which record the same instant as
-- delivered_at, and it stays put when a delivered event is later edited or replayed (delivered_at is cleared).
create or replace view public.webhook_delivery_health
with (security_invoker = false) -- as 000400 set it: analysts read it through webhook_pipeline_health
as
with open_events as (
  -- Pending and delivering counted apart, so each reads its own partial index (due_idx, lease_idx); the
  -- single "status in (...)" matched neither and scanned the whole table.
  select sum(o.n) as backlog, min(o.oldest) as oldest_pending_at
    from (
      select count(*) as n, min(e.last_received_at) as oldest from public.webhook_events e where e.status = 'pending'
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

create or replace view public.webhook_pipeline_health as
select
  h.backlog,
  h.oldest_pending_at,
  h.oldest_pending_age_seconds,
  (select count(distinct a.event_id) from public.webhook_delivery_attempts a
    where a.succeeded and a.outcome = 'delivered'
      and a.recorded_at > now() - interval '1 hour')::bigint as delivered_last_hour,
  (select count(distinct a.event_id) from public.webhook_delivery_attempts a
    where a.succeeded and a.outcome = 'delivered'
      and a.recorded_at > now() - interval '1 day')::bigint as delivered_last_day,
  (select count(distinct a.event_id) from public.webhook_delivery_attempts a
    where not a.succeeded and a.outcome <> 'lease_expired' and a.outcome = 'dead'
      and a.recorded_at > now() - interval '1 hour')::bigint as dead_last_hour,
  (select count(distinct a.event_id) from public.webhook_delivery_attempts a
    where not a.succeeded and a.outcome <> 'lease_expired' and a.outcome = 'dead'
      and a.recorded_at > now() - interval '1 day')::bigint as dead_last_day,
  h.dead_count as dead_total,
  -- The latest receipt, from indexes: delivered and skipped rows by webhook_events_prunable_idx (one entry
  -- from its end), open and dead rows (the backlog and the dead letters) through their own partial indexes.
  greatest(
    (select max(e.last_received_at) from public.webhook_events e where e.status in ('delivered', 'skipped')),
    (select max(e.last_received_at) from public.webhook_events e where e.status = 'pending'),
    (select max(e.last_received_at) from public.webhook_events e where e.status = 'delivering'),
    (select max(e.last_received_at) from public.webhook_events e where e.status = 'dead')
  ) as last_received_at,
  -- The latest successful delivery (its attempt row, recorded in the same transaction as delivered_at), from
  -- the end of webhook_delivery_attempts_success_idx.
  (select max(a.recorded_at) from public.webhook_delivery_attempts a
    where a.succeeded and a.outcome = 'delivered') as last_delivered_at,
  h.last_failure_at,
  h.failing_since,
  h.escalate,
  h.paused
from public.webhook_delivery_health h;

comment on view public.webhook_pipeline_health is
  'One row: backlog, oldest pending age, delivered/dead in the last hour and day, last received/delivered, escalate.';

