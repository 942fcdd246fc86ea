-- webhook_pipeline_health.last_received_at without visiting every dead letter (issue 6, cost as the table
-- grows). Its dead-letter term, max(last_received_at) where status = 'dead', had no index ending in that
-- column, so it fetched every dead row from the heap: 41 ms of a 44 ms read at 1 M events with 20 k dead
-- letters (EXPLAIN ANALYZE in docs/benchmarks.md). This partial index answers it with one entry from its end,
-- like webhook_events_prunable_idx does for the delivered and skipped rows. It costs a write only when a row
-- becomes (or stays) dead; webhook_events_dead_idx (received_at) keeps serving the dead-letter list and replay.
-- The view is unchanged: the planner picks the index for the existing term.
create index webhook_events_dead_last_received_idx on public.webhook_events (last_received_at)
  where status = 'dead';
