-- chatwoot_messages.created_at and chatwoot_conversation_events.occurred_at from an index (data review).
-- At 1 M events (600 k messages over 120 days) "messages per day and sender type (last 30 days)" took 60-88 s
-- and "status changes, newest first" 6-15 s: each filtered or sorted on a time computed from every row's
-- payload.
-- Now 12-22 s (the 150 k messages of the period are read, not 600 k) and under 10 ms (docs/sql.md).
-- chatwoot_timestamp is inlined into the views, so its body read `payload -> 'created_at'` about ten times a
-- row, and each read fetched and decompressed the whole (TOASTed) payload again. Now both times come from
-- chatwoot_timestamp_immutable, which reads the value once and can be indexed. Same rows and values: the
-- function returns what chatwoot_timestamp returns, and tests/data_times_indexed.test.ts compares the
-- views' answers before and after this migration.

-- Building the two indexes holds a SHARE lock on webhook_events (ingests wait; the late store keeps what
-- arrives meanwhile for 120 s): ~20 s at 1 M events (600 k messages, 150 k conversation events). Wait at
-- most 2 s for the lock itself.
select set_config('lock_timeout', '2s', true);

-- IMMUTABLE, which chatwoot_timestamp (STABLE, so that it can be inlined) cannot be declared: its answer does
-- not depend on the session (a time without a zone is UTC; the formats it accepts never read DateStyle).
-- PL/pgSQL, so that it is never inlined and its argument is computed once per call. A migration that changes
-- chatwoot_timestamp's answers must REINDEX the two indexes below.
create function public.chatwoot_timestamp_immutable(p_value jsonb)
returns timestamptz
language plpgsql
immutable
parallel safe
as $$
begin
  return public.chatwoot_timestamp(p_value);
end
$$;

comment on function public.chatwoot_timestamp_immutable(jsonb) is
  'chatwoot_timestamp(jsonb), declared immutable for the indexes on message and conversation times.';

revoke all on function public.chatwoot_timestamp_immutable(jsonb) from public, anon, authenticated;
grant execute on function public.chatwoot_timestamp_immutable(jsonb) to data_analyst, service_role;

create index webhook_events_message_created_at_idx
  on public.webhook_events (event, public.chatwoot_timestamp_immutable(payload -> 'created_at'))
  where event in ('message_created', 'message_updated');

create index webhook_events_conversation_occurred_at_idx
  on public.webhook_events (public.chatwoot_timestamp_immutable(payload -> 'updated_at') desc nulls last)
  where event in ('conversation_status_changed', 'conversation_updated');

-- The three kinds of message row apart (never updated; updated; an update whose message_created never came),
-- so that a condition on created_at reaches each one's payload, and the index on it, directly. Before, the
-- payload was coalesce(update, create) over a left join, which no index could serve. Same rows: the left
-- join matched at most one update (event_key is unique), and a row keyed message:<id>:message_updated is that
-- event (ingest builds the key from it), which the second branch states for the index's condition.
create or replace view public.chatwoot_messages as
select
  m.message_id,
  m.conversation_id,
  m.account_id,
  m.payload -> 'account' ->> 'name' as account_name,
  m.inbox_id,
  m.payload -> 'inbox' ->> 'name' as inbox_name,
  m.payload ->> 'message_type' as message_type,
  coalesce(m.payload -> 'private' = 'true'::jsonb, false) as private,
  m.payload ->> 'content' as content,
  m.payload ->> 'content_type' as content_type,
  -- Contacts carry no "type" key; users and agent bots do.
  case when jsonb_typeof(m.payload -> 'sender') = 'object'
    then coalesce(m.payload -> 'sender' ->> 'type', 'contact') end as sender_type,
  public.chatwoot_id(m.payload -> 'sender' -> 'id') as sender_id,
  m.payload -> 'sender' ->> 'name' as sender_name,
  case when jsonb_typeof(m.payload -> 'attachments') = 'array'
    then jsonb_array_length(m.payload -> 'attachments') else 0 end as attachment_count,
  public.chatwoot_timestamp_immutable(m.payload -> 'created_at') as created_at,
  -- Edited: an update changed the content; a deletion (which replaces it) is not an edit.
  m.content_changed and not coalesce(m.payload -> 'content_attributes' -> 'deleted' = 'true'::jsonb, false)
    as edited,
  m.status as delivery_status,
  m.delivered_at,
  m.attempts as delivery_attempts,
  m.last_received_at,
  m.id as event_id,
  coalesce(m.payload -> 'content_attributes' -> 'deleted' = 'true'::jsonb, false) as deleted
from (
  select e.id, e.message_id, e.conversation_id, e.account_id, e.inbox_id, e.status, e.delivered_at,
         e.attempts, e.payload, false as content_changed, e.last_received_at
    from public.webhook_events e
   where e.event = 'message_created'
     and not exists (select 1 from public.webhook_events u
                      where u.event_key = 'message:' || e.message_id || ':message_updated')
  union all
  -- The update carries the message's current state; delivery columns stay the forwarded message_created's.
  select e.id, e.message_id, e.conversation_id, e.account_id, e.inbox_id, e.status, e.delivered_at,
         e.attempts, u.payload, u.payload -> 'content' is distinct from e.payload -> 'content',
         greatest(e.last_received_at, u.last_received_at)
    from public.webhook_events e
    join public.webhook_events u on u.event_key = 'message:' || e.message_id || ':message_updated'
   where e.event = 'message_created' and u.event = 'message_updated'
  union all
  select e.id, e.message_id, e.conversation_id, e.account_id, e.inbox_id, e.status, e.delivered_at,
         e.attempts, e.payload, false, e.last_received_at
    from public.webhook_events e
   where e.event = 'message_updated'
     and not exists (select 1 from public.webhook_events c
                      where c.event_key = 'message:' || e.message_id || ':message_created')
) m;

comment on view public.chatwoot_messages is
  'One row per Chatwoot message, latest version (message_updated over message_created); see docs/sql.md.';

-- As before, with occurred_at through the indexed function.
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
  public.chatwoot_timestamp_immutable(e.payload -> 'updated_at') as occurred_at,
  e.received_at
from public.webhook_events e
left join lateral (
  select a.key as attribute, a.value -> 'previous_value' as previous_value,
         a.value -> 'current_value' as current_value
    from jsonb_array_elements(
           case when jsonb_typeof(e.payload -> 'changed_attributes') = 'array'
             then e.payload -> 'changed_attributes' else '[]'::jsonb end) item
   cross join lateral jsonb_each(case when jsonb_typeof(item) = 'object' then item else '{}'::jsonb end) a
) changed on true
where e.event in ('conversation_status_changed', 'conversation_updated');
