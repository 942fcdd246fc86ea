// Realistic Chatwoot webhook bodies, shaped as docs/chatwoot-contract.md describes (v4.11-v4.17), for the
// `send` helper, the tests and the benchmarks.
import { KNOWN_EVENTS, type KnownEvent } from "../../supabase/functions/_shared/chatwoot_events.ts";

/** Every event the webhook knows has a sample. */
export const SAMPLE_EVENTS = KNOWN_EVENTS;

export type SampleEvent = KnownEvent;

export interface SampleOptions {
  messageId?: number;
  conversationId?: number;
  accountId?: number;
  inboxId?: number;
  contactId?: number;
  content?: string;
  /** Pads content_attributes so the body reaches roughly this many bytes (for benchmarks). */
  padToBytes?: number;
  at?: Date;
}

const iso = (d: Date) => d.toISOString();
const epoch = (d: Date) => Math.floor(d.getTime() / 1000);

function contact(o: Required<Pick<SampleOptions, "contactId">>) {
  return {
    id: o.contactId,
    name: "Jamie Rivera",
    email: "jamie.rivera@example.com",
    phone_number: "+15555550123",
    identifier: null,
    thumbnail: "",
    avatar: "",
    additional_attributes: { city: "Austin", country: "United States" },
    custom_attributes: {},
    blocked: false,
  };
}

function conversationData(
  o: Required<Omit<SampleOptions, "content" | "padToBytes">>,
  content: string,
  atGiven: boolean,
) {
  const at = o.at;
  return {
    id: o.conversationId,
    inbox_id: o.inboxId,
    status: "open",
    channel: "Channel::Email",
    can_reply: true,
    labels: ["support"],
    meta: {
      sender: { ...contact(o), type: "contact" },
      assignee: { id: 7, name: "Alex Agent", email: "alex@hotrodan.com", type: "user" },
      team: null,
      hmac_verified: false,
    },
    messages: [{
      id: o.messageId,
      content,
      account_id: o.accountId,
      inbox_id: o.inboxId,
      conversation_id: o.conversationId,
      message_type: 0,
      created_at: epoch(at),
      private: false,
      sender_type: "Contact",
      sender_id: o.contactId,
    }],
    contact_inbox: {
      id: 9001,
      contact_id: o.contactId,
      inbox_id: o.inboxId,
      source_id: "jamie.rivera@example.com",
    },
    custom_attributes: {},
    additional_attributes: {},
    unread_count: 1,
    priority: null,
    snoozed_until: null,
    waiting_since: epoch(at),
    first_reply_created_at: null,
    agent_last_seen_at: 0,
    contact_last_seen_at: 0,
    last_activity_at: epoch(at),
    timestamp: epoch(at),
    created_at: epoch(at),
    updated_at: updatedAt(o.at, atGiven),
  };
}

let lastUpdatedAt = 0;

/**
 * conversation.updated_at: epoch seconds with microseconds. Chatwoot's only grows (a change of the conversation
 * or of one of its messages touches it), and the relay orders two edits signed in the same second by it; so,
 * unless a time is given, a payload made later carries a later one, even within one millisecond.
 */
function updatedAt(at: Date, given: boolean): number {
  const micros = Math.round(at.getTime() * 1000) + 123_456;
  if (given) return micros / 1e6;
  lastUpdatedAt = Math.max(micros, lastUpdatedAt + 1);
  return lastUpdatedAt / 1e6;
}

export function samplePayload(event: SampleEvent, options: SampleOptions = {}): Record<string, unknown> {
  const o = {
    messageId: options.messageId ?? 4201,
    conversationId: options.conversationId ?? 87,
    accountId: options.accountId ?? 1,
    inboxId: options.inboxId ?? 3,
    contactId: options.contactId ?? 512,
    at: options.at ?? new Date(),
  };
  const content = options.content ?? "Hi, my order #1042 has not arrived yet. Can you check?";
  const account = { id: o.accountId, name: "HotDash" };
  const inbox = { id: o.inboxId, name: "customer.support@hotrodan.com" };
  const conversation = conversationData(o, content, options.at !== undefined);
  let payload: Record<string, unknown>;
  switch (event) {
    case "message_created":
    case "message_updated":
      payload = {
        event,
        id: o.messageId,
        content,
        content_type: "text",
        content_attributes: event === "message_updated" ? { edited: true } : {},
        message_type: "incoming",
        private: false,
        created_at: iso(o.at),
        source_id: `<msg-${o.messageId}@mail.example.com>`,
        additional_attributes: {},
        sender: contact(o),
        conversation,
        account,
        inbox,
      };
      break;
    case "conversation_created":
      payload = { event, ...conversation };
      break;
    case "conversation_status_changed":
      payload = {
        event,
        ...conversation,
        status: "resolved",
        changed_attributes: [{ status: { previous_value: "open", current_value: "resolved" } }],
      };
      break;
    case "conversation_updated":
      payload = {
        event,
        ...conversation,
        labels: ["support", "shipping"],
        changed_attributes: [{
          label_list: { previous_value: ["support"], current_value: ["support", "shipping"] },
        }],
      };
      break;
    case "conversation_typing_on":
    case "conversation_typing_off":
      payload = {
        event,
        user: { id: 7, name: "Alex Agent", email: "alex@hotrodan.com", type: "user" },
        conversation,
        is_private: false,
      };
      break;
    case "webwidget_triggered":
      payload = {
        event,
        id: "9001",
        contact: contact(o),
        inbox,
        account,
        current_conversation: conversation,
        source_id: "4c1b3b6e-1f0a-4d8e-9a55-0a7e3d7c2f10",
        event_info: {
          initiated_at: { timestamp: iso(o.at) },
          referer: "https://hotrodan.com/",
          browser_language: "en",
        },
      };
      break;
    case "contact_created":
      payload = { event, ...contact(o), account };
      break;
    case "contact_updated":
      payload = {
        event,
        ...contact(o),
        account,
        changed_attributes: [{ name: { previous_value: "Jamie", current_value: "Jamie Rivera" } }],
      };
      break;
    case "inbox_created":
    case "inbox_updated":
      // Inbox::EventDataPresenter#push_data: the inbox's settings, its times and its channel's record (whose id
      // is the channel's); no inbox id or name. A web widget's channel, its keys the relay keeps only (an email
      // channel's credentials are cut on the way in: tests/webhook.test.ts).
      payload = {
        allow_messages_after_resolved: true,
        lock_to_single_conversation: false,
        enable_auto_assignment: true,
        greeting_enabled: false,
        greeting_message: null,
        timezone: "UTC",
        working_hours_enabled: false,
        created_at: iso(o.at),
        updated_at: iso(o.at),
        channel: {
          id: 40 + o.inboxId,
          account_id: o.accountId,
          website_url: "https://hotrodan.com",
          created_at: iso(o.at),
          updated_at: iso(o.at),
        },
        account,
        event,
        ...(event === "inbox_updated"
          ? { changed_attributes: [{ timezone: { previous_value: "Etc/UTC", current_value: "UTC" } }] }
          : {}),
      };
      break;
  }
  if (options.padToBytes) {
    const size = new TextEncoder().encode(JSON.stringify(payload)).length;
    if (size < options.padToBytes) {
      payload.additional_attributes = { note: "x".repeat(options.padToBytes - size) };
    }
  }
  return payload;
}
