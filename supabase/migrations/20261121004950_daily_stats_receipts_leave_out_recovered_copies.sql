-- chatwoot_daily_event_stats.received is the receipts from Chatwoot. A copy deno task recover stores for a
-- lost webhook (verified_by 'chatwoot_api', migration 002000) has receive_count 1 so that the webhook, should
-- it come after all, replaces it as its first receipt; until then it counted as one, so a day of recovered
-- messages looked like a day of webhooks received. Now such a copy counts as an event and not as a receipt,
-- and the new last column, recovered, counts the copies still standing in for their webhook (each a webhook
-- Chatwoot sent and we lost, or never sent). The other columns are as in migration 001600. Found by review.

create or replace view public.chatwoot_daily_event_stats as
select
  (e.received_at at time zone 'UTC')::date as day,
  e.event,
  count(*)::bigint as events,
  coalesce(sum(e.receive_count) filter (where e.verified_by <> 'chatwoot_api'), 0)::bigint as received,
  -- Receipts that were neither the first nor a new version (ingest_webhook_event's 'duplicate' outcome).
  sum(e.receive_count - e.version)::bigint as duplicates,
  count(*) filter (where e.version > 1)::bigint as changed,
  count(*) filter (where e.status = 'pending')::bigint as pending,
  count(*) filter (where e.status = 'delivering')::bigint as delivering,
  count(*) filter (where e.status = 'delivered')::bigint as delivered,
  count(*) filter (where e.status = 'dead')::bigint as dead,
  count(*) filter (where e.status = 'skipped')::bigint as skipped,
  count(*) filter (where e.verified_by = 'chatwoot_api')::bigint as recovered
from public.webhook_events e
group by 1, 2;

comment on view public.chatwoot_daily_event_stats is
  'Per UTC day (of first receipt) and event: events, receipts from Chatwoot, duplicates, changed bodies, '
  'delivery states, and copies recovered from the API.';
