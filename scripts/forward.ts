// deno task forward [--once] [--batch N] [--lanes N] [--sweep-ms N]: a forwarder outside Supabase, against
// DATABASE_URL. Defaults: batches of 50, two in flight (docs/benchmarks.md: the best of one process here).
// Runs until SIGINT/SIGTERM (woken by NOTIFY, sweeping for retries); --once drains once and prints the summary.
import { parseArgs } from "node:util";
import { drain } from "../supabase/functions/_shared/forwarder.ts";
import { forwarderConfigFromEnv } from "../supabase/functions/_shared/forwarder_config.ts";
import { jsonLogger } from "../supabase/functions/_shared/log.ts";
import { requireDatabaseUrl } from "./lib/cli.ts";
import { loadDotenv } from "./lib/dotenv.ts";
import { connectForwarder, postgresSubscribe, startForwarderLoop } from "./lib/forwarder_loop.ts";
import { undiciTransport } from "./lib/undici_transport.ts";

await loadDotenv(".env");
const { values } = parseArgs({
  args: Deno.args,
  options: {
    once: { type: "boolean", default: false },
    batch: { type: "string", default: "50" },
    lanes: { type: "string", default: "2" },
    "sweep-ms": { type: "string", default: "1000" },
    "budget-ms": { type: "string", default: "25000" },
  },
});
const url = requireDatabaseUrl("the database to forward from");
const sql = connectForwarder(url);
const config = forwarderConfigFromEnv();
const batchSize = Number(values.batch);
const lanes = Number(values.lanes);
const budgetMs = Number(values["budget-ms"]);

if (values.once) {
  const transport = undiciTransport();
  const summary = await drain(sql, config, {
    budgetMs,
    batchSize,
    lanes,
    worker: "forward-cli",
    log: jsonLogger,
    transport: transport.send,
  });
  console.log(JSON.stringify(summary));
  await transport.close();
  await sql.end({ timeout: 2 });
  Deno.exit(summary.ok ? 0 : 1);
}

const loop = await startForwarderLoop({
  sql,
  config,
  log: jsonLogger,
  subscribe: postgresSubscribe(sql),
  sweepMs: Number(values["sweep-ms"]),
  batchSize,
  lanes,
  budgetMs,
  worker: "forward-cli",
});
jsonLogger("info", "[Forwarder] Running", { batch_size: batchSize, lanes });
const stop = async () => {
  await loop.stop();
  await sql.end({ timeout: 2 });
  Deno.exit(0);
};
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);
