// deno task profile-half-rate [--rate=N] [--seconds=15] [--gc]
// Where the ingest p99 at half the max rate goes (docs/benchmarks-history.md, "where the half-rate p99
// goes"): the same paced load as the benchmark's half-rate phase, on the function wrapped in timers
// (bench/lib/timed_webhook.ts), then on a bare Deno.serve, then pgbench running the same statement at the
// same rate. Prints HTTP latency beside the time inside the handler, the upsert's round trip and the event
// loop's lag. Not part of `deno task bench`: the timers cost a little of what they measure. V8 flags for the
// function process: as the benchmark's (BENCH_FUNCTION_V8_FLAGS, default a deployed function's heap). --gc
// adds V8's --trace-gc-nvp and sums up the collections during the profiled phase (the function's log lines
// are then dropped inside the process, so that its stdout carries only the trace).
import { parseArgsOrExit } from "../scripts/lib/cli.ts";
import { fmt, textTable } from "./lib/context.ts";
import { withDiskProbe } from "./lib/disk_probe.ts";
import { summarizeGcTrace } from "./lib/gc_trace.ts";
import { functionHeap, PROJECT_IMPORTS, startBareServer } from "./lib/function_process.ts";
import {
  closeAllDbs,
  createServerDb,
  ingestScript,
  resetEvents,
  runPgbench,
  stagePayloads,
} from "./lib/pg.ts";
import { buildBodies, signBodies, writeWrkPool } from "./lib/pool.ts";
import { freePort, startDenoServer, stopAllServers } from "./lib/proc.ts";
import type { LatencySummary } from "./lib/stats.ts";
import { assertCleanRun, halfRate, runWrk, type WrkResult } from "./lib/wrk.ts";

const { values } = parseArgsOrExit({
  args: Deno.args,
  options: {
    rate: { type: "string" },
    seconds: { type: "string", default: "15" },
    gc: { type: "boolean", default: false },
  },
}, "usage: deno task profile-half-rate [--rate=N] [--seconds=15] [--gc]");
const seconds = Number(values.seconds);
const connections = Number(Deno.env.get("BENCH_CONNECTIONS") ?? 16);
const serverUrl = Deno.env.get("BENCH_DATABASE_URL") ?? "postgresql://postgres@127.0.0.1:5432/postgres";
const baseV8Flags = functionHeap().v8Flags;
const v8Flags = values.gc ? [baseV8Flags, "--trace-gc-nvp"].filter(Boolean).join(",") : baseV8Flags;
const secret = `profile-${crypto.randomUUID()}`;
const workDir = await Deno.makeTempDir({ prefix: "relay-bench-profile-" });

interface ProfileStats {
  handler: LatencySummary;
  statement: LatencySummary;
  lag: LatencySummary & { over5: number };
}

