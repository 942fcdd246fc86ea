-- The Data team's SQL surface: stable, typed views over webhook_events, a read-only analyst role, the
-- indexes their common queries need, and retention. Documented in docs/sql.md (every query there is run by
-- tests/data_surface.test.ts).

-- Added later (review): changes below take locks on webhook_events that ingests queue behind; with a long
-- query or an open writing transaction on the table they would wait without end, and every webhook with
-- them. Wait at most 2 s (ingests retry for 2.5 s); a busy table fails the migration, which changes nothing.
select set_config('lock_timeout', '2s', true);

-- Chatwoot sends ISO-8601 strings on message events and epoch seconds (integer or float) elsewhere.
-- Anything else yields null rather than breaking a whole query.
create or replace function public.chatwoot_timestamp(p_value jsonb)
returns timestamptz
language sql
stable
as $$
  select case jsonb_typeof(p_value)
    when 'number' then to_timestamp((p_value #>> '{}')::double precision)
    when 'string' then case
      when (p_value #>> '{}') ~ '^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?$'
        then (p_value #>> '{}')::timestamptz
      when (p_value #>> '{}') ~ '^\d{9,11}(\.\d+)?$'
        then to_timestamp((p_value #>> '{}')::double precision)
    end
  end
$$;

comment on function public.chatwoot_timestamp(jsonb) is
  'A Chatwoot time (ISO-8601 string or epoch seconds) as timestamptz; null when it is neither.';

-- One row per message, in its latest known state: the message_updated payload when one arrived (it carries
-- the message's current state), else the message_created one. Delivery columns are those of the forwarded
-- event (message_created).
create or replace view public.chatwoot_messages as
select
  e.message_id,
  e.conversation_id,
  e.account_id,
  latest.payload -> 'account' ->> 'name' as account_name,
  e.inbox_id,
  latest.payload -> 'inbox' ->> 'name' as inbox_name,
  latest.payload ->> 'message_type' as message_type,
  coalesce(latest.payload -> 'private' = 'true'::jsonb, false) as private,
  latest.payload ->> 'content' as content,
  latest.payload ->> 'content_type' as content_type,
  -- Contacts carry no "type" key; users and agent bots do.
  case when jsonb_typeof(latest.payload -> 'sender') = 'object'
    then coalesce(latest.payload -> 'sender' ->> 'type', 'contact') end as sender_type,
  case when jsonb_typeof(latest.payload -> 'sender' -> 'id') = 'number'
    then (latest.payload -> 'sender' ->> 'id')::bigint end as sender_id,
  latest.payload -> 'sender' ->> 'name' as sender_name,
  case when jsonb_typeof(latest.payload -> 'attachments') = 'array'
    then jsonb_array_length(latest.payload -> 'attachments') else 0 end as attachment_count,
  public.chatwoot_timestamp(latest.payload -> 'created_at') as created_at,
  u.id is not null and e.event = 'message_created' as edited,
  e.status as delivery_status,
  e.delivered_at,
  e.attempts as delivery_attempts,
  greatest(e.last_received_at, u.last_received_at) as last_received_at,
  e.id as event_id
from public.webhook_events e
left join public.webhook_events u
  on e.event = 'message_created' and u.event_key = 'message:' || e.message_id || ':message_updated'
cross join lateral (select coalesce(u.payload, e.payload) as payload) latest
where e.event = 'message_created'
   or (e.event = 'message_updated'
       and not exists (select 1 from public.webhook_events c
                        where c.event_key = 'message:' || e.message_id || ':message_created'));

comment on view public.chatwoot_messages is
  'One row per Chatwoot message, latest version (message_updated over message_created); see docs/sql.md.';

-- Conversation status changes and updates: one row per changed attribute, with its previous and current
-- value (jsonb, and as text for filtering); one row with a null attribute when none were listed.
create or replace view public.chatwoot_conversation_events as
select
  e.id as event_id,
  e.event,
  e.conversation_id,
  e.account_id,
  e.inbox_id,
  e.payload ->> 'status' as conversation_status,
  changed.attribute,
  changed.previous_value,
  changed.current_value,
  changed.previous_value #>> '{}' as previous_text,
  changed.current_value #>> '{}' as current_text,
  public.chatwoot_timestamp(e.payload -> 'updated_at') as occurred_at,
  e.received_at
from public.webhook_events e
left join lateral (
  select a.key as attribute, a.value -> 'previous_value' as previous_value, a.value -> 'current_value' as current_value
    from jsonb_array_elements(
           case when jsonb_typeof(e.payload -> 'changed_attributes') = 'array'
             then e.payload -> 'changed_attributes' else '[]'::jsonb end) item
   cross join lateral jsonb_each(case when jsonb_typeof(item) = 'object' then item else '{}'::jsonb end) a
) changed on true
where e.event in ('conversation_status_changed', 'conversation_updated');

comment on view public.chatwoot_conversation_events is
  'Conversation status changes and updates, one row per changed attribute (previous/current value).';

-- Analysts read delivery health through webhook_pipeline_health without rights on the attempts table, so
-- the view underneath runs with its owner's rights. API roles still have no grant on either view.
alter view public.webhook_delivery_health set (security_invoker = false);

-- The pipeline in one row: what waits, what got through, what died, and the runbook's escalation flag.
create or replace view public.webhook_pipeline_health as
select
  h.backlog,
  h.oldest_pending_at,
  h.oldest_pending_age_seconds,
  (select count(distinct a.event_id) from public.webhook_delivery_attempts a
    where a.outcome = 'delivered' and a.recorded_at > now() - interval '1 hour')::bigint as delivered_last_hour,
  (select count(distinct a.event_id) from public.webhook_delivery_attempts a
    where a.outcome = 'delivered' and a.recorded_at > now() - interval '1 day')::bigint as delivered_last_day,
  (select count(distinct a.event_id) from public.webhook_delivery_attempts a
    where a.outcome = 'dead' and a.recorded_at > now() - interval '1 hour')::bigint as dead_last_hour,
  (select count(distinct a.event_id) from public.webhook_delivery_attempts a
    where a.outcome = 'dead' and a.recorded_at > now() - interval '1 day')::bigint as dead_last_day,
  h.dead_count as dead_total,
  (select max(e.last_received_at) from public.webhook_events e) as last_received_at,
  (select max(e.delivered_at) from public.webhook_events e) as last_delivered_at,
  h.last_failure_at,
  h.failing_since,
  h.escalate,
  h.paused
from public.webhook_delivery_health h;

comment on view public.webhook_pipeline_health is
  'One row: backlog, oldest pending age, delivered/dead in the last hour and day, last received/delivered, escalate.';

-- Per UTC day and event type: how much arrived and where it stands.
create or replace view public.chatwoot_daily_event_stats as
select
  (e.received_at at time zone 'UTC')::date as day,
  e.event,
  count(*)::bigint as events,
  sum(e.receive_count)::bigint as received,
  sum(e.receive_count - 1)::bigint as duplicates,
  count(*) filter (where e.version > 1)::bigint as changed,
  count(*) filter (where e.status = 'pending')::bigint as pending,
  count(*) filter (where e.status = 'delivering')::bigint as delivering,
  count(*) filter (where e.status = 'delivered')::bigint as delivered,
  count(*) filter (where e.status = 'dead')::bigint as dead,
  count(*) filter (where e.status = 'skipped')::bigint as skipped
from public.webhook_events e
group by 1, 2;

comment on view public.chatwoot_daily_event_stats is
  'Per UTC day (of first receipt) and event: events, receipts, duplicates, changed bodies, and delivery states.';

-- Indexes for the documented queries (docs/sql.md names the query each one serves).
create index if not exists webhook_events_event_received_idx on public.webhook_events (event, received_at);
create index if not exists webhook_events_message_idx on public.webhook_events (message_id) where message_id is not null;
create index if not exists webhook_events_prunable_idx on public.webhook_events (last_received_at)
  where status in ('delivered', 'skipped');

-- Analysts: read the views and webhook_events, nothing else. Members log in as their own roles:
--   create role alice login password '…' in role data_analyst;
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'data_analyst') then
    create role data_analyst nologin;
  end if;
end
$$;

grant usage on schema public to data_analyst;
grant select on public.webhook_events, public.chatwoot_messages, public.chatwoot_conversation_events,
  public.webhook_pipeline_health, public.chatwoot_daily_event_stats to data_analyst;
-- Views call this helper with the caller's rights, so the analysts need it too.
grant execute on function public.chatwoot_timestamp(jsonb) to data_analyst;
-- RLS stays on: analysts see every row through this policy; anon and authenticated have none.
create policy webhook_events_data_analyst_read on public.webhook_events for select to data_analyst using (true);

revoke all on public.chatwoot_messages, public.chatwoot_conversation_events, public.webhook_pipeline_health,
  public.chatwoot_daily_event_stats from public, anon, authenticated;
grant select on public.chatwoot_messages, public.chatwoot_conversation_events, public.webhook_pipeline_health,
  public.chatwoot_daily_event_stats to service_role;
revoke all on function public.chatwoot_timestamp(jsonb) from public, anon, authenticated;
grant execute on function public.chatwoot_timestamp(jsonb) to service_role;

-- Retention: delivered and skipped events not seen for retention_days are deleted (their attempts go with
-- them); pending, delivering and dead events are never touched. Age counts from the last receipt, so an
-- event Chatwoot still re-sends is kept and its duplicates stay recognised.
alter table public.relay_settings
  add column retention_days integer not null default 30 check (retention_days >= 1);

-- A procedure so each batch commits on its own: locks stay short and a large backlog never becomes one
-- huge transaction. `call public.prune_webhook_events();` returns how many events it deleted.
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
end
$$;

revoke all on procedure public.prune_webhook_events(bigint, interval, integer) from public, anon, authenticated;
grant execute on procedure public.prune_webhook_events(bigint, interval, integer) to service_role;

-- Daily at 03:17 UTC where pg_cron is installed (hosted Supabase: enable it under Database → Extensions,
-- then re-run this block or `select cron.schedule(...)` yourself).
do $$
begin
  if exists (select 1 from pg_extension where extname = 'pg_cron') then
    perform cron.schedule('relay-prune-webhook-events', '17 3 * * *', 'call public.prune_webhook_events()');
  end if;
end
$$;
