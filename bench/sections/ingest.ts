// Item 1 of issue 6: signed webhooks posted over HTTP to chatwoot-webhook (own process, PG15 and PGlite),
// against limit A (pgbench running the same upsert) and limit B (bare Deno.serve under the same load).
import { type BenchContext, type BenchSection, check, fmt, type ResultRow } from "../lib/context.ts";
import { functionHeap, PLAIN_DENO_HEAP, startBareServer, startFunction } from "../lib/function_process.ts";
import {
  type BenchDb,
  combinePgbenchRuns,
  createServerDb,
  ingestScript,
  resetEvents,
  runPgbench,
  stagePayloads,
  startPgliteDb,
} from "../lib/pg.ts";
import type { PgbenchResult } from "../lib/pg.ts";
import { buildBodies, type PooledBody, signBodies, writeWrkPool } from "../lib/pool.ts";
import { withDiskProbe } from "../lib/disk_probe.ts";
import { freePort, procCpuSeconds, procMemory } from "../lib/proc.ts";
import { type LatencySummary, ratio } from "../lib/stats.ts";
import { timeIngestStages } from "../lib/stages.ts";
import { assertCleanRun, combineWrkRuns, halfRate, runWrk, type WrkResult } from "../lib/wrk.ts";

const FUNCTION = "chatwoot-webhook";
/** Max-rate ingest and limit A are measured in this many alternating rounds (one in a quick run). */
const INGEST_ROUNDS = 3;

interface BackendResult {
  db: "postgres" | "pglite";
  max: WrkResult & { functionCpuShare: number; storedRows: number; receives: number };
  half: WrkResult | null;
  peakRssMb: number;
  limitA: PgbenchResult | { error: string };
  /** Each round's ingest rate and limit A, measured back to back (INGEST_ROUNDS). */
  rounds: { ingestPerS: number; limitAPerS: number | null }[];
  /** pgbench alone at the same half rate: how much of the HTTP p99 the database accounts for. */
  limitAHalf: PgbenchResult | null;
  /** The disk's fdatasync latencies (ms) during the half-rate phase and during pgbench at that rate. */
  halfDisk: LatencySummary | null;
  limitAHalfDisk: LatencySummary | null;
  /** The same half-rate load on a function process with plain `deno run`'s heap sizing (context). */
  plainHeap: (WrkResult & { peakRssMb: number }) | null;
  limitB: WrkResult | null;
}

