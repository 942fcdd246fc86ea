-- chatwoot-webhook now counts refusals in memory and writes what has gathered in one statement at a time,
-- per instance (rejection_counter.ts). Before, every refused request started its own upsert of the same row:
-- a flood of requests with bad signatures, which costs its sender nothing, queued that many writes on one row
-- lock and on the function's few database connections, ahead of the stores of real events. The count is now
-- an argument (default 1, as before); the table is unchanged.
drop function public.record_webhook_rejection(text, integer);

create function public.record_webhook_rejection(p_reason text, p_http_status integer, p_count integer default 1)
returns void
language sql
as $$
  insert into public.webhook_rejections as r (minute, reason, http_status, count)
  values (date_trunc('minute', now()), p_reason, p_http_status, p_count)
  on conflict (minute, reason) do update
    set count = r.count + excluded.count, last_rejected_at = now();
$$;

comment on function public.record_webhook_rejection(text, integer, integer) is
  'Adds p_count refusals of one reason to the current minute of webhook_rejections.';

revoke all on function public.record_webhook_rejection(text, integer, integer) from public, anon, authenticated;
grant execute on function public.record_webhook_rejection(text, integer, integer) to service_role;
