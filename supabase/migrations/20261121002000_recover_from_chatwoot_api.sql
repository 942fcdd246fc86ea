-- Messages recovered from Chatwoot's REST API (`deno task recover`). Chatwoot sends an account webhook once
-- and never again (chatwoot-contract.md), so a message_created we failed to store (an outage longer than the
-- late stores' window, a worker stopped with events pending, the relay not deployed yet) is fetched from the
-- API instead. Such an event is stored with verified_by 'chatwoot_api': read with the account's API token over
-- TLS, not signed by Chatwoot, and rebuilt from the API's shape (relay_recovered in the payload says so).
--
-- The check is widened NOT VALID (no scan while the table is locked); migration 002100 validates it without
-- blocking ingests. Every stored row passed the old check, which the new one contains.
do $$
begin
  -- The ALTER needs the table to itself for a moment and ingests queue behind it while it waits: wait at
  -- most 2 s (ingests retry for 2.5 s); a table a long query holds fails the migration instead.
  perform set_config('lock_timeout', '2s', true);
  alter table public.webhook_events
    drop constraint webhook_events_verified_by_check,
    add constraint webhook_events_verified_by_check
      check (verified_by in ('signature', 'url_token', 'chatwoot_api')) not valid;
exception
  when lock_not_available then
    raise exception 'webhook_events is held by a long query: nothing changed; run the migration again'
      using errcode = 'lock_not_available';
end
$$;

comment on column public.webhook_events.verified_by is
  'How the event came: signature (HMAC), url_token, or chatwoot_api (recovered by deno task recover).';

-- Stores a recovered event unless the event is there already (stored meanwhile by a late webhook, or by
-- another recover run): then it changes nothing and counts nothing, since it is not a receipt from Chatwoot.
-- Returns the new row's id, or null. Delivery is as for any new event (pending when forwarded, due now), or
-- none with p_forward false: skipped, a record for the Data team.
create or replace function public.recover_webhook_event(
  p_event_key text,
  p_event text,
  p_message_id bigint,
  p_conversation_id bigint,
  p_account_id bigint,
  p_inbox_id bigint,
  p_raw_body text,
  p_body_sha256 text,
  p_forward boolean default true
)
returns bigint
language sql
as $$
  insert into public.webhook_events as e (
    event_key, event, message_id, conversation_id, account_id, inbox_id,
    payload, raw_body, body_sha256, verified_by, status, next_attempt_at
  )
  values (
    p_event_key, p_event, p_message_id, p_conversation_id, p_account_id, p_inbox_id,
    p_raw_body::jsonb, p_raw_body, p_body_sha256, 'chatwoot_api',
    case when p_forward then public.webhook_initial_status(p_event) else 'skipped' end, now()
  )
  on conflict (event_key) do nothing
  returning e.id
$$;

comment on function public.recover_webhook_event(text, text, bigint, bigint, bigint, bigint, text, text, boolean) is
  'Stores an event recovered from Chatwoot''s API unless its key is stored already; the new id, or null.';

revoke all on function public.recover_webhook_event(text, text, bigint, bigint, bigint, bigint, text, text, boolean)
  from public, anon, authenticated;
grant execute on function public.recover_webhook_event(text, text, bigint, bigint, bigint, bigint, text, text, boolean)
  to service_role;

-- A recovery must not reach back past what retention deleted: a message whose delivered event was pruned
-- looks exactly like one never received, and storing it again would deliver it twice. prune_webhook_events()
-- records its cutoff (its latest, in relay_settings.pruned_before); recover_horizon() is the earliest time a
-- recovery may start from, an hour later for clocks that differ between Chatwoot and the database.
alter table public.relay_settings add column if not exists pruned_before timestamptz;
comment on column public.relay_settings.pruned_before is
  'Latest cutoff prune_webhook_events() used: delivered events last received before it may be deleted.';

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
  -- Said before deleting, and kept at its latest: a recovery never reaches back past what may be gone.
  update public.relay_settings s
     set pruned_before = greatest(s.pruned_before, cutoff)
   where s.id;
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

create or replace function public.recover_horizon()
returns timestamptz
language sql
stable
as $$ select s.pruned_before + interval '1 hour' from public.relay_settings s where s.id $$;

comment on function public.recover_horizon() is
  'Earliest time deno task recover may start from (null: nothing was ever pruned).';

revoke all on function public.recover_horizon() from public, anon, authenticated;
grant execute on function public.recover_horizon() to service_role;
