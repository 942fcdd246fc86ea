-- Two rules of deduplication that Chatwoot's delivery calls for (chatwoot-contract.md: the same event can
-- arrive twice, in no particular order, and a payload is built when its job runs, not when the event happened):
--  * message_created is one event. A second copy whose bytes differ (the conversation snapshot inside it has
--    moved on: unread_count, updated_at, ...) is a duplicate. Before, it replaced the body, bumped the version
--    and was forwarded again under a new Idempotency-Key, so the Agent SDK saw one new message twice.
--  * message_updated carries the message as it was when Chatwoot sent it. A copy signed earlier than the stored
--    one is an older state arriving late: a duplicate, not a replacement. The signed X-Chatwoot-Timestamp is
--    kept in sent_at. Requests authenticated by URL token carry no signed time and replace as they arrive
--    (sent_at keeps the last signed time); so does a copy sent in the same second as the stored one. Chatwoot
--    stamps a request when it sends it, not when it built the payload: the later sent is the best guess at the
--    newer state, not a guarantee.
-- Everything else is as in migration 000500 (same result columns; p_sent_at defaults to null).

-- Added later (review): changes below take locks on webhook_events that ingests queue behind; with a long
-- query or an open writing transaction on the table they would wait without end, and every webhook with
-- them. Wait at most 2 s (ingests retry for 2.5 s); a busy table fails the migration, which changes nothing.
select set_config('lock_timeout', '2s', true);

alter table public.webhook_events add column sent_at timestamptz;
comment on column public.webhook_events.sent_at is
  'X-Chatwoot-Timestamp of the stored body (signed, so trusted); null when authenticated by URL token.';

drop function public.ingest_webhook_event(text, text, bigint, bigint, bigint, bigint, text, jsonb, text, text, text);

create function public.ingest_webhook_event(
  p_event_key text,
  p_event text,
  p_message_id bigint,
  p_conversation_id bigint,
  p_account_id bigint,
  p_inbox_id bigint,
  p_delivery_id text,
  p_payload jsonb,
  p_raw_body text,
  p_body_sha256 text,
  p_verified_by text,
  p_sent_at timestamptz default null
)
returns table (
  event_id bigint,
  outcome text,
  receive_count integer,
  status text,
  forward_now boolean,
  target_override_set boolean
)
language plpgsql
as $$
declare
  v_payload jsonb := coalesce(p_payload, p_raw_body::jsonb);
  v_paused boolean;
  v_override_set boolean;
begin
  select s.forwarding_paused, s.agent_sdk_url_override is not null
    into v_paused, v_override_set
    from public.relay_settings s
   where s.id;
  v_paused := coalesce(v_paused, true);
  v_override_set := coalesce(v_override_set, false);
  loop
    -- Insert, or replace a changed body that is newer. ON CONFLICT locks the existing row even when the WHERE
    -- rejects the update, so the duplicate branch below cannot race with another writer.
    return query
      insert into public.webhook_events as e (
        event_key, event, message_id, conversation_id, account_id, inbox_id, delivery_id,
        payload, raw_body, body_sha256, verified_by, sent_at, status, next_attempt_at
      )
      values (
        p_event_key, p_event, p_message_id, p_conversation_id, p_account_id, p_inbox_id, p_delivery_id,
        v_payload, p_raw_body, p_body_sha256, p_verified_by, p_sent_at, public.webhook_initial_status(p_event),
        now()
      )
      on conflict (event_key) do update set
        payload = excluded.payload,
        raw_body = excluded.raw_body,
        body_sha256 = excluded.body_sha256,
        -- A URL-token copy has no signed time: the last signed one keeps ordering the signed copies after it.
        sent_at = coalesce(excluded.sent_at, e.sent_at),
        delivery_id = excluded.delivery_id,
        verified_by = excluded.verified_by,
        message_id = excluded.message_id,
        conversation_id = excluded.conversation_id,
        account_id = excluded.account_id,
        inbox_id = excluded.inbox_id,
        version = e.version + 1,
        receive_count = e.receive_count + 1,
        last_received_at = now(),
        -- An event being delivered keeps its lease; the forwarder sees the new version and sends it next.
        status = case when e.status in ('skipped', 'delivering') then e.status else 'pending' end,
        attempts = case when e.status = 'delivering' then e.attempts else 0 end,
        next_attempt_at = case when e.status = 'delivering' then e.next_attempt_at else now() end,
        delivered_at = case when e.status = 'delivering' then e.delivered_at else null end
      where e.body_sha256 <> excluded.body_sha256
        and e.event <> 'message_created'
        and (excluded.sent_at is null or e.sent_at is null or excluded.sent_at >= e.sent_at)
      returning e.id,
        case when e.receive_count = 1 then 'stored' else 'updated' end,
        e.receive_count,
        e.status,
        e.status = 'pending' and not v_paused,
        v_override_set;
    if found then
      return;
    end if;

    return query
      update public.webhook_events as e
         set receive_count = e.receive_count + 1,
             last_received_at = now()
       where e.event_key = p_event_key
      returning e.id, 'duplicate'::text, e.receive_count, e.status, false, v_override_set;
    if found then
      return;
    end if;
    -- The row was deleted (retention) between the two statements: try the insert again.
  end loop;
end
$$;

comment on function public.ingest_webhook_event(text, text, bigint, bigint, bigint, bigint, text, jsonb, text, text, text, timestamptz) is
  'Stores one verified Chatwoot event (stored | duplicate | updated); forward_now says a delivery may start now.';

revoke all on function public.ingest_webhook_event(text, text, bigint, bigint, bigint, bigint, text, jsonb, text, text, text, timestamptz)
  from public, anon, authenticated;
grant execute on function public.ingest_webhook_event(text, text, bigint, bigint, bigint, bigint, text, jsonb, text, text, text, timestamptz)
  to service_role;
