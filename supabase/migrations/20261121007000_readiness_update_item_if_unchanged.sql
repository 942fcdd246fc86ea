-- The readiness PATCH's conditional write (if_updated_at) in one call. The function read the item's section,
-- then its row under lock, then the item again when it had changed: three round trips inside the write's
-- bound, each one more chance for a slow network to spend it. This function does it in one statement:
-- locks the item's row, compares its updated_at (to the millisecond: a PATCH's answer gives it so, the page
-- to the microsecond) with the editor's copy, and either writes as readiness_update_item does and returns the
-- new row, or returns the row as it is now with stale = true. Compared under the lock, so of two editors
-- writing on one copy at once the second waits, then sees the first's write (READ COMMITTED re-reads the
-- locked row) and is refused. p_if_updated_at null: the write as readiness_update_item does it. An unknown
-- key: no row.
create or replace function public.readiness_update_item_if_unchanged(
  p_key text,
  p_status text,
  p_set_evidence boolean,
  p_evidence text,
  p_note text,
  p_actor text,
  p_if_updated_at timestamptz
)
returns table (item public.readiness_items, stale boolean)
language plpgsql
as $$
declare
  v_section text;
  v_updated_at timestamptz;
  v_rows bigint;
begin
  if p_if_updated_at is not null then
    select i.section into v_section from public.readiness_items i where i.key = p_key;
    if v_section is null then
      return;
    end if;
    execute format('select r.updated_at from public.%I r where r.key = $1 for update',
                   'readiness_' || v_section)
      into v_updated_at using p_key;
    get diagnostics v_rows = row_count;
    if v_rows = 0 then
      return; -- deleted since
    end if;
    if date_trunc('milliseconds', v_updated_at)
         is distinct from date_trunc('milliseconds', p_if_updated_at) then
      return query select i, true from public.readiness_items i where i.key = p_key;
      return;
    end if;
  end if;
  return query select u, false
    from public.readiness_update_item(p_key, p_status, p_set_evidence, p_evidence, p_note, p_actor) u;
end
$$;

-- As the other readiness functions (migration 000300): the function's role only.
revoke all on function
  public.readiness_update_item_if_unchanged(text, text, boolean, text, text, text, timestamptz)
  from public, anon, authenticated;
grant execute on function
  public.readiness_update_item_if_unchanged(text, text, boolean, text, text, text, timestamptz)
  to service_role;
