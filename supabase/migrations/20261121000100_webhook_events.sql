-- Ingest: every Chatwoot webhook we accept lands in webhook_events, keyed so that duplicates collapse.
-- Applies unchanged on hosted Supabase, plain PostgreSQL 15+ and PGlite.

-- Supabase's API roles exist on hosted projects; create them elsewhere so grants and RLS read the same.
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
end
$$;

create table public.webhook_events (
  id bigint generated always as identity primary key,
  event_key text not null unique,
  event text not null,
  message_id bigint,
  conversation_id bigint,
  account_id bigint,
  inbox_id bigint,
  delivery_id text,
  payload jsonb not null,
  raw_body text not null,
  body_sha256 text not null check (body_sha256 ~ '^[0-9a-f]{64}$'),
  verified_by text not null check (verified_by in ('signature', 'url_token')),
  status text not null default 'pending'
    check (status in ('pending', 'delivering', 'delivered', 'dead', 'skipped')),
  -- Bumped whenever a changed body replaces the payload, so a forwarder can tell which version it sent.
  version integer not null default 1,
  attempts integer not null default 0 check (attempts >= 0),
  next_attempt_at timestamptz,
  last_error text,
  received_at timestamptz not null default now(),
  last_received_at timestamptz not null default now(),
  receive_count integer not null default 1 check (receive_count >= 1),
  delivered_at timestamptz
);

comment on table public.webhook_events is
  'One row per distinct Chatwoot webhook event. Message events are keyed message:<id>:<event>; others <event>:<sha256 of body>.';
comment on column public.webhook_events.event_key is 'Deduplication key: message:<message id>:<event>, or <event>:<body sha256>.';
comment on column public.webhook_events.conversation_id is 'The conversation''s display id, as Chatwoot shows it.';
comment on column public.webhook_events.delivery_id is 'X-Chatwoot-Delivery header: a hint only, not covered by the signature.';
comment on column public.webhook_events.raw_body is 'The exact request body received, forwarded byte for byte.';
comment on column public.webhook_events.verified_by is 'How the request was authenticated: signature (HMAC) or url_token.';
comment on column public.webhook_events.version is 'Starts at 1; +1 each time a changed body for the same key replaced the payload.';
comment on column public.webhook_events.receive_count is 'How many times Chatwoot sent this key (duplicates included).';

create index webhook_events_conversation_idx on public.webhook_events (conversation_id, id);

-- Status a newly stored event starts in. The forwarding migration redefines it to read its settings.
create or replace function public.webhook_initial_status(p_event text)
returns text
language sql
stable
as $$ select 'pending'::text $$;

-- Stores one verified event in a single call, safe under any number of concurrent callers:
--   stored    - first time this key was seen
--   duplicate - identical body again: counted, nothing else changes
--   updated   - changed body for the key: payload replaced and due for forwarding again
-- p_payload may be null: then the payload is p_raw_body parsed here, so the body crosses the wire once.
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
  p_verified_by text
)
returns table (event_id bigint, outcome text, receive_count integer, status text)
language plpgsql
as $$
declare
  v_payload jsonb := coalesce(p_payload, p_raw_body::jsonb);
begin
  loop
    -- Insert, or replace a changed body. ON CONFLICT locks the existing row even when the WHERE
    -- rejects the update, so the duplicate branch below cannot race with another writer.
    return query
      insert into public.webhook_events as e (
        event_key, event, message_id, conversation_id, account_id, inbox_id, delivery_id,
        payload, raw_body, body_sha256, verified_by, status, next_attempt_at
      )
      values (
        p_event_key, p_event, p_message_id, p_conversation_id, p_account_id, p_inbox_id, p_delivery_id,
        v_payload, p_raw_body, p_body_sha256, p_verified_by, public.webhook_initial_status(p_event), now()
      )
      on conflict (event_key) do update set
        payload = excluded.payload,
        raw_body = excluded.raw_body,
        body_sha256 = excluded.body_sha256,
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
      returning e.id,
        case when e.receive_count = 1 then 'stored' else 'updated' end,
        e.receive_count,
        e.status;
    if found then
      return;
    end if;

    return query
      update public.webhook_events as e
         set receive_count = e.receive_count + 1,
             last_received_at = now()
       where e.event_key = p_event_key
      returning e.id, 'duplicate'::text, e.receive_count, e.status;
    if found then
      return;
    end if;
    -- The row was deleted (retention) between the two statements: try the insert again.
  end loop;
end
$$;

-- Requests we refused, counted per minute and reason; no bodies, no headers.
create table public.webhook_rejections (
  minute timestamptz not null,
  reason text not null,
  http_status integer not null,
  count integer not null default 1,
  last_rejected_at timestamptz not null default now(),
  primary key (minute, reason)
);

comment on table public.webhook_rejections is
  'Refused webhook requests counted per minute and error code (e.g. signature_invalid). Never holds bodies.';

create or replace function public.record_webhook_rejection(p_reason text, p_http_status integer)
returns void
language sql
as $$
  insert into public.webhook_rejections as r (minute, reason, http_status)
  values (date_trunc('minute', now()), p_reason, p_http_status)
  on conflict (minute, reason) do update
    set count = r.count + 1, last_rejected_at = now();
$$;

alter table public.webhook_events enable row level security;
alter table public.webhook_rejections enable row level security;

revoke all on table public.webhook_events, public.webhook_rejections from public, anon, authenticated;
grant select, insert, update, delete on table public.webhook_events, public.webhook_rejections to service_role;

revoke all on function public.webhook_initial_status(text) from public, anon, authenticated;
revoke all on function public.ingest_webhook_event(text, text, bigint, bigint, bigint, bigint, text, jsonb, text, text, text)
  from public, anon, authenticated;
revoke all on function public.record_webhook_rejection(text, integer) from public, anon, authenticated;
grant execute on function public.webhook_initial_status(text) to service_role;
grant execute on function public.ingest_webhook_event(text, text, bigint, bigint, bigint, bigint, text, jsonb, text, text, text)
  to service_role;
grant execute on function public.record_webhook_rejection(text, integer) to service_role;
