-- The identity sequences in public are not the API roles' either (found by review).
--
-- On hosted Supabase, default privileges grant anon and authenticated everything the project's postgres role
-- creates in public, sequences included. The migrations revoke that from every table, view and function, but
-- of the sequences only from readiness_item_history's: anon and authenticated kept USAGE, SELECT and UPDATE
-- on the id sequences of webhook_events and webhook_delivery_attempts. setval() as anon could park
-- webhook_events' at its maximum, after which every ingest fails. PostgREST does not call setval, so this
-- closes a door rather than a hole: every sequence in public, now and here, is revoked from them.
do $$
declare
  s regclass;
begin
  for s in
    select c.oid::regclass from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = 'public' and c.relkind = 'S'
  loop
    execute format('revoke all on sequence %s from public, anon, authenticated', s);
  end loop;
end
$$;
