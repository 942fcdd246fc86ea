-- webhook_lost_events_since()'s missing_by_code now names each code's latest missing recover_command (and
-- when it was lost), so readiness words each cause with its own command (review of migrations 009400/009600).
--
-- It gave one recover_command, the latest missing of any code, and readiness's "the database did not answer"
-- warning showed it as that warning's latest: with a refused message_created lost after the database's loss,
-- the database's warning named the refusal's window (a clock's), and the refusals' warning none. Each
-- {missing, last} entry gains recover_command and recover_lost_at (null when none of the code's missing has
-- one: no message_created, which alone deno task recover fetches). Otherwise as migration 009400 left it, JIT
-- off (the SET clause, which also keeps it from being inlined: tests/lost_events.test.ts checks both); the
-- inline copy in lost_events.ts answers the same.

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

-- As migration 009400 left them (CREATE OR REPLACE keeps grants and comment; said again for a reader).
revoke all on function public.webhook_lost_events_since(timestamptz) from public, anon, authenticated;
grant execute on function public.webhook_lost_events_since(timestamptz) to service_role;
