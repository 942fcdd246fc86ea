-- A write-back retried while the first call still runs counts once (migration 001500 said so; it did not).
--
-- The forwarder sends its write-back again after a transient error (forwarder.ts, retryWithinBudget). When
-- the first call's statement was still running on the server (its connection was lost while it waited on a
-- row lock, an ingest of a duplicate holding the event, say), the retry overlapped it: both waited on the
-- same row lock, and once the first committed, the retry's UPDATE checked the row again and found no lease.
-- Its probe for "already recorded by this very report" (`earlier`) read the statement's snapshot, taken
-- before the first call committed, and found nothing: every result was recorded again as 'lease_lost', and
-- answered lease_lost (a false "Event lease lost" warning, a wrong drain summary). The events' own state was
-- right.
--
-- complete_webhook_deliveries now first locks the reported events, in a statement of its own, and only then
-- does what it did, as a next statement: in READ COMMITTED that one takes a snapshot of its own, after every
-- lock is held, so it sees what an overlapping call for the same events committed (and no other write-back
-- can commit for them until this one does). Two overlapping calls for the same results thus run one after the
-- other; the second finds the leases gone and the first's attempts, and answers their outcomes.
--
-- The locks are taken in id order, so two write-backs cannot deadlock (until now the UPDATE locked in the
-- order of the report), "for no key update", what the UPDATE takes anyway, so the foreign-key checks of
-- attempts recorded meanwhile (a claim reclaiming an expired lease) do not wait. claim_webhook_events never
-- waits for a row lock (skip locked, try-locks) and an ingest locks one row only: neither can close a cycle
-- with these locks (replay_webhook_events_between locks in id order too). The cost is one primary-key probe
-- per result, whose page the UPDATE then finds in memory; no more round trips.
--
-- PL/pgSQL now, for the two statements; "#variable_conflict use_column" keeps the SQL function's rule that a
-- column wins over a parameter or result column of the same name. Its plans are generic, as a SQL function
-- planned them (with parameters, no values), but cached for the connection. Signature, result and grants as
-- they were; the work itself as in migration 001500.

create or replace function public.complete_webhook_deliveries(p_worker text, p_results jsonb)
returns table (event_id bigint, attempt integer, outcome text, status text, next_attempt_at timestamptz)
language plpgsql
volatile
set search_path = ''
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
begin
  -- The reported events, locked in id order before anything is read (a deleted one is simply not there).
  perform 1
     from public.webhook_events e
    where e.id = any (array(select x.id from jsonb_to_recordset(p_results) as x(id bigint)))
    order by e.id
      for no key update of e;

  -- A fresh snapshot: a write-back of these results that committed while this one waited is seen whole.
  return query
  with s as (
    -- limit 1 tells the planner it is one row: unanalysed, it guessed ~200, and the per-result "event still
    -- exists" check became a scan of the whole primary key instead of one probe per result.
    select * from public.relay_settings where id limit 1
  ), r as (
    select x.*,
           coalesce(x.http_status between 200 and 299, false) as ok,
           -- Wait before the next attempt: schedule entry (the last repeats) ± jitter, at least Retry-After.
           greatest(
             s.retry_schedule_seconds[least(greatest(x.attempt, 1), cardinality(s.retry_schedule_seconds))]
               * (1 + s.retry_jitter * (2 * random() - 1)),
             least(coalesce(x.retry_after_seconds, 0), s.max_retry_after_seconds)
           )::double precision as wait_seconds
      from jsonb_to_recordset(p_results) as x(
        id bigint, attempt integer, version integer, started_at timestamptz, duration_ms integer,
        http_status integer, error text, response_excerpt text, retry_after_seconds numeric)
     cross join s
  ), updated as (
    -- The decision reads e.* as locked by this UPDATE, so a version bumped by a concurrent ingest counts.
    update public.webhook_events e
       set status = case
             when r.ok and e.version = r.version then 'delivered'
             when r.ok then 'pending'
             when r.http_status = 410 then 'dead'
             when e.version <> r.version then 'pending'
             when e.attempts >= s.max_attempts then 'dead'
             else 'pending' end,
           delivered_at = case when r.ok and e.version = r.version then now() else e.delivered_at end,
           next_attempt_at = case
             when r.ok or r.http_status = 410 or e.version <> r.version or e.attempts >= s.max_attempts then now()
             else now() + make_interval(secs => r.wait_seconds) end,
           -- A newer version starts its own count of attempts, whatever became of the older one's.
           attempts = case when e.version <> r.version then 0 else e.attempts end,
           last_error = case when r.ok then null
             else left(coalesce(r.error, 'HTTP ' || r.http_status), 500) end,
           leased_by = null, leased_at = null, lease_expires_at = null, leased_version = null
      from r, s
     -- The lease this report is for: attempt numbers start again with each version, so the version is
     -- matched too (another lane of the same drain may hold a newer version's lease at the same number).
     where e.id = r.id and e.status = 'delivering' and e.leased_by = p_worker and e.attempts = r.attempt
       and e.leased_version = r.version
    returning e.id, e.status, e.next_attempt_at,
      case when r.ok and e.version = r.version then 'delivered'
           when r.ok then 'superseded'
           when e.status = 'dead' then 'dead'
           else 'retry' end as outcome
  ), reported as materialized (
    -- Each result with what its lease became, joined before anything narrows the planner's estimate of the
    -- results: a narrower one made it scan `updated` once per result (100 x 100 rows for a batch of 100).
    select r.*, u.outcome as lease_outcome, u.status as lease_status, u.next_attempt_at as lease_next_attempt_at
      from r
      left join updated u on u.id = r.id
  ), earlier as (
    -- A result that matched no lease, already recorded by this very report: the forwarder retried a
    -- write-back whose reply it never got (committed before this call, or while it waited for the locks
    -- above: this statement's snapshot is taken after them). Probed one by one (LATERAL ... LIMIT 1 on the
    -- attempts' event index), and only for such results, so the usual write-back reads nothing more.
    select l.id, p.outcome, p.status, p.next_attempt_at
      from reported l
     cross join lateral (
       select a.outcome, e.status, e.next_attempt_at
         from public.webhook_delivery_attempts a
         join public.webhook_events e on e.id = a.event_id
        where a.event_id = l.id and a.attempt = l.attempt and a.version = l.version and a.worker = p_worker
          -- The reclaim of an expired lease records under the lease holder's name too: not a report.
          and a.outcome <> 'lease_expired'
        order by a.id
        limit 1) p
     where l.lease_outcome is null
  ), recorded as (
    insert into public.webhook_delivery_attempts (event_id, attempt, version, worker, started_at, duration_ms,
      http_status, succeeded, outcome, error, response_excerpt)
    select r.id, r.attempt, r.version, p_worker, coalesce(r.started_at, now()), r.duration_ms, r.http_status,
           r.ok, coalesce(r.lease_outcome, 'lease_lost'), left(r.error, 500), left(r.response_excerpt, 300)
      from reported r
     where exists (select 1 from public.webhook_events e where e.id = r.id)
       and not exists (select 1 from earlier x where x.id = r.id)
  )
  select r.id, r.attempt, coalesce(r.lease_outcome, x.outcome, 'lease_lost'), coalesce(r.lease_status, x.status),
         coalesce(r.lease_next_attempt_at, x.next_attempt_at)
    from reported r
    left join earlier x on x.id = r.id;
end
$$;
