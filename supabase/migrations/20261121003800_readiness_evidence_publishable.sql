-- Evidence is published: the readiness page, its JSON and its Markdown need no token. Only credential rows
-- refused a secret-looking value (migration 000300); a task's, inbox item's, blocker's or validation's evidence
-- was checked by the PATCH endpoint against the secrets configured in the function's environment only, so a
-- token pasted as evidence of "generate API token" or "mirror secrets" (a staging token, a GitHub or Fly
-- token: none of them configured there) went on the public page, as did anything written from the SQL editor.
-- Every row's evidence now refuses, whatever the write path:
--   * a token-shaped value: a run of 20 or more letters and digits with both in it (API tokens, hex secrets,
--     a JWT's parts, a full commit id: cite a commit by its short id). A run of letters only (a Supabase
--     project ref, a long word) or digits only is ordinary text;
--   * a control character (a line break, a tab): evidence is one line, as the PATCH endpoint has it; a line
--     break ended a blocker's or validation's line in the Markdown and started another (a forged row).
-- Rows that already hold such evidence are repaired first (tokens become [redacted], control characters a
-- space), as the migration's own change: readiness_item_history, which only service_role reads, keeps the old
-- value. Readiness tables only (not webhook_events or relay_settings): small, and read by the function alone.

select set_config('readiness.actor', 'migration 20261121003800', true);
select set_config('readiness.note',
  'evidence made fit for the public page: token-shaped values redacted, line breaks made spaces', true);

do $$
declare
  v_section text;
  -- Run start (the start of the text or a character that is neither), a digit and a letter ahead in the run,
  -- then 20 or more letters and digits.
  v_token constant text := '(^|[^A-Za-z0-9])(?=[A-Za-z0-9]*[0-9])(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{20,}';
  v_control constant text := '[\x01-\x1f\x7f]';
begin
  foreach v_section in array array['credentials', 'inbox_config', 'blockers', 'tasks', 'validations'] loop
    execute format(
      $f$update public.%I
            set evidence = nullif(btrim(regexp_replace(regexp_replace(evidence, %L, ' ', 'g'),
                                                       %L, '\1[redacted]', 'g')), '')
          where evidence ~ %L or evidence ~ %L$f$,
      'readiness_' || v_section, v_control || '+', v_token, v_control, v_token);
    -- Credential rows refuse every such run already (readiness_credentials_no_secret_values, stricter).
    execute format(
      'alter table public.%I add constraint %I check (%s evidence !~ %L)',
      'readiness_' || v_section, 'readiness_' || v_section || '_evidence_publishable',
      case when v_section = 'credentials' then '' else format('evidence !~ %L and', v_token) end, v_control);
  end loop;
end
$$;

-- Later statements of the same transaction name their own writer.
select set_config('readiness.actor', '', true);
select set_config('readiness.note', '', true);
