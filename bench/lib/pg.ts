// Databases for a benchmark: a fresh, randomly named database on the PostgreSQL server (dropped afterwards),
// or PGlite in its own process; the staged payloads pgbench replays; pgbench itself.
import postgres from "postgres";
import { connect, type Sql } from "../../supabase/functions/_shared/db.ts";
import { applyMigrations } from "../../scripts/lib/migrations.ts";
import type { PooledBody } from "./pool.ts";
import { freePort, runCommand, type ServerProcess, startDenoServer } from "./proc.ts";
import { type LatencySummary, summarize } from "./stats.ts";

export interface BenchDb {
  kind: "postgres" | "pglite";
  url: string;
  /** The harness's own pool (a few connections). */
  sql: Sql;
  /** PGlite runs in this process (its memory and CPU are not the function's). */
  server?: ServerProcess;
  close(): Promise<void>;
}

const openDbs = new Set<BenchDb>();

export async function closeAllDbs(): Promise<void> {
  await Promise.all([...openDbs].map((db) => db.close()));
}

/** Tracks `db` for closeAllDbs() and applies the migrations; a database that cannot migrate is closed. */
async function registerAndMigrate(db: BenchDb): Promise<BenchDb> {
  openDbs.add(db);
  try {
    await applyMigrations(db.sql);
  } catch (error) {
    await db.close();
    throw error;
  }
  return db;
}

export async function createServerDb(serverUrl: string, label: string): Promise<BenchDb> {
  const name = `relay_bench_${label}_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  const u = new URL(serverUrl);
  u.pathname = `/${name}`;
  const url = u.toString();
  const sql = connect(url, { max: 4, connectTimeout: 10, applicationName: "relay-bench" });
  let closing: Promise<void> | null = null;
  const db: BenchDb = {
    kind: "postgres",
    url,
    sql,
    close() {
      closing ??= (async () => {
        openDbs.delete(db);
        await sql.end({ timeout: 2 }).catch(() => {});
        await admin.unsafe(`drop database if exists ${name} with (force)`);
        await admin.end({ timeout: 2 });
      })();
      return closing;
    },
  };
  return await registerAndMigrate(db);
}

/** PGlite behind pglite-socket in a process of its own, migrated. */
export async function startPgliteDb(): Promise<BenchDb> {
  const port = freePort();
  const server = await startDenoServer({
    args: ["-A", new URL("./pglite_server.ts", import.meta.url).pathname, String(port)],
    env: {},
    port,
    waitMs: 60_000,
  });
  const url = `postgresql://postgres:postgres@127.0.0.1:${port}/postgres`;
  const sql = connect(url, { max: 2, connectTimeout: 10, applicationName: "relay-bench" });
  let closing: Promise<void> | null = null;
  const db: BenchDb = {
    kind: "pglite",
    url,
    sql,
    server,
    close() {
      closing ??= (async () => {
        openDbs.delete(db);
        await sql.end({ timeout: 2 }).catch(() => {});
        await server.stop();
      })();
      return closing;
    },
  };
  return await registerAndMigrate(db);
}

/**
 * Stages the pool's bodies in bench_payloads so pgbench can call ingest_webhook_event() with exactly the
 * arguments the function sends, in the same order (bench_cursor walks the pool like wrk does).
 */
export async function stagePayloads(sql: Sql, bodies: PooledBody[]): Promise<void> {
  await sql.unsafe(`
    drop table if exists bench_payloads;
    drop sequence if exists bench_cursor;
    create table bench_payloads (
      i integer primary key, event_key text not null, event text not null, message_id bigint,
      conversation_id bigint, account_id bigint, inbox_id bigint, delivery_id text not null,
      raw_body text not null, body_sha256 text not null);
    -- Stored uncompressed, so reading a payload costs about what receiving it over the wire does.
    alter table bench_payloads alter column raw_body set storage external;
    create sequence bench_cursor;`).simple();
  const batch = 200;
  for (let start = 0; start < bodies.length; start += batch) {
    const rows = bodies.slice(start, start + batch).map((b, j) => ({
      i: start + j + 1,
      event_key: b.eventKey,
      event: b.event,
      message_id: b.messageId,
      conversation_id: b.conversationId,
      account_id: b.accountId,
      inbox_id: b.inboxId,
      delivery_id: b.deliveryId,
      raw_body: b.body,
      body_sha256: b.bodySha256,
    }));
    await sql`insert into bench_payloads ${sql(rows)}`;
  }
  await sql`analyze bench_payloads`;
}

/**
 * Empties webhook_events (and its delivery attempts) and rewinds pgbench's cursor, so each phase starts alike.
 * The CHECKPOINT writes out what the previous phase dirtied (a 15 s phase at max rate writes hundreds of MB):
 * otherwise a checkpoint falls inside whichever phase comes next and its fsyncs stall that phase's commits.
 */
