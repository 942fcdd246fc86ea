// The Chatwoot event names the webhook knows (docs/chatwoot-contract.md), apart from their schemas
// (chatwoot_payload.ts, which must give each one a schema): the readiness function checks
// public.relay_settings.forward_events against them and does not bundle zod.

export const MESSAGE_EVENTS = ["message_created", "message_updated"] as const;

export const KNOWN_EVENTS = [
  ...MESSAGE_EVENTS,
  "conversation_created",
  "conversation_status_changed",
  "conversation_updated",
  "conversation_typing_on",
  "conversation_typing_off",
  "webwidget_triggered",
  "contact_created",
  "contact_updated",
  "inbox_created",
  "inbox_updated",
] as const;

export type KnownEvent = (typeof KNOWN_EVENTS)[number];

/**
 * An event name the webhook takes (any other is refused, 400), so the only names
 * public.relay_settings.forward_events may list: its check (migration 004500) spells the same rule, and
 * tests/migrations.test.ts compares the two.
 */
export const EVENT_NAME = /^[a-z][a-z0-9_.]{0,63}$/;
