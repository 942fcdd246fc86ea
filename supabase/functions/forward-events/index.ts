import { forwardEventsApp } from "../_shared/forward_events.ts";
import { runtimeFromEnv } from "../_shared/runtime.ts";

Deno.serve(forwardEventsApp(runtimeFromEnv()).fetch);
