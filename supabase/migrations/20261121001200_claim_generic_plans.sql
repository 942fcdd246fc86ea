-- claim_webhook_events plans its statements once per connection, not at every call, and never compiles them.
--
-- PL/pgSQL caches each statement's plan and, after five calls, keeps the generic one unless planning afresh
-- with the values looks cheaper. On a large table the lease statement's values always look cheaper (the
-- statistics put a handful of rows below the candidates' bound: a custom plan costs ~16 against the generic
-- plan's default estimates), so every claim planned it again: 0.2-0.3 ms a call at 1 M rows that a table of
-- 10 k rows did not pay (the benchmark's growth probe: 1.29x; 1.00x with generic plans). The generic plans
-- take the same index paths, bounded by the candidates' window (migration 001100).
--
-- JIT off with them: a generic plan's LIMIT is a parameter, estimated as a tenth of the pending rows, so with
-- a backlog of 1 M its cost passes jit_above_cost and every claim spent ~125 ms compiling a plan that runs in
-- 10 ms. A claim reads a window of the backlog; compiling never pays off for it.
--
-- A later CREATE OR REPLACE of this function must repeat both settings (tests/claim_backlog.test.ts checks).
alter function public.claim_webhook_events(text, integer, integer)
  set plan_cache_mode = force_generic_plan
  set jit = off;
