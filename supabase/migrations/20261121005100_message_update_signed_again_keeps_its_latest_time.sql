-- Of two message_updated built at the same moment (a status change read with the edit), the later signed one
-- stays (migration 003150). But an exact copy of the stored body signed again later (an agent-bot delivery
-- retried after a 500 is signed anew 3 s later) counted as a duplicate and left the row's sent_at at its
-- first copy's time. A body of the same build time signed between the two then replaced it: with copies
-- read@-6, read@-3 and delivered@-4, "delivered" stayed when the retry of "read" came before it, "read" when
-- it came after. Under scale-out the arrival order is anyone's, so the
-- stored state depended on it. Now an exact copy of the stored body moves sent_at on to its own signed time
-- when that is later (the body was sent then too), so the latest signed copy wins in every order. Nothing
-- else changes: the copy still counts a duplicate and starts no delivery. Found by review (a scale-out
-- harness: several instances, the same events in any order).
-- Everything else is as in migration 003150.

-- The comment takes a lock on webhook_events that ingests do not wait for; still, wait at most 2 s for it.
select set_config('lock_timeout', '2s', true);

comment on column public.webhook_events.sent_at is
  'X-Chatwoot-Timestamp of the stored body (signed, so trusted), its latest copy''s for a message_updated; '
  'null when authenticated by URL token.';