async function measureBackend(
  ctx: BenchContext,
  db: BenchDb,
  bodies: PooledBody[],
  { durationS, withHalf, withLimitB }: { durationS: number; withHalf: boolean; withLimitB: boolean },
): Promise<BackendResult> {
  ctx.log(`  ${db.kind}: staging ${bodies.length} payloads for pgbench`);
  await stagePayloads(db.sql, bodies);
  const port = freePort();
  const poolFile = `${ctx.workDir}/pool_${db.kind}.http`;
  // Signed now: the function accepts timestamps within ±300 s and this backend's phases take less.
  const megabytes = await writeWrkPool(poolFile, signBodies(bodies, ctx.secret), {
    host: `127.0.0.1:${port}`,
    path: `/${FUNCTION}`,
  }) / 1e6;
  ctx.log(`  ${db.kind}: ${bodies.length} signed requests (${megabytes.toFixed(0)} MB) ready`);
  const url = `http://127.0.0.1:${port}/${FUNCTION}`;
  const load = { url, poolFile, connections: ctx.connections, workDir: ctx.workDir };

  const startWebhook = (v8Flags?: string) =>
    startFunction(FUNCTION, {
      port,
      databaseUrl: db.url,
      env: { CHATWOOT_WEBHOOK_SECRET: ctx.secret },
      v8Flags,
    });
  const pgbench = { url: db.url, script: ingestScript(bodies.length), clients: ctx.connections };
  const fn = await startWebhook(); // the edge runtime's heap (or BENCH_FUNCTION_V8_FLAGS)
  let max: BackendResult["max"], half: WrkResult | null = null, peakRssMb: number;
  let limitA: BackendResult["limitA"];
  const rounds: BackendResult["rounds"] = [];
  let halfDisk: LatencySummary | null = null, limitAHalfDisk: LatencySummary | null = null;
  const failed = (error: unknown) => ({ error: (error as Error).message.split("\n").slice(0, 3).join(" ") });
  try {
    await runWrk({ ...load, durationS: ctx.warmupSeconds });
    let pgbenchError: { error: string } | null = null;
    try {
      await resetEvents(db.sql);
      await runPgbench({ ...pgbench, durationS: ctx.warmupSeconds, workDir: ctx.workDir });
    } catch (error) {
      pgbenchError = failed(error);
    }
    // The function and limit A in turn, a few seconds each, the order flipped every round: the shared disk's
    // good and bad minutes then fall on both sides of the ratio instead of on whichever phase met them.
    const roundCount = ctx.quick ? 1 : INGEST_ROUNDS;
    const roundS = Math.max(2, Math.round(durationS / roundCount));
    const ingestRuns: WrkResult[] = [], limitARuns: PgbenchResult[] = [];
    let cpu = 0, storedRows = 0, receives = 0;
    for (let i = 0; i < roundCount; i++) {
      const round: BackendResult["rounds"][number] = { ingestPerS: 0, limitAPerS: null };
      for (const side of i % 2 === 0 ? ["ingest", "limit A"] : ["limit A", "ingest"]) {
        await resetEvents(db.sql);
        if (side === "ingest") {
          const cpuBefore = await procCpuSeconds(fn.pid);
          const run = await runWrk({ ...load, durationS: roundS });
          cpu += await procCpuSeconds(fn.pid) - cpuBefore;
          assertCleanRun(`${db.kind} ingest`, run, fn.stderrTail());
          const [counts] = await db.sql<{ rows: number; receives: number }[]>`
            select count(*)::int as rows, coalesce(sum(receive_count), 0)::int as receives
            from public.webhook_events`;
          storedRows += counts.rows;
          receives += counts.receives;
          ingestRuns.push(run);
          round.ingestPerS = run.requestsPerS;
        } else if (!pgbenchError) {
          try {
            const run = await runPgbench({ ...pgbench, durationS: roundS, workDir: ctx.workDir });
            limitARuns.push(run);
            round.limitAPerS = run.tps;
          } catch (error) {
            pgbenchError = failed(error);
          }
        }
      }
      rounds.push(round);
      ctx.log(
        `  ${db.kind}: round ${i + 1}/${roundCount} (${roundS} s each): ingest ${
          fmt.rate(round.ingestPerS)
        }, ` +
          `limit A ${fmt.rate(round.limitAPerS)}, ${fmt.ratio(ratio(round.ingestPerS, round.limitAPerS))}`,
      );
    }
    const maxRun = combineWrkRuns(ingestRuns);
    max = { ...maxRun, functionCpuShare: cpu / maxRun.durationS, storedRows, receives };
    limitA = pgbenchError ?? combinePgbenchRuns(limitARuns);
    ctx.log(
      `  ${db.kind}: ingest ${fmt.rate(max.requestsPerS)} p99 ${fmt.ms(max.latencyMs.p99)}, ` +
        `function CPU ${fmt.pct(max.functionCpuShare)} of a core; ` +
        ("tps" in limitA ? `limit A (pgbench) ${fmt.rate(limitA.tps)}` : `limit A failed: ${limitA.error}`),
    );
    if (withHalf) {
      await resetEvents(db.sql);
      const rate = halfRate(max);
      [half, halfDisk] = await withDiskProbe(ctx.workDir, () => runWrk({ ...load, durationS, rate }));
      assertCleanRun(`${db.kind} ingest at half rate`, half, fn.stderrTail());
      ctx.log(
        `  ${db.kind}: half rate ${fmt.rate(half.requestsPerS)} p99 ${fmt.ms(half.latencyMs.p99)}` +
          ` (disk: ${diskStalls(halfDisk)})`,
      );
    }
    peakRssMb = (await procMemory(fn.pid)).peakRssMb;
  } finally {
    await fn.stop();
  }

  let plainHeap: BackendResult["plainHeap"] = null;
  if (half?.targetRate && db.kind === "postgres") {
    // Context: the same code and rate in a fresh process with plain `deno run`'s heap, which grows the young
    // generation to 16 MB semi-spaces under this load (no deployed function has that heap).
    const plain = await startWebhook(PLAIN_DENO_HEAP.v8Flags);
    try {
      await runWrk({ ...load, durationS: ctx.warmupSeconds });
      await resetEvents(db.sql);
      const run = await runWrk({ ...load, durationS, rate: half.targetRate });
      assertCleanRun(`${db.kind} ingest at half rate, plain deno run heap`, run, plain.stderrTail());
      plainHeap = { ...run, peakRssMb: (await procMemory(plain.pid)).peakRssMb };
      ctx.log(`  ${db.kind}: half rate with plain deno run's heap: p99 ${fmt.ms(run.latencyMs.p99)}`);
    } finally {
      await plain.stop();
    }
  }

  let limitAHalf: PgbenchResult | null = null;
  if (half?.targetRate && "tps" in limitA) {
    try {
      await resetEvents(db.sql);
      const rate = half.targetRate;
      [limitAHalf, limitAHalfDisk] = await withDiskProbe(
        ctx.workDir,
        () => runPgbench({ ...pgbench, durationS, workDir: ctx.workDir, rate }),
      );
      ctx.log(
        `  ${db.kind}: pgbench at ${fmt.rate(rate)}: p99 ${fmt.ms(limitAHalf.latencyMs?.p99)}` +
          ` (disk: ${diskStalls(limitAHalfDisk)})`,
      );
    } catch (error) {
      ctx.log(`  ${db.kind}: pgbench at the half rate failed: ${failed(error).error}`);
    }
  }

  let limitB: WrkResult | null = null;
  if (withLimitB) {
    const bare = await startBareServer(port);
    try {
      await runWrk({ ...load, durationS: ctx.warmupSeconds });
      limitB = await runWrk({ ...load, durationS });
      assertCleanRun("limit B", limitB, bare.stderrTail());
      ctx.log(`  limit B (bare Deno.serve) ${fmt.rate(limitB.requestsPerS)}`);
    } finally {
      await bare.stop();
    }
  }
  await resetEvents(db.sql);
  return {
    db: db.kind,
    max,
    half,
    peakRssMb,
    limitA,
    rounds,
    limitAHalf,
    halfDisk,
    limitAHalfDisk,
    plainHeap,
    limitB,
  };
}

