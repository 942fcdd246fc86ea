-- A webhook that authenticated (its signature, or the URL token) and was then refused is Chatwoot's own event,
-- and Chatwoot never sends it again: a stale or future timestamp (its clock off by more than the tolerance), a
-- body that is not UTF-8 or JSON, with no event, or that our schema or jsonb refuses. Until now such a refusal
-- was only counted in webhook_rejections, and readiness said "N rejected in 24 h" as text: a relay refusing
-- every event of a new Chatwoot version looked ready. chatwoot-webhook now records each one in
-- webhook_lost_events, error_code the refusal's code, so readiness and deno task stats warn while it is missing.
--
-- Their warnings say what to do, which differs per cause (a clock, a payload to report, a database that did
-- not answer): webhook_lost_events_by_code() reads what webhook_lost_events_since() (migration 009400) does and
-- the missing losses per error_code, with JIT off for the same reason (one probe of webhook_events per loss).
-- A new function, not a replacement: a function deployed before this migration still calls the old one (and a
-- RETURNS TABLE cannot gain a column in place). Its SET clause keeps it from being inlined into the caller's
-- plan: a later CREATE OR REPLACE must repeat it (tests/lost_events.test.ts checks).

comment on table public.webhook_lost_events is
  'Webhook events not stored: the database did not answer within the late store''s window, or Chatwoot''s '
  'authenticated request was refused (error_code the refusal''s); recover_command fetches a message_created '
  'back from Chatwoot''s API. Never holds bodies.';
comment on column public.webhook_lost_events.error_code is
  'The database''s error code, why no attempt was made (memory_bound, worker_shutdown), or the code an '
  'authenticated webhook was refused with (timestamp_stale, timestamp_future, timestamp_invalid, invalid_json, '
  'missing_event, invalid_payload).';
comment on column public.webhook_lost_events.event is
  'The event''s name; unknown when a refused body names none (not UTF-8 or JSON, no event).';

create or replace function public.webhook_lost_events_by_code(p_since timestamptz)
returns table (count integer, missing integer, last_lost_at timestamptz, recover_command text,
               missing_by_code jsonb)
language sql
stable
set jit = off
as $$
  -- As webhook_lost_events_since(); missing_by_code: {error_code: {missing, last}} of the codes with any
  -- missing (a loss without a code under "unknown"); losses past a bound are counted under their row's code.
  with lost as (
    select l.lost_at, l.unrecorded_losses, l.recover_command, coalesce(l.error_code, 'unknown') as code,
           exists (select 1 from public.webhook_events e
                    where e.event_key = l.event_key and e.last_received_at >= l.lost_at) as stored_since
      from public.webhook_lost_events l
     where l.lost_at > p_since),
  by_code as (
    select lost.code,
           sum(lost.unrecorded_losses + case when lost.stored_since then 0 else 1 end)::int as missing,
           max(lost.lost_at) filter (where lost.unrecorded_losses > 0 or not lost.stored_since) as last
      from lost group by lost.code)
  select coalesce(sum(1 + lost.unrecorded_losses), 0)::int,
         coalesce(sum(lost.unrecorded_losses + case when lost.stored_since then 0 else 1 end), 0)::int,
         max(lost.lost_at),
         (select m.recover_command from lost m
           where m.recover_command is not null and not m.stored_since
           order by m.lost_at desc limit 1),
         (select coalesce(jsonb_object_agg(b.code, jsonb_build_object('missing', b.missing, 'last', b.last)),
                          '{}'::jsonb)
            from by_code b where b.missing > 0)
    from lost
$$;

comment on function public.webhook_lost_events_by_code(timestamptz) is
  'Lost events since a time: how many, how many still missing, the last, the recover command of the latest '
  'missing, and the missing per error_code. Read by readiness and deno task stats; JIT off.';

revoke all on function public.webhook_lost_events_by_code(timestamptz) from public, anon, authenticated;
grant execute on function public.webhook_lost_events_by_code(timestamptz) to service_role;
