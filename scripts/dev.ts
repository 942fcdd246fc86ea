// deno task dev — see README.md ("Run it locally").
import { intFromEnv } from "../supabase/functions/_shared/env.ts";
import { loadDotenv } from "./lib/dotenv.ts";
import { startDevServer } from "./lib/dev_server.ts";

await loadDotenv(".env");
const env = Deno.env.toObject();
console.log("chatwoot-relay dev server");
const server = await startDevServer({
  port: intFromEnv(env, "PORT", 54321, 0),
  dbPort: intFromEnv(env, "DB_PORT", 54322, 0),
  forwarderSweepMs: intFromEnv(env, "FORWARDER_SWEEP_MS", 1000),
});
console.log(`Ready: ${server.url}/functions/v1/ (Ctrl-C stops)`);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await server.stop();
  Deno.exit(0);
};
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);
