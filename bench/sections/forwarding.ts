// Item 2 of issue 6: forwarding. (a) A backlog of pending events (50 k; bodies 5-20 KB) delivered by the real
// forwarder — `deno task forward` processes (scripts/forward.ts: drain() in a LISTEN/NOTIFY + sweep loop) —
// to a loopback sink that answers 200 at once, for several (processes × batch size × lanes) configurations; the
// best one then delivers the whole backlog. (b) Limit C: wrk against the same sink with the same bodies at the
// same concurrency; for context, the forwarder's HTTP side alone (bench/lib/bare_client.ts: its undici
// transport, and fetch as the Edge Functions send, signing, no database) and the forwarder without HTTP
// (bench/lib/db_side_forwarder.ts: drain() with a transport that answers at once). (c) End-to-end latency at
// a steady moderate rate: signed webhooks into the real chatwoot-webhook process (its immediate delivery
// attempt) with a `deno task forward` loop beside it, receipt (received_at) to arrival at the sink.
import { type BenchContext, type BenchSection, check, fmt, type ResultRow } from "../lib/context.ts";
import {
  PROJECT_IMPORTS,
  startForwarderProcess,
  startFunction,
  startSinkServer,
} from "../lib/function_process.ts";
import { type BenchDb, createServerDb, stagePayloads } from "../lib/pg.ts";
import {
  buildBodies,
  type PooledBody,
  signBodies,
  type SignedRequest,
  writeTextFileToDisk,
  writeWrkPool,
} from "../lib/pool.ts";
import {
  type DenoProcess,
  freePort,
  postgresCpuByPid,
  postgresCpuSince,
  procCpuSeconds,
  runCommand,
  type ServerProcess,
  startDenoProcess,
} from "../lib/proc.ts";
import { ratio, summarize } from "../lib/stats.ts";
import { runWrk, type WrkResult } from "../lib/wrk.ts";
import { FORWARDER_APPLICATION_NAME } from "../../scripts/lib/forwarder_loop.ts";
import { SAMPLE_EVENTS } from "../../scripts/lib/samples.ts";
import { chatwootSignatureHeaders } from "../../supabase/functions/_shared/signature.ts";

const FUNCTION = "chatwoot-webhook";
const SINK_PATH = "/webhooks/chatwoot";
const BARE_CLIENT = new URL("../lib/bare_client.ts", import.meta.url).pathname;
const DB_SIDE_FORWARDER = new URL("../lib/db_side_forwarder.ts", import.meta.url).pathname;

/** How many `deno task forward` processes, each draining with this batch size and this many lanes. */
interface ForwarderConfig {
  processes: number;
  batch: number;
  /** Batches in flight at once in each process (`deno task forward --lanes`). */
  lanes: number;
}

interface DrainRun extends ForwarderConfig {
  /** Events in the backlog when the run started. */
  backlog: number;
  /** Events the sink received (first arrivals of distinct ids). */
  delivered: number;
  /** Arrivals of an id the sink had already seen (should be 0). */
  repeats: number;
  seconds: number;
  deliveriesPerS: number;
  /** True when the whole backlog arrived before the time cap. */
  complete: boolean;
  /** CPU of all forwarder processes, as a share of one core. */
  forwarderCpuShare: number;
  sinkCpuShare: number;
  /** Rows the database marks delivered once the forwarders stopped. */
  deliveredInDb: number;
}

const label = (c: ForwarderConfig) =>
  `${c.processes} × batch ${c.batch}${c.lanes > 1 ? ` × ${c.lanes} lanes` : ""}`;
/** Requests in flight at most: what limit C's load generator is given as connections. */
const inFlight = (c: ForwarderConfig) => c.processes * c.batch * c.lanes;

function parseConfigs(text: string): ForwarderConfig[] {
  return text.split(",").map((part) => {
    const m = /^\s*(\d+)x(\d+)(?:x(\d+))?\s*$/.exec(part);
    if (!m) throw new Error(`BENCH_FORWARD_CONFIGS: "${part}" is not <processes>x<batch>[x<lanes>]`);
    return { processes: Number(m[1]), batch: Number(m[2]), lanes: Number(m[3] ?? 1) };
  });
}

