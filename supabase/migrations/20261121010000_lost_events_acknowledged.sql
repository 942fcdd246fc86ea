-- Lost events can be acknowledged, as dead events can (migration 003000), so that losses nothing can fetch
-- back stop holding readiness back.
--
-- Readiness's webhook_pipeline check warns while a loss of the last 24 h is missing (not stored at or after
-- it), and `ready` wants every check to pass. deno task recover fetches back only a message_created: a
-- refused conversation_*, message_updated or unknown event, or a loss of the database's that is no message,
-- stays missing its 24 h whatever the operator does (after a clock-skew incident `ready` stayed false a day).
-- relay_settings.lost_acknowledged_at is when the operator last looked at the losses and let them be
-- (public.acknowledge_lost_events()); webhook_lost_events_since() counts the missing ones recorded at or
-- before it apart (acknowledged), out of missing and missing_by_code, which readiness warns about. The rows
-- stay, and count stays: stats and the table show them as before.
--
-- "Recorded" is the row's INSERT, not lost_at: lost_at is the function's clock at the loss, and the row is
-- written later (kept in memory while the database does not answer, retried up to a minute apart), so a loss
-- lost before an acknowledgement can be written after it, unseen by the operator: it must count. The new
-- column recorded_at is the INSERT's time, taken as 008900 takes a death's: after trying for a shared
-- advisory lock that a change of lost_acknowledged_at takes exclusively before its commit. Either the INSERT
-- holds the lock first and the acknowledgement waits for its commit (recorded_at may then be after the
-- acknowledgement's now(): counted, the safe side), or the acknowledgement holds it first and recorded_at is
-- later than its now(): counted. An INSERT never waits (a try): an operator's open transaction must not hold
-- the webhook's write. Rows written before this migration get its time (they were all recorded before any
-- acknowledgement).

-- relay_settings is read by every ingest, webhook_lost_events written by the webhook, webhook_delivery_attempts
-- by the forwarders: wait at most 2 s for the ALTERs' and triggers' locks, then fail (run it again).
select set_config('lock_timeout', '2s', true);

alter table public.relay_settings add column if not exists lost_acknowledged_at timestamptz;
comment on column public.relay_settings.lost_acknowledged_at is
  'When the operator last acknowledged the lost events (acknowledge_lost_events()); only losses recorded '
  'after it hold readiness back.';

alter table public.webhook_lost_events
  add column if not exists recorded_at timestamptz not null default now();
comment on column public.webhook_lost_events.recorded_at is
  'When the row was written (its INSERT, the database''s clock; lost_at is the loss''s, the function''s): '
  'a loss recorded after relay_settings.lost_acknowledged_at is not acknowledged by it.';

-- The mechanism is 008900's for deaths, with another lock: its two trigger functions become one pair taking
-- the lock's name as the trigger's argument, which the death triggers use too (re-pointed below, the same
-- lock name, so the same behaviour), and 008900's own pair goes. One mechanism, not two copies of it.
create function public.record_timed_after_acknowledgements()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  -- Held when free until this transaction ends: an acknowledgement taking it now waits for this commit.
  perform pg_try_advisory_xact_lock_shared(hashtext(tg_argv[0]), 0);
  -- After the try: later than the now() of any acknowledgement holding the lock, or committed before it.
  if new.recorded_at = now() then
    new.recorded_at := clock_timestamp();
  end if;
  return new;
end
$$;

revoke all on function public.record_timed_after_acknowledgements() from public, anon, authenticated;

create function public.acknowledgement_waits_for_records()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  -- Waits for the records being written now (record_timed_after_acknowledgements, the same lock); until this
  -- transaction ends, a record is timed later than this acknowledgement's now().
  perform pg_advisory_xact_lock(hashtext(tg_argv[0]), 0);
  return null;
end
$$;

revoke all on function public.acknowledgement_waits_for_records() from public, anon, authenticated;

create or replace trigger webhook_death_recorded_now
  before insert on public.webhook_delivery_attempts
  for each row
  when (new.outcome = 'dead' or (new.outcome = 'lease_expired' and new.error like '%attempts exhausted'))
  execute function public.record_timed_after_acknowledgements('public.relay_settings dead_acknowledged_at');

create or replace trigger relay_settings_deaths_settled
  after update of dead_acknowledged_at on public.relay_settings
  for each row
  when (new.dead_acknowledged_at is not null
        and new.dead_acknowledged_at is distinct from old.dead_acknowledged_at)
  execute function public.acknowledgement_waits_for_records('public.relay_settings dead_acknowledged_at');

drop function public.webhook_death_recorded_now();
drop function public.relay_settings_deaths_settled();