try {
  const db = await createServerDb(serverUrl, "profile");
  const bodies = buildBodies({ count: Number(Deno.env.get("BENCH_POOL") ?? 30_000) });
  await stagePayloads(db.sql, bodies); // for pgbench; also creates the cursor resetEvents rewinds
  const port = freePort();
  const gcTraceFile = `${workDir}/function_stdout.log`;
  const poolFile = `${workDir}/pool.http`;
  await writeWrkPool(poolFile, signBodies(bodies, secret), {
    host: `127.0.0.1:${port}`,
    path: "/chatwoot-webhook",
  });
  const load = { url: `http://127.0.0.1:${port}/chatwoot-webhook`, poolFile, connections, workDir };

  const fn = await startDenoServer({
    args: [
      ...(v8Flags ? [`--v8-flags=${v8Flags}`] : []),
      ...PROJECT_IMPORTS,
      "--allow-net",
      "--allow-env",
      "--allow-read",
      new URL("./lib/timed_webhook.ts", import.meta.url).pathname,
    ],
    env: {
      CHATWOOT_WEBHOOK_SECRET: secret,
      DATABASE_URL: db.url,
      ...(values.gc ? { TIMED_WEBHOOK_QUIET_LOG: "1" } : {}),
    },
    port,
    ...(values.gc ? { stdoutFile: gcTraceFile } : {}),
  });
  const profileStats = async (): Promise<ProfileStats> =>
    await (await fetch(`http://127.0.0.1:${port}/_profile/stats`)).json();

  await runWrk({ ...load, durationS: 3 }); // warm-up
  let rate = Number(values.rate ?? 0);
  if (!rate) {
    await resetEvents(db.sql);
    const max = await runWrk({ ...load, durationS: 5 });
    assertCleanRun("ingest at max rate", max, fn.stderrTail());
    rate = halfRate(max);
    console.log(`max ${fmt.rate(max.requestsPerS)} over 5 s: profiling at ${fmt.rate(rate)}`);
  }
  await resetEvents(db.sql);
  await profileStats(); // drop the warm-up's samples
  const gcTraceFrom = values.gc ? (await Deno.stat(gcTraceFile)).size : 0;
  const [http, httpDisk] = await withDiskProbe(workDir, () => runWrk({ ...load, durationS: seconds, rate }));
  assertCleanRun("ingest at the half rate", http, fn.stderrTail());
  // The phase's part of the trace (V8 buffers its output, so the last collections may not be in it yet).
  const gc = values.gc
    ? summarizeGcTrace(new TextDecoder().decode((await Deno.readFile(gcTraceFile)).subarray(gcTraceFrom)))
    : null;
  const inside = await profileStats();

  const barePort = freePort();
  const bareServer = await startBareServer(barePort);
  const bare = await runWrk({ ...load, url: `http://127.0.0.1:${barePort}/`, durationS: seconds, rate });
  assertCleanRun("bare Deno.serve at the half rate", bare, bareServer.stderrTail());

  await resetEvents(db.sql);
  const [pgbench, pgbenchDisk] = await withDiskProbe(
    workDir,
    () =>
      runPgbench({
        url: db.url,
        script: ingestScript(bodies.length),
        clients: connections,
        durationS: seconds,
        workDir,
        rate,
      }),
  );

  const wrkRow = (
    what: string,
    r: WrkResult,
  ): string[] => [
    what,
    fmt.rate(r.requestsPerS),
    fmt.ms(r.latencyMs.p50),
    fmt.ms(r.latencyMs.p99),
    fmt.ms(r.latencyMs.max),
  ];
  const row = (
    what: string,
    s: LatencySummary,
  ): string[] => [what, `${s.count}`, fmt.ms(s.p50), fmt.ms(s.p99), fmt.ms(s.max)];
  console.log(
    `\nHalf rate ${fmt.rate(rate)}, ${connections} connections, ${seconds} s per phase; function V8 flags: ${
      v8Flags || "none"
    }`,
  );
  console.log(textTable(["Phase", "rate / samples", "p50", "p99", "max"], [
    wrkRow("HTTP, from each request's slot in the schedule", http),
    row("inside the handler (app.fetch)", inside.handler),
    row("the upsert's round trip, inside the handler", inside.statement),
    row("event loop lag (1 ms interval)", inside.lag),
    wrkRow("a bare Deno.serve, same load", bare),
    [
      "pgbench alone, same statement and rate",
      fmt.rate(pgbench.tps),
      fmt.ms(pgbench.latencyMs?.p50),
      fmt.ms(pgbench.latencyMs?.p99),
      fmt.ms(pgbench.latencyMs?.max),
    ],
  ]));
  console.log(`event loop late by more than 5 ms: ${inside.lag.over5} times`);
  if (gc && gc.scavenges === 0) {
    console.log(
      "GC during the profiled phase: nothing traced yet (V8 buffers its trace; profile a longer phase)",
    );
  } else if (gc) {
    console.log(
      `GC during the profiled phase: ${gc.scavenges} scavenges (median ${
        gc.allocatedMbPerScavenge.toFixed(2)
      } MB ` +
        `allocated since the previous one, ${gc.promotedMbPerScavenge.toFixed(3)} MB promoted), ` +
        `${gc.markCompacts} mark-compacts; pauses p99 ${fmt.ms(gc.pauseP99Ms)}, max ${
          fmt.ms(gc.pauseMaxMs)
        }, ` +
        `${fmt.ms(gc.pauseTotalMs)} in all` +
        (gc.unreadable ? `; trace lines unreadable: ${gc.unreadable}` : ""),
    );
  }
  console.log(
    `disk fdatasync p99 / max: during HTTP ${fmt.ms(httpDisk.p99)} / ${
      fmt.ms(httpDisk.max)
    }; during pgbench ${fmt.ms(pgbenchDisk.p99)} / ${fmt.ms(pgbenchDisk.max)}`,
  );
  if (inside.handler.count === 0 || inside.statement.count === 0) {
    // A wrapper that timed nothing would print misleading figures: say so and fail.
    console.error(
      `profile not valid: ${inside.handler.count} requests and ${inside.statement.count} statements timed`,
    );
    Deno.exitCode = 1;
  }
} finally {
  await stopAllServers();
  await closeAllDbs();
  await Deno.remove(workDir, { recursive: true }).catch(() => {});
}
