-- webhook_pipeline_health gains dead_unacknowledged, at the end. `deno task stats` said "N dead now" from
-- dead_total without saying how many of those the operator had already acknowledged
-- (relay_settings.dead_acknowledged_at, migration 003000): a reader could not tell whether the dead letters
-- need attention. The number lives in webhook_delivery_health, which data_analyst (and so stats run by one of
-- its members) may not read; this view runs with its owner's rights and passes it on. Every other column is
-- as in migration 004200, in its order, so the Data team's queries are unchanged.
--
-- webhook_pipeline_health fetched no dead row (data_surface.test.ts holds it to that: dead letters can be
-- many). The count is dead_unacknowledged_count()'s: while nothing was ever acknowledged the answer is simply
-- every dead event, the view's index-only dead count, and only after an acknowledgement are the dead rows
-- walked. A function, not a subquery in the view: such a subquery (every dead letter joined with its
-- attempts), though it runs only after an acknowledgement, is planned and costed always; with 20 000 dead
-- letters (retention keeps them) it added about 90 000 to the views' estimated cost, past jit_above_cost
-- (100 000 by default; JIT is on in hosted Supabase too), and every read then compiled its plan first: 76-80
-- ms instead of 4-7 ms at 1 M events (the benchmark's growth section; readiness reads webhook_delivery_health
-- on each uncached check). A function call is costed as one call, whatever its body. Everything else as in
-- migration 003000.
--
-- security definer: the views call it with the caller's rights (data_analyst reads webhook_pipeline_health),
-- and what it counts lives in tables data_analyst may not read; it returns one number.

create or replace function public.dead_unacknowledged_count(p_dead_count bigint)
returns bigint
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_acknowledged_at timestamptz;
begin
  select s.dead_acknowledged_at into v_acknowledged_at from public.relay_settings s where s.id;
  if v_acknowledged_at is null then
    return p_dead_count; -- none ever acknowledged: every dead event, counted already (index-only)
  end if;
  -- Those whose death was recorded after the acknowledgement (one replayed since that died again). A death is
  -- what webhook_pipeline_health counts as one: a 'dead' report, or a reclaim that exhausted the attempts; a
  -- late report of an event dead before (lease_lost) is none. From the deaths since then (failure_idx,
  -- lease_expired_idx: the acknowledgement's time is known when this plans), not from every dead row: 20 000
  -- dead letters took 45-55 ms that way, whatever the acknowledgement left to count.
  return (select count(distinct a.event_id)
            from public.webhook_delivery_attempts a
            join public.webhook_events e on e.id = a.event_id and e.status = 'dead'
           where a.recorded_at > v_acknowledged_at
             and ((not a.succeeded and a.outcome <> 'lease_expired' and a.outcome = 'dead')
                  or (a.outcome = 'lease_expired' and a.error like '%attempts exhausted')));
end
$$;

comment on function public.dead_unacknowledged_count(bigint) is
  'Dead events not acknowledged: p_dead_count (all dead events) while relay_settings.dead_acknowledged_at is '
  'null, else those that died after it. Used by webhook_delivery_health.';

revoke all on function public.dead_unacknowledged_count(bigint) from public, anon, authenticated;
grant execute on function public.dead_unacknowledged_count(bigint) to service_role, data_analyst;

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
), dead as (
  -- Counted once (index-only, webhook_events_dead_idx), for dead_count and dead_unacknowledged.
  select count(*)::bigint as dead_count from public.webhook_events e where e.status = 'dead'
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
  d.dead_count,
  w.last_success_at,
  w.last_failure_at,
  w.failing_since,
  coalesce(w.failing_since < now() - interval '5 minutes', false) or w.claimable_since is not null
    as escalate,
  w.paused,
  case when w.claimable_since is not null then greatest(w.claimable_since, w.last_activity_at) end
    as stalled_since,
  -- Dead events the operator has not acknowledged, counted by a function: see the top of this file.
  public.dead_unacknowledged_count(d.dead_count)
    as dead_unacknowledged
from open_events oe
cross join dead d
cross join waiting w;

comment on view public.webhook_delivery_health is
  'One row: backlog, oldest pending, dead count, last success/failure, failing_since, stalled_since, '
  'escalate (failing for more than 5 min, or stalled: claimable events and no forwarder at work for 5 min) '
  'and dead_unacknowledged (dead events that died after relay_settings.dead_acknowledged_at, or all of them '
  'while it is null).';

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
  h.stalled_since,
  -- Of dead_total, those the operator has not acknowledged (all of them while none ever was); the rest were
  -- acknowledged and hold readiness back no more. Both from the same row of webhook_delivery_health.
  h.dead_unacknowledged
from public.webhook_delivery_health h;

comment on view public.webhook_pipeline_health is
  'One row: backlog, oldest pending age, delivered/dead in the last hour and day, last received (a webhook, '
  'not a recovered copy) and last delivered, escalate (failing or stalled for more than 5 minutes), '
  'stalled_since and dead_unacknowledged (of dead_total, those that died after '
  'relay_settings.dead_acknowledged_at, or all of them while it is null).';
