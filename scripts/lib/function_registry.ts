// Every Edge Function the dev server serves, by the name Supabase routes it under (/functions/v1/<name>).
// Each entry builds the same app the function's index.ts serves.
import type { Hono } from "hono";
import { chatwootWebhookApp } from "../../supabase/functions/_shared/chatwoot_webhook.ts";
import { forwardEventsApp } from "../../supabase/functions/_shared/forward_events.ts";
import type { Runtime } from "../../supabase/functions/_shared/runtime.ts";

export const FUNCTIONS: Record<string, (runtime: Runtime) => Hono> = {
  "chatwoot-webhook": chatwootWebhookApp,
  "forward-events": forwardEventsApp,
};
