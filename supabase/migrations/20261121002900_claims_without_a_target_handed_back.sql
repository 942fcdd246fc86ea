-- A claim with nothing to send it to is handed back without costing an attempt.
--
-- A drain reads relay_settings before it claims, and without AGENT_SDK_URL stops there when the override is
-- unset ("not_configured", nothing claimed). But the override may be cleared after that look: the immediate
-- drain after a store trusts what the ingest call saw, and a drain goes on claiming batch after batch (a slow
-- Agent SDK holds one for seconds). Such a claim counted an attempt that could not be made, recorded it as a
-- failure ("no Agent SDK URL configured") and made the event wait for a retry; drain after drain, the event
-- went dead (found by review). The claim returns the override it saw, so the forwarder knows at once; it now
-- hands such events back with release_webhook_events(): pending, due as they were, their count of attempts
-- as before the claim, no attempt recorded (none was made).
--
-- Rows are locked in id order, as complete_webhook_deliveries() and replay_webhook_events_between() lock
-- theirs, so none of them can deadlock with another; only the caller's own leases are touched.

create or replace function public.release_webhook_events(p_worker text, p_ids bigint[])
returns bigint
language sql
volatile
set search_path = ''
as $$
  with leased as (
    select e.id
      from public.webhook_events e
     where e.id = any (p_ids) and e.status = 'delivering' and e.leased_by = p_worker
     order by e.id
       for no key update
  ), released as (
    update public.webhook_events e
       set status = 'pending',
           -- The claim's attempt was never made. A newer version that arrived meanwhile starts at 0 anyway.
           attempts = case when e.version = e.leased_version then greatest(e.attempts - 1, 0) else 0 end,
           leased_by = null, leased_at = null, lease_expires_at = null, leased_version = null
      from leased l
     where e.id = l.id
    returning 1
  )
  select count(*) from released
$$;

comment on function public.release_webhook_events(text, bigint[]) is
  'Hands back events p_worker claimed but could not send (no target): pending, no attempt counted.';

revoke all on function public.release_webhook_events(text, bigint[]) from public, anon, authenticated;
grant execute on function public.release_webhook_events(text, bigint[]) to service_role;
