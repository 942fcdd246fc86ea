-- prune_webhook_events() no longer holds the relay_settings row through its work.
--
-- It wrote relay_settings.pruned_before first, then deleted its first batch (up to 5 000 events, their
-- delivery attempts with them) in the same transaction, and, when that was all, the old refusal counts and
-- lost-event records too: the settings row stayed locked until that transaction committed. An operator's
-- pause, resume, change of target or of forward_events, or acknowledgement of dead events (README,
-- Operations: each an UPDATE of that row) waited for the delete, once a day under pg_cron. Found by review.
-- Now refusal counts and lost-event records go first, and the cutoff is written after the first batch's
-- delete, just before its commit: the row is held from there to that commit only. The cutoff still becomes
-- visible with the first deletions, never after them (one commit), so a recovery never reaches back past what
-- may be gone (migration 002000).
-- Committing the cutoff alone before deleting would free the row too, but a COMMIT fails inside a
-- transaction block ("invalid transaction termination"): a CALL within BEGIN ... COMMIT, which works while
-- one batch covers everything to delete, would then always fail. It works as before (and fails as before
-- past one batch, deleting nothing; README, Operations); there the caller's transaction holds the row until
-- it ends.
--
-- A batch_size below 1 looped forever (LIMIT 0 deletes nothing, and "fewer than asked" never came) and a
-- negative older_than put the cutoff, and so pruned_before, in the future: both are refused now (22023).
--
-- Otherwise as in migration 006400 (a CREATE OR REPLACE keeps its grants).
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
  cutoff_written boolean := false;
begin
  if batch_size is null or batch_size < 1 then
    raise exception 'prune_webhook_events: batch_size must be 1 or more (got %)', coalesce(batch_size::text, 'null')
      using errcode = '22023';
  end if;
  if older_than < interval '0' then
    raise exception 'prune_webhook_events: older_than must not be negative (got %)', older_than
      using errcode = '22023';
  end if;
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
