-- Events the webhook's late store gave up on ("[Chatwoot Webhook] Lost"), one row each, written by the
-- function once the database answers again: the logs of a hosted function are kept briefly, and deno task
-- stats and readiness read SQL. No bodies, no headers, nothing secret: what deno task recover needs.
create table public.webhook_lost_events (
  id uuid primary key,
  lost_at timestamptz not null,
  event text not null,
  event_key text not null,
  delivery_id text,
  inbox_id bigint,
  account_id bigint,
  received_at timestamptz,
  message_created_at timestamptz,
  recover_command text,
  error_code text,
  tried_for_ms bigint not null,
  unrecorded_losses integer not null default 0 check (unrecorded_losses >= 0)
);

comment on table public.webhook_lost_events is
  'Webhook events not stored (the database did not answer within the late store''s window); recover_command '
  'fetches a message_created back from Chatwoot''s API. Never holds bodies.';
comment on column public.webhook_lost_events.id is
  'Made by the function: a write retried after its answer was lost inserts the row once.';
comment on column public.webhook_lost_events.error_code is
  'The database''s error code, or why no attempt was made (memory_bound, worker_shutdown).';
comment on column public.webhook_lost_events.unrecorded_losses is
  'Losses the instance counted but did not keep one by one (past 10 000 unwritten records), written here.';

create index webhook_lost_events_lost_at_idx on public.webhook_lost_events (lost_at);

alter table public.webhook_lost_events enable row level security;
revoke all on table public.webhook_lost_events from public, anon, authenticated;
grant select, insert, update, delete on table public.webhook_lost_events to service_role;

-- Retention as webhook_rejections': rows older than the cutoff go with the delivered events.
create or replace procedure public.prune_webhook_events(
  inout deleted bigint default 0,
  older_than interval default null,
  batch_size integer default 5000
)
language plpgsql
as $$
declare
  cutoff timestamptz := now() - coalesce(
    older_than,
    (select make_interval(days => s.retention_days) from public.relay_settings s where s.id),
    interval '30 days');
  n bigint;
begin
  deleted := 0;
  -- Said before deleting, and kept at its latest: a recovery never reaches back past what may be gone.
  update public.relay_settings s
     set pruned_before = greatest(s.pruned_before, cutoff)
   where s.id;
  loop
    delete from public.webhook_events e
     where e.id in (
       select p.id from public.webhook_events p
        where p.status in ('delivered', 'skipped') and p.last_received_at < cutoff
        order by p.last_received_at
        limit batch_size
          for update skip locked);
    get diagnostics n = row_count;
    deleted := deleted + n;
    exit when n < batch_size;
    commit;
  end loop;
  delete from public.webhook_rejections r where r.minute < cutoff;
  delete from public.webhook_lost_events l where l.lost_at < cutoff;
end
$$;
