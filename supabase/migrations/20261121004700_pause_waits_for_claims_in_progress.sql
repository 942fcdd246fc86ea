-- Once a pause (or a new target) has committed, no claim commits under the old settings.
--
-- claim_webhook_events read relay_settings at its start and leased at its end, each statement with its own
-- snapshot. A pause committed in between did not stop it: the claim leased its batch after the operator's
-- UPDATE had returned, and the batch went out to the Agent SDK while paused (the randomized stress run saw it
-- a few milliseconds after the pause; a claim slowed by a busy table or disk widens that to seconds). An
-- override changed in between sent the batch to the old target after the change had returned, the same way.
-- Now a claim holds a shared advisory lock from before it reads the settings until it commits, and an update
-- that pauses forwarding or changes agent_sdk_url_override takes that lock exclusively (a trigger): it waits
-- for the claims in progress (each is one short statement), and a claim starting meanwhile finds the lock
-- taken and claims nothing (it does not wait: an operator's transaction left open must not hang forwarders).
-- Batches claimed before the change are in flight, as before: they are sent and written back.
--
-- Otherwise the function of migration 002400, with its settings (a CREATE OR REPLACE resets them).

-- CREATE TRIGGER takes a lock on relay_settings, which every ingest reads: wait for it at most 2 s.
select set_config('lock_timeout', '2s', true);

create or replace function public.claim_webhook_events(
  p_worker text,
  p_batch integer default 10,
  p_lease_seconds integer default null
)
returns table (
  id bigint,
  event_key text,
  event text,
  account_id bigint,
  conversation_id bigint,
  version integer,
  attempt integer,
  raw_body text,
  agent_sdk_url_override text,
  request_timeout_ms integer,
  lease_expires_at timestamptz
)
language plpgsql
volatile
set search_path = ''
set plan_cache_mode = force_generic_plan
set jit = off
as $$
declare
  s public.relay_settings;
  v_ids bigint[] := '{}';
  -- The due-order position of the last candidate taken: the lease below looks no further than this.
  v_last_due timestamptz;
  v_last_id bigint;
  c record;
begin
  if p_worker is null or p_worker = '' then
    raise exception 'claim_webhook_events: worker name required';
  end if;
  -- A pause or a change of target not yet committed holds this lock (relay_settings_claims_settled): claim
  -- nothing now, the next drain will. Held from here to this claim's commit, so such a change waits for the
  -- claims that read the settings before it, and none commits after it under the old settings.
  if not pg_try_advisory_xact_lock_shared(hashtext('public.relay_settings forwarding'), 0) then
    return;
  end if;
  select * into s from public.relay_settings r where r.id;
  if not found then
    raise exception 'claim_webhook_events: the public.relay_settings row is missing';
  end if;
  if s.forwarding_paused then
    return;
  end if;

  -- Leases whose forwarder never reported (crashed, killed, cut off): reclaim and record.
  with expired as (
    select e.id, e.leased_by, e.leased_at, e.leased_version, e.attempts, e.version
      from public.webhook_events e
     where e.status = 'delivering' and e.lease_expires_at <= now()
     order by e.lease_expires_at
     limit 1000
       for update skip locked
  ), reclaimed as (
    update public.webhook_events e
       -- A version newer than the one leased was never sent: it starts its own count of attempts.
       set status = case when x.attempts >= s.max_attempts and x.version = coalesce(x.leased_version, x.version)
                           then 'dead'
                         else 'pending' end,
           attempts = case when x.version = coalesce(x.leased_version, x.version) then x.attempts else 0 end,
           next_attempt_at = now(),
           last_error = format('lease expired: %s did not report attempt %s', x.leased_by, x.attempts),
           leased_by = null, leased_at = null, lease_expires_at = null, leased_version = null
      from expired x
     where e.id = x.id
    returning e.id, e.status, x.leased_by, x.leased_at, x.leased_version, x.attempts
  )
  insert into public.webhook_delivery_attempts
    (event_id, attempt, version, worker, started_at, succeeded, outcome, error)
  select r.id, r.attempts, coalesce(r.leased_version, 0), r.leased_by, coalesce(r.leased_at, now()), false,
         'lease_expired', 'lease expired without a report' || case when r.status = 'dead'
           then '; attempts exhausted' else '' end
    from reclaimed r;

  -- Candidates from this snapshot; lock their conversations (skip those another claimer holds).
  for c in
    select e.id, e.account_id, e.conversation_id, e.next_attempt_at
      from public.webhook_events e
     where e.status = 'pending' and e.next_attempt_at <= now()
       and (e.conversation_id is null or not exists (
         select 1 from public.webhook_events p
          where p.conversation_id = e.conversation_id
            -- An event that came without its account (account_id null) belongs to its conversation in
            -- every account: order it with all of them.
            and (p.account_id = e.account_id or p.account_id is null or e.account_id is null)
            and p.status in ('pending', 'delivering')
            and p.id <> e.id
            and case when p.status = 'delivering' then true else p.id < e.id end))
     order by e.next_attempt_at, e.id
     limit greatest(p_batch, 1) * 4
  loop
    exit when cardinality(v_ids) >= p_batch;
    if c.conversation_id is null
       or pg_try_advisory_xact_lock(
            hashtext('public.webhook_events conversation'),
            -- By conversation id alone, as the head rule may join accounts: a display id shared by two
            -- accounts only makes their claims take turns.
            hashtext(c.conversation_id::text)) then
      v_ids := v_ids || c.id;
      v_last_due := c.next_attempt_at;
      v_last_id := c.id;
    end if;
  end loop;
  if cardinality(v_ids) = 0 then
    return;
  end if;

  -- Fresh snapshot: re-check the head rule under the conversation locks, then lease.
  return query
  with claimable as (
    select e.id
      from public.webhook_events e
     where e.id = any (v_ids)
       and e.status = 'pending' and e.next_attempt_at <= now()
       and (e.next_attempt_at, e.id) <= (v_last_due, v_last_id)
       and (e.conversation_id is null or not exists (
         select 1 from public.webhook_events p
          where p.conversation_id = e.conversation_id
            and (p.account_id = e.account_id or p.account_id is null or e.account_id is null)
            and p.status in ('pending', 'delivering')
            and p.id <> e.id
            and case when p.status = 'delivering' then true else p.id < e.id end))
       for update skip locked
  )
  update public.webhook_events e
     set status = 'delivering',
         attempts = e.attempts + 1,
         leased_by = p_worker,
         leased_at = now(),
         lease_expires_at = now() + make_interval(secs => coalesce(p_lease_seconds, s.lease_seconds)),
         leased_version = e.version
    from claimable k
   where e.id = k.id
  returning e.id, e.event_key, e.event, e.account_id, e.conversation_id, e.version, e.attempts, e.raw_body,
            s.agent_sdk_url_override, s.request_timeout_ms, e.lease_expires_at;
end
$$;

create or replace function public.relay_settings_claims_settled()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  -- Waits for the claims that read the settings before this change (claim_webhook_events); until this
  -- transaction ends, new claims take nothing.
  perform pg_advisory_xact_lock(hashtext('public.relay_settings forwarding'), 0);
  return null;
end
$$;

create trigger relay_settings_claims_settled
  after update of forwarding_paused, agent_sdk_url_override on public.relay_settings
  for each row
  when ((new.forwarding_paused and not old.forwarding_paused)
        or new.agent_sdk_url_override is distinct from old.agent_sdk_url_override)
  execute function public.relay_settings_claims_settled();

revoke all on function public.relay_settings_claims_settled() from public, anon, authenticated;