/** The sink's control endpoints. */
function sinkClient(port: number) {
  const base = `http://127.0.0.1:${port}/_bench`;
  const get = async <T>(path: string): Promise<T> => {
    const r = await fetch(`${base}/${path}`);
    if (!r.ok) throw new Error(`sink ${path}: HTTP ${r.status}`);
    return await r.json() as T;
  };
  return {
    stats: () => get<{ count: number; events: number; first_ms: number; last_ms: number }>("stats"),
    arrivals: () => get<{ ids: string[]; arrivals: number[] }>("arrivals"),
    clock: () => get<{ now_ms: number }>("clock"),
    async reset() {
      const r = await fetch(`${base}/reset`, { method: "POST" });
      await r.body?.cancel();
    },
  };
}

/**
 * Bulk-loads `events` pending rows in one statement, bodies cycling through the staged ones. Conversation of
 * event g is g % conversations, so consecutive ids belong to different conversations (traffic from many
 * conversations interleaves) and each conversation has events/conversations events queued behind each other.
 */
async function loadBacklog(db: BenchDb, events: number, conversations: number): Promise<void> {
  await db.sql.unsafe(
    `
    insert into public.webhook_events (event_key, event, message_id, conversation_id, account_id, inbox_id,
      delivery_id, payload, raw_body, body_sha256, verified_by, status, attempts, received_at, last_received_at,
      next_attempt_at)
    select 'bench:' || g, p.event, 700000000 + g, 1 + g % $2::int, 1, p.inbox_id, md5(g::text),
      p.raw_body::jsonb, p.raw_body, p.body_sha256, 'signature', 'pending', 0, t.at, t.at, t.at
    from generate_series(1, $1::int) g
    cross join (select now() - interval '1 minute' as at) t
    join bench_payloads p on p.i = 1 + g % (select count(*) from bench_payloads)::int`,
    [events, conversations],
  );
  await db.sql`vacuum analyze public.webhook_events`;
}

/** Everything back to pending in the original order (next_attempt_at = received_at), attempts forgotten. */
async function resetBacklog(db: BenchDb): Promise<void> {
  await db.sql`
    update public.webhook_events set status = 'pending', attempts = 0, delivered_at = null, last_error = null,
      next_attempt_at = received_at, leased_by = null, leased_at = null, lease_expires_at = null,
      leased_version = null
    where status <> 'pending'`;
  await db.sql`truncate public.webhook_delivery_attempts`;
  await db.sql`vacuum analyze public.webhook_events`;
}

const setPaused = (db: BenchDb, paused: boolean) =>
  db.sql`update public.relay_settings set forwarding_paused = ${paused} where id`;

/** Waits until `count` forwarder processes hold their LISTEN connection. */
async function waitForListeners(db: BenchDb, count: number, procs: DenoProcess[]): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const dead = procs.find((p) => !p.alive());
    if (dead) throw new Error(`a forwarder exited at start:\n${dead.stderrTail()}`);
    const [{ n }] = await db.sql<{ n: number }[]>`
      select count(*)::int as n from pg_stat_activity
       where datname = current_database() and application_name = ${FORWARDER_APPLICATION_NAME}
         and query ilike 'listen%'`;
    if (n >= count) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`forwarders did not LISTEN within 30 s:\n${procs[0]?.stderrTail()}`);
}

/**
 * One drain of the backlog with `config`: forwarders start paused (idle, listening), the harness unpauses
 * and NOTIFYs, and the sink counts arrivals until the backlog is gone or `capSeconds` have passed.
 */