create trigger webhook_lost_event_recorded_now
  before insert on public.webhook_lost_events
  for each row
  execute function public.record_timed_after_acknowledgements('public.relay_settings lost_acknowledged_at');

create trigger relay_settings_losses_settled
  after update of lost_acknowledged_at on public.relay_settings
  for each row
  when (new.lost_acknowledged_at is not null
        and new.lost_acknowledged_at is distinct from old.lost_acknowledged_at)
  execute function public.acknowledgement_waits_for_records('public.relay_settings lost_acknowledged_at');

create function public.acknowledge_lost_events()
returns timestamptz
language sql
set search_path = ''
as $$
  update public.relay_settings set lost_acknowledged_at = now() where id returning lost_acknowledged_at;
$$;

comment on function public.acknowledge_lost_events() is
  'Acknowledges the lost events recorded until now: readiness warns no more of them (README, "Acknowledge '
  'lost events"); returns the time recorded in relay_settings.lost_acknowledged_at.';

revoke all on function public.acknowledge_lost_events() from public, anon, authenticated;
grant execute on function public.acknowledge_lost_events() to service_role;

-- A new column in the answer (acknowledged) changes the function's type: dropped and created again, its
-- grants and its SET clause (jit = off, and no inlining: tests/lost_events.test.ts) as 009400 gave them.
drop function public.webhook_lost_events_since(timestamptz);

create function public.webhook_lost_events_since(p_since timestamptz)
returns table (count integer, missing integer, last_lost_at timestamptz, recover_command text,
               missing_by_code jsonb, acknowledged integer)
language sql
stable
set jit = off
as $$
  -- A loss is made good once its event key has been stored at or after it (recovered, or sent again); losses
  -- past an instance's record bound (unrecorded_losses) name no event, so they stay missing. One missing and
  -- recorded at or before relay_settings.lost_acknowledged_at is acknowledged: counted there, not in missing
  -- nor missing_by_code. missing_by_code: {error_code: {missing, last, recover_command, recover_lost_at}} of
  -- the codes with any missing (a loss without a code under "unknown"), the command the latest missing one of
  -- the code carries.
  with ack as (
    select coalesce((select s.lost_acknowledged_at from public.relay_settings s where s.id), '-infinity')
             as at),
  lost as (
    select l.lost_at, l.unrecorded_losses, l.recover_command, coalesce(l.error_code, 'unknown') as code,
           exists (select 1 from public.webhook_events e
                    where e.event_key = l.event_key and e.last_received_at >= l.lost_at) as stored_since,
           l.recorded_at <= ack.at as acked
      from public.webhook_lost_events l, ack
     where l.lost_at > p_since),
  unacked as (
    select * from lost where not lost.acked),
  by_code as (
    select u.code,
           sum(u.unrecorded_losses + case when u.stored_since then 0 else 1 end)::int as missing,
           max(u.lost_at) filter (where u.unrecorded_losses > 0 or not u.stored_since) as last,
           (array_agg(u.recover_command order by u.lost_at desc)
              filter (where u.recover_command is not null and not u.stored_since))[1] as recover_command,
           max(u.lost_at) filter (where u.recover_command is not null and not u.stored_since)
             as recover_lost_at
      from unacked u group by u.code)
  select coalesce(sum(1 + lost.unrecorded_losses), 0)::int,
         coalesce(sum(lost.unrecorded_losses + case when lost.stored_since then 0 else 1 end)
                    filter (where not lost.acked), 0)::int,
         max(lost.lost_at),
         (select m.recover_command from unacked m
           where m.recover_command is not null and not m.stored_since
           order by m.lost_at desc limit 1),
         (select coalesce(jsonb_object_agg(b.code, jsonb_build_object('missing', b.missing, 'last', b.last,
                                                                      'recover_command', b.recover_command,
                                                                      'recover_lost_at', b.recover_lost_at)),
                          '{}'::jsonb)
            from by_code b where b.missing > 0),
         coalesce(sum(lost.unrecorded_losses + case when lost.stored_since then 0 else 1 end)
                    filter (where lost.acked), 0)::int
    from lost
$$;

comment on function public.webhook_lost_events_since(timestamptz) is
  'Lost events since a time: how many, how many still missing and not acknowledged, the last, the recover '
  'command of the latest of those, per error_code the missing, the last and its latest recover command, and '
  'how many missing were acknowledged (recorded at or before relay_settings.lost_acknowledged_at). Read by '
  'readiness and deno task stats; JIT off (a probe per loss gains nothing from it).';

revoke all on function public.webhook_lost_events_since(timestamptz) from public, anon, authenticated;
grant execute on function public.webhook_lost_events_since(timestamptz) to service_role;
