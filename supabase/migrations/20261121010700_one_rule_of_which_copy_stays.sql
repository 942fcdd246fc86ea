-- One rule of which copy of an event stays, in one place. ingest_webhook_event's ON CONFLICT ... WHERE
-- decided whether an incoming copy replaces the stored row (migration 005100), and writeLostEvents
-- (supabase/functions/_shared/lost_events.ts) carried a copy of that WHERE in its own SQL, to leave out a
-- refused webhook its store would not have applied: two copies, bound to drift apart. Now
-- webhook_event_replaced_by(the stored row; the incoming copy's hash, signed time, build time, verified_by)
-- answers it, and both call it. The rule is 005100's, unchanged:
--   - a copy recovered from Chatwoot's API is replaced by the webhook itself (any copy not recovered);
--   - otherwise only a changed body of an event other than message_created replaces, when it was built later
--     (conversation.updated_at); with a build time missing or equal, when signed later (or either copy
--     unsigned); signed in the same second, the later-built one, then the greater hash compared as bytes.
-- A language sql function of one expression, STABLE (chatwoot_timestamp is), without SET or SECURITY DEFINER:
-- the planner inlines it, and the row's fields become plain columns again, so the upsert runs the same
-- expression as before (EXPLAIN VERBOSE of the upsert names no webhook_event_replaced_by). The receipt check
-- stays in ingest_webhook_event: a refusal is no receipt. ingest_webhook_event is 005100's but for its WHERE
-- (same signature, grants and comment).

-- Replacing a function takes no lock calls in flight wait on (checked: it returns at once beside a running
-- call); the bound is kept for the catalog rows it rewrites, as other migrations do.
select set_config('lock_timeout', '2s', true);

create or replace function public.webhook_event_replaced_by(
  stored public.webhook_events,
  p_body_sha256 text,
  p_sent_at timestamptz,
  p_built_at timestamptz,
  p_verified_by text
)
returns boolean
language sql
stable
as $$
  select coalesce(
    (stored.verified_by = 'chatwoot_api' and p_verified_by <> 'chatwoot_api')
    or (stored.body_sha256 <> p_body_sha256
        and stored.event <> 'message_created'
        -- Built at different known times: the later-built state, whenever it was signed (Chatwoot signs in
        -- another job, when it sends). Otherwise (a time missing, or equal): the later signed time, then:
        and (p_built_at > stored.built_at
             or ((p_built_at < stored.built_at) is not true
                 and (p_sent_at is null or stored.sent_at is null or p_sent_at > stored.sent_at
                      -- Signed in the same second: the later-built state, then the hashes compared as bytes
                      -- (not by the database's collation). Only a row stored before migration 005100 reads
                      -- its build time from its body.
                      or (p_sent_at = stored.sent_at
                          and (coalesce(p_built_at, '-infinity'), p_body_sha256 collate "C")
                              > (coalesce(stored.built_at,
                                          public.chatwoot_timestamp(
                                            stored.payload #> '{conversation,updated_at}'),
                                          '-infinity'),
                                 stored.body_sha256 collate "C")))))),
    false)
$$;

comment on function public.webhook_event_replaced_by(public.webhook_events, text, timestamptz, timestamptz, text) is
  'Whether a copy of the stored event (its body''s hash, signed time, build time and verified_by) replaces it: '
  'a recovered copy by a webhook; else a changed body, not of a message_created, built later, else signed '
  'later, then the greater hash. ingest_webhook_event''s rule, and what a refused webhook would have changed.';

revoke all on function public.webhook_event_replaced_by(public.webhook_events, text, timestamptz, timestamptz, text)
  from public, anon, authenticated;
-- Who calls ingest_webhook_event (security invoker) or writes lost events: the planner inlines a function
-- only for a role that may execute it.
grant execute on function public.webhook_event_replaced_by(public.webhook_events, text, timestamptz, timestamptz, text)
  to service_role;

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
      -- Which copy stays is webhook_event_replaced_by's rule (the top of this file), which the record of a
      -- refused webhook shares (writeLostEvents); a retry of a receipt the row holds already replaces nothing.
      where public.webhook_receipt_outcome(e.recent_receipts, p_receipt_id) is null
        and public.webhook_event_replaced_by(e, excluded.body_sha256, excluded.sent_at, excluded.built_at,
                                             excluded.verified_by)
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
