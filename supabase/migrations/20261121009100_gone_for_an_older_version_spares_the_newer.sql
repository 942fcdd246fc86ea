-- A 410 for an older version no longer kills the newer one (migration 001500's rule, "a newer version is never
-- made to pay for an older one's failures", had one exception).
--
-- complete_webhook_deliveries decided 'dead' for a 410 before it looked at the version: a message_updated
-- that arrived while its previous edit was being delivered, and that the Agent SDK then refused with 410, went
-- dead with the older edit's refusal, never sent (a dead letter an operator had to find and replay, and that
-- counted as a death in webhook_pipeline_health). The Agent SDK's 410 answers the body it was sent; the newer
-- version is another body. It is now pending, due now, its attempts at 0, as after any other failure of an
-- older version: the attempt is recorded as 'retry' with its 410, and the newer version gets its own answer
-- (another 410 makes it dead at once, as before). Nothing else changes; the body is migration 002500's.

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
             -- A 410 refuses the version sent: a newer one (never sent) starts afresh, as after any failure.
             when e.version <> r.version then 'pending'
             when r.http_status = 410 then 'dead'
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
