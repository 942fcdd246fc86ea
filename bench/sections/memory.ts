// Item 4 of issue 6: the function's memory after 100 k ingests (the quick run sends fewer and says so), with
// the V8 heap a deployed function has (see EDGE_RUNTIME_HEAP_FLAGS), and, under the very same load, two context
// runs: the same function with plain `deno run`'s heap, and Deno.serve alone (limit B's server). Bodies are
// generated and signed in batches while sending, so the sender's memory stays flat. Then one body of the size
// limit sent in small segments, to a fresh function each way (Content-Length, chunked): its peak RSS.
import { type BenchContext, type BenchSection, check, fmt, type ResultRow } from "../lib/context.ts";
import { functionHeap, PLAIN_DENO_HEAP, startBareServer, startFunction } from "../lib/function_process.ts";
import { type BenchDb, createServerDb } from "../lib/pg.ts";
import { buildBodies, signBodies } from "../lib/pool.ts";
import { freePort, procMemory, type ServerProcess } from "../lib/proc.ts";
import { postInSegments } from "../lib/segmented_client.ts";
import { chatwootSignatureHeaders } from "../../supabase/functions/_shared/signature.ts";
import { samplePayload } from "../../scripts/lib/samples.ts";

const FUNCTION = "chatwoot-webhook";
const BATCH = 1_000;

interface Sample {
  ingests: number;
  rssMb: number;
  peakRssMb: number;
}

interface MemoryRun {
  server: string;
  samples: Sample[];
  seconds: number;
}

