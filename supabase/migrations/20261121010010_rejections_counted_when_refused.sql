-- A refusal is counted in the minute it happened, and last_rejected_at is its time, not its write's.
--
-- chatwoot-webhook gathers its refusal counts in memory and writes them later (migration 001400), retried up
-- to a minute apart while the database does not answer; record_webhook_rejection took both the row's minute
-- and last_rejected_at from the write's now(). Readiness's webhook_pipeline check counts the
-- signature_invalid and token_invalid refusals after the last verified webhook (a secret rotated on one side
-- only), by last_rejected_at, and warns once they fill two distinct minutes: a stranger's probe refused
-- before a verified webhook and written after it counted as after it, in a minute it did not happen in.
--
-- The function now takes p_age_ms, how long before the write the count's latest refusal was (measured by the
-- function instance, so no clock of its has to agree with the database's): the row is that refusal's minute,
-- and last_rejected_at the latest refusal's time of the minute. The instance keeps its counts per reason and
-- minute. The three-argument form stays for an instance deployed before this migration.

create function public.record_webhook_rejection(p_reason text, p_http_status integer, p_count integer,
                                                p_age_ms bigint)
returns void
language sql
as $$
  insert into public.webhook_rejections as r (minute, reason, http_status, count, last_rejected_at)
  select date_trunc('minute', at), p_reason, p_http_status, p_count, at
    from (select now() - make_interval(secs => greatest(p_age_ms, 0) / 1000.0) as at) t
  on conflict (minute, reason) do update
    set count = r.count + excluded.count,
        last_rejected_at = greatest(r.last_rejected_at, excluded.last_rejected_at);
$$;

comment on function public.record_webhook_rejection(text, integer, integer, bigint) is
  'Adds p_count refusals of one reason to webhook_rejections, in the minute of the latest of them (p_age_ms '
  'before now), last_rejected_at its time.';

revoke all on function public.record_webhook_rejection(text, integer, integer, bigint)
  from public, anon, authenticated;
grant execute on function public.record_webhook_rejection(text, integer, integer, bigint) to service_role;
