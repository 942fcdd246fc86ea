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

/** Content-Type's charset parameter, lowercased and unquoted; null when none is given. */
export function declaredCharset(req: Request): string | null {
  const params = (req.headers.get("content-type") ?? "").split(";").slice(1);
  for (const param of params) {
    const [name, ...value] = param.split("=");
    if (name.trim().toLowerCase() === "charset") {
      return value.join("=").trim().replace(/^"(.*)"$/, "$1").trim().toLowerCase();
    }
  }
  return null;
}

/**
 * Reads the body, or returns null when it is longer than `limit` bytes: at once when Content-Length says so,
 * else as soon as it grows past the limit (chunked uploads included).
 */
export async function readBodyWithin(req: Request, limit: number): Promise<Uint8Array<ArrayBuffer> | null> {
  if (Number(req.headers.get("content-length") ?? "0") > limit) return null;
  if (!req.body) return new Uint8Array();
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      return null;
    }
    chunks.push(value);
  }
  const out = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}
