-- A recovery no longer stores a message that a prune running meanwhile has deleted (concurrency review).
--
-- deno task recover checked recover_horizon() once, before its scan; the scan then reads Chatwoot for minutes
-- or hours and stores what it finds missing. A prune that ran in between (the daily pg_cron job) moved the
-- horizon past the start of the window and deleted delivered events in it: their messages, checked after
-- that, looked never received, were stored again and delivered twice, what the horizon is there to prevent
-- (migration 002000). The same within one store: recover_webhook_event's INSERT ... ON CONFLICT, meeting the
-- row a prune was deleting, waited for the prune's commit and then inserted, the old horizon in its snapshot.
--
-- Now recover_webhook_event checks the message's created_at against the horizon as it stores, under a shared
-- advisory lock that prune_webhook_events takes exclusively at its start (until its first commit, which holds
-- its first deletions and its cutoff together): it reads pruned_before after any prune's first deletions have
-- committed, or before any prune starts deleting (which then waits for the recovery's transaction, one
-- conversation's stores). A message created before the horizon is refused (55000), naming it: the scan stops
-- there (said as retention's), what it stored before stays stored, and a run again is refused from the
-- start with the new horizon. Otherwise as in migrations 002000 and 007200.
--
-- And prune_webhook_events() waits for the settings row before it deletes, not while holding what it deleted.
--
-- Since migration 007200 it writes relay_settings.pruned_before after its first batch's delete, so that
-- operators' updates of that row do not wait for the delete. The other way round it got worse: when an
-- operator's transaction held the row (an UPDATE in a session left open, README's commands run inside BEGIN),
-- the prune deleted its first batch and then waited for that transaction with up to 5 000 events locked, and
-- a webhook storing one of them again (a message_updated whose earlier edit is that old) waited as long: past
-- the late store's 120 s it was lost. Found by the concurrency review.
--
-- Now it first waits for the row, holding nothing: it locks it and lets it go at once (a subtransaction
-- rolled back), then deletes. An operator taking the row again in the moment between still holds the
-- prune's batch up; anything else finds the row free and the batch's wait as short as before.

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
language plpgsql
as $$
declare
  v_horizon timestamptz;
  v_created_at timestamptz;
  v_id bigint;
begin
  -- A prune deleting now holds it: wait for its first commit. Held to this transaction's end.
  perform pg_advisory_xact_lock_shared(hashtext('public.webhook_events prune'), 0);
  -- Statements of their own, so in READ COMMITTED they see what a prune committed while this one waited.
  v_horizon := public.recover_horizon();
  v_created_at := public.chatwoot_timestamp(p_raw_body::jsonb -> 'created_at');
  if v_created_at < v_horizon then
    raise exception 'recover_webhook_event: message % was created at %, before %: retention may have deleted '
      'its delivered event meanwhile, and it would be delivered twice; recover from % or later',
      p_message_id, v_created_at, v_horizon, v_horizon
      using errcode = '55000';
  end if;
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
  returning e.id into v_id;
  return v_id;
end
$$;

create or replace procedure public.prune_webhook_events(
  inout deleted bigint default 0,
  older_than interval default null,
  batch_size integer default 5000
)
language plpgsql
as $$
declare
  cutoff timestamptz;
  n bigint;
  cutoff_written boolean := false;
begin
  if batch_size is null or batch_size < 1 then
    raise exception 'prune_webhook_events: batch_size must be 1 or more (got %)',
      coalesce(batch_size::text, 'null') using errcode = '22023';
  end if;
  if older_than < interval '0' then
    raise exception 'prune_webhook_events: older_than must not be negative (got %)', older_than
      using errcode = '22023';
  end if;
  -- Waits, holding nothing yet, for a transaction that holds the settings row (an operator's, left open):
  -- the row is locked and let go at once (the subtransaction's end releases it). Waited for after the first
  -- batch's delete instead, that transaction would keep the batch's events locked, and webhooks waiting.
  begin
    perform 1 from public.relay_settings s where s.id for no key update;
    raise sqlstate 'RLP01';
  exception
    when sqlstate 'RLP01' then
      null;
  end;
  -- Waits for recoveries storing now (recover_webhook_event), and holds new ones off until the first commit:
  -- they then see the cutoff. Taken before anything is deleted, so no recovery waits for a row of ours
  -- while we wait for it.
  perform pg_advisory_xact_lock(hashtext('public.webhook_events prune'), 0);
  cutoff := now() - coalesce(
    older_than,
    (select make_interval(days => s.retention_days) from public.relay_settings s where s.id),
    interval '30 days');
  deleted := 0;
  delete from public.webhook_rejections r where r.minute < cutoff;
  delete from public.webhook_lost_events l where l.lost_at < cutoff;
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
    if not cutoff_written then
      -- Kept at its latest and committed with the first deletions: a recovery never reaches back past what
      -- may be gone. Written after the delete, so operators' updates of this row wait for the commit only.
      update public.relay_settings s
         set pruned_before = greatest(s.pruned_before, cutoff)
       where s.id;
      cutoff_written := true;
    end if;
    exit when n < batch_size;
    commit;
  end loop;
end
$$;
