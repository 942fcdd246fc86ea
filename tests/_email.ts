// A large email message_created as Chatwoot sends it (docs/chatwoot-contract.md, "Size"): `content` cut at
// 150 000 characters, `content_attributes.email` with the HTML and text uncut (full, reply, quoted), repeated
// by the conversation's last message, and serialised as Rails does (`<`, `>`, `&` as \u003c, \u003e, \u0026).
import { samplePayload } from "../scripts/lib/samples.ts";

/** A newsletter-like block: inline styles, entities, and the typographic characters mail clients write. */
function htmlBlock(i: number): string {
  return `<tr><td style="padding:8px 12px;font-family:Arial,Helvetica,sans-serif;font-size:14px;` +
    `color:#333333;border-bottom:1px solid #eeeeee"><a href="https://shop.example.com/o/${i}?utm_source=mail&amp;` +
    `utm_medium=email">Order #${10_000 + i}</a> – “Blue widget” shipped&nbsp;&amp; on its way — ` +
    `café crème, qty ${i % 7}</td></tr>\n`;
}

function textBlock(i: number): string {
  return `Order #${10_000 + i} – “Blue widget” shipped & on its way — café crème, qty ${i % 7}\n`;
}

/** Rails' JSON: HTML-significant characters and U+2028/U+2029 as \u escapes (ActiveSupport::JSON). */
function railsJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

function emailBody(blocks: number, messageId: number): string {
  const rows = Array.from({ length: blocks }, (_, i) => htmlBlock(i));
  const texts = Array.from({ length: blocks }, (_, i) => textBlock(i));
  const half = Math.floor(blocks / 2);
  const html = (part: string[]) => `<html><body><table width="100%">\n${part.join("")}</table></body></html>`;
  const text = texts.join("");
  const payload = samplePayload("message_created", { messageId, conversationId: 4000 + (messageId % 1000) });
  const emailAttributes = {
    email: {
      bcc: null,
      cc: null,
      content_type: "multipart/alternative",
      date: new Date().toISOString(),
      from: ["jamie.rivera@example.com"],
      html_content: { full: html(rows), reply: html(rows.slice(0, half)), quoted: html(rows.slice(half)) },
      in_reply_to: null,
      message_id: `<msg-${messageId}@mail.example.com>`,
      multipart: true,
      number_of_attachments: 0,
      subject: "Your orders this month",
      text_content: { full: text, reply: texts.slice(0, half).join(""), quoted: texts.slice(half).join("") },
      to: ["customer.support@hotrodan.com"],
    },
    cc_email: null,
    bcc_email: null,
  };
  const content = text.slice(0, 150_000);
  const conversation = payload.conversation as { messages: Record<string, unknown>[] };
  conversation.messages[0] = { ...conversation.messages[0], content, content_attributes: emailAttributes };
  return railsJson({ ...payload, content, content_attributes: emailAttributes });
}

/**
 * A realistic email message_created of about `targetBytes` bytes (UTF-8), its HTML sized to get there. Not
 * all Latin-1, as real mail is not: its text decodes to a two-byte string.
 */
export function largeEmailBody(targetBytes: number, messageId: number): string {
  const size = (body: string) => new TextEncoder().encode(body).length;
  let blocks = 100;
  let body = emailBody(blocks, messageId);
  for (let i = 0; i < 4 && Math.abs(size(body) - targetBytes) > targetBytes / 200; i++) {
    blocks = Math.max(1, Math.round(blocks * targetBytes / size(body)));
    body = emailBody(blocks, messageId);
  }
  return body;
}