export async function resetEvents(sql: Sql): Promise<void> {
  await sql.unsafe(`truncate public.webhook_delivery_attempts, public.webhook_events restart identity;
    select setval('bench_cursor', 1, false);
    checkpoint;`).simple();
}

/** One transaction per call, the same statement the function runs (one round trip). */
export function ingestScript(poolSize: number): string {
  return `-- ingest_webhook_event() with the next staged payload, cycling like the HTTP load does
with c as materialized (select (nextval('bench_cursor') - 1) % ${poolSize} + 1 as i)
select e.* from c join bench_payloads p using (i),
  lateral public.ingest_webhook_event(p.event_key, p.event, p.message_id, p.conversation_id, p.account_id,
    p.inbox_id, p.delivery_id, p.raw_body::jsonb, p.raw_body, p.body_sha256, 'signature', now(),
    gen_random_uuid()) e;
`;
}

export interface PgbenchResult {
  tps: number;
  /** Per-transaction latency percentiles (ms), when the run was logged (paced runs). */
  latencyMs?: LatencySummary;
  /** The rate asked for with -R. */
  targetRate?: number;
  latencyMeanMs: number;
  transactions: number;
  clients: number;
  durationS: number;
}

/**
 * Runs for `durationS` seconds, or `transactions` per client when given. With `rate`, transactions are
 * scheduled at that rate (-R) and every one is logged, for latency percentiles.
 */
export async function runPgbench(
  o: {
    url: string;
    script: string;
    clients: number;
    durationS: number;
    workDir: string;
    transactions?: number;
    rate?: number;
  },
): Promise<PgbenchResult> {
  const id = crypto.randomUUID().slice(0, 8);
  const scriptPath = `${o.workDir}/pgbench_${id}.sql`;
  const logPrefix = `${o.workDir}/pgbench_log_${id}`;
  await Deno.writeTextFile(scriptPath, o.script);
  const { stdout } = await runCommand("pgbench", [
    "-n", // no vacuum of pgbench's own tables
    "-M",
    "extended", // unnamed statements, like postgres.js with prepare:false
    "-c",
    String(o.clients),
    "-j",
    "1",
    ...(o.transactions ? ["-t", String(o.transactions)] : ["-T", String(o.durationS)]),
    ...(o.rate ? ["-R", String(o.rate), "--log", `--log-prefix=${logPrefix}`] : []),
    "-f",
    scriptPath,
    o.url,
  ]);
  const result = parsePgbenchOutput(stdout, o.clients, o.durationS);
  if (o.transactions) result.durationS = result.transactions / result.tps;
  if (o.rate) {
    result.targetRate = o.rate;
    result.latencyMs = summarize(await readPgbenchLogLatencies(o.workDir, `pgbench_log_${id}`));
  }
  return result;
}

/** Latencies (ms) from pgbench's per-transaction logs: "client tx time_us script epoch epoch_us [lag_us]". */
async function readPgbenchLogLatencies(dir: string, prefix: string): Promise<number[]> {
  const latencies: number[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.name.startsWith(prefix)) continue;
    const text = await Deno.readTextFile(`${dir}/${entry.name}`);
    for (const line of text.split("\n")) {
      const fields = line.split(" ");
      // "skipped" transactions (behind schedule with --latency-limit) have no time; none are expected here.
      if (fields.length >= 6 && /^\d+$/.test(fields[2])) latencies.push(Number(fields[2]) / 1000);
    }
  }
  return latencies;
}

export function parsePgbenchOutput(stdout: string, clients: number, durationS: number): PgbenchResult {
  const tps = /^tps = ([\d.]+)/m.exec(stdout)?.[1];
  const latency = /^latency average = ([\d.]+) ms/m.exec(stdout)?.[1];
  const transactions = /number of transactions actually processed: (\d+)/.exec(stdout)?.[1];
  const failed = /number of failed transactions: (\d+)/.exec(stdout)?.[1];
  if (!tps || !latency || !transactions) {
    throw new Error(`pgbench printed no result:\n${stdout.slice(0, 2000)}`);
  }
  if (failed && Number(failed) > 0) throw new Error(`pgbench: ${failed} failed transactions`);
  return {
    tps: Number(tps),
    latencyMeanMs: Number(latency),
    transactions: Number(transactions),
    clients,
    durationS,
  };
}

/** Several unpaced pgbench runs of the same script as one: transactions and seconds summed, the mean weighted. */
export function combinePgbenchRuns(runs: readonly PgbenchResult[]): PgbenchResult {
  if (runs.length === 0) throw new RangeError("no pgbench runs to combine");
  const transactions = runs.reduce((s, r) => s + r.transactions, 0);
  const durationS = runs.reduce((s, r) => s + (r.tps > 0 ? r.transactions / r.tps : r.durationS), 0);
  return {
    tps: transactions / durationS,
    latencyMeanMs: runs.reduce((s, r) => s + r.latencyMeanMs * r.transactions, 0) / transactions,
    transactions,
    clients: runs[0].clients,
    durationS,
  };
}
