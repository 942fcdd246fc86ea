// What a Chatwoot webhook body must look like (docs/chatwoot-contract.md), and the columns we
// derive from it. Schemas check only what we rely on; unknown extra fields pass through untouched, because
// Chatwoot adds fields between versions and a rejected event is lost for good.
import { z } from "zod";
import { EVENT_NAME, type KnownEvent, MESSAGE_EVENTS } from "./chatwoot_events.ts";

const Id = z.number().int().nonnegative();
const Ref = z.looseObject({ id: Id });
const Timestamp = z.union([z.string(), z.number()]);
const ChangedAttributes = z.array(
  z.record(z.string(), z.looseObject({ previous_value: z.unknown(), current_value: z.unknown() })),
);

const MessageEvent = z.looseObject({
  event: z.enum(MESSAGE_EVENTS),
  id: Id,
  message_type: z.string(), // a string at the top level ("incoming", "outgoing", "template")
  content: z.string().nullish(),
  content_type: z.string().nullish(),
  private: z.boolean().optional(),
  created_at: Timestamp.optional(),
  conversation: z.looseObject({ id: Id }),
  account: Ref,
  inbox: Ref.optional(),
  sender: z.looseObject({ id: Id.optional(), type: z.string().optional() }).nullish(),
  // Attachment#push_event_data is nil for an attachment without a file_type (a nullable column).
  attachments: z.array(z.looseObject({ id: Id.optional() }).nullable()).optional(),
});

const ConversationEvent = z.looseObject({
  event: z.enum(["conversation_created", "conversation_status_changed", "conversation_updated"]),
  id: Id, // the display id
  inbox_id: Id.optional(),
  status: z.string().optional(),
  account: Ref.optional(),
  messages: z.array(z.looseObject({ account_id: Id.optional() })).optional(),
  changed_attributes: ChangedAttributes.nullish(),
});

const TypingEvent = z.looseObject({
  event: z.enum(["conversation_typing_on", "conversation_typing_off"]),
  conversation: z.looseObject({ id: Id }),
  user: z.looseObject({}).nullish(),
  // No is_private check: it is `params[:is_private] || false`, as the API client sent it (true, "true", 1…).
});

// ContactInbox#webhook_data: `contact.try(:webhook_data)` and `current_conversation.try(:webhook_data)` are
// null when there is none (a contact deleted while its widget session lives on).
const WebwidgetEvent = z.looseObject({
  event: z.literal("webwidget_triggered"),
  contact: Ref.nullish(),
  inbox: Ref.optional(),
  account: Ref.optional(),
  current_conversation: Ref.nullish(),
});

const ContactEvent = z.looseObject({
  event: z.enum(["contact_created", "contact_updated"]),
  id: Id,
  changed_attributes: ChangedAttributes.nullish(),
});

// Inbox::EventDataPresenter#push_data: the inbox's settings and its channel record (the id in it is the
// channel's), with no id of the inbox at all, and an account only since Chatwoot added webhook_data.
const InboxEvent = z.looseObject({
  event: z.enum(["inbox_created", "inbox_updated"]),
  id: Id.optional(),
});

// Events Chatwoot may add later: stored as they come, keyed by body hash.
const AnyEvent = z.looseObject({
  event: z.string().regex(EVENT_NAME, "must be an event name"),
});

// One schema for each known event, and none for another name (chatwoot_events.ts keeps the one list).
const schemas: Record<string, z.ZodType<Record<string, unknown>>> = {
  message_created: MessageEvent,
  message_updated: MessageEvent,
  conversation_created: ConversationEvent,
  conversation_status_changed: ConversationEvent,
  conversation_updated: ConversationEvent,
  conversation_typing_on: TypingEvent,
  conversation_typing_off: TypingEvent,
  webwidget_triggered: WebwidgetEvent,
  contact_created: ContactEvent,
  contact_updated: ContactEvent,
  inbox_created: InboxEvent,
  inbox_updated: InboxEvent,
} satisfies Record<KnownEvent, z.ZodType<Record<string, unknown>>>;

export interface PayloadIssue {
  path: string;
  message: string;
}

export type ParsedEvent =
  | { ok: true; payload: Record<string, unknown>; event: string }
  | {
    ok: false;
    error: "invalid_json" | "missing_event" | "invalid_payload";
    message: string;
    issues?: PayloadIssue[];
    /** The body's `event` when it is a string (cut to 100 characters): the log names what was refused. */
    event?: string;
    /** The body as parsed, when it is a JSON object: what the refusal's record reads of it (no parse again). */
    value?: Record<string, unknown>;
  };

