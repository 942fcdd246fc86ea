-- claim_webhook_events' lease no longer reads the whole backlog when the planner misjudges it.
--
-- The lease statement picks the claimed ids again under the conversation locks. When the statistics say
-- almost nothing is pending (the table was last analyzed before a backlog built up: an Agent SDK outage on a
-- big table, and 5 % new rows do not trigger autoanalyze), Postgres walks webhook_events_due_idx over every
-- due row and filters the ids instead of fetching them by primary key: each claim read the whole backlog
-- (7.8 ms for 10 events with 53 000 pending at 1 M rows, against ~1 ms). The candidates come in due order
-- (next_attempt_at, id), so the lease is now bounded by the last one taken: a row comparison that
-- webhook_events_due_idx uses as its index condition, so even that plan stops at the candidates' window.
-- A candidate whose next_attempt_at moved later in between is left for the next claim, as one that left
-- 'pending' is. Everything else is the function of migration 000200 as it was.
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
  select * into s from public.relay_settings r where r.id;
  if not found then
    raise exception 'claim_webhook_events: the public.relay_settings row is missing';
  end if;
  if s.forwarding_paused then
    return;
  end if;

  -- Leases whose forwarder never reported (crashed, killed, cut off): reclaim and record.
  with expired as (
    select e.id, e.leased_by, e.leased_at, e.leased_version, e.attempts
      from public.webhook_events e
     where e.status = 'delivering' and e.lease_expires_at <= now()
     order by e.lease_expires_at
     limit 1000
       for update skip locked
  ), reclaimed as (
    update public.webhook_events e
       set status = case when x.attempts >= s.max_attempts then 'dead' else 'pending' end,
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
            and p.account_id is not distinct from e.account_id
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
            hashtext(coalesce(c.account_id::text, '') || ':' || c.conversation_id::text)) then
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
            and p.account_id is not distinct from e.account_id
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