export const ingestSection: BenchSection = {
  name: "ingest",
  title: "1. Ingest over HTTP",
  async run(ctx) {
    const poolSize = Number(Deno.env.get("BENCH_POOL") ?? (ctx.quick ? 1_500 : 30_000));
    ctx.log(`  building ${poolSize} bodies (5-20 KB, mixed events, ~5% exact repeats)`);
    const bodies = buildBodies({ count: poolSize });
    const avgKb = bodies.reduce((s, b) => s + b.body.length, 0) / bodies.length / 1024;
    const stagesUs = timeIngestStages(signBodies(bodies.slice(0, 2_000), ctx.secret), ctx.secret);
    ctx.log(`  function CPU by stage, µs per request: ${JSON.stringify(stagesUs)}`);

    const pg = await createServerDb(ctx.serverUrl, "ingest");
    let onPg: BackendResult, probeDisk: string;
    try {
      probeDisk = await diskOfProbe(pg.sql, ctx.workDir);
      onPg = await measureBackend(ctx, pg, bodies, {
        durationS: ctx.phaseSeconds,
        withHalf: true,
        withLimitB: true,
      });
    } finally {
      await pg.close();
    }
    const lite = await startPgliteDb();
    let onLite: BackendResult;
    try {
      onLite = await measureBackend(ctx, lite, bodies, {
        durationS: Math.max(2, Math.round(ctx.phaseSeconds * 2 / 3)),
        withHalf: !ctx.quick,
        withLimitB: false,
      });
    } finally {
      await lite.close();
    }

    const tps = (r: BackendResult) => "tps" in r.limitA ? r.limitA.tps : null;
    const vsA = (r: BackendResult) => ratio(r.max.requestsPerS, tps(r));
    const vsB = ratio(onPg.max.requestsPerS, onPg.limitB?.requestsPerS);
    const dupShare = (r: BackendResult) => 1 - r.max.storedRows / Math.max(1, r.max.receives);
    const both = (f: (r: BackendResult) => string) => ({ postgres: f(onPg), pglite: f(onLite) });
    const s = "1 ingest";
    const heap = functionHeap();
    const rows: ResultRow[] = [
      {
        section: s,
        metric: "ingest requests/s (max)",
        ...both((r) => fmt.rate(r.max.requestsPerS)),
        note: heap.note,
      },
      {
        section: s,
        metric: "latency p50 / p95 / p99 at max",
        ...both((r) => latencies(r.max)),
        note: onPg.rounds.length > 1 ? "each the median of the rounds'" : undefined,
      },
      {
        section: s,
        metric: "rate asked / achieved at half max",
        ...both((r) =>
          r.half ? `${fmt.rate(r.half.targetRate)} / ${fmt.rate(r.half.requestsPerS)}` : "not run"
        ),
      },
      {
        section: s,
        metric: "latency p50 / p95 / p99 at half max",
        ...both((r) => r.half ? latencies(r.half) : "not run"),
        note: "counted from each request's slot in its connection's schedule, wait included (wrk_pace.lua)",
      },
      {
        section: s,
        metric: "context: the same, counted from each request's write (wrk's own)",
        ...both((r) => r.half?.writeLatencyMs ? latencies({ latencyMs: r.half.writeLatencyMs }) : "not run"),
        note: "from the write, corrected roughly after the run; what rounds before 2026-11-30 reported",
      },
      {
        section: s,
        metric: "function CPU at max (share of one core)",
        ...both((r) => fmt.pct(r.max.functionCpuShare)),
      },
      { section: s, metric: "function peak RSS (VmHWM)", ...both((r) => fmt.mb(r.peakRssMb)) },
      {
        section: s,
        metric: "duplicates among requests at max",
        ...both((r) => fmt.pct(dupShare(r))),
        note: "pool cycles once exhausted",
      },
      { section: s, metric: "limit A: pgbench same upsert, tx/s", ...both((r) => fmt.rate(tps(r))) },
      {
        section: s,
        metric: "ingest ÷ limit A",
        ...both((r) => fmt.ratio(vsA(r))),
        note:
          `over ${
            onPg.rounds.length === 1 ? "one round" : `${onPg.rounds.length} rounds, the two in turn`
          }; ` +
          `by round: PG15 ${roundRatios(onPg)}; PGlite ${roundRatios(onLite)}`,
      },
      {
        section: s,
        metric: "pgbench alone at the half rate: p50 / p95 / p99",
        ...both((r) => r.limitAHalf?.latencyMs ? pgLatencies(r.limitAHalf.latencyMs) : "not run"),
        note: "the database's share of the HTTP latency",
      },
      {
        section: s,
        metric: "context: the disk during the half-rate phases, fdatasync p99 / max: HTTP; pgbench",
        ...both((r) => `${diskPair(r.halfDisk)}; ${diskPair(r.limitAHalfDisk)}`),
        note: `8 KB written and fdatasynced 20 times a second beside the phase, ${probeDisk}`,
      },
      {
        section: s,
        metric: "context: same half rate, plain deno run heap: p50 / p95 / p99; peak RSS",
        postgres: onPg.plainHeap
          ? `${latencies(onPg.plainHeap)}; ${fmt.mb(onPg.plainHeap.peakRssMb)}`
          : "not run",
        note: PLAIN_DENO_HEAP.note,
      },
      {
        section: s,
        metric: "function time per request: JS stages (no HTTP, no DB)",
        postgres: `${Object.values(stagesUs).reduce((a, b) => a + b, 0)} µs`,
        note: Object.entries(stagesUs).map(([k, v]) => `${k} ${v}`).join("; "),
      },
      {
        section: s,
        metric: "function CPU per request: whole process at max",
        ...both((r) => `${Math.round((r.max.functionCpuShare / r.max.requestsPerS) * 1e6)} µs`),
      },
      {
        section: s,
        metric: "limit B: bare Deno.serve, requests/s",
        postgres: fmt.rate(onPg.limitB?.requestsPerS),
      },
      { section: s, metric: "ingest ÷ limit B", postgres: fmt.ratio(vsB) },
    ];
    const targets = [
      check(
        "ingest vs limit A (PG15)",
        "≥ 0.50×",
        vsA(onPg),
        fmt.ratio(vsA(onPg)),
        (v) => v >= 0.5,
        `by round: ${roundRatios(onPg)}`,
      ),
      check(
        "p99 at half the max rate (PG15)",
        "≤ 25 ms",
        onPg.half?.latencyMs.p99 ?? null,
        fmt.ms(onPg.half?.latencyMs.p99),
        (v) => v <= 25,
        onPg.halfDisk ? `disk meanwhile: ${diskStalls(onPg.halfDisk)}` : undefined,
      ),
    ];
    return {
      rows,
      targets,
      data: {
        function: FUNCTION,
        functionV8Flags: heap.v8Flags,
        connections: ctx.connections,
        phaseSeconds: ctx.phaseSeconds,
        pool: { requests: poolSize, averageBodyKb: Number(avgKb.toFixed(1)) },
        stagesMicrosecondsPerRequest: stagesUs,
        postgres: onPg,
        pglite: onLite,
        ratios: { ingestOverLimitA: vsA(onPg), ingestOverLimitB: vsB, pgliteIngestOverLimitA: vsA(onLite) },
      },
    };
  },
};

