-- Validates the check migration 000900 added NOT VALID, in a transaction of its own: VALIDATE reads the
-- whole table but holds only a SHARE UPDATE EXCLUSIVE lock, so ingests and deliveries go on meanwhile.
alter table public.webhook_events validate constraint webhook_events_body_sha256_check;
