import { readinessApp } from "../_shared/readiness.ts";
import { runtimeFromEnv } from "../_shared/runtime.ts";

Deno.serve(readinessApp(runtimeFromEnv()).fetch);
