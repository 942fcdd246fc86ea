-- retry_webhook_events_now() locks the events it makes due in id order, as complete_webhook_deliveries,
-- release_webhook_events and replay_webhook_events_between lock theirs.
--
-- It updated them in the order of its scan (webhook_events_due_idx: by next attempt), so it could hold one
-- event and wait for another that a write-back holds, while that write-back, locking its events by id, waited
-- for the first: "deadlock detected", and one of the two failed. A write-back is late and locks events that
-- are pending again when its forwarder outlived its leases (a write-back retried through an outage) and
-- another forwarder has since tried them and scheduled a retry: after an outage, just when the runbook says to
-- call retry_webhook_events_now(). Both now wait for each other's rows in one order. Found by review.
--
-- Otherwise as in migration 004800 (a CREATE OR REPLACE keeps its comment and grants).

create or replace function public.retry_webhook_events_now()
returns bigint
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_count bigint;
begin
  with waiting as (
    select e.id
      from public.webhook_events e
     where e.status = 'pending' and e.next_attempt_at > now()
     order by e.id
       for no key update
  )
  -- By key, the rows locked above only (joined instead, a big table was read whole for a hash join).
  update public.webhook_events e
     set next_attempt_at = now()
   where e.id = any (array(select w.id from waiting w));
  get diagnostics v_count = row_count;
  if v_count > 0 then
    perform pg_notify('webhook_events_due', '');
  end if;
  return v_count;
end
$$;
