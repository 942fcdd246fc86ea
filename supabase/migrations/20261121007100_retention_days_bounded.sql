-- Numbers that retention accepted and then misbehaved on.
--
-- prune_webhook_events(batch_size => 0) looped for ever: each round deleted nothing, and "exit when n <
-- batch_size" (0 < 0) never held, so it committed empty rounds until cancelled; batch_size => null did the
-- same (a comparison with null is never true). A negative older_than put the cutoff in the future: every
-- delivered and skipped event deleted, and pruned_before (kept at its latest) pushed past now, so that
-- deno task recover refused every window until that date came. Both are refused now, naming the argument,
-- by migration 007200's prune_webhook_events (written the same day; one redefinition, not two).
--
-- relay_settings.retention_days had no upper bound. Past about 2.4 million days the cutoff falls before
-- Postgres' earliest timestamp: every prune failed ("timestamp out of range"), the daily pg_cron job with it,
-- and nothing was pruned. A century is the bound: longer is "keep for ever" all the same. A row holding more
-- is lowered to it, with a warning: nothing stored is a century old, so what is pruned stays as it was.

select set_config('lock_timeout', '2s', true);

do $$
declare
  v_days integer;
begin
  -- ADD CONSTRAINT needs relay_settings to itself for a moment, and every ingest reads it: wait at most 2 s
  -- (ingests retry for 2.5 s); a table a long query holds fails the migration instead, changing nothing.
  perform set_config('lock_timeout', '2s', true);
  select s.retention_days into v_days from public.relay_settings s where s.id for update;
  if v_days > 36500 then
    update public.relay_settings s set retention_days = 36500, updated_at = now() where s.id;
    raise warning 'public.relay_settings.retention_days was %, lowered to 36500 (a century, the most it '
      'may be now): nothing stored is that old, so nothing more is pruned', v_days;
  end if;
  -- Not NOT VALID: Postgres checks every constraint of a row at each UPDATE (the kill switch included).
  alter table public.relay_settings
    add constraint relay_settings_retention_days_bounded check (retention_days <= 36500);
exception
  when lock_not_available then
    raise exception 'relay_settings is held by a long query: nothing changed; run the migration again'
      using errcode = 'lock_not_available';
end
$$;
