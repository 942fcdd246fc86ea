-- replay_webhook_events_between() refuses a window that can hold nothing (walkthrough of README's operations).
--
-- Called with its ends swapped (until before since: a typo, or an interval added on the wrong side), equal, or
-- one of them null, it matched no dead event and answered 0, which reads as "nothing dead in that window":
-- the operator moves on and the dead letters stay. deno task replay refuses such a window (exit 2); the SQL
-- function now does too, SQLSTATE 22023 (invalid_parameter_value), naming both ends and the call's shape.
-- Otherwise as migration 001800 left it: the same rows chosen and locked in id order, the same answer.
-- PL/pgSQL for the check; signature, result and grants unchanged.
create or replace function public.replay_webhook_events_between(
  p_since timestamptz,
  p_until timestamptz,
  p_event text default null,
  p_limit integer default null
)
returns bigint
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_replayed bigint;
begin
  if p_since is null or p_until is null or p_until <= p_since then
    raise exception 'replay_webhook_events_between: until (%) must be after since (%)',
      coalesce(p_until::text, 'null'), coalesce(p_since::text, 'null')
      using errcode = 'invalid_parameter_value',
            hint = 'select public.replay_webhook_events_between(<since>, <until>[, <event>[, <limit>]]); '
              || 'events received at or after since and before until';
  end if;
  with chosen as (
    select e.id
      from public.webhook_events e
     where e.status = 'dead'
       and e.received_at >= p_since and e.received_at < p_until
       and (p_event is null or e.event = p_event)
     order by e.id
     limit p_limit
       for no key update
  ), replayed as (
    update public.webhook_events e
       set status = 'pending', attempts = 0, next_attempt_at = now(), delivered_at = null
      from chosen c
     where e.id = c.id
    returning 1
  )
  select count(*) into v_replayed from replayed;
  return v_replayed;
end
$$;