/**
 * Deepest nesting of objects and arrays accepted. Postgres parses jsonb recursively: a body nested some
 * 100 000 levels deep fails with "stack depth limit exceeded" on a server, and one of 7 000 hangs PGlite's
 * connection for good. Chatwoot reads its stored JSON with Ruby's parser, which stops at 100 levels, so no
 * real payload comes near this.
 */
export const MAX_JSON_DEPTH = 512;

/** True when `value` nests objects/arrays more than `limit` levels deep (stops looking as soon as it does). */
function nestedDeeperThan(value: unknown, limit: number): boolean {
  if (typeof value !== "object" || value === null) return false;
  if (limit === 0) return true;
  if (Array.isArray(value)) return value.some((v) => nestedDeeperThan(v, limit - 1));
  for (const key in value) {
    if (nestedDeeperThan((value as Record<string, unknown>)[key], limit - 1)) return true;
  }
  return false;
}

/**
 * Largest decimal exponent a number may carry, and largest sum of them over a body. Postgres' numeric holds
 * 1e130000 in a few bytes but writes it out in full (130 001 digits), so one such number in a stored body made
 * every read of its row (the views, the forwarder's claim, stats) run out of memory or return megabytes.
 * Chatwoot writes an exponent only for a Ruby float (a double: at most 308, or -324), far below these.
 */
export const MAX_JSON_EXPONENT = 1000;
export const MAX_JSON_EXPONENT_SUM = 1_000_000;

// Outside strings, after JSON.parse accepted the text, an e/E followed by digits is a number's exponent.
const QUOTE_OR_EXPONENT = /"|[eE][+-]?(\d+)/g;

/**
 * Why `text` (valid JSON) holds a number Postgres would write out too long, or null. One pass over the text:
 * a string is skipped with indexOf (its escaped quotes checked by the backslashes before them).
 */
function exponentProblem(text: string): string | null {
  let sum = 0;
  const re = new RegExp(QUOTE_OR_EXPONENT);
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (m[1] === undefined) {
      let end = m.index;
      for (;;) {
        end = text.indexOf('"', end + 1);
        if (end < 0) return null; // not after JSON.parse: no string is left open
        let backslashes = 0;
        while (text.charCodeAt(end - 1 - backslashes) === 92) backslashes++;
        if (backslashes % 2 === 0) break;
      }
      re.lastIndex = end + 1;
      continue;
    }
    const digits = m[1].replace(/^0+/, "");
    const exponent = digits.length > 7 ? Infinity : Number(digits);
    if (exponent > MAX_JSON_EXPONENT) {
      return `Body holds a number with a decimal exponent beyond ±${MAX_JSON_EXPONENT}`;
    }
    sum += exponent;
    if (sum > MAX_JSON_EXPONENT_SUM) {
      return `Body's numbers have decimal exponents adding up to more than ${MAX_JSON_EXPONENT_SUM}`;
    }
  }
  return null;
}

/** Parses and validates a body that has already been authenticated. */
export function parseChatwootEvent(text: string): ParsedEvent {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, error: "invalid_json", message: "Body is not valid JSON" };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { ok: false, error: "invalid_json", message: "Body must be a JSON object" };
  }
  const object = value as Record<string, unknown>;
  if (nestedDeeperThan(object, MAX_JSON_DEPTH)) {
    return {
      ok: false,
      error: "invalid_payload",
      message: `Body nests objects and arrays deeper than ${MAX_JSON_DEPTH} levels`,
      value: object,
    };
  }
  const exponents = exponentProblem(text);
  if (exponents) return { ok: false, error: "invalid_payload", message: exponents, value: object };
  const event = object.event;
  if (event === undefined || event === null || event === "") {
    return { ok: false, error: "missing_event", message: 'Body has no "event" field', value: object };
  }
  // Own keys only: schemas["constructor"] is Object's, a function, and parsing with it threw (a 500).
  const schema = typeof event === "string" && Object.hasOwn(schemas, event) ? schemas[event] : AnyEvent;
  const result = schema.safeParse(value);
  if (!result.success) {
    return {
      ok: false,
      error: "invalid_payload",
      message: `Payload does not match the ${typeof event === "string" ? event : "event"} schema`,
      ...(typeof event === "string" ? { event: event.slice(0, 100) } : {}),
      value: object,
      // Paths and reasons only: values may hold personal data and are never echoed.
      issues: result.error.issues.slice(0, 20).map((issue) => ({
        path: issue.path.map(String).join("."),
        message: issue.message,
      })),
    };
  }
  return { ok: true, payload: result.data, event: event as string };
}

export interface EventColumns {
  event: string;
  eventKey: string;
  messageId: number | null;
  conversationId: number | null;
  accountId: number | null;
  inboxId: number | null;
}

