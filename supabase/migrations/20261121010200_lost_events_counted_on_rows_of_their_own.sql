-- Losses past an instance's memory bound of unwritten records (10 000) are counted only, without their events.
-- Their count rode on the first row of the batch the function wrote next, under that row's error_code, and
-- that row was written even when it was a refused webhook's replay (its body stored: no loss), so a false loss
-- appeared to carry it, and every overflow counted under one cause. The function now counts them per
-- error_code and writes each code's count on a row of its own: event 'unknown', event_key 'unrecorded:<its
-- id>' (no event's), lost_at the last of them; the row is one of them and unrecorded_losses the rest, so
-- count and missing (sum(1 + unrecorded_losses)) read as before. A write retried after its answer was lost
-- writes that row again with the losses counted since (its id kept). Only the comments change here.

-- A comment takes a lock on webhook_lost_events, which the webhook writes: wait at most 2 s for it.
select set_config('lock_timeout', '2s', true);

comment on column public.webhook_lost_events.unrecorded_losses is
  'On a row of losses an instance counted but did not keep one by one (past 10 000 unwritten records; event '
  'unknown, event_key unrecorded:<id>, one row per error_code): how many besides the row itself; 0 otherwise '
  '(before migration 20261121010200: all of them, on the first row of a batch).';
comment on column public.webhook_lost_events.event is
  'The event''s name; unknown when a refused body names none (not UTF-8 or JSON, no event), and on a row of '
  'losses counted past the memory bound.';
