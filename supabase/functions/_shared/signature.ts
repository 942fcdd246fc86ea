// Chatwoot's webhook signature: X-Chatwoot-Signature = "sha256=" + hex(HMAC-SHA256(secret, "<timestamp>.<raw body>")).
const encoder = new TextEncoder();

export const SIGNATURE_HEADER = "X-Chatwoot-Signature";
export const TIMESTAMP_HEADER = "X-Chatwoot-Timestamp";
export const DELIVERY_HEADER = "X-Chatwoot-Delivery";

function hmacKey(secret: string, usage: "sign" | "verify"): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
    usage,
  ]);
}

/** The exact bytes Chatwoot signs: "<timestamp>." followed by the body bytes. */
export function signedBytes(timestamp: string, body: Uint8Array): Uint8Array<ArrayBuffer> {
  const prefix = encoder.encode(`${timestamp}.`);
  const out = new Uint8Array(prefix.length + body.length);
  out.set(prefix, 0);
  out.set(body, prefix.length);
  return out;
}

export function toHex(bytes: ArrayBuffer | Uint8Array): string {
  return Array.from(
    bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
}

function fromHex(hex: string): Uint8Array<ArrayBuffer> | null {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) return null;
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** Signs a body in Chatwoot's scheme; returns the full header value ("sha256=<hex>"). */
export async function signChatwoot(
  secret: string,
  timestamp: string,
  body: Uint8Array | string,
): Promise<string> {
  const bytes = typeof body === "string" ? encoder.encode(body) : body;
  const key = await hmacKey(secret, "sign");
  return `sha256=${toHex(await crypto.subtle.sign("HMAC", key, signedBytes(timestamp, bytes)))}`;
}

/** Headers for a freshly signed delivery of `body` (used by the sender, the forwarder and tests). */
export async function chatwootSignatureHeaders(
  secret: string,
  body: Uint8Array | string,
  nowSeconds = Math.floor(Date.now() / 1000),
): Promise<Record<string, string>> {
  const timestamp = String(nowSeconds);
  return { [TIMESTAMP_HEADER]: timestamp, [SIGNATURE_HEADER]: await signChatwoot(secret, timestamp, body) };
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
 * crypto.subtle.verify compares in constant time; every secret is tried so timing does not tell which matched.
 */
export class ChatwootSignatureVerifier {
  #keys: Promise<CryptoKey[]>;

  constructor(secrets: string[]) {
    this.#keys = Promise.all(secrets.map((secret) => hmacKey(secret, "verify")));
  }

  async verify(signatureHeader: string, timestamp: string, body: Uint8Array): Promise<boolean> {
    const match = /^sha256=([0-9a-fA-F]{64})$/.exec(signatureHeader.trim());
    const signature = match ? fromHex(match[1]) : null;
    if (!signature) return false;
    const data = signedBytes(timestamp, body);
    let valid = false;
    for (const key of await this.#keys) {
      if (await crypto.subtle.verify("HMAC", key, signature, data)) valid = true;
    }
    return valid;
  }
}

export async function sha256Hex(bytes: Uint8Array<ArrayBuffer> | string): Promise<string> {
  const data = typeof bytes === "string" ? encoder.encode(bytes) : bytes;
  return toHex(await crypto.subtle.digest("SHA-256", data));
}

/** Constant-time string equality: both sides are hashed first so length and content leak nothing. */
export async function timingSafeEqualStrings(a: string, b: string): Promise<boolean> {
  const [ha, hb] = await Promise.all([
    crypto.subtle.digest("SHA-256", encoder.encode(a)),
    crypto.subtle.digest("SHA-256", encoder.encode(b)),
  ]);
  const x = new Uint8Array(ha), y = new Uint8Array(hb);
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= x[i] ^ y[i];
  return diff === 0;
}
