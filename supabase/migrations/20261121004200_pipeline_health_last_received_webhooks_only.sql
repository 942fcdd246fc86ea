-- webhook_pipeline_health.last_received_at, "last received" in deno task stats, is when Chatwoot last sent us
-- something. It counted the copies deno task recover stores (verified_by 'chatwoot_api', migration 002000,
-- last_received_at the time of the run): right after a recovery it said a webhook had just come, while
-- Chatwoot may still be sending nothing, which is what an operator looks at it for after an outage. Now it
-- counts webhooks only, as the readiness check's last verified webhook already did; a copy the real webhook
-- replaced is a webhook's row and counts. Everything else is as in migration 002300. Found by review.

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
  -- The latest receipt from Chatwoot, from indexes: delivered and skipped rows by webhook_events_prunable_idx
  -- (read from its end), open and dead rows (the backlog and the dead letters) through their own partial
  -- indexes. A copy recovered from Chatwoot's API came by no webhook (see the top of this file).
  greatest(
    (select max(e.last_received_at) from public.webhook_events e
      where e.status in ('delivered', 'skipped') and e.verified_by <> 'chatwoot_api'),
    (select max(e.last_received_at) from public.webhook_events e
      where e.status = 'pending' and e.verified_by <> 'chatwoot_api'),
    (select max(e.last_received_at) from public.webhook_events e
      where e.status = 'delivering' and e.verified_by <> 'chatwoot_api'),
    (select max(e.last_received_at) from public.webhook_events e
      where e.status = 'dead' and e.verified_by <> 'chatwoot_api')
  ) as last_received_at,
  -- The latest successful delivery (its attempt row, recorded in the same transaction as delivered_at), from
  -- the end of webhook_delivery_attempts_success_idx.
  (select max(a.recorded_at) from public.webhook_delivery_attempts a
    where a.succeeded and a.outcome = 'delivered') as last_delivered_at,
  h.last_failure_at,
  h.failing_since,
  h.escalate,
  h.paused,
  h.stalled_since
from public.webhook_delivery_health h;

comment on view public.webhook_pipeline_health is
  'One row: backlog, oldest pending age, delivered/dead in the last hour and day, last received (a webhook, '
  'not a recovered copy) and last delivered, escalate (failing or stalled for more than 5 minutes) and '
  'stalled_since.';
