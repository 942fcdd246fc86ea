-- chatwoot_messages.sender_id cast the sender's id to bigint as it was written. The webhook accepts an id
-- written 1.0 (JSON has one number type; the schema asks for an integer, and 1.0 is one), jsonb keeps it as
-- written, and '1.0'::bigint raises: one such message made every query over chatwoot_messages that reached
-- its row fail. chatwoot_id() reads any integer-valued number within bigint's range, and null otherwise,
-- still one SQL expression that the planner inlines into the view. The view keeps its columns.
create or replace function public.chatwoot_id(p_value jsonb)
returns bigint
language sql
immutable
as $$
  select case when jsonb_typeof(p_value) = 'number' then case
    when p_value::numeric = trunc(p_value::numeric)
     and p_value::numeric between -9223372036854775808 and 9223372036854775807
      then p_value::numeric::bigint
  end end
$$;

comment on function public.chatwoot_id(jsonb) is
  'A Chatwoot id (a JSON number with an integer value, 1.0 included) as bigint; null for anything else.';

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

-- The view calls it with the caller's rights, as it does chatwoot_timestamp().
revoke all on function public.chatwoot_id(jsonb) from public, anon, authenticated;
grant execute on function public.chatwoot_id(jsonb) to service_role, data_analyst;