create or replace function public.ingest_webhook_event(
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
  p_sent_at timestamptz default null,
  p_receipt_id uuid default null
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
  -- Read once, from the body in hand (in memory, not yet TOASTed).
  v_built_at timestamptz := case when p_event = 'message_updated'
                                 then public.chatwoot_timestamp(v_payload #> '{conversation,updated_at}') end;
begin
  select s.forwarding_paused, s.agent_sdk_url_override is not null
    into v_paused, v_override_set
    from public.relay_settings s
   where s.id;
  v_paused := coalesce(v_paused, true);
  v_override_set := coalesce(v_override_set, false);
  loop
    -- Insert, or replace a changed body that is newer, or a copy recovered from Chatwoot's API by the real
    -- webhook. ON CONFLICT locks the existing row even when the WHERE rejects the update, so the branches
    -- below cannot race with another writer.
    return query
      insert into public.webhook_events as e (
        event_key, event, message_id, conversation_id, account_id, inbox_id, delivery_id,
        payload, raw_body, body_sha256, verified_by, sent_at, built_at, status, next_attempt_at,
        recent_receipts
      )
      values (
        p_event_key, p_event, p_message_id, p_conversation_id, p_account_id, p_inbox_id, p_delivery_id,
        v_payload, p_raw_body, p_body_sha256, p_verified_by, p_sent_at, v_built_at,
        public.webhook_initial_status(p_event), now(),
        public.webhook_receipts_after('{}', p_receipt_id, 'stored')
      )
      on conflict (event_key) do update set
        payload = excluded.payload,
        raw_body = excluded.raw_body,
        body_sha256 = excluded.body_sha256,
        -- A URL-token copy has no signed time: the last signed one keeps ordering the signed copies after it.
        sent_at = coalesce(excluded.sent_at, e.sent_at),
        built_at = excluded.built_at,
        delivery_id = excluded.delivery_id,
        verified_by = excluded.verified_by,
        message_id = excluded.message_id,
        conversation_id = excluded.conversation_id,
        account_id = excluded.account_id,
        inbox_id = excluded.inbox_id,
        -- A recovered copy replaced by the real webhook is the same receipt, version and delivery: only the
        -- bytes (and when they came) become Chatwoot's own. Anything else is a new version, due again.
        version = case when e.verified_by = 'chatwoot_api' then e.version else e.version + 1 end,
        receive_count = case when e.verified_by = 'chatwoot_api' then e.receive_count else e.receive_count + 1 end,
        received_at = case when e.verified_by = 'chatwoot_api' then now() else e.received_at end,
        last_received_at = now(),
        -- An event being delivered keeps its lease; the forwarder sees the new version and sends it next.
        status = case when e.verified_by = 'chatwoot_api' or e.status in ('skipped', 'delivering') then e.status
                      else 'pending' end,
        attempts = case when e.verified_by = 'chatwoot_api' or e.status = 'delivering' then e.attempts else 0 end,
        next_attempt_at = case when e.verified_by = 'chatwoot_api' or e.status = 'delivering'
                               then e.next_attempt_at else now() end,
        delivered_at = case when e.verified_by = 'chatwoot_api' or e.status = 'delivering'
                            then e.delivered_at else null end,
        recent_receipts = public.webhook_receipts_after(e.recent_receipts, p_receipt_id,
                            case when e.verified_by = 'chatwoot_api' then 'stored' else 'updated' end)
      where public.webhook_receipt_outcome(e.recent_receipts, p_receipt_id) is null
        and ((e.verified_by = 'chatwoot_api' and excluded.verified_by <> 'chatwoot_api')
             or (e.body_sha256 <> excluded.body_sha256
                 and e.event <> 'message_created'
                 -- Built at different known times: the later-built state, whenever it was signed (see the
                 -- top of this file). Otherwise (a time missing, or equal): the later signed time, then:
                 and (excluded.built_at > e.built_at
                      or ((excluded.built_at < e.built_at) is not true
                          and (excluded.sent_at is null or e.sent_at is null or excluded.sent_at > e.sent_at
                               -- Signed in the same second: the later-built state, then the hashes compared
                               -- as bytes (not by the database's collation). Only a row stored before this
                               -- migration reads its build time from its body.
                               or (excluded.sent_at = e.sent_at
                                   and (coalesce(excluded.built_at, '-infinity'),
                                        excluded.body_sha256 collate "C")
                                       > (coalesce(e.built_at,
                                                   public.chatwoot_timestamp(
                                                     e.payload #> '{conversation,updated_at}'),
                                                   '-infinity'),
                                          e.body_sha256 collate "C")))))))
      returning e.id,
        case when e.receive_count = 1 then 'stored' else 'updated' end,
        e.receive_count,
        e.status,
        e.status = 'pending' and not v_paused,
        v_override_set;
    if found then
      return;
    end if;

    -- Neither inserted nor replaced, and the row is locked. When it names this receipt among its last ones, an
    -- earlier attempt of this call stored it (its statement went on after its connection was lost): count
    -- nothing, change nothing, answer what that attempt did. A delivery may start, since the attempt that said
    -- so never got its answer back.
    return query
      select e.id, r.outcome, e.receive_count, e.status,
             r.outcome <> 'duplicate' and e.status = 'pending' and not v_paused, v_override_set
        from public.webhook_events as e
       cross join lateral (select public.webhook_receipt_outcome(e.recent_receipts, p_receipt_id) as outcome) r
       where e.event_key = p_event_key
         and r.outcome is not null;
    if found then
      return;
    end if;

    return query
      update public.webhook_events as e
         set receive_count = e.receive_count + 1,
             last_received_at = now(),
             -- The stored body signed again later: it was sent then too, so its later time orders it against
             -- a body of the same build time (whichever copy came first). An older state keeps the row's.
             sent_at = case when e.event = 'message_updated' and e.body_sha256 = p_body_sha256
                              and p_sent_at > e.sent_at then p_sent_at else e.sent_at end,
             recent_receipts = public.webhook_receipts_after(e.recent_receipts, p_receipt_id, 'duplicate')
       where e.event_key = p_event_key
      returning e.id, 'duplicate'::text, e.receive_count, e.status, false, v_override_set;
    if found then
      return;
    end if;
    -- The row was deleted (retention) between the two statements: try the insert again.
  end loop;
end
$$;

comment on function public.ingest_webhook_event(text, text, bigint, bigint, bigint, bigint, text, jsonb, text, text, text, timestamptz, uuid) is
  'Stores one verified Chatwoot event (stored | duplicate | updated); forward_now says a delivery may start now. '
  'A repeated p_receipt_id is a retry of that receipt: nothing counted, nothing changed. Of two bodies of a '
  'message_updated, the later-built one (conversation.updated_at) stays, else the later signed, then the '
  'greater hash; an exact copy of the stored body signed later moves its signed time on.';

revoke all on function public.ingest_webhook_event(text, text, bigint, bigint, bigint, bigint, text, jsonb, text, text, text, timestamptz, uuid)
  from public, anon, authenticated;
grant execute on function public.ingest_webhook_event(text, text, bigint, bigint, bigint, bigint, text, jsonb, text, text, text, timestamptz, uuid)
  to service_role;
