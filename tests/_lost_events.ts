// Lost-event records as the webhook makes them for a refusal or an outage, for tests that write them directly.
import type { LostEvent } from "../supabase/functions/_shared/lost_events.ts";

/** A record of one lost event known by its key alone (no delivery, inbox, account or times); `fields` add the rest. */
export function lostRecord(
  fields: Pick<LostEvent, "event" | "event_key" | "error_code"> & Partial<LostEvent>,
): LostEvent {
  return {
    id: crypto.randomUUID(),
    lost_at: new Date().toISOString(),
    delivery_id: null,
    inbox_id: null,
    account_id: null,
    received_at: null,
    message_created_at: null,
    recover_command: null,
    tried_for_ms: 0,
    ...fields,
  };
}
