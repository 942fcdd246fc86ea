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
