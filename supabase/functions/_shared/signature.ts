// Chatwoot's webhook signature: X-Chatwoot-Signature = "sha256=" + hex(HMAC-SHA256(secret, "<timestamp>.<raw body>")).
// node:crypto (supported by Supabase's edge runtime) hashes synchronously: no copy of the body into a
// "<timestamp>.<body>" buffer and no hop to WebCrypto's thread pool, on the path Chatwoot waits for.
import { Buffer } from "node:buffer";
import { createHash, createHmac, timingSafeEqual } from "node:crypto";

export const SIGNATURE_HEADER = "X-Chatwoot-Signature";
export const TIMESTAMP_HEADER = "X-Chatwoot-Timestamp";
export const DELIVERY_HEADER = "X-Chatwoot-Delivery";

/**
 * HMAC-SHA256 over the exact bytes Chatwoot signs ("<timestamp>." then the body), fed without a copy; a string
 * body is hashed as its UTF-8 bytes.
 */
function hmacDigest(secret: string, timestamp: string, body: Uint8Array | string): Buffer {
  return createHmac("sha256", secret).update(`${timestamp}.`).update(body).digest();
}

export function toHex(bytes: ArrayBuffer | Uint8Array): string {
  return Array.from(
    bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
}

/** Signs a body in Chatwoot's scheme; returns the full header value ("sha256=<hex>"). */
export function signChatwoot(
  secret: string,
  timestamp: string,
  body: Uint8Array | string,
): string {
  return `sha256=${hmacDigest(secret, timestamp, body).toString("hex")}`;
}

/** Headers for a freshly signed delivery of `body` (used by the sender, the forwarder and tests). */
export function chatwootSignatureHeaders(
  secret: string,
  body: Uint8Array | string,
  nowSeconds = Math.floor(Date.now() / 1000),
): Record<string, string> {
  const timestamp = String(nowSeconds);
  return { [TIMESTAMP_HEADER]: timestamp, [SIGNATURE_HEADER]: signChatwoot(secret, timestamp, body) };
}

export type TimestampCheck = "ok" | "missing" | "malformed" | "stale" | "future";

export function checkTimestamp(
  header: string | null,
  nowSeconds: number,
  toleranceSeconds: number,
): TimestampCheck {
  if (header === null || header === "") return "missing";
  if (!/^\d{1,12}$/.test(header)) return "malformed";
  const skew = Number(header) - nowSeconds;
  if (skew < -toleranceSeconds) return "stale";
  if (skew > toleranceSeconds) return "future";
  return "ok";
}

/**
 * Verifies against any of several secrets (a rotation keeps the old and the new one configured).
 * timingSafeEqual compares in constant time; every secret is tried so timing does not tell which matched.
 */
export class ChatwootSignatureVerifier {
  readonly #secrets: string[];

  constructor(secrets: string[]) {
    this.#secrets = [...secrets];
  }

  verify(signatureHeader: string, timestamp: string, body: Uint8Array): boolean {
    const match = /^sha256=([0-9a-fA-F]{64})$/.exec(signatureHeader.trim());
    if (!match) return false;
    const signature = Buffer.from(match[1], "hex");
    let valid = false;
    for (const secret of this.#secrets) {
      if (timingSafeEqual(hmacDigest(secret, timestamp, body), signature)) valid = true;
    }
    return valid;
  }
}

export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Constant-time string equality: both sides are hashed first so length and content leak nothing. */
export function timingSafeEqualStrings(a: string, b: string): boolean {
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(a), digest(b));
}
