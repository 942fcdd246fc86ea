-- Validates the check migration 002000 added NOT VALID. A scan of webhook_events that holds only a SHARE
-- UPDATE EXCLUSIVE lock: ingests and deliveries go on meanwhile.
alter table public.webhook_events validate constraint webhook_events_verified_by_check;