/** Sends `total` distinct signed ingests to `path` on `server` (16 concurrent fetch clients), sampling RSS. */
async function sendIngests(
  ctx: BenchContext,
  server: ServerProcess,
  { name, path, total }: { name: string; path: string; total: number },
): Promise<MemoryRun> {
  const url = `http://127.0.0.1:${server.port}${path}`;
  const samples: Sample[] = [{ ingests: 0, ...await procMemory(server.pid) }];
  let failed = 0, sent = 0;
  const t0 = performance.now();
  const sampleEvery = Math.max(BATCH, Math.round(total / 10 / BATCH) * BATCH);
  for (let batch = 0; sent < total; batch++) {
    const count = Math.min(BATCH, total - sent);
    const bodies = buildBodies({ count, seed: 1000 + batch, firstMessageId: 10_000_000 + sent });
    const requests = signBodies(bodies, ctx.secret);
    let next = 0;
    await Promise.all(Array.from({ length: ctx.connections }, async () => {
      while (next < requests.length) {
        const r = requests[next++];
        const response = await fetch(url, { method: "POST", headers: r.headers, body: r.body });
        await response.body?.cancel();
        if (response.status !== 200) failed++;
      }
    }));
    sent += count;
    if (sent % sampleEvery === 0 || sent === total) {
      samples.push({ ingests: sent, ...await procMemory(server.pid) });
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  if (failed > 0) throw new Error(`${name}: ${failed} of ${sent} ingests were not answered 200`);
  ctx.log(
    `  ${name}: RSS after ${sent} ingests ${fmt.mb(samples.at(-1)!.rssMb)}, peak ${
      fmt.mb(samples.at(-1)!.peakRssMb)
    }`,
  );
  return { server: name, samples, seconds };
}

/** The function's default body limit (CHATWOOT_WEBHOOK_MAX_BODY_BYTES). */
const MAX_BODY_BYTES = 6 * 1024 * 1024;

interface SegmentedRun {
  length: "exact" | "chunked";
  bodyBytes: number;
  startRssMb: number;
  peakRssMb: number;
}

/**
 * A message_created whose content brings the body just under the size limit (an email with a large body), sent
 * in 1460-byte writes to a fresh function: each segment arrives as its own small chunk, the case where keeping
 * the chunks once kept 64 KiB per chunk (a 6 MiB chunked body: ~270 MB).
 */
async function segmentedBodyPeak(
  ctx: BenchContext,
  db: BenchDb,
  length: "exact" | "chunked",
  messageId: number,
): Promise<SegmentedRun> {
  const bodyFor = (content: string) =>
    JSON.stringify(samplePayload("message_created", { messageId, content }));
  const base = bodyFor("").length;
  const perChar = bodyFor("x").length - base; // the content appears more than once in the payload
  const text = bodyFor("x".repeat(Math.floor((MAX_BODY_BYTES - 1024 - base) / perChar)));
  const body = new TextEncoder().encode(text);
  const server = await startFunction(FUNCTION, {
    port: freePort(),
    databaseUrl: db.url,
    env: { CHATWOOT_WEBHOOK_SECRET: ctx.secret },
  });
  try {
    const startRssMb = (await procMemory(server.pid)).rssMb;
    const headers = { "Content-Type": "application/json", ...chatwootSignatureHeaders(ctx.secret, text) };
    const status = await postInSegments(server.port, body, { path: `/${FUNCTION}`, headers, length });
    if (status !== 200) throw new Error(`body in small segments (${length}): answered ${status}`);
    const run = {
      length,
      bodyBytes: body.length,
      startRssMb,
      peakRssMb: (await procMemory(server.pid)).peakRssMb,
    };
    ctx.log(
      `  body of ${fmt.mb(body.length / 2 ** 20)} in small segments (${length}): peak RSS ${
        fmt.mb(run.peakRssMb)
      }`,
    );
    return run;
  } catch (error) {
    throw new Error(`${(error as Error).message}\n${server.stderrTail()}`);
  } finally {
    await server.stop();
  }
}

/** Empty tables and a checkpoint between runs, so each starts from the same database state. */
async function resetDb(db: BenchDb): Promise<void> {
  await db.sql.unsafe(`truncate public.webhook_delivery_attempts, public.webhook_events;
    checkpoint;`).simple();
}

export const memorySection: BenchSection = {
  name: "memory",
  title: "4. Memory after many ingests",
  async run(ctx) {
    const total = Number(Deno.env.get("BENCH_MEMORY_INGESTS") ?? (ctx.quick ? 2_000 : 100_000));
    const db = await createServerDb(ctx.serverUrl, "memory");
    const runs: MemoryRun[] = [];
    const segmented: SegmentedRun[] = [];
    const measure = async (name: string, path: string, start: (port: number) => Promise<ServerProcess>) => {
      await resetDb(db);
      const server = await start(freePort());
      try {
        runs.push(await sendIngests(ctx, server, { name, path, total }));
      } catch (error) {
        throw new Error(`${(error as Error).message}\n${server.stderrTail()}`);
      } finally {
        await server.stop();
      }
    };
    const env = { CHATWOOT_WEBHOOK_SECRET: ctx.secret };
    try {
      await measure(
        "function",
        `/${FUNCTION}`,
        (port) => startFunction(FUNCTION, { port, databaseUrl: db.url, env }),
      );
      await measure(
        "function, plain deno run heap",
        `/${FUNCTION}`,
        (port) =>
          startFunction(FUNCTION, { port, databaseUrl: db.url, env, v8Flags: PLAIN_DENO_HEAP.v8Flags }),
      );
      await measure("Deno.serve alone", "/", (port) => startBareServer(port));
      await resetDb(db);
      segmented.push(await segmentedBodyPeak(ctx, db, "exact", 30_000_001));
      segmented.push(await segmentedBodyPeak(ctx, db, "chunked", 30_000_002));
    } finally {
      await db.close();
    }
    const [fn, plain, bare] = runs;
    const last = (r: MemoryRun) => r.samples.at(-1)!;
    const sent = last(fn).ingests;
    const note = ctx.quick ? `quick run: ${total} ingests, not 100 k` : undefined;
    const s = "4 memory";
    const heap = functionHeap();
    const rows: ResultRow[] = [
      { section: s, metric: "ingests sent (all answered 200)", postgres: fmt.int(sent), note },
      { section: s, metric: "function RSS at start", postgres: fmt.mb(fn.samples[0].rssMb) },
      { section: s, metric: `function RSS after ${fmt.int(sent)} ingests`, postgres: fmt.mb(last(fn).rssMb) },
      {
        section: s,
        metric: "function peak RSS (VmHWM)",
        postgres: fmt.mb(last(fn).peakRssMb),
        note: heap.note,
      },
      {
        section: s,
        metric: "context: function with plain deno run's heap, peak RSS",
        postgres: fmt.mb(last(plain).peakRssMb),
        note: PLAIN_DENO_HEAP.note,
      },
      {
        section: s,
        metric: "context: Deno.serve alone, peak RSS",
        postgres: fmt.mb(last(bare).peakRssMb),
        note: "limit B's server, same load",
      },
      ...segmented.map((r): ResultRow => ({
        section: s,
        metric: `body in small segments: peak RSS (${r.length === "exact" ? "Content-Length" : "chunked"})`,
        postgres: fmt.mb(r.peakRssMb),
        note: `one signed body of ${fmt.mb(r.bodyBytes / 2 ** 20)} in 1460-byte writes, fresh function ` +
          `(RSS at start ${fmt.mb(r.startRssMb)})`,
      })),
    ];
    return {
      rows,
      targets: [
        check(
          "function RSS after the ingests (peak)",
          "≤ 150 MB",
          last(fn).peakRssMb,
          fmt.mb(last(fn).peakRssMb),
          (v) => v <= 150,
          note,
        ),
      ],
      data: { ingests: sent, concurrency: ctx.connections, functionV8Flags: heap.v8Flags, runs, segmented },
    };
  },
};
