// deno task forward [--once] [--batch N] [--lanes N] [--sweep-ms N]: a forwarder outside Supabase, against
// DATABASE_URL. Defaults: batches of 50, two in flight (docs/benchmarks.md: the best of one process here).
// Runs until SIGINT/SIGTERM (woken by NOTIFY, sweeping for retries); --once drains once and prints the summary.
// Either way a signal ends it after the batches in flight are written back: nothing new is claimed meanwhile;
// a second signal ends it at once (what it had in flight is sent again once the leases expire).
import { drain, MAX_BATCH_SIZE, MAX_LANES } from "../supabase/functions/_shared/forwarder.ts";
import { forwarderConfigFromEnv } from "../supabase/functions/_shared/forwarder_config.ts";
import { jsonLogger } from "../supabase/functions/_shared/log.ts";
import { ConfigError } from "../supabase/functions/_shared/env.ts";
import {
  exitWithFailure,
  onStopSignals,
  parseArgsOrExit,
  reportFailure,
  requireDatabaseUrl,
  usageError,
} from "./lib/cli.ts";
import { loadDotenv } from "./lib/dotenv.ts";
import {
  connectForwarder,
  DEFAULT_SWEEP_MS,
  MAX_SWEEP_MS,
  MIN_SWEEP_MS,
  postgresSubscribe,
  startForwarderLoop,
  sweepMsFrom,
} from "./lib/forwarder_loop.ts";
import { undiciTransport } from "./lib/undici_transport.ts";

await loadDotenv(".env");
const USAGE = "usage: deno task forward [--once] [--batch N] [--lanes N] [--sweep-ms N] [--budget-ms N]";
const parsed = parseArgsOrExit(
  {
    args: Deno.args,
    options: {
      once: { type: "boolean", default: false },
      batch: { type: "string", default: "50" },
      lanes: { type: "string", default: "2" },
      "sweep-ms": { type: "string", default: String(DEFAULT_SWEEP_MS) },
      "budget-ms": { type: "string", default: "25000" },
    },
  },
  USAGE,
);
const { values } = parsed;
/**
 * A whole-number option, or exit 2 saying so (NaN would make a forwarder that silently sends nothing); above
 * what a drain takes (max), too, rather than logging a value the drain would not use.
 */
function wholeNumber(
  name: "batch" | "lanes" | "budget-ms",
  min: number,
  max = Infinity,
): number {
  const value = Number(values[name]);
  if (!Number.isInteger(value) || value < min || value > max) {
    const range = max === Infinity ? `${min} or more` : `${min} to ${max}`;
    usageError(`--${name} takes a whole number (${range}), not ${values[name]}`, USAGE);
  }
  return value;
}
const batchSize = wholeNumber("batch", 1, MAX_BATCH_SIZE);
const lanes = wholeNumber("lanes", 1, MAX_LANES);
// FORWARDER_SWEEP_MS's rule (deno task dev), not wholeNumber's: the same text is refused or taken by both.
let sweepMs: number;
try {
  sweepMs = sweepMsFrom("--sweep-ms", values["sweep-ms"]);
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  usageError(
    `--sweep-ms takes a whole number (${MIN_SWEEP_MS} to ${MAX_SWEEP_MS}), not ${values["sweep-ms"]}`,
    USAGE,
  );
}
const budgetMs = wholeNumber("budget-ms", 0);
function announceStop() {
  jsonLogger("info", "[Forwarder] Stopping after the batches in flight (signal again to quit at once)");
}
const url = requireDatabaseUrl("the database to forward from");
let sql: ReturnType<typeof connectForwarder>;
try {
  sql = connectForwarder(url);
} catch (error) {
  exitWithFailure("forward", url, error);
}
const config = forwarderConfigFromEnv();

if (values.once) {
  const transport = undiciTransport();
  // SIGINT/SIGTERM: claim nothing more, finish and write back what is in flight, then exit as usual.
  const stopping = new AbortController();
  onStopSignals(() => {
    announceStop();
    stopping.abort();
  });
  try {
    const summary = await drain(sql, config, {
      budgetMs,
      batchSize,
      lanes,
      worker: "forward-cli",
      log: jsonLogger,
      transport: transport.send,
      signal: stopping.signal,
    });
    console.log(JSON.stringify(summary));
    if (!summary.ok) Deno.exitCode = 1;
  } catch (error) {
    reportFailure("forward", url, error);
  }
  await transport.close();
  await sql.end({ timeout: 2 });
  Deno.exit();
}

// A database it cannot use at start is the operator's to fix (a later failure, a restart, is retried): said
// once, exit 1, instead of a "Drain failed" line every sweep for ever.
try {
  await sql`select 1 from public.relay_settings limit 1`;
} catch (error) {
  reportFailure("forward", url, error);
  await sql.end({ timeout: 2 });
  Deno.exit();
}
const loop = await startForwarderLoop({
  sql,
  config,
  log: jsonLogger,
  subscribe: postgresSubscribe(sql),
  sweepMs,
  batchSize,
  lanes,
  budgetMs,
  worker: "forward-cli",
});
jsonLogger("info", "[Forwarder] Running", { batch_size: batchSize, lanes });
// SIGINT/SIGTERM: claim nothing more, finish and write back the batches in flight, then exit.
onStopSignals(async () => {
  announceStop();
  await loop.stop();
  await sql.end({ timeout: 2 });
  Deno.exit(0);
});
