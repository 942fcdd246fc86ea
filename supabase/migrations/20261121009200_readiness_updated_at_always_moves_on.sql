-- An item's updated_at now moves on by a millisecond at least with every write that changes it, so an
-- editor's copy (the PATCH's if_updated_at, compared to the millisecond: migration 007000) names one version.
--
-- readiness_touch_item set it to now(), the writing transaction's start. Two writes in one millisecond (a
-- script, two tabs, two writes in one transaction) got the same time, and an editor holding the first's copy
-- passed the check against the second and overwrote it unseen. A write whose transaction began before another
-- write committed (it waited on the row's lock, or was slow to get there) took a time earlier than that
-- write's: updated_at went back, and could meet an older copy the same way.
--
-- Now a write that changes the item takes now() or, when that is not a millisecond after the row's
-- updated_at, the row's updated_at and 1 ms. now() rather than clock_timestamp(): an item's updated_at stays
-- its transaction's time, as readiness_item_history's changed_at and every other updated_at here, in all but
-- that case. The row as the trigger sees it is the latest version: a write that waited on the row's lock
-- compares with the write it waited for (READ COMMITTED re-reads the row). A burst of writes to one item
-- faster than one a millisecond puts its updated_at ahead of the clock by as much; the next write after it
-- catches up. Inserts and writes that change nothing: as migration 002800 left them.
create or replace function public.readiness_touch_item()
returns trigger
language plpgsql
as $$
begin
  if tg_op = 'UPDATE'
     and new.status is not distinct from old.status and new.evidence is not distinct from old.evidence
     and new.key is not distinct from old.key
     and nullif(current_setting('readiness.note', true), '') is null then
    new.updated_at := old.updated_at;
    new.updated_by := old.updated_by;
    return new;
  end if;
  if tg_op = 'UPDATE' then
    new.updated_at := greatest(now(), old.updated_at + interval '1 millisecond');
  else
    new.updated_at := now();
  end if;
  new.updated_by := public.readiness_actor();
  return new;
end
$$;