async function runDrain(
  ctx: BenchContext,
  db: BenchDb,
  sink: ServerProcess,
  config: ForwarderConfig,
  { backlog, capSeconds, agentSdkSecret }: { backlog: number; capSeconds: number; agentSdkSecret: string },
): Promise<DrainRun> {
  const control = sinkClient(sink.port);
  await setPaused(db, true);
  await resetBacklog(db);
  await control.reset();
  const procs = Array.from({ length: config.processes }, () =>
    startForwarderProcess({
      databaseUrl: db.url,
      agentSdkUrl: `http://127.0.0.1:${sink.port}`,
      agentSdkSecret,
      batchSize: config.batch,
      lanes: config.lanes,
      sweepMs: 1000,
      cwd: ctx.workDir,
    }));
  try {
    await waitForListeners(db, config.processes, procs);
    const cpu0 = await Promise.all(procs.map((p) => procCpuSeconds(p.pid)));
    const sinkCpu0 = await procCpuSeconds(sink.pid);
    const startMs = performance.timeOrigin + performance.now();
    // One transaction: the NOTIFY is delivered when the unpause is visible.
    await db.sql.begin(async (tx) => {
      await tx`update public.relay_settings set forwarding_paused = false where id`;
      await tx`select pg_notify('webhook_events_due', 'bench')`;
    });
    const capAt = Date.now() + capSeconds * 1000;
    let stats = await control.stats();
    while (stats.events < backlog && Date.now() < capAt) {
      await new Promise((r) => setTimeout(r, 100));
      stats = await control.stats();
    }
    const endMs = stats.events >= backlog ? stats.last_ms : performance.timeOrigin + performance.now();
    const cpu1 = await Promise.all(procs.map((p) => procCpuSeconds(p.pid)));
    const sinkCpu1 = await procCpuSeconds(sink.pid);
    // Stop claiming, let the batches in flight report, then stop the processes.
    await setPaused(db, true);
    await new Promise((r) => setTimeout(r, 500));
    const { ids } = await control.arrivals();
    const distinct = new Set(ids).size;
    const seconds = (endMs - startMs) / 1000;
    await Promise.all(procs.map((p) => p.stop()));
    const [{ delivered }] = await db.sql<{ delivered: number }[]>`
      select count(*)::int as delivered from public.webhook_events where status = 'delivered'`;
    const cpuSeconds = cpu1.reduce((a, b) => a + b, 0) - cpu0.reduce((a, b) => a + b, 0);
    const run: DrainRun = {
      ...config,
      backlog,
      delivered: distinct,
      repeats: ids.length - distinct,
      seconds,
      deliveriesPerS: distinct / seconds,
      complete: distinct >= backlog,
      forwarderCpuShare: cpuSeconds / seconds,
      sinkCpuShare: (sinkCpu1 - sinkCpu0) / seconds,
      deliveredInDb: delivered,
    };
    ctx.log(
      `    ${label(config)}: ${fmt.rate(run.deliveriesPerS)} (${distinct} in ${seconds.toFixed(1)} s${
        run.complete ? ", all" : ""
      }; forwarders ${fmt.pct(run.forwarderCpuShare)} of a core, sink ${fmt.pct(run.sinkCpuShare)})`,
    );
    return run;
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
  }
}

/** The requests the forwarder sends, as raw HTTP for wrk: same bodies, same headers (signed the same way). */
function sinkRequests(bodies: PooledBody[], secret: string): SignedRequest[] {
  return bodies.map((b, i) => ({
    body: b.body,
    headers: {
      "Content-Type": "application/json",
      "Idempotency-Key": b.eventKey,
      "X-Chatwoot-Event": b.event,
      "X-Relay-Event-Id": String(i + 1),
      "X-Relay-Event-Version": "1",
      "X-Relay-Attempt": "1",
      ...chatwootSignatureHeaders(secret, b.body),
    },
  }));
}

interface BareClientResult {
  requests: number;
  seconds: number;
  requestsPerS: number;
  clientCpuShare: number;
  sinkCpuShare: number;
}

/** The forwarder's delivery transports: undici in `deno task forward`, fetch in the Edge Functions. */
const TRANSPORTS = ["undici", "fetch"] as const;
type TransportName = typeof TRANSPORTS[number];

