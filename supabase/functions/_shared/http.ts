// The error body every function answers with: {ok: false, error: <stable code>, message, ...details}.
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";

export function jsonError(
  c: Context,
  status: ContentfulStatusCode,
  error: string,
  message: string,
  extra: Record<string, unknown> = {},
): Response {
  return c.json({ ok: false, error, message, ...extra }, status);
}

/** For app.notFound: an unknown path inside the function. */
export const notFoundJson = (c: Context): Response =>
  jsonError(c, 404, "not_found", `No route ${c.req.path}`);

/** Content-Type is application/json (parameters such as charset aside). */
export function isJsonContentType(req: Request): boolean {
  return (req.headers.get("content-type") ?? "").split(";")[0].trim().toLowerCase() === "application/json";
}

/**
 * The weight (q, 0 to 1) an Accept header gives `mediaType` (lowercase "type/subtype"): that of the most
 * specific range matching it (RFC 9110 12.5.1: "text/html" before "text/*" before "*\/*"), 0 when none does.
 * Media types are case-insensitive; a q that is no qvalue counts as 1.
 */
export function acceptWeight(accept: string, mediaType: string): number {
  const [type] = mediaType.split("/");
  let best = { specificity: -1, q: 0 };
  for (const part of accept.split(",")) {
    const [range, ...params] = part.split(";").map((p) => p.trim().toLowerCase());
    const specificity = range === mediaType ? 2 : range === `${type}/*` ? 1 : range === "*/*" ? 0 : -1;
    if (specificity <= best.specificity) continue;
    const qParam = params.find((p) => /^q\s*=/.test(p));
    const q = qParam?.replace(/^q\s*=\s*/, "") ?? "1";
    // RFC 9110's qvalue: 0 to 1, three decimals at most.
    best = { specificity, q: /^(0(\.\d{0,3})?|1(\.0{0,3})?)$/.test(q) ? Number(q) : 1 };
  }
  return best.q;
}

/**
 * Content-Type's parameters as RFC 9110 writes them (`; name=token` or `; name="quoted \"string\""`), names
 * lowercased, quoted values unescaped. Not a split at every ";" and "=": a quoted value may hold both
 * (`profile="x;charset=latin1"` declares no charset).
 */
export function contentTypeParameters(req: Request): Array<[name: string, value: string]> {
  const header = req.headers.get("content-type") ?? "";
  const params: Array<[string, string]> = [];
  let i = header.indexOf(";");
  while (i >= 0 && i < header.length) {
    const nameEnd = header.slice(i + 1).search(/[=;]/);
    const name = header.slice(i + 1, nameEnd < 0 ? header.length : i + 1 + nameEnd).trim().toLowerCase();
    i = nameEnd < 0 ? header.length : i + 1 + nameEnd;
    if (header[i] !== "=") {
      if (name) params.push([name, ""]);
      continue;
    }
    i++;
    while (header[i] === " " || header[i] === "\t") i++;
    let value = "";
    if (header[i] === '"') {
      for (i++; i < header.length && header[i] !== '"'; i++) {
        if (header[i] === "\\" && i + 1 < header.length) i++;
        value += header[i];
      }
      i = header.indexOf(";", i);
    } else {
      const end = header.indexOf(";", i);
      value = header.slice(i, end < 0 ? header.length : end).trim();
      i = end;
    }
    params.push([name, value]);
  }
  return params;
}

/** Every charset parameter of Content-Type (a header may repeat one), lowercased; none when none is given. */
export function declaredCharsets(req: Request): string[] {
  return contentTypeParameters(req).filter(([name]) => name === "charset").map(([, v]) => v.toLowerCase());
}

/** Whether `label` names UTF-8 as the Encoding Standard reads labels ("utf-8", "UTF8", "unicode-1-1-utf-8"). */
export function isUtf8Label(label: string): boolean {
  try {
    return new TextDecoder(label).encoding === "utf-8";
  } catch {
    return false; // no encoding of that name
  }
}

/**
 * Every reading of query parameter `name` in `url` (its first occurrence, as URLSearchParams.get): as a form
 * decodes it ("+" is a space) and with "+" kept literally. A base64 token pasted unencoded into a URL arrives
 * with its "+" raw, and only the second reading gives it back. Always two entries (equal when there is no "+"),
 * so that comparing both takes the same time either way; null when the parameter is absent.
 */
export function queryParameterReadings(url: string, name: string): [string, string] | null {
  const search = new URL(url).search;
  const asForm = new URLSearchParams(search).get(name);
  if (asForm === null) return null;
  return [asForm, new URLSearchParams(search.replaceAll("+", "%2B")).get(name) ?? asForm];
}

/**
 * Why readBodyWithin gave no body: over the size limit, not complete by the deadline, or ended before it was
 * complete (the client went away: shorter than its Content-Length, or a chunked body cut off).
 */
export type BodyRead =
  | { ok: true; body: Uint8Array<ArrayBuffer> }
  | { ok: false; reason: "too_large" | "timeout" | "incomplete" };

