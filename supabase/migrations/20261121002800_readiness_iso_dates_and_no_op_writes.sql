-- Two things the readiness document said wrongly (found by review).
--
-- Its dates followed the server's DateStyle. readiness_snapshot() turns them into text (due, last_reviewed,
-- expires, milestones, contact log), so a database set to DateStyle 'SQL, MDY' served "10/11/2025" where the
-- user's document says 2025-10-11, and the function, comparing those as text with today's YYYY-MM-DD, called
-- tasks overdue ten days before they were due. The function now runs with ISO dates, whatever the session's.
alter function public.readiness_snapshot() set datestyle = 'ISO, YMD';

-- A write that changes nothing named its writer. The PATCH endpoint writes an item even when status and
-- evidence stay as they are; the history records no such write (without a note), but updated_by and
-- updated_at took the writer and the time, so the item named someone whose change appears nowhere in
-- readiness_item_history. Such a write now leaves who and when as they were. Otherwise as in migration 000300.
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
  new.updated_at := now();
  new.updated_by := public.readiness_actor();
  return new;
end
$$;
