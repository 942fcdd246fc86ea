-- chatwoot_messages.edited said true for any message_updated, and Chatwoot sends one for a change of
-- delivery status too (sent, delivered, read, failed; Messages::StatusUpdateService), so most outgoing
-- messages showed as edited. It is now true when the content changed. A message deleted in Chatwoot
-- (content "This message was deleted", content_attributes.deleted = true, attachments removed) was an ordinary
-- message with odd content; the new last column `deleted` says so, and such a message is not "edited".
-- (Found by review.) The view is otherwise as in migration 001900; its columns keep their order.

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
  public.chatwoot_id(latest.payload -> 'sender' -> 'id') as sender_id,
  latest.payload -> 'sender' ->> 'name' as sender_name,
  case when jsonb_typeof(latest.payload -> 'attachments') = 'array'
    then jsonb_array_length(latest.payload -> 'attachments') else 0 end as attachment_count,
  public.chatwoot_timestamp(latest.payload -> 'created_at') as created_at,
  -- Chatwoot sends message_updated for a change of delivery status too (sent, delivered, read, failed): a
  -- message is edited when its content changed, and not by its deletion.
  u.id is not null and e.event = 'message_created'
    and u.payload -> 'content' is distinct from e.payload -> 'content'
    and not coalesce(latest.payload -> 'content_attributes' -> 'deleted' = 'true'::jsonb, false) as edited,
  e.status as delivery_status,
  e.delivered_at,
  e.attempts as delivery_attempts,
  greatest(e.last_received_at, u.last_received_at) as last_received_at,
  e.id as event_id,
  -- Deleted in Chatwoot: its content now reads "This message was deleted" and its attachments are gone.
  coalesce(latest.payload -> 'content_attributes' -> 'deleted' = 'true'::jsonb, false) as deleted
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
