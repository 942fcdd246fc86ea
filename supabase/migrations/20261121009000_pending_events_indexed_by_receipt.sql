-- The backlog's receipt times read from an index (JIT audit). webhook_delivery_health counts the pending
-- events and finds the oldest (open_events), webhook_pipeline_health and readiness's webhook_pipeline check
-- take the newest receipt among them, and readiness counts those of the last 24 hours. No index had
-- last_received_at for pending rows: each of these read every pending row from the table (a bitmap scan of
-- due_idx), which the planner costs ~1.3 a row in a big table. At 1 M events with 50 000 pending (a forwarder
-- down for an hour) webhook_pipeline_health's estimate reached 134 000 and readiness's intake query 129 000,
-- past jit_above_cost (100 000 by default; JIT is on in hosted Supabase too): every read compiled its plan
-- first (27-71 ms of JIT), just when someone looks at the health of a stalled pipeline. From this index the
-- count is index-only and the oldest and newest one entry each: 8 500 and 2 700 for the same backlog.
-- The views and queries are unchanged, so are their answers.
--
-- The build holds a SHARE lock on webhook_events (ingests wait; the late store keeps what arrives meanwhile):
-- it scans the table but indexes the pending rows only, ~0.3 s at 1 M events. Wait at most 2 s for the lock.
select set_config('lock_timeout', '2s', true);

create index webhook_events_pending_received_idx
  on public.webhook_events (last_received_at) where status = 'pending';
