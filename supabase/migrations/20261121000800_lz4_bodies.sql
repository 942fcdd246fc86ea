-- lz4 instead of pglz for the two large columns of webhook_events, where the server has it (issue 6).
-- Every ingest compresses a 5-20 KB raw_body and its jsonb payload on the path Chatwoot waits for, and every
-- delivery decompresses raw_body. On PostgreSQL 15 here, loading 50 000 of the benchmark's events took 14.2 s
-- with pglz and 4.8 s with lz4 (~190 µs less per event; stored sizes alike, ~2.4 KB of a 12 KB body), and
-- pgbench running the ingest statement went from ~2 000 to ~2 950 per second. Only new values use it: rows
-- already stored stay as they are, readable. Servers built without lz4 (PGlite) keep pglz.
do $$
begin
  -- The ALTER needs the table to itself for a moment, and ingests queue behind it while it waits for a long
  -- query to finish. Wait at most 2 s (ingests retry for 2.5 s); a busy table fails the migration instead.
  perform set_config('lock_timeout', '2s', true);
  alter table public.webhook_events
    alter column raw_body set compression lz4,
    alter column payload set compression lz4;
exception
  when feature_not_supported then
    raise notice 'lz4 is not available on this server: raw_body and payload keep pglz';
  when lock_not_available then
    raise exception 'webhook_events is held by a long query: nothing changed; run the migration again'
      using errcode = 'lock_not_available';
end
$$;
