-- The losses of a day are counted without JIT (plan-cost audit). Readiness's webhook_pipeline check (on every
-- uncached GET) and deno task stats count the lost events since a time and, for each, whether its event key
-- was stored again at or after the loss: one probe of webhook_events' event_key index per loss, which the
-- planner costs ~8.7 (an index page and a heap page, as if neither were cached). Past ~12 000 losses in the
-- window (a busy relay's outage of a few hours, when readiness is read most) the estimate passed
-- jit_above_cost (100 000 by default; JIT is on in hosted Supabase too) and every read compiled its plan
-- first: at 1 M events, 12 000 losses read in 43 ms with JIT off and 102 ms with it; 25 000 in 70 and 171 ms.
-- The probes are the work (no index or rewrite makes them fewer: each loss needs its own answer, and a hash
-- join would read the whole table), and compiled code does not make an index probe faster.
--
-- So the read is a function with JIT off, as claim_webhook_events is (migration 001200): the caller's
-- statement is one call, costed as one, and the statement inside runs with jit = off whatever its estimate.
-- Its answer is the query's in lost_events.ts (kept there for a database without this function), and the
-- missing per error_code besides, each code with its latest missing recover_command: readiness and stats
-- word each cause apart, each with its own command (refusals, migration 009600).
-- The SET clause also keeps the function from being inlined into the caller's query, which would bring the
-- per-loss cost back into the caller's plan: a later CREATE OR REPLACE must repeat it (tests/lost_events.test.ts
-- checks both).

create or replace function public.webhook_lost_events_since(p_since timestamptz)
returns table (count integer, missing integer, last_lost_at timestamptz, recover_command text,
               missing_by_code jsonb)
language sql
stable
set jit = off
as $$
  -- A loss is made good once its event key has been stored at or after it (recovered, or sent again); losses
  -- past an instance's record bound (unrecorded_losses) name no event, so they stay missing. missing_by_code:
  -- {error_code: {missing, last, recover_command, recover_lost_at}} of the codes with any missing (a loss
  -- without a code under "unknown"), the command the latest missing one of the code carries.
  with lost as (
    select l.lost_at, l.unrecorded_losses, l.recover_command, coalesce(l.error_code, 'unknown') as code,
           exists (select 1 from public.webhook_events e
                    where e.event_key = l.event_key and e.last_received_at >= l.lost_at) as stored_since
      from public.webhook_lost_events l
     where l.lost_at > p_since),
  by_code as (
    select lost.code,
           sum(lost.unrecorded_losses + case when lost.stored_since then 0 else 1 end)::int as missing,
           max(lost.lost_at) filter (where lost.unrecorded_losses > 0 or not lost.stored_since) as last,
           (array_agg(lost.recover_command order by lost.lost_at desc)
              filter (where lost.recover_command is not null and not lost.stored_since))[1] as recover_command,
           max(lost.lost_at) filter (where lost.recover_command is not null and not lost.stored_since)
             as recover_lost_at
      from lost group by lost.code)
  select coalesce(sum(1 + lost.unrecorded_losses), 0)::int,
         coalesce(sum(lost.unrecorded_losses + case when lost.stored_since then 0 else 1 end), 0)::int,
         max(lost.lost_at),
         (select m.recover_command from lost m
           where m.recover_command is not null and not m.stored_since
           order by m.lost_at desc limit 1),
         (select coalesce(jsonb_object_agg(b.code, jsonb_build_object('missing', b.missing, 'last', b.last,
                                                                      'recover_command', b.recover_command,
                                                                      'recover_lost_at', b.recover_lost_at)),
                          '{}'::jsonb)
            from by_code b where b.missing > 0)
    from lost
$$;

comment on function public.webhook_lost_events_since(timestamptz) is
  'Lost events since a time: how many, how many still missing, the last, the recover command of the latest '
  'missing, and per error_code the missing, the last and its latest recover command. Read by readiness and '
  'deno task stats; JIT off (a probe per loss gains nothing from it).';

revoke all on function public.webhook_lost_events_since(timestamptz) from public, anon, authenticated;
grant execute on function public.webhook_lost_events_since(timestamptz) to service_role;
