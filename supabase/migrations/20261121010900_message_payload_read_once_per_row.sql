-- chatwoot_messages reads a row's payload once for all its columns, not once per column (view review). A
-- payload is 5-20 KB of jsonb, TOASTed: kept compressed in webhook_events' TOAST table, and each
-- `payload -> …` of the view fetched its chunks (a TOAST index lookup, the chunks' pages) and decompressed
-- them again. docs/sql.md's messages per day read it four times a message (created_at, sender twice,
-- private), a query of every column about fourteen. Now each branch fetches the payload once into `fetched`
-- (a column of the subquery: computed once a row, and only when a column of the view needs it) and the
-- columns read that copy; created_at still reads the stored payload, so that its condition keeps using
-- webhook_events_message_created_at_idx (two fetches a row where both are read). At 1 M events, CPU time of
-- the messages per day 13.9-17.9 -> 10.6-11.1 s (-24 to -38 %), every column of the month 38.9 -> 14.3 s;
-- counts and created_at alone unchanged (docs/benchmarks.md, "010900").
-- Same rows and values: every column takes the same `->`/`->>` of the same value;
-- tests/message_edits_indexed.test.ts compares the view's answers before and after this migration. Columns,
-- their order and the grants (create or replace keeps them) as in migration 20261121010600.

-- Replacing the view takes an exclusive lock on it: wait at most 2 s for it, as 010600 does.
select set_config('lock_timeout', '2s', true);

create or replace view public.chatwoot_messages as
select
  m.message_id,
  m.conversation_id,
  m.account_id,
  m.fetched -> 'account' ->> 'name' as account_name,
  m.inbox_id,
  m.fetched -> 'inbox' ->> 'name' as inbox_name,
  m.fetched ->> 'message_type' as message_type,
  coalesce(m.fetched -> 'private' = 'true'::jsonb, false) as private,
  m.fetched ->> 'content' as content,
  m.fetched ->> 'content_type' as content_type,
  -- Contacts carry no "type" key; users and agent bots do.
  case when jsonb_typeof(m.fetched -> 'sender') = 'object'
    then coalesce(m.fetched -> 'sender' ->> 'type', 'contact') end as sender_type,
  public.chatwoot_id(m.fetched -> 'sender' -> 'id') as sender_id,
  m.fetched -> 'sender' ->> 'name' as sender_name,
  case when jsonb_typeof(m.fetched -> 'attachments') = 'array'
    then jsonb_array_length(m.fetched -> 'attachments') else 0 end as attachment_count,
  -- From the stored payload, not the copy, so that a condition on created_at still reads
  -- webhook_events_message_created_at_idx.
  public.chatwoot_timestamp_immutable(m.payload -> 'created_at') as created_at,
  -- Edited: an update changed the content; a deletion (which replaces it) is not an edit.
  m.content_changed
    and not coalesce(m.fetched -> 'content_attributes' -> 'deleted' = 'true'::jsonb, false) as edited,
  m.status as delivery_status,
  m.delivered_at,
  m.attempts as delivery_attempts,
  m.last_received_at,
  m.id as event_id,
  coalesce(m.fetched -> 'content_attributes' -> 'deleted' = 'true'::jsonb, false) as deleted
from (
  select e.id, e.message_id, e.conversation_id, e.account_id, e.inbox_id, e.status, e.delivered_at,
         -- fetched: the payload, fetched and decompressed here once ('$' is the whole value, whatever its
         -- type); a query that reads none of the view's columns taken from it does not compute it.
         e.attempts, e.payload, jsonb_path_query_first(e.payload, '$') as fetched, false as content_changed,
         e.last_received_at
    from public.webhook_events e
   where e.event = 'message_created'
     and not exists (select 1 from public.webhook_events u
                      where u.event_key = 'message:' || e.message_id || ':message_updated')
  union all
  -- The update carries the message's current state; delivery columns stay the forwarded message_created's.
  select e.id, e.message_id, e.conversation_id, e.account_id, e.inbox_id, e.status, e.delivered_at,
         e.attempts, u.payload, jsonb_path_query_first(u.payload, '$'),
         u.payload -> 'content' is distinct from e.payload -> 'content',
         greatest(e.last_received_at, u.last_received_at)
    from public.webhook_events u
    join public.webhook_events e on e.message_id = u.message_id
                                and u.event_key = 'message:' || e.message_id || ':message_updated'
   where e.event = 'message_created' and u.event = 'message_updated'
  union all
  select e.id, e.message_id, e.conversation_id, e.account_id, e.inbox_id, e.status, e.delivered_at,
         e.attempts, e.payload, jsonb_path_query_first(e.payload, '$'), false, e.last_received_at
    from public.webhook_events e
   where e.event = 'message_updated'
     and not exists (select 1 from public.webhook_events c
                      where c.event_key = 'message:' || e.message_id || ':message_created')
) m;
