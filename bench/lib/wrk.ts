// HTTP load with wrk (Debian's wrk 4.1): replays a file of pre-signed requests, optionally paced to a rate.
import { runCommand } from "./proc.ts";
import { percentile, summarize } from "./stats.ts";

export interface WrkResult {
  requests: number;
  durationS: number;
  requestsPerS: number;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  /**
   * Milliseconds. When paced, counted from each request's slot in the schedule (wrk_pace.lua says why);
   * otherwise wrk's own, from the moment each request was written.
   */
  latencyMs: LatencyMs;
  /** When paced: wrk's own latency, from the moment each request was written (context). */
  writeLatencyMs?: LatencyMs;
  /** The rate asked for, when paced. */
  targetRate?: number;
}

export type LatencyMs = {
  p50: number;
  p90: number;
  p95: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
};

const POOL_SCRIPT = new URL("./wrk_pool.lua", import.meta.url);
const PACE_SCRIPT = new URL("./wrk_pace.lua", import.meta.url);

export interface WrkOptions {
  url: string;
  poolFile: string;
  connections: number;
  durationS: number;
  /** Requests per second for the whole run; omit for as fast as the server answers. */
  rate?: number;
  /** A directory for the generated script. */
  workDir: string;
}

export async function runWrk(o: WrkOptions): Promise<WrkResult> {
  // One thread at full speed; a paced run gives each connection a thread and a schedule of its own.
  const threads = o.rate ? o.connections : 1;
  let script = await Deno.readTextFile(POOL_SCRIPT);
  if (o.rate) {
    script = `paced_pool_file = ${JSON.stringify(o.poolFile)}\npaced_threads = ${threads}\n` + script + "\n" +
      await Deno.readTextFile(PACE_SCRIPT);
  }
  const scriptPath = `${o.workDir}/wrk_${o.rate ? "paced" : "max"}.lua`;
  await Deno.writeTextFile(scriptPath, script);
  const { stdout } = await runCommand("wrk", [
    `-t${threads}`,
    `-c${o.connections}`,
    `-d${o.durationS}s`,
    "--timeout",
    "10s",
    "-s",
    scriptPath,
    o.url,
    "--",
    o.poolFile,
    String(o.rate ?? 0),
    String(threads),
  ]);
  return parseWrkOutput(stdout, o.rate);
}

/** Throws unless the run sent requests and none failed (figures from failed requests would mislead). */
export function assertCleanRun(what: string, r: WrkResult, stderr: string): void {
  const e = r.errors;
  const failures = e.connect + e.read + e.write + e.status + e.timeout;
  if (r.requests === 0 || failures > 0) {
    throw new Error(`${what}: ${r.requests} requests, errors ${JSON.stringify(e)}\n${stderr.slice(-1500)}`);
  }
}

/** The rate of the half-rate phases: half of what a max-rate run achieved. */
export function halfRate(max: WrkResult): number {
  return Math.max(1, Math.round(max.requestsPerS / 2));
}

export function parseWrkOutput(stdout: string, targetRate?: number): WrkResult {
  const lines = stdout.split("\n");
  const line = lines.find((l) => l.startsWith("BENCH_JSON "));
  if (!line) throw new Error(`wrk printed no result:\n${stdout.slice(0, 2000)}`);
  const raw = JSON.parse(line.slice("BENCH_JSON ".length)) as {
    requests: number;
    duration_us: number;
    errors: WrkResult["errors"];
    latency_us: Record<keyof LatencyMs, number>;
  };
  const durationS = raw.duration_us / 1e6;
  const fromWrite = Object.fromEntries(
    Object.entries(raw.latency_us).map(([k, v]) => [k, Math.round(v / 10) / 100]),
  ) as LatencyMs;
  const result = {
    requests: raw.requests,
    durationS,
    requestsPerS: raw.requests / durationS,
    errors: raw.errors,
  };
  if (!targetRate) return { ...result, latencyMs: fromWrite };
  const slotLines = lines.filter((l) => l.startsWith("BENCH_SLOT_US "));
  const paced = lines.find((l) => l.startsWith("BENCH_PACED "));
  if (slotLines.length === 0 || !paced) {
    throw new Error(`a paced wrk run printed no latencies from its schedule`);
  }
  // The requests scheduled within wrk's measured time (wrk_pace.lua's done() says why not wrk's own count).
  const { requests } = JSON.parse(paced.slice("BENCH_PACED ".length)) as { requests: number };
  const fromSlotMs = slotLines
    .flatMap((l) => l.slice("BENCH_SLOT_US ".length).split(","))
    .filter((us) => us !== "")
    .map((us) => Number(us) / 1000);
  if (fromSlotMs.length !== requests) {
    throw new Error(`wrk_pace: ${fromSlotMs.length} latencies for ${requests} requests`);
  }
  return {
    ...result,
    requests,
    requestsPerS: requests / durationS,
    latencyMs: latencySummaryMs(fromSlotMs),
    writeLatencyMs: fromWrite,
    targetRate,
  };
}

/** wrk's percentiles, from samples in milliseconds (rounded to 10 µs, as wrk's are here). */
export function latencySummaryMs(samples: readonly number[]): LatencyMs {
  if (samples.length === 0) throw new RangeError("no latencies to summarize");
  const round = (v: number) => Math.round(v * 100) / 100;
  const { p50, p95, p99, max, mean } = summarize(samples);
  return {
    p50: round(p50),
    p90: round(percentile(samples, 90)),
    p95: round(p95),
    p99: round(p99),
    p999: round(percentile(samples, 99.9)),
    max: round(max),
    mean: round(mean),
  };
}

/**
 * Several wrk runs of the same load as one: requests and seconds summed (so the rate is over all of them),
 * errors summed, and each latency percentile the median of the runs' (wrk reports percentiles, not samples).
 */
export function combineWrkRuns(runs: readonly WrkResult[]): WrkResult {
  if (runs.length === 0) throw new RangeError("no wrk runs to combine");
  const requests = runs.reduce((s, r) => s + r.requests, 0);
  const durationS = runs.reduce((s, r) => s + r.durationS, 0);
  const sum = (k: keyof WrkResult["errors"]) => runs.reduce((s, r) => s + r.errors[k], 0);
  const keys = Object.keys(runs[0].latencyMs) as (keyof WrkResult["latencyMs"])[];
  return {
    requests,
    durationS,
    requestsPerS: requests / durationS,
    errors: {
      connect: sum("connect"),
      read: sum("read"),
      write: sum("write"),
      status: sum("status"),
      timeout: sum("timeout"),
    },
    latencyMs: Object.fromEntries(
      keys.map((k) => [k, percentile(runs.map((r) => r.latencyMs[k]), 50)]),
    ) as WrkResult["latencyMs"],
    ...(runs[0].targetRate ? { targetRate: runs[0].targetRate } : {}),
  };
}
