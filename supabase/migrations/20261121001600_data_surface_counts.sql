-- Two counts of the Data team's views that said more or less than happened.
--
-- chatwoot_daily_event_stats.duplicates was sum(receive_count - 1). receive_count counts every receipt of a
-- key, and a changed body (a message_updated with the message's newer state: outcome 'updated', version + 1)
-- is a receipt too, so every edit showed as a duplicate as well as in `changed`. A receipt is either the
-- first, a new version or a duplicate, so the duplicates are receive_count - version.
--
-- webhook_pipeline_health.dead_last_hour / dead_last_day counted the attempts recorded as 'dead' only. An
-- event whose last attempt's forwarder never reported (crashed, killed, cut off) dies in claim_webhook_events'
-- reclaim, recorded as 'lease_expired' with "attempts exhausted": it showed in dead_total but never in the
-- last hour or day. Those are counted now, through a partial index of the (rare) lease_expired rows, so the
-- view still reads indexes only. The view keeps its columns. (Building the index reads
-- webhook_delivery_attempts once and holds its writes, i.e. forwarders' claims and write-backs, meanwhile;
-- ingests do not write that table and go on.)

create index if not exists webhook_delivery_attempts_lease_expired_idx
  on public.webhook_delivery_attempts (recorded_at) where outcome = 'lease_expired';

create or replace view public.chatwoot_daily_event_stats as
select
  (e.received_at at time zone 'UTC')::date as day,
  e.event,
  count(*)::bigint as events,
  sum(e.receive_count)::bigint as received,
  -- Receipts that were neither the first nor a new version (ingest_webhook_event's 'duplicate' outcome).
  sum(e.receive_count - e.version)::bigint as duplicates,
  count(*) filter (where e.version > 1)::bigint as changed,
  count(*) filter (where e.status = 'pending')::bigint as pending,
  count(*) filter (where e.status = 'delivering')::bigint as delivering,
  count(*) filter (where e.status = 'delivered')::bigint as delivered,
  count(*) filter (where e.status = 'dead')::bigint as dead,
  count(*) filter (where e.status = 'skipped')::bigint as skipped
from public.webhook_events e
group by 1, 2;

comment on view public.chatwoot_daily_event_stats is
  'Per UTC day (of first receipt) and event: events, receipts, duplicates, changed bodies, and delivery states.';

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
  -- Deaths reported by a forwarder (failure_idx) and deaths at the reclaim of an expired lease
  -- (lease_expired_idx); the reclaim's error names the latter.
  (select count(distinct a.event_id) from public.webhook_delivery_attempts a
    where ((not a.succeeded and a.outcome <> 'lease_expired' and a.outcome = 'dead')
           or (a.outcome = 'lease_expired' and a.error like '%attempts exhausted'))
      and a.recorded_at > now() - interval '1 hour')::bigint as dead_last_hour,
  (select count(distinct a.event_id) from public.webhook_delivery_attempts a
    where ((not a.succeeded and a.outcome <> 'lease_expired' and a.outcome = 'dead')
           or (a.outcome = 'lease_expired' and a.error like '%attempts exhausted'))
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