/** bench/lib/bare_client.ts against the sink: the forwarder's HTTP side alone (transport + signing, no database). */
async function runBareClient(
  ctx: BenchContext,
  sink: ServerProcess,
  requests: SignedRequest[],
  { transport, connections, seconds, secret }: {
    transport: TransportName;
    connections: number;
    seconds: number;
    secret: string;
  },
): Promise<BareClientResult> {
  const bodiesFile = `${ctx.workDir}/bare_client_bodies.json`;
  await writeTextFileToDisk(bodiesFile, JSON.stringify(requests));
  const url = `http://127.0.0.1:${sink.port}${SINK_PATH}`;
  const args = [transport, url, bodiesFile, String(connections)];
  // A short unrecorded warm-up, then the measured run.
  await runCommand("deno", ["run", "-A", ...PROJECT_IMPORTS, BARE_CLIENT, ...args, "1", secret]);
  const child = new Deno.Command("deno", {
    args: ["run", "-A", ...PROJECT_IMPORTS, BARE_CLIENT, ...args, String(seconds), secret],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // CPU is read from /proc while the client runs (after start-up), then once more just before it ends.
  await new Promise((r) => setTimeout(r, 500));
  const cpu0 = await procCpuSeconds(child.pid),
    sink0 = await procCpuSeconds(sink.pid),
    t0 = performance.now();
  await new Promise((r) => setTimeout(r, Math.max(0, seconds * 1000 - 1000)));
  const cpu1 = await procCpuSeconds(child.pid),
    sink1 = await procCpuSeconds(sink.pid),
    t1 = performance.now();
  const out = await child.output();
  if (!out.success) {
    throw new Error(`bare client failed:\n${new TextDecoder().decode(out.stderr).slice(-1500)}`);
  }
  const r = JSON.parse(new TextDecoder().decode(out.stdout)) as { requests: number; seconds: number };
  const window = (t1 - t0) / 1000;
  return {
    ...r,
    requestsPerS: r.requests / r.seconds,
    clientCpuShare: (cpu1 - cpu0) / window,
    sinkCpuShare: (sink1 - sink0) / window,
  };
}

interface DbSideResult extends ForwarderConfig {
  delivered: number;
  seconds: number;
  deliveriesPerS: number;
  forwarderCpuShare: number;
  /** Every postgres process (backends and the server's own) over the same window, as a share of one core. */
  postgresCpuShare: number;
}

/**
 * bench/lib/db_side_forwarder.ts over the whole backlog with `config`: drain() with a transport that answers
 * 200 at once, so the rate is what the database side of a delivery (claim, write-back) and the forwarder's JS
 * around it allow with no HTTP at all.
 */
async function runDbSide(
  ctx: BenchContext,
  db: BenchDb,
  config: ForwarderConfig,
  { backlog, agentSdkSecret }: { backlog: number; agentSdkSecret: string },
): Promise<DbSideResult> {
  await setPaused(db, false);
  await resetBacklog(db);
  await db.sql`checkpoint`;
  const startAt = Date.now() + 3_000; // after every process has started and connected
  const summaries = Array.from({ length: config.processes }, (_, i) => `${ctx.workDir}/db_side_${i}.json`);
  const procs = summaries.map((summaryFile) =>
    startDenoProcess({
      args: [
        "-A",
        ...PROJECT_IMPORTS,
        DB_SIDE_FORWARDER,
        String(config.batch),
        String(config.lanes),
        String(startAt),
        summaryFile,
      ],
      env: {
        DATABASE_URL: db.url,
        AGENT_SDK_URL: "http://127.0.0.1:9", // never contacted: the transport answers by itself
        AGENT_SDK_SECRET: agentSdkSecret,
        AGENT_SDK_TOKEN: "",
      },
    })
  );
  type Summary = { delivered: number; startMs: number; endMs: number; cpuSeconds: number };
  // Each process writes its summary when nothing is left to claim, then keeps its connections 3 s.
  const readSummaries = async (): Promise<Summary[] | null> => {
    const out: Summary[] = [];
    for (const [i, file] of summaries.entries()) {
      try {
        out.push(JSON.parse(await Deno.readTextFile(file)) as Summary);
      } catch {
        if (!procs[i].alive()) throw new Error(`db-side forwarder exited:\n${procs[i].stderrTail()}`);
        return null;
      }
    }
    return out;
  };
  try {
    await new Promise((r) => setTimeout(r, Math.max(0, startAt - Date.now())));
    const pg0 = await postgresCpuByPid();
    const capAt = Date.now() + 120_000;
    let done = await readSummaries();
    while (!done && Date.now() < capAt) {
      await new Promise((r) => setTimeout(r, 50));
      done = await readSummaries();
    }
    const pgCpu = await postgresCpuSince(pg0);
    if (!done) throw new Error("the database-side forwarders did not finish within 120 s");
    const delivered = done.reduce((a, d) => a + d.delivered, 0);
    if (delivered !== backlog) throw new Error(`database side: ${delivered} of ${backlog} delivered`);
    const seconds = (Math.max(...done.map((d) => d.endMs)) - Math.min(...done.map((d) => d.startMs))) / 1000;
    return {
      ...config,
      delivered,
      seconds,
      deliveriesPerS: delivered / seconds,
      forwarderCpuShare: done.reduce((a, d) => a + d.cpuSeconds, 0) / seconds,
      postgresCpuShare: pgCpu / seconds,
    };
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    await setPaused(db, true);
  }
}

interface EndToEnd {
  rateAsked: number;
  ingest: WrkResult;
  /** Distinct events stored pending during the measured phase. */
  stored: number;
  delivered: number;
  repeats: number;
  /** Milliseconds from received_at to arrival at the sink. */
  latencyMs: ReturnType<typeof summarize>;
  /** Share of deliveries made by the function's immediate attempt (the rest by the forward loop). */
  immediateShare: number | null;
  /** Sink clock minus Postgres clock, estimated through the harness (ms; ± the round trips). */
  clockOffsetMs: number;
  clockUncertaintyMs: number;
}

async function measureEndToEnd(
  ctx: BenchContext,
  { rate, seconds, agentSdkSecret }: { rate: number; seconds: number; agentSdkSecret: string },
): Promise<EndToEnd> {
  const db = await createServerDb(ctx.serverUrl, "e2e");
  const sinkPort = freePort(), fnPort = freePort();
  const servers: Array<{ stop(): Promise<void> }> = [];
  try {
    // Every event type is forwarded here (the default forwards message_created only): more deliveries,
    // the stricter case.
    await db.sql`update public.relay_settings set forward_events = ${[...SAMPLE_EVENTS]} where id`;
    const sink = await startSinkServer(sinkPort);
    servers.push(sink);
    const control = sinkClient(sinkPort);
    const agentSdkUrl = `http://127.0.0.1:${sinkPort}`;
    const fn = await startFunction(FUNCTION, {
      port: fnPort,
      databaseUrl: db.url,
      env: {
        CHATWOOT_WEBHOOK_SECRET: ctx.secret,
        AGENT_SDK_URL: agentSdkUrl,
        AGENT_SDK_SECRET: agentSdkSecret,
      },
    });
    servers.push(fn);
    // Like `deno task dev` beside the function: a forwarder loop woken by NOTIFY, default batch and sweep.
    const loop = startForwarderProcess({
      databaseUrl: db.url,
      agentSdkUrl,
      agentSdkSecret,
      batchSize: 10,
      lanes: 1,
      cwd: ctx.workDir,
    });
    servers.push(loop);
    await waitForListeners(db, 1, [loop]);

    const target = { host: `127.0.0.1:${fnPort}`, path: `/${FUNCTION}` };
    const load = { url: `http://127.0.0.1:${fnPort}/${FUNCTION}`, connections: ctx.connections };
    // Warm-up with keys of its own, then the measured phase from an empty sink.
    const warmFile = `${ctx.workDir}/e2e_warm.http`;
    const warmBodies = buildBodies({
      count: Math.max(50, rate * ctx.warmupSeconds),
      seed: 71,
      firstMessageId: 90_000_000,
    });
    await writeWrkPool(warmFile, signBodies(warmBodies, ctx.secret), target);
    await runWrk({ ...load, poolFile: warmFile, durationS: ctx.warmupSeconds, rate, workDir: ctx.workDir });
    await waitForEmptyOutbox(db, 10_000);
    await control.reset();
    const [{ before }] = await db.sql<{ before: string }[]>`
      select coalesce(max(id), 0)::text as before from public.webhook_events`;

    // Enough bodies that the pool does not cycle (a cycled body is a duplicate, stored once).
    const bodies = buildBodies({ count: Math.ceil(rate * seconds * 1.2) + 50, seed: 72 });
    const poolFile = `${ctx.workDir}/e2e.http`;
    await writeWrkPool(poolFile, signBodies(bodies, ctx.secret), target);
    // The backlog phases before this one wrote GBs of WAL: without a checkpoint here, the one they leave
    // pending flushes during this phase and its fsyncs stall the ingest commits (p50 20 ms instead of 6 ms).
    await db.sql`checkpoint`;
    const ingest = await runWrk({ ...load, poolFile, durationS: seconds, rate, workDir: ctx.workDir });
    const e = ingest.errors;
    if (ingest.requests === 0 || e.connect + e.read + e.write + e.status + e.timeout > 0) {
      throw new Error(
        `e2e ingest: ${ingest.requests} requests, errors ${JSON.stringify(e)}\n${fn.stderrTail()}`,
      );
    }
    await waitForEmptyOutbox(db, 15_000);

    const { ids, arrivals } = await control.arrivals();
    const rows = await db.sql<{ id: string; received_ms: number; status: string; worker: string | null }[]>`
      select e.id::text, (extract(epoch from e.received_at) * 1000)::float8 as received_ms, e.status,
        (select a.worker from public.webhook_delivery_attempts a
          where a.event_id = e.id and a.succeeded order by a.id limit 1) as worker
        from public.webhook_events e where e.id > ${before}::bigint and e.status <> 'skipped'`;
    const receivedMs = new Map(rows.map((r) => [r.id, r.received_ms]));
    const firstArrival = new Map<string, number>();
    ids.forEach((id, i) => {
      if (!firstArrival.has(id)) firstArrival.set(id, arrivals[i]);
    });
    const latencies: number[] = [];
    for (const [id, at] of firstArrival) {
      const received = receivedMs.get(id);
      if (received !== undefined) latencies.push(at - received);
    }
    const withWorker = rows.filter((r) => r.worker);
    const immediate = withWorker.filter((r) => r.worker!.startsWith(`${FUNCTION}:`)).length;

    // Clock check: each clock read by the harness between two Date.now() calls.
    const a0 = Date.now(), sinkNow = (await control.clock()).now_ms, a1 = Date.now();
    const b0 = Date.now();
    const [{ pg_ms }] = await db.sql<{ pg_ms: number }[]>`
      select (extract(epoch from clock_timestamp()) * 1000)::float8 as pg_ms`;
    const b1 = Date.now();
    const clockOffsetMs = (sinkNow - (a0 + a1) / 2) - (pg_ms - (b0 + b1) / 2);

    return {
      rateAsked: rate,
      ingest,
      stored: rows.length,
      delivered: latencies.length,
      repeats: ids.length - firstArrival.size,
      latencyMs: summarize(latencies),
      immediateShare: withWorker.length ? immediate / withWorker.length : null,
      clockOffsetMs,
      clockUncertaintyMs: (a1 - a0 + b1 - b0) / 2 + 1,
    };
  } finally {
    for (const s of servers.reverse()) await s.stop();
    await db.close();
  }
}

async function waitForEmptyOutbox(db: BenchDb, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [{ open }] = await db.sql<{ open: number }[]>`
      select count(*)::int as open from public.webhook_events where status in ('pending', 'delivering')`;
    if (open === 0) return;
    if (Date.now() > deadline) throw new Error(`${open} events still pending after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export const forwardingSection: BenchSection = {
  name: "forwarding",
  title: "2. Forwarding to a loopback sink",
  async run(ctx) {
    const env = (name: string) => Deno.env.get(name);
    const events = Number(env("BENCH_FORWARD_EVENTS") ?? (ctx.quick ? 2_000 : 50_000));
    const conversations = Number(
      env("BENCH_FORWARD_CONVERSATIONS") ?? Math.max(200, Math.round(events / 10)),
    );
    const configs = parseConfigs(
      env("BENCH_FORWARD_CONFIGS") ??
        (ctx.quick ? "1x10,1x50x2" : "1x10,1x50,1x50x2,1x100x2,2x50x2,2x100x2"),
    );
    const tuneSeconds = ctx.quick ? 2 : Math.min(8, ctx.phaseSeconds);
    const capSeconds = ctx.quick ? 5 : ctx.phaseSeconds * 2;
    const e2eRate = Number(env("BENCH_E2E_RATE") ?? (ctx.quick ? 30 : 100));
    const e2eSeconds = ctx.quick ? 3 : ctx.phaseSeconds;
    const agentSdkSecret = `bench-agent-${crypto.randomUUID()}`;

    const distinctBodies = ctx.quick ? 300 : 2_000;
    ctx.log(`  building ${distinctBodies} distinct bodies (5-20 KB) for a backlog of ${events} events`);
    const bodies = buildBodies({ count: distinctBodies, seed: 22, duplicateShare: 0 });
    const avgKb = bodies.reduce((s, b) => s + b.body.length, 0) / bodies.length / 1024;

    const db = await createServerDb(ctx.serverUrl, "forward");
    const sink = await startSinkServer(freePort());
    const tuning: DrainRun[] = [];
    let full: DrainRun;
    let limitC: WrkResult;
    const clientCeiling = {} as Record<TransportName, BareClientResult>;
    let dbSide: DbSideResult;
    try {
      await stagePayloads(db.sql, bodies);
      await setPaused(db, true);
      const t0 = performance.now();
      await loadBacklog(db, events, conversations);
      ctx.log(
        `  ${events} pending events over ${conversations} conversations loaded in ${
          ((performance.now() - t0) / 1000).toFixed(1)
        } s`,
      );
      ctx.log(`  configurations (each ${tuneSeconds} s at most, from the full backlog):`);
      for (const config of configs) {
        tuning.push(
          await runDrain(ctx, db, sink, config, { backlog: events, capSeconds: tuneSeconds, agentSdkSecret }),
        );
      }
      const best = tuning.reduce((a, b) => b.deliveriesPerS > a.deliveriesPerS ? b : a);
      ctx.log(`  the whole backlog with the best configuration (${label(best)}; cap ${capSeconds} s):`);
      full = await runDrain(ctx, db, sink, best, { backlog: events, capSeconds, agentSdkSecret });
      dbSide = await runDbSide(ctx, db, best, { backlog: events, agentSdkSecret });
      ctx.log(
        `  context: the forwarder without HTTP (${label(best)}): ${fmt.rate(dbSide.deliveriesPerS)} ` +
          `(forwarders ${fmt.pct(dbSide.forwarderCpuShare)} of a core, Postgres ${
            fmt.pct(dbSide.postgresCpuShare)
          })`,
      );

      // Limit C: the sink under wrk, same bodies and headers, as many connections as requests in flight.
      const concurrency = inFlight(best);
      const poolFile = `${ctx.workDir}/sink.http`;
      const requests = sinkRequests(bodies, agentSdkSecret);
      await writeWrkPool(poolFile, requests, {
        host: `127.0.0.1:${sink.port}`,
        path: SINK_PATH,
      });
      const load = {
        url: `http://127.0.0.1:${sink.port}${SINK_PATH}`,
        poolFile,
        connections: concurrency,
        workDir: ctx.workDir,
      };
      await runWrk({ ...load, durationS: ctx.warmupSeconds });
      limitC = await runWrk({ ...load, durationS: tuneSeconds });
      const e = limitC.errors;
      if (e.connect + e.read + e.write + e.status + e.timeout > 0) {
        throw new Error(`limit C: errors ${JSON.stringify(e)}\n${sink.stderrTail()}`);
      }
      ctx.log(`  limit C (wrk → sink, ${concurrency} connections): ${fmt.rate(limitC.requestsPerS)}`);
      for (const transport of TRANSPORTS) {
        const r = await runBareClient(ctx, sink, requests, {
          transport,
          connections: concurrency,
          seconds: tuneSeconds,
          secret: agentSdkSecret,
        });
        clientCeiling[transport] = r;
        ctx.log(
          `  context: the HTTP side alone over ${transport} → sink (no database), ${concurrency} in flight: ` +
            `${fmt.rate(r.requestsPerS)} (client ${fmt.pct(r.clientCpuShare)} of a core)`,
        );
      }
    } finally {
      await sink.stop();
      await db.close();
    }

    ctx.log(`  end to end at ${e2eRate}/s for ${e2eSeconds} s (function + forward loop):`);
    const e2e = await measureEndToEnd(ctx, { rate: e2eRate, seconds: e2eSeconds, agentSdkSecret });
    ctx.log(
      `    ${e2e.delivered} delivered: p50 ${fmt.ms(e2e.latencyMs.p50)} p99 ${fmt.ms(e2e.latencyMs.p99)}` +
        ` (clock offset sink − Postgres ${e2e.clockOffsetMs.toFixed(1)} ± ${e2e.clockUncertaintyMs} ms)`,
    );

    const vsC = ratio(full.deliveriesPerS, limitC.requestsPerS);
    const s = "2 forwarding";
    const quickNote = ctx.quick ? `quick run: ${events} events` : undefined;
    const rows: ResultRow[] = [
      ...tuning.map((t) => ({
        section: s,
        metric: `deliveries/s, ${label(t)} (${t.seconds.toFixed(0)} s)`,
        postgres: fmt.rate(t.deliveriesPerS),
        note: `forwarders ${fmt.pct(t.forwarderCpuShare)} of a core, sink ${fmt.pct(t.sinkCpuShare)}`,
      })),
      {
        section: s,
        metric: `deliveries/s, whole backlog, ${label(full)}`,
        postgres: fmt.rate(full.deliveriesPerS),
        note: `${full.delivered} of ${full.backlog} in ${full.seconds.toFixed(1)} s` +
          (full.complete ? "" : " (time cap)") + `; ${conversations} conversations`,
      },
      { section: s, metric: "deliveries repeated at the sink", postgres: fmt.int(full.repeats) },
      {
        section: s,
        metric: `limit C: wrk → sink, ${inFlight(full)} connections, requests/s`,
        postgres: fmt.rate(limitC.requestsPerS),
      },
      { section: s, metric: "forwarding ÷ limit C", postgres: fmt.ratio(vsC) },
      ...TRANSPORTS.map((transport): ResultRow => {
        const r = clientCeiling[transport];
        return {
          section: s,
          metric: `context: HTTP side alone over ${transport} → sink, ${
            inFlight(full)
          } in flight, no database`,
          postgres: fmt.rate(r.requestsPerS),
          note: `client ${fmt.pct(r.clientCpuShare)} of a core, sink ${fmt.pct(r.sinkCpuShare)}; ` +
            (transport === "undici"
              ? `the forwarder's own transport; forwarding ÷ this ${
                fmt.ratio(ratio(full.deliveriesPerS, r.requestsPerS))
              }`
              : "the Edge Functions' transport"),
        };
      }),
      {
        section: s,
        metric: `context: the forwarder without HTTP, ${label(dbSide)}, whole backlog`,
        postgres: fmt.rate(dbSide.deliveriesPerS),
        note: `forwarders ${fmt.pct(dbSide.forwarderCpuShare)} of a core, Postgres ${
          fmt.pct(dbSide.postgresCpuShare)
        }; real drain(), a transport that answers 200 at once: claim, sign, log, write-back; ÷ limit C ${
          fmt.ratio(ratio(dbSide.deliveriesPerS, limitC.requestsPerS))
        }`,
      },
      {
        section: s,
        metric: "context: pg_net ceiling on Supabase",
        postgres: "~200/s",
        note: "documented, not measured",
      },
      {
        section: s,
        metric: `e2e at ${e2eRate}/s: receipt → sink p50 / p95 / p99`,
        postgres: `${e2e.latencyMs.p50.toFixed(1)} / ${e2e.latencyMs.p95.toFixed(1)} / ${
          e2e.latencyMs.p99.toFixed(1)
        } ms`,
        note: `${e2e.delivered} events; ${fmt.pct(e2e.immediateShare)} by the function's immediate attempt`,
      },
      {
        section: s,
        metric: `e2e at ${e2eRate}/s: ingest HTTP p50 / p99`,
        postgres: `${e2e.ingest.latencyMs.p50.toFixed(1)} / ${e2e.ingest.latencyMs.p99.toFixed(1)} ms`,
        note: `${fmt.rate(e2e.ingest.requestsPerS)} achieved`,
      },
    ];
    const targets = [
      check("forwarding vs limit C", "≥ 0.50×", vsC, fmt.ratio(vsC), (v) => v >= 0.5, quickNote),
      check(
        "forwarding deliveries/s",
        "≥ 2000/s",
        full.deliveriesPerS,
        fmt.rate(full.deliveriesPerS),
        (v) => v >= 2000,
        quickNote,
      ),
    ];
    return {
      rows,
      targets,
      data: {
        backlog: { events, conversations, distinctBodies, averageBodyKb: Number(avgKb.toFixed(1)) },
        forwarder:
          "scripts/forward.ts processes (deno task forward), AGENT_SDK_SECRET set (signed deliveries)",
        tuneSeconds,
        capSeconds,
        tuning,
        full,
        limitC: { connections: inFlight(full), ...limitC },
        bareClient: clientCeiling,
        withoutHttp: dbSide,
        ratios: { forwardingOverLimitC: vsC },
        endToEnd: { ...e2e, seconds: e2eSeconds },
      },
    };
  },
};
