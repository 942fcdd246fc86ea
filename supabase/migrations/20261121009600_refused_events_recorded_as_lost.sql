-- A webhook that authenticated (its signature, or the URL token) and was then refused is Chatwoot's own event,
-- and Chatwoot never sends it again: a stale or future timestamp (its clock off by more than the tolerance), a
-- body that is not UTF-8 or JSON, with no event, or that our schema or jsonb refuses. Until now such a refusal
-- was only counted in webhook_rejections, and readiness said "N rejected in 24 h" as text: a relay refusing
-- every event of a new Chatwoot version looked ready. chatwoot-webhook now records each one in
-- webhook_lost_events, error_code the refusal's code, so readiness and deno task stats warn while it is missing.
--
-- Their warnings say what to do, which differs per cause (a clock, a payload to report, a database that did
-- not answer): webhook_lost_events_since() (migration 009400) counts the missing per error_code.

comment on table public.webhook_lost_events is
  'Webhook events not stored: the database did not answer within the late store''s window, or Chatwoot''s '
  'authenticated request was refused (error_code the refusal''s); recover_command fetches a message_created '
  'back from Chatwoot''s API. Never holds bodies.';
comment on column public.webhook_lost_events.error_code is
  'The database''s error code, why no attempt was made (memory_bound, worker_shutdown), or the code an '
  'authenticated webhook was refused with (timestamp_stale, timestamp_future, timestamp_invalid, invalid_json, '
  'missing_event, invalid_payload).';
comment on column public.webhook_lost_events.event is
  'The event''s name; unknown when a refused body names none (not UTF-8 or JSON, no event).';
