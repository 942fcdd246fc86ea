// HTTP load with wrk (Debian's wrk 4.1): replays a file of pre-signed requests, optionally paced to a rate.
import { runCommand } from "./proc.ts";
import { percentile } from "./stats.ts";

export interface WrkResult {
  requests: number;
  durationS: number;
  requestsPerS: number;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  /** Milliseconds. */
  latencyMs: { p50: number; p90: number; p95: number; p99: number; p999: number; max: number; mean: number };
  /** The rate asked for, when paced. */
  targetRate?: number;
}

const POOL_SCRIPT = new URL("./wrk_pool.lua", import.meta.url);
const PACE_SCRIPT = new URL("./wrk_pace.lua", import.meta.url);

export interface WrkOptions {
  url: string;
  poolFile: string;
  connections: number;
  durationS: number;
  threads?: number;
  /** Requests per second for the whole run; omit for as fast as the server answers. */
  rate?: number;
  /** A directory for the generated script. */
  workDir: string;
}

export async function runWrk(o: WrkOptions): Promise<WrkResult> {
  const threads = o.threads ?? 1;
  let script = await Deno.readTextFile(POOL_SCRIPT);
  if (o.rate) script += "\n" + await Deno.readTextFile(PACE_SCRIPT);
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
  const line = stdout.split("\n").find((l) => l.startsWith("BENCH_JSON "));
  if (!line) throw new Error(`wrk printed no result:\n${stdout.slice(0, 2000)}`);
  const raw = JSON.parse(line.slice("BENCH_JSON ".length)) as {
    requests: number;
    duration_us: number;
    errors: WrkResult["errors"];
    latency_us: Record<keyof WrkResult["latencyMs"], number>;
  };
  const durationS = raw.duration_us / 1e6;
  const ms = Object.fromEntries(
    Object.entries(raw.latency_us).map(([k, v]) => [k, Math.round(v / 10) / 100]),
  ) as WrkResult["latencyMs"];
  return {
    requests: raw.requests,
    durationS,
    requestsPerS: raw.requests / durationS,
    errors: raw.errors,
    latencyMs: ms,
    ...(targetRate ? { targetRate } : {}),
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
