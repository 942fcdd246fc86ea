-- relay_settings_lease_covers_timeout (migration 000200) computed in integer: lease_seconds * 1000 overflows
-- from 2147484 s, and request_timeout_ms + 1000 from 2147482648 ms. Such an update failed with "integer out
-- of range", naming neither the column nor the rule, where a lease that short of its timeout should be
-- refused as a check violation naming the constraint (and a lease that long is accepted: it covers it).
-- Replaced by the same rule computed in bigint: for every value that did not overflow, the same answer.
--
-- Plain, not NOT VALID + VALIDATE: the table holds one row, which met the old rule, so it meets this one and
-- the check is instant; and Postgres checks every constraint of a row at each UPDATE anyway (the kill switch
-- included). Drop and add are one ALTER TABLE: no moment without the rule.

select set_config('lock_timeout', '2s', true);

do $$
begin
  -- ALTER TABLE needs relay_settings to itself for a moment, and every ingest reads it: wait at most 2 s
  -- (ingests retry for 2.5 s); a table a long query holds fails the migration instead, changing nothing.
  perform set_config('lock_timeout', '2s', true);
  alter table public.relay_settings
    drop constraint relay_settings_lease_covers_timeout,
    add constraint relay_settings_lease_covers_timeout
      check (lease_seconds::bigint * 1000 >= request_timeout_ms::bigint + 1000);
exception
  when lock_not_available then
    raise exception 'relay_settings is held by a long query: nothing changed; run the migration again'
      using errcode = 'lock_not_available';
end
$$;