/** Whether the probe's directory shares a disk with the server's data directory (when it is on this machine). */
async function diskOfProbe(sql: BenchDb["sql"], dir: string): Promise<string> {
  try {
    const [{ data_directory }] = await sql<{ data_directory: string }[]>`show data_directory`;
    const [probe, data] = await Promise.all([Deno.stat(dir), Deno.stat(data_directory)]);
    return probe.dev === data.dev ? "on Postgres' disk" : "not on Postgres' disk";
  } catch {
    return "Postgres' data directory not readable from here";
  }
}

function diskPair(d: LatencySummary | null): string {
  return d && d.count > 0 ? `${d.p99.toFixed(1)} / ${d.max.toFixed(1)} ms` : "not run";
}

/** The disk probe's fdatasync p99 and max, e.g. "fdatasync p99 2.1 ms, max 280.4 ms". */
function diskStalls(d: LatencySummary | null): string {
  return d && d.count > 0 ? `fdatasync p99 ${d.p99.toFixed(1)} ms, max ${d.max.toFixed(1)} ms` : "not probed";
}

/** Each round's ingest ÷ limit A, e.g. "0.71×, 0.65×, 0.80×". */
function roundRatios(r: BackendResult): string {
  return r.rounds.map((round) => fmt.ratio(ratio(round.ingestPerS, round.limitAPerS))).join(", ");
}

function pgLatencies(l: { p50: number; p95: number; p99: number }): string {
  return `${l.p50.toFixed(1)} / ${l.p95.toFixed(1)} / ${l.p99.toFixed(1)} ms`;
}

function latencies(r: Pick<WrkResult, "latencyMs">): string {
  return pgLatencies(r.latencyMs);
}
