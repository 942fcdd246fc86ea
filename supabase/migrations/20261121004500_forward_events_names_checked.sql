-- public.relay_settings.forward_events takes only names an event the webhook stores can have: the webhook's
-- own rule (EVENT_NAME in supabase/functions/_shared/chatwoot_events.ts: a lowercase letter, then up to 63 of
-- a-z 0-9 _ .), and no null. '{"message_created "}', '{Message_Created}' or '{""}' were accepted and matched
-- no event: every event of that kind was stored 'skipped' with nothing said, and the replay functions take
-- only dead events, so there was no easy way back.
--
-- Names of the right form that Chatwoot does not send (message_create) stay possible: Chatwoot adds events,
-- and this database keeps no list of the known ones (the readiness check warns about them instead). An empty
-- list stays possible too: storing without forwarding is a choice (the readiness check says so).
--
-- A live row holding such names loses them, and the migration says which (a warning): they matched no
-- event, so what is forwarded stays exactly as it was. Not added NOT VALID instead: Postgres checks every
-- constraint of a row at each UPDATE, so the kill switch (set forwarding_paused = true) would then fail
-- on the old names. Not trimmed or lower-cased either: that would start forwarding events no one saw
-- forwarded before, at a deploy.

create or replace function public.webhook_event_names_valid(p_names text[])
returns boolean
language sql
immutable
parallel safe
set search_path = ''
as $$
  select coalesce(bool_and(n is not null and n ~ '^[a-z][a-z0-9_.]{0,63}$'), true) from unnest(p_names) n
$$;

comment on function public.webhook_event_names_valid(text[]) is
  'True when every name is one a stored event can have (the webhook refuses any other): forward_events'' check.';

revoke all on function public.webhook_event_names_valid(text[]) from public, anon, authenticated;
grant execute on function public.webhook_event_names_valid(text[]) to service_role;

do $$
declare
  v_names text[];
  v_dropped text;
begin
  -- ADD CONSTRAINT needs relay_settings to itself for a moment, and every ingest reads it: wait at most 2 s
  -- (ingests retry for 2.5 s); a table a long query holds fails the migration instead, changing nothing.
  perform set_config('lock_timeout', '2s', true);
  select s.forward_events into v_names from public.relay_settings s where s.id for update;
  select string_agg(coalesce(quote_literal(u.n), 'null'), ', ' order by u.i) into v_dropped
    from unnest(v_names) with ordinality u(n, i)
   where not public.webhook_event_names_valid(array[u.n]);
  if v_dropped is not null then
    update public.relay_settings s
       set forward_events = array(select u.n from unnest(s.forward_events) with ordinality u(n, i)
                                   where public.webhook_event_names_valid(array[u.n]) order by u.i),
           updated_at = now()
     where s.id;
    raise warning 'public.relay_settings.forward_events held %, names no event can have (so they forwarded '
      'nothing): dropped. Re-add a name meant, written as the event is (README, Forwarding)', v_dropped;
  end if;
  alter table public.relay_settings
    add constraint relay_settings_forward_events_check check (public.webhook_event_names_valid(forward_events));
exception
  when lock_not_available then
    raise exception 'relay_settings is held by a long query: nothing changed; run the migration again'
      using errcode = 'lock_not_available';
end
$$;
