-- A death that commits after an acknowledgement of dead events is not acknowledged by it (concurrency
-- review).
--
-- dead_unacknowledged (migrations 003000, 008500) counts the deaths recorded after
-- relay_settings.dead_acknowledged_at, and recorded_at was the recording transaction's start (default now()).
-- A write-back that began before the operator's acknowledgement and committed after it (it waited for the
-- event's row, held by an ingest of a duplicate, say) recorded its death at a time before the
-- acknowledgement: once committed, the event was dead, not acknowledged by anyone who could have seen it, and
-- counted as acknowledged, so readiness never warned of it. A reclaim that exhausted the attempts
-- (claim_webhook_events) the same way, over a narrower window.
--
-- Now a death (the rows dead_unacknowledged counts: a 'dead' report, or a reclaim whose attempts were
-- exhausted) is recorded at the moment of its INSERT, after trying for a shared advisory lock, and a change
-- of dead_acknowledged_at takes that lock exclusively (a trigger) before its commit. Either the death holds
-- the lock first, and the acknowledgement waits for it to commit (the death comes before it, as one committed
-- before the acknowledgement always did), or the acknowledgement holds it first, and the death's time is
-- later than the acknowledgement's now(): counted. A death never waits for the lock (a try): an operator's
-- transaction left open must not hold a forwarder's write-back. The lock is held from the INSERT to the
-- commit, the end of the write-back's or the claim's one statement: an acknowledgement waits that long at
-- most. An INSERT that names an earlier recorded_at (a seed, a test's history) keeps it.

-- CREATE TRIGGER locks the table for a moment, and ingests read relay_settings and forwarders write attempts:
-- wait at most 2 s for the lock.
select set_config('lock_timeout', '2s', true);

create function public.webhook_death_recorded_now()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  -- Held when free until this transaction ends: an acknowledgement taking it now waits for this commit.
  perform pg_try_advisory_xact_lock_shared(hashtext('public.relay_settings dead_acknowledged_at'), 0);
  -- After the try: later than the now() of any acknowledgement holding the lock, or committed before it.
  if new.recorded_at = now() then
    new.recorded_at := clock_timestamp();
  end if;
  return new;
end
$$;

revoke all on function public.webhook_death_recorded_now() from public, anon, authenticated;

create trigger webhook_death_recorded_now
  before insert on public.webhook_delivery_attempts
  for each row
  when (new.outcome = 'dead' or (new.outcome = 'lease_expired' and new.error like '%attempts exhausted'))
  execute function public.webhook_death_recorded_now();

create function public.relay_settings_deaths_settled()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  -- Waits for the deaths being recorded now (webhook_death_recorded_now); until this transaction ends, a
  -- death is recorded later than this acknowledgement's now().
  perform pg_advisory_xact_lock(hashtext('public.relay_settings dead_acknowledged_at'), 0);
  return null;
end
$$;

revoke all on function public.relay_settings_deaths_settled() from public, anon, authenticated;

create trigger relay_settings_deaths_settled
  after update of dead_acknowledged_at on public.relay_settings
  for each row
  when (new.dead_acknowledged_at is not null
        and new.dead_acknowledged_at is distinct from old.dead_acknowledged_at)
  execute function public.relay_settings_deaths_settled();
