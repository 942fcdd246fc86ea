import { chatwootWebhookApp } from "../_shared/chatwoot_webhook.ts";
import { runtimeFromEnv } from "../_shared/runtime.ts";

Deno.serve(chatwootWebhookApp(runtimeFromEnv()).fetch);
