// Item 4 of issue 6: the function's memory after 100 k ingests (the quick run sends fewer and says so).
// Bodies are generated and signed in batches while sending, so the sender's memory stays flat.
import { type BenchSection, check, fmt, type ResultRow } from "../lib/context.ts";
import { startFunction } from "../lib/function_process.ts";
import { createServerDb } from "../lib/pg.ts";
import { buildBodies, signBodies } from "../lib/pool.ts";
import { freePort, procMemory } from "../lib/proc.ts";

const FUNCTION = "chatwoot-webhook";
const BATCH = 1_000;

export const memorySection: BenchSection = {
  name: "memory",
  title: "4. Memory after many ingests",
  async run(ctx) {
    const total = Number(Deno.env.get("BENCH_MEMORY_INGESTS") ?? (ctx.quick ? 2_000 : 100_000));
    const db = await createServerDb(ctx.serverUrl, "memory");
    const port = freePort();
    const samples: Array<{ ingests: number; rssMb: number; peakRssMb: number }> = [];
    let failed = 0, sent = 0, seconds = 0;
    try {
      const fn = await startFunction(FUNCTION, {
        port,
        databaseUrl: db.url,
        env: { CHATWOOT_WEBHOOK_SECRET: ctx.secret },
      });
      try {
        const url = `http://127.0.0.1:${port}/${FUNCTION}`;
        samples.push({ ingests: 0, ...await procMemory(fn.pid) });
        const t0 = performance.now();
        const sampleEvery = Math.max(BATCH, Math.round(total / 10 / BATCH) * BATCH);
        for (let batch = 0; sent < total; batch++) {
          const count = Math.min(BATCH, total - sent);
          const bodies = await buildBodies({ count, seed: 1000 + batch, firstMessageId: 10_000_000 + sent });
          const requests = await signBodies(bodies, ctx.secret);
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
            samples.push({ ingests: sent, ...await procMemory(fn.pid) });
            ctx.log(`  ${sent} ingests: RSS ${fmt.mb(samples.at(-1)!.rssMb)}`);
          }
        }
        seconds = (performance.now() - t0) / 1000;
        if (failed > 0) {
          throw new Error(`${failed} of ${sent} ingests were not answered 200\n${fn.stderrTail()}`);
        }
      } finally {
        await fn.stop();
      }
    } finally {
      await db.close();
    }
    const last = samples.at(-1)!;
    const note = ctx.quick ? `quick run: ${total} ingests, not 100 k` : undefined;
    const rows: ResultRow[] = [
      { section: "4 memory", metric: "ingests sent (all answered 200)", postgres: fmt.int(sent), note },
      { section: "4 memory", metric: "function RSS at start", postgres: fmt.mb(samples[0].rssMb) },
      {
        section: "4 memory",
        metric: `function RSS after ${fmt.int(sent)} ingests`,
        postgres: fmt.mb(last.rssMb),
      },
      { section: "4 memory", metric: "function peak RSS (VmHWM)", postgres: fmt.mb(last.peakRssMb) },
    ];
    return {
      rows,
      targets: [
        check(
          "function RSS after the ingests (peak)",
          "≤ 150 MB",
          last.peakRssMb,
          fmt.mb(last.peakRssMb),
          (v) => v <= 150,
          note,
        ),
      ],
      data: { ingests: sent, seconds, concurrency: ctx.connections, samples },
    };
  },
};
