-- replay_webhook_events_between() chose its dead events "for update skip locked", so a dead event that another
-- transaction held locked at that moment (an ingest counting a duplicate of it, a replay by id, an operator's
-- update) was silently left dead, and the count it returned did not say so: the caller took the range as done.
-- Now it waits for such a lock, as replay_webhook_events() (a plain UPDATE) always did. When the lock is
-- released the row is checked again, so an event that meanwhile stopped being dead (a new version arrived, or
-- another replay took it) is neither replayed nor counted, and a second replay of the same range simply finds
-- nothing left. Rows are locked in id order, so two replays of overlapping ranges cannot deadlock. "For no key
-- update" (what the UPDATE itself takes) does not block the foreign-key checks of delivery attempts being
-- recorded for the event meanwhile.
create or replace function public.replay_webhook_events_between(
  p_since timestamptz,
  p_until timestamptz,
  p_event text default null,
  p_limit integer default null
)
returns bigint
language sql
volatile
set search_path = ''
as $$
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
  select count(*) from replayed
$$;