/** The answer to a body readBodyWithin gave up on; `outcome` says what became of the request ("nothing stored"). */
export function bodyReadRefusal(
  reason: "too_large" | "timeout" | "incomplete",
  { maxBytes, deadlineMs }: { maxBytes: number; deadlineMs: number },
  outcome: string,
): {
  status: 400 | 408 | 413;
  error: "body_incomplete" | "request_timeout" | "payload_too_large";
  message: string;
  extra: { limit_bytes?: number };
} {
  if (reason === "timeout") {
    return {
      status: 408,
      error: "request_timeout",
      message: `Body not received within ${deadlineMs / 1000} s; ${outcome}`,
      extra: {},
    };
  }
  if (reason === "incomplete") {
    // No one reads this answer (the client went away); the refusal is for the log and the counts.
    return {
      status: 400,
      error: "body_incomplete",
      message: `Body ended before it was complete; ${outcome}`,
      extra: {},
    };
  }
  return {
    status: 413,
    error: "payload_too_large",
    message: `Body exceeds ${maxBytes} bytes`,
    extra: { limit_bytes: maxBytes },
  };
}

/**
 * Cancels a body given up on once the refusal has been answered, so that Deno.serve closes the connection.
 * Deno.serve (2.9) answers a request whose body is locked and unread with `Connection: close`, but keeps the
 * socket until the body is cancelled; cancelled before the answer (or never locked), the answer is keep-alive,
 * and Deno reads and drops the rest of the body (a chunked one without end) and waits for a next request on
 * the socket. Either way a client streaming past the limit kept its connection for as long as it kept sending.
 * Cancelled after the answer, the socket closes at once; a timer puts the cancel there (a microtask, the
 * handler info's `completed` and `request.signal` all came before Deno wrote the answer).
 * With a read still pending (a client that stalled) it does less: that read holds the socket until the client
 * sends a byte or closes, and cancelling does not end it; the answer says `Connection: close` all the same, and
 * the next byte closes the socket. tests/webhook_http_edges.test.ts checks each case.
 */
function closeAfterAnswer(reader: ReadableStreamDefaultReader<Uint8Array>): void {
  setTimeout(() => reader.cancel().catch(() => {}), CLOSE_AFTER_ANSWER_MS);
}

/** After Deno has written the answer: a timer of 0 ms was, for 200 refusals at once on a busy event loop. */
const CLOSE_AFTER_ANSWER_MS = 50;

/**
 * Reads the body within `maxBytes`: too large at once when Content-Length says so, else as soon as it grows past
 * the limit (chunked uploads included). And within `deadlineMs` from the call: a client that sends part of a
 * body and stalls would otherwise hold the request, its bytes and a task for as long as it keeps the socket.
 * A body given up on (too large, not in time) is cancelled only after the answer: see closeAfterAnswer.
 * Each chunk is copied as it arrives: one sent in small segments is a small view on a larger buffer (64 KiB),
 * and keeping the chunks kept ~45 times the body (a 6 MiB body sent slowly, ~270 MB).
 */
export async function readBodyWithin(
  req: Request,
  { maxBytes, deadlineMs }: { maxBytes: number; deadlineMs: number },
): Promise<BodyRead> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (!req.body) {
    return declared > maxBytes ? { ok: false, reason: "too_large" } : { ok: true, body: new Uint8Array() };
  }
  if (declared > maxBytes) {
    closeAfterAnswer(req.body.getReader()); // locked: a body never locked is dropped before the answer
    return { ok: false, reason: "too_large" };
  }
  const reader = req.body.getReader();
  // Grown by doubling as bytes arrive, up to Content-Length when it gives one (the final size, so no copy at
  // the end). Not sized by it at once: a header costs its sender nothing, and 40 clients declaring 6 MiB and
  // sending one byte each held 240 MB, near the function's 256 MB, for the whole deadline.
  const cap = Number.isSafeInteger(declared) && declared > 0 ? declared : maxBytes;
  let out = new Uint8Array(Math.min(cap, 64 * 1024));
  let size = 0;
  // The deadline wakes the current read's race only. One promise raced by every read would keep each read's
  // result, and so every chunk, referenced from its reactions until the end.
  let timedOut = false;
  let wake: ((timeout: "timeout") => void) | undefined;
  const timer = setTimeout(() => {
    timedOut = true;
    wake?.("timeout");
  }, deadlineMs);
  try {
    for (;;) {
      const next = await Promise.race([
        reader.read(),
        new Promise<"timeout">((resolve) => timedOut ? resolve("timeout") : wake = resolve),
      ]).catch(() => "incomplete" as const);
      if (next === "incomplete") return { ok: false, reason: "incomplete" };
      if (next === "timeout") {
        closeAfterAnswer(reader);
        return { ok: false, reason: "timeout" };
      }
      if (next.done) break;
      const chunk = next.value;
      if (size + chunk.length > maxBytes) {
        closeAfterAnswer(reader);
        return { ok: false, reason: "too_large" };
      }
      if (size + chunk.length > out.length) {
        const grown = new Uint8Array(Math.max(size + chunk.length, Math.min(cap, out.length * 2)));
        grown.set(out.subarray(0, size));
        out = grown;
      }
      out.set(chunk, size);
      size += chunk.length;
    }
  } finally {
    clearTimeout(timer);
  }
  // A buffer of the body's own size, not the (larger) one it grew in.
  return { ok: true, body: size === out.length ? out : out.slice(0, size) };
}
