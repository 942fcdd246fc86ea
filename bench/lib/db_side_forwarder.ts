// Context for limit C, the other half of bare_client.ts: the forwarder with everything but HTTP. The real
// drain() of _shared/forwarder.ts (claim, encode, sign, log line, write-back, the same batch and lanes as
// `deno task forward`) over a transport that answers 200 at once without touching the network, so what is
// left is the database side of a delivery and the forwarder's own JS around it.
// `deno run db_side_forwarder.ts <batch> <lanes> <start at, epoch ms> <summary file>` with DATABASE_URL,
// AGENT_SDK_URL and AGENT_SDK_SECRET set; drains until nothing is due and writes
// {"delivered": n, "startMs": t, "endMs": t, "cpuSeconds": s} to the summary file (stdout carries the log).
import process from "node:process";
import { type DeliveryTransport, drain } from "../../supabase/functions/_shared/forwarder.ts";
import { forwarderConfigFromEnv } from "../../supabase/functions/_shared/forwarder_config.ts";
import { jsonLogger } from "../../supabase/functions/_shared/log.ts";
import { connectForwarder } from "../../scripts/lib/forwarder_loop.ts";

const [batchArg, lanesArg, startAtArg, summaryFile] = Deno.args;
const answeredAtOnce: DeliveryTransport = () =>
  Promise.resolve({ status: 200, retryAfter: null, date: null, excerpt: null });

const sql = connectForwarder(Deno.env.get("DATABASE_URL")!); // as `deno task forward` connects
await sql`select 1`; // connected before the start
await new Promise((r) => setTimeout(r, Math.max(0, Number(startAtArg) - Date.now())));
const cpu0 = process.cpuUsage();
const startMs = Date.now();
const summary = await drain(sql, forwarderConfigFromEnv(), {
  batchSize: Number(batchArg),
  lanes: Number(lanesArg),
  budgetMs: 120_000,
  worker: "bench-db-side",
  log: jsonLogger,
  transport: answeredAtOnce,
});
const endMs = Date.now();
const cpu = process.cpuUsage(cpu0);
await Deno.writeTextFile(
  summaryFile,
  JSON.stringify({ delivered: summary.delivered, startMs, endMs, cpuSeconds: (cpu.user + cpu.system) / 1e6 }),
);
// Connections held a little longer, so the harness reads Postgres' CPU while this process' backends live.
await new Promise((r) => setTimeout(r, 3_000));
await sql.end({ timeout: 2 });