type Json = Record<string, unknown>;
const obj = (value: unknown): Json | undefined =>
  typeof value === "object" && value !== null && !Array.isArray(value) ? value as Json : undefined;
const int = (value: unknown): number | null => Number.isSafeInteger(value) ? value as number : null;
const first = (...values: unknown[]): number | null => {
  for (const value of values) {
    const n = int(value);
    if (n !== null) return n;
  }
  return null;
};

/** The stored key of a message event: a message_updated never overwrites its message_created. */
export const messageEventKey = (messageId: number | null, event: string) => `message:${messageId}:${event}`;

/** The stored key and query columns of a validated payload. */
export function eventColumns(payload: Json, event: string, bodySha256: string): EventColumns {
  const isMessage = (MESSAGE_EVENTS as readonly string[]).includes(event);
  const isConversation = event.startsWith("conversation_") && !event.startsWith("conversation_typing");
  const conversation = obj(payload.conversation) ?? obj(payload.current_conversation);
  const messages = Array.isArray(payload.messages) ? payload.messages : conversation?.messages;
  const firstMessage = obj(Array.isArray(messages) ? messages[0] : undefined);
  const messageId = isMessage ? int(payload.id) : null;
  return {
    event,
    eventKey: isMessage ? messageEventKey(messageId, event) : `${event}:${bodySha256}`,
    messageId,
    conversationId: isConversation ? int(payload.id) : first(conversation?.id),
    accountId: first(
      obj(payload.account)?.id,
      payload.account_id,
      firstMessage?.account_id,
      conversation?.account_id,
      obj(payload.channel)?.account_id, // an inbox event without `account` (its channel's record)
    ),
    inboxId: event.startsWith("inbox_")
      ? int(payload.id)
      : first(obj(payload.inbox)?.id, payload.inbox_id, conversation?.inbox_id, firstMessage?.inbox_id),
  };
}

/** What an inbox event keeps of its channel's record: what identifies the channel, never a credential. */
const CHANNEL_KEYS_KEPT = new Set([
  "id",
  "account_id",
  "created_at",
  "updated_at",
  "email",
  "phone_number",
  "website_url",
]);

/**
 * An inbox event without its channel's credentials: the payload, and its JSON text to store and forward; null
 * when there is nothing to leave out (any other event, or a channel holding only the kept keys).
 *
 * Chatwoot's inbox events carry `channel: channel`, the channel's whole record (Inbox::EventDataPresenter):
 * an email channel's IMAP/SMTP passwords and OAuth provider_config, an API channel's hmac_token and secret, a
 * Telegram bot_token. The relay needs none of them, and webhook_events is read by the Data team and sent to
 * the Agent SDK, so only the keys above are kept (a list of what is safe: a new credential column in a later
 * Chatwoot is left out too). `relay_redacted` names what was left out. The text is re-serialised: an inbox
 * event holds no number a double cannot carry (ids, ports, counts).
 */
export function inboxEventWithoutChannelSecrets(
  event: string,
  payload: Json,
): { payload: Json; text: string } | null {
  if (!event.startsWith("inbox_")) return null;
  const channel = obj(payload.channel);
  if (!channel) return null;
  const left = Object.keys(channel).filter((key) => !CHANNEL_KEYS_KEPT.has(key));
  if (left.length === 0) return null;
  const kept = Object.fromEntries(Object.entries(channel).filter(([key]) => CHANNEL_KEYS_KEPT.has(key)));
  const redacted = [
    ...(Array.isArray(payload.relay_redacted) ? payload.relay_redacted : []),
    ...left.map((key) => `channel.${key}`),
  ];
  const cut = { ...payload, channel: kept, relay_redacted: redacted };
  return { payload: cut, text: JSON.stringify(cut) };
}

/**
 * jsonb cannot hold U+0000, which JSON may escape as \u0000. The raw body keeps it; the queryable copy
 * drops it. Returns null when the raw text itself can be the jsonb (the usual case: Postgres parses it,
 * numbers keep their exact precision, and the body is sent to the database once).
 *
 * The copy is cut from the text, not re-serialised from the parsed value: JSON.stringify would pass every
 * number through a double (a 30-digit id lost its digits, 1e400 became null). `rawText` has parsed as JSON,
 * so a backslash occurs only inside a string, where it starts an escape; taking escapes left to right keeps
 * an escaped backslash whole, so `\\u0000` (a backslash, then the characters u0000) stays.
 */
export function jsonbText(rawText: string): string | null {
  if (!rawText.includes("\\u0000")) return null;
  const clean = rawText.replace(/\\(?:u0000|[^])/g, (escape) => escape === "\\u0000" ? "" : escape);
  return clean === rawText ? null : clean;
}
