-- chatwoot_messages: an edited message's row is found from its message_updated, so that a condition on
-- created_at (which an edited message takes from its update) no longer reads every message_created (view
-- review). At 1 M events (720 k messages over 60 days, one in 7 edited) docs/sql.md's messages per day read
-- all 720 k message_created rows to pair them with the month's 55 k updates: the join's key
-- 'message:<id>:message_updated' leads from a message_created to its update, not back, so no plan could do
-- otherwise. Now each update of the period can look its message_created up by message_id
-- (webhook_events_message_idx).
-- Same rows: ingest and recover key a message event 'message:<message_id>:<event>' (messageEventKey), so an
-- update keyed 'message:<n>:message_updated' has message_id n; the key condition stays, and the message_id
-- condition only states that. tests/message_edits_indexed.test.ts compares the view's answers before and
-- after this migration. Columns, their order and the grants (create or replace keeps them) as in migration
-- 20261121006800.

-- The planner guessed a third of the messages for any created_at condition: webhook_events_message_created_at_idx
-- is partial, and a partial index's statistics are not used for estimates. With that guess, reading every
-- message_created (or every key, for the branches' "no update"/"no message_created" checks) was planned as
-- cheaper than a lookup per message of the period however short the period against the history. Statistics on
-- the expression give the period's real share. ANALYZE so that they exist now, not at autovacuum's next
-- analyze: it reads a sample (30 000 rows), ~5 s at 1 M events, and blocks no writes.
-- Replacing the view takes an exclusive lock on it, queued behind any long analyst query and ahead of every
-- reader after it: wait at most 2 s for it (and for ANALYZE's), as migration 006800 did.
select set_config('lock_timeout', '2s', true);

create statistics public.webhook_events_message_created_at_stats
  on (public.chatwoot_timestamp_immutable(payload -> 'created_at')) from public.webhook_events;
analyze public.webhook_events;

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
    from public.webhook_events u
    join public.webhook_events e on e.message_id = u.message_id
                                and u.event_key = 'message:' || e.message_id || ':message_updated'
   where e.event = 'message_created' and u.event = 'message_updated'
  union all
  select e.id, e.message_id, e.conversation_id, e.account_id, e.inbox_id, e.status, e.delivered_at,
         e.attempts, e.payload, false, e.last_received_at
    from public.webhook_events e
   where e.event = 'message_updated'
     and not exists (select 1 from public.webhook_events c
                      where c.event_key = 'message:' || e.message_id || ':message_created')
) m;
