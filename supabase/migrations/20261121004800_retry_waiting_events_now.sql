-- Events waiting for a retry can be sent now, once the Agent SDK is back.
--
-- A failed delivery waits for its next attempt on retry_schedule_seconds (up to 6 h), and its conversation's
-- later events wait behind it. After an outage, or after pointing forwarding at staging (the runbook's
-- rollback), nothing told the forwarders to try again: each conversation touched by the outage stayed held
-- until its event's next attempt came round, hours at worst, while the health view showed deliveries
-- succeeding again. The replay functions take only dead events. retry_webhook_events_now() makes every
-- pending event whose next attempt is later due now (attempts keep counting; a dead event stays dead) and
-- wakes the forwarders that listen (hosted, pg_cron's next call takes them, within its interval). Returns
-- how many it made due. A row a forwarder is claiming meanwhile is waited for, then checked again: one it
-- took is left to it.

create or replace function public.retry_webhook_events_now()
returns bigint
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_count bigint;
begin
  update public.webhook_events e
     set next_attempt_at = now()
   where e.status = 'pending' and e.next_attempt_at > now();
  get diagnostics v_count = row_count;
  if v_count > 0 then
    perform pg_notify('webhook_events_due', '');
  end if;
  return v_count;
end
$$;

comment on function public.retry_webhook_events_now() is
  'Pending events waiting for a later attempt become due now (after an outage); returns how many.';

revoke all on function public.retry_webhook_events_now() from public, anon, authenticated;
grant execute on function public.retry_webhook_events_now() to service_role;
