-- webhook_pipeline_health.last_received_at without visiting every dead letter (issue 6, cost as the table
-- grows). Its dead-letter term, max(last_received_at) where status = 'dead', had no index ending in that
-- column, so it fetched every dead row from the heap: 41 ms of a 44 ms read at 1 M events with 20 k dead
-- letters (EXPLAIN ANALYZE in docs/benchmarks.md). This partial index answers it with one entry from its end,
-- like webhook_events_prunable_idx does for the delivered and skipped rows. It costs a write only when a row
-- becomes (or stays) dead; webhook_events_dead_idx (received_at) keeps serving the dead-letter list and replay.
-- The view is unchanged: the planner picks the index for the existing term.
-- Added later (review): changes below take locks on webhook_events that ingests queue behind; with a long
-- query or an open writing transaction on the table they would wait without end, and every webhook with
-- them. Wait at most 2 s (ingests retry for 2.5 s); a busy table fails the migration, which changes nothing.
select set_config('lock_timeout', '2s', true);

create index webhook_events_dead_last_received_idx on public.webhook_events (last_received_at)
  where status = 'dead';
