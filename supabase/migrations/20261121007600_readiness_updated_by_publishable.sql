-- updated_by is published too: the readiness JSON gives every item's updated_by, and the function's role and
-- an SQL editor can read it. Migration 003800 made every row's evidence refuse a token and a control
-- character; updated_by was checked by the PATCH endpoint only (a token-shaped `by`: 400). Every other write
-- path stored whatever readiness.actor held: `set readiness.actor = '...'` in the SQL editor, a seed,
-- readiness_update_item / readiness_update_item_if_unchanged called with such a p_actor. Every row's
-- updated_by now refuses what 003800 has evidence refuse (the same rule, the same 23514 check_violation the
-- PATCH endpoint answers 400 secret_in_evidence for):
--   * a token-shaped value: a run of 20 or more letters and digits with both in it. A run of letters only (a
--     long name, a Supabase project ref) or digits only (a migration's version) is ordinary text;
--   * a control character (a line break, a tab).
-- Credential rows too: their readiness_credentials_no_secret_values check leaves updated_by out.
--
-- Rows that already hold such a value are repaired first, as 003800 repaired evidence: tokens become
-- [redacted], control characters a space ("admin:dana ghp_[redacted]"; nothing left: "[redacted]"). Unlike
-- 003800's repair this changes neither status nor evidence, so who and when stay as they were (as migration
-- 002800 has a write that changes neither do): readiness_touch, which would name this migration as the
-- writer and take the time now, is off for the repair's UPDATE only. readiness_item_history records the repair
-- (this migration as changed_by, with a note); it has no updated_by column, and its changed_by, which only
-- service_role reads and nothing publishes, keeps what it was.

select set_config('readiness.actor', 'migration 20261121007600', true);
select set_config('readiness.note',
  'updated_by made fit for the public page: token-shaped values redacted, line breaks made spaces', true);

do $$
declare
  v_section text;
  v_table text;
  -- As migration 003800: run start, a digit and a letter ahead in the run, then 20 or more of them.
  v_token constant text := '(^|[^A-Za-z0-9])(?=[A-Za-z0-9]*[0-9])(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{20,}';
  v_control constant text := '[\x01-\x1f\x7f]';
begin
  foreach v_section in array array['credentials', 'inbox_config', 'blockers', 'tasks', 'validations'] loop
    v_table := 'readiness_' || v_section;
    -- In this migration's transaction only: a failure leaves the trigger as it was.
    execute format('alter table public.%I disable trigger readiness_touch', v_table);
    execute format(
      $f$update public.%I
            set updated_by = coalesce(nullif(btrim(regexp_replace(regexp_replace(updated_by, %L, ' ', 'g'),
                                                                  %L, '\1[redacted]', 'g')), ''), '[redacted]')
          where updated_by ~ %L or updated_by ~ %L$f$,
      v_table, v_control || '+', v_token, v_control, v_token);
    execute format('alter table public.%I enable trigger readiness_touch', v_table);
    execute format('alter table public.%I add constraint %I check (updated_by !~ %L and updated_by !~ %L)',
      v_table, v_table || '_updated_by_publishable', v_token, v_control);
  end loop;
end
$$;

-- Later statements of the same transaction name their own writer.
select set_config('readiness.actor', '', true);
select set_config('readiness.note', '', true);
