// Item 3 of issue 6: does a query get slower as webhook_events grows? Each probe is timed on a table of 10 k
// rows and on one of 1 M (the quick run stops at 50 k), in rounds, the filler bulk-loaded in SQL, mostly
// delivered.
// The forwarder's claim and its write-back are probes of their own (forwarderProbe).
import { type BenchContext, type BenchSection, check, fmt, type ResultRow } from "../lib/context.ts";
import { type BenchDb, createServerDb, ingestScript, runPgbench, stagePayloads } from "../lib/pg.ts";
import { buildBodies } from "../lib/pool.ts";
import { alternatingOrder, medianOfRoundRatios, percentile, ratio } from "../lib/stats.ts";

export interface GrowthProbe {
  name: string;
  /** Held to the ≤ 1.5× bar (the probes); otherwise reported for context. */
  target: boolean;
  /** Mean milliseconds per operation at the current table size; leaves the table as it found it. */
  measure(ctx: BenchContext, db: BenchDb): Promise<ProbeResult>;
}

export interface ProbeResult {
  meanMs: number;
  opsPerS: number;
  /** The statement's plan, where the probe reads it: its estimated cost, and whether Postgres compiled it. */
  plan?: { cost: number; jit: boolean };
}

/** The ingest upsert, single client (so the figure is the statement's own cost), fresh keys each time. */
export const ingestUpsertProbe: GrowthProbe = {
  name: "ingest upsert (ingest_webhook_event)",
  target: true,
  async measure(ctx, db) {
    const [{ n }] = await db.sql<{ n: number }[]>`select count(*)::int as n from bench_payloads`;
    await db.sql`select setval('bench_cursor', 1, false)`;
    // Each staged payload once: every call stores a new key, as most of Chatwoot's traffic does.
    const r = await runPgbench({
      url: db.url,
      script: ingestScript(n),
      clients: 1,
      durationS: 0,
      transactions: n,
      workDir: ctx.workDir,
    });
    // Remove what the probe added so the next size starts from filler only.
    await db.sql`delete from public.webhook_events e using bench_payloads p where e.event_key = p.event_key`;
    await db.sql`vacuum public.webhook_events`;
    return { meanMs: r.latencyMeanMs, opsPerS: r.tps };
  },
};

const CLAIM_BATCH = 10;

/**
 * The forwarder's two statements per batch, single client, timed separately: `claim` times
 * claim_webhook_events (batch of 10, as the forwarder sends it), `write-back` times
 * complete_webhook_deliveries with ten 200 answers for what was just claimed. The probe inserts its own
 * pending rows (one conversation each, due now), claims them all batch by batch, and removes them again.
 */
export function forwarderProbe(kind: "claim" | "write-back"): GrowthProbe {
  return {
    name: kind === "claim"
      ? `forwarder claim (claim_webhook_events, batch ${CLAIM_BATCH})`
      : `forwarder write-back (complete_webhook_deliveries, batch ${CLAIM_BATCH})`,
    target: true,
    async measure(ctx, db) {
      const cycles = ctx.quick ? 60 : 300;
      const warmup = 10;
      const pending = (cycles + warmup) * CLAIM_BATCH;
      await db.sql.unsafe(
        `insert into public.webhook_events (event_key, event, message_id, conversation_id, account_id,
           inbox_id, payload, raw_body, body_sha256, verified_by, status, received_at, last_received_at,
           next_attempt_at)
         select 'probe:' || g, 'message_created', 800000000 + g, 800000000 + g, 1, 1,
           jsonb_build_object('event', 'message_created', 'id', 800000000 + g),
           '{"event":"message_created","id":' || (800000000 + g) || '}',
           md5(g::text) || md5((g + 1)::text), 'signature', 'pending', now(), now(), now() - interval '1 second'
         from generate_series(1, $1::int) g`,
        [pending],
      );
      await db.sql`analyze public.webhook_events`;
      const worker = `bench-probe:${crypto.randomUUID().slice(0, 8)}`;
      let claimMs = 0, writeBackMs = 0, timed = 0;
      try {
        for (let i = 0; i < cycles + warmup; i++) {
          const t0 = performance.now();
          const claimed = await db.sql<{ id: string; attempt: number; version: number }[]>`
            select id, event_key, event, version, attempt, raw_body, agent_sdk_url_override, request_timeout_ms
              from public.claim_webhook_events(${worker}, ${CLAIM_BATCH})`;
          const t1 = performance.now();
          if (claimed.length !== CLAIM_BATCH) {
            throw new Error(`claim returned ${claimed.length} events, expected ${CLAIM_BATCH}`);
          }
          const startedAt = new Date().toISOString();
          const results = claimed.map((c) => ({
            id: c.id,
            attempt: c.attempt,
            version: c.version,
            started_at: startedAt,
            duration_ms: 1,
            http_status: 200,
            error: null,
            response_excerpt: '{"ok":true}',
            retry_after_seconds: null,
          }));
          await db.sql`
            select event_id, attempt, outcome, status, next_attempt_at
              from public.complete_webhook_deliveries(${worker}, ${JSON.stringify(results)}::text::jsonb)`;
          const t2 = performance.now();
          if (i < warmup) continue;
          claimMs += t1 - t0;
          writeBackMs += t2 - t1;
          timed++;
        }
      } finally {
        await db.sql`delete from public.webhook_events where event_key like 'probe:%'`;
        await db.sql`vacuum public.webhook_events`;
      }
      const meanMs = (kind === "claim" ? claimMs : writeBackMs) / timed;
      return { meanMs, opsPerS: 1000 / meanMs };
    },
  };
}

/**
 * One read of webhook_pipeline_health (what `deno task stats` and dashboards read; the readiness check reads
 * webhook_delivery_health and webhook_events through the same per-status indexes), single client. Reported,
 * not held to the bar: part of its work is counting the dead letters (2 % of the filler, never pruned), which
 * grows with them by design; the hour and day counts read the same recent traffic at both sizes (fillEvents),
 * and the rest must not grow.
 */
export const pipelineHealthProbe: GrowthProbe = {
  name: "pipeline health view (select * from webhook_pipeline_health)",
  target: false,
  async measure(ctx, db) {
    const reads = ctx.quick ? 20 : 100;
    await db.sql`select * from public.webhook_pipeline_health`;
    const t0 = performance.now();
    for (let i = 0; i < reads; i++) await db.sql`select * from public.webhook_pipeline_health`;
    const meanMs = (performance.now() - t0) / reads;
    // A plan whose estimate passes jit_above_cost is compiled at every read (60-70 ms here, ten times the
    // view's work): the 13:49 run of 2026-12-01 read 76-80 ms at 1 M rows from that alone. Said beside the time.
    const [{ "QUERY PLAN": explained }] = await db.sql.unsafe(
      "explain (analyze, format json) select * from public.webhook_pipeline_health",
    );
    const [top] = explained as Array<{ Plan: { "Total Cost": number }; JIT?: { Functions?: number } }>;
    return {
      meanMs,
      opsPerS: 1000 / meanMs,
      plan: { cost: top.Plan["Total Cost"], jit: (top.JIT?.Functions ?? 0) > 0 },
    };
  },
};

export const GROWTH_PROBES: GrowthProbe[] = [
  ingestUpsertProbe,
  forwarderProbe("claim"),
  forwarderProbe("write-back"),
  pipelineHealthProbe,
];

/** The newest rows of every size, 1 s apart (the last 2.8 h): each database has the same recent traffic. */
export const FILL_RECENT_ROWS = 10_000;

/**
 * Adds rows to webhook_events up to `total`, in one statement: 97% delivered, 2% dead, 1% skipped (nothing
 * pending, so a claim query has to skip past history). Bodies are small: index paths are what is measured.
 * Like a real history, each delivered event has its 'delivered' attempt (at delivered_at) and each dead one
 * its 'dead' report: without them webhook_pipeline_health's hour and day counts read empty indexes. The
 * newest FILL_RECENT_ROWS are 1 s apart in every size and the rows before them lie between 1 and 29 days back
 * (inside the 30 days of retention), so a larger table is a longer history, not more traffic in the last day:
 * at 1 s apart throughout, 1 M rows' last day held 86 400 events against 10 k's 10 000.
 */
export async function fillEvents(db: BenchDb, total: number): Promise<void> {
  const [{ n }] = await db.sql<{ n: number }[]>`select count(*)::int as n from public.webhook_events`;
  if (n >= total) return;
  await db.sql.unsafe(
    `
    with added as (
      insert into public.webhook_events (event_key, event, message_id, conversation_id, account_id, inbox_id,
        delivery_id, payload, raw_body, body_sha256, verified_by, status, attempts, received_at,
        last_received_at, delivered_at, next_attempt_at)
      select 'message:' || (500000000 + g) || ':message_created', 'message_created', 500000000 + g,
        1 + g % 20000, 1, 1 + g % 8, md5(g::text),
        jsonb_build_object('event', 'message_created', 'id', 500000000 + g, 'content', 'filler ' || g),
        '{"event":"message_created","id":' || (500000000 + g) || ',"content":"filler ' || g || '"}',
        md5(g::text) || md5((g + 1)::text), 'signature',
        case when g % 100 = 0 then 'skipped' when g % 50 = 1 then 'dead' else 'delivered' end,
        1, t.at, t.at, case when g % 100 = 0 or g % 50 = 1 then null else t.at end, null
      from generate_series($1::int + 1, $2::int) g,
        lateral (select now() - make_interval(secs => case
          when g > $2::int - $3::int then $2::int - g
          else 86400 + ($2::int - $3::int - g) * (28 * 86400.0 / greatest($2::int - $3::int, 1))
        end) as at) t
      returning id, status, received_at, delivered_at
    )
    insert into public.webhook_delivery_attempts (event_id, attempt, version, worker, started_at, duration_ms,
      http_status, succeeded, outcome, recorded_at)
    select a.id, 1, 1, 'bench-fill', coalesce(a.delivered_at, a.received_at) - interval '5 milliseconds', 5,
      case when a.status = 'delivered' then 200 else 410 end, a.status = 'delivered',
      case when a.status = 'delivered' then 'delivered' else 'dead' end, coalesce(a.delivered_at, a.received_at)
    from added a
    where a.status in ('delivered', 'dead')`,
    [n, total, FILL_RECENT_ROWS],
  );
  await db.sql`vacuum analyze public.webhook_events`;
  await db.sql`vacuum analyze public.webhook_delivery_attempts`;
}

/** The two sizes are probed in this many rounds (one in a quick run); see growthSection. */
export const GROWTH_ROUNDS = 3;

const sizeLabel = (n: number) => n >= 1_000_000 ? `${n / 1_000_000} M` : `${n / 1_000} k`;

export const growthSection: BenchSection = {
  name: "growth",
  title: "3. Growth: 10 k rows vs 1 M rows",
  async run(ctx) {
    const sizes = ctx.quick ? [10_000, 50_000] : [10_000, 1_000_000];
    const payloads = ctx.quick ? 1_000 : 6_000;
    const roundCount = ctx.quick ? 1 : GROWTH_ROUNDS;
    type Timing = ProbeResult & { rows: number; round: number };
    const timings: Record<string, Timing[]> = {};
    const loadS: Record<number, number> = {};
    // One database per size, probed in turn, the order flipped every round: the probes' commits wait on the
    // shared disk, whose speed drifts by the minute (a full run saw the upsert at 0.91 ms at 10 k rows and
    // 1.64 ms at 1 M from that alone, 1.13× in a growth-only run right after).
    const dbs = new Map<number, BenchDb>();
    try {
      for (const rows of sizes) {
        const db = await createServerDb(ctx.serverUrl, `growth_${rows}`);
        dbs.set(rows, db);
        await stagePayloads(db.sql, buildBodies({ count: payloads, seed: 33, duplicateShare: 0 }));
        const t0 = performance.now();
        await fillEvents(db, rows);
        loadS[rows] = (performance.now() - t0) / 1000;
        ctx.log(`  ${rows} rows in webhook_events (loaded in ${loadS[rows].toFixed(1)} s)`);
      }
      for (let round = 0; round < roundCount; round++) {
        for (const rows of alternatingOrder(sizes, round)) {
          ctx.log(`  round ${round + 1}/${roundCount}, ${rows} rows:`);
          for (const probe of GROWTH_PROBES) {
            const r = await probe.measure(ctx, dbs.get(rows)!);
            (timings[probe.name] ??= []).push({ rows, round, ...r });
            ctx.log(`    ${probe.name}: ${fmt.ms(r.meanMs)} mean, ${fmt.rate(r.opsPerS)} single client`);
          }
        }
      }
    } finally {
      for (const db of dbs.values()) await db.close();
    }
    const [small, large] = sizes;
    const targetNames = new Set(GROWTH_PROBES.filter((p) => p.target).map((p) => p.name));
    const rows: ResultRow[] = [];
    const ratios: Record<string, number | null> = {};
    const roundRatios: Record<string, (number | null)[]> = {};
    const byRound = (name: string) => roundRatios[name].map((r) => fmt.ratio(r)).join(", ");
    for (const [name, t] of Object.entries(timings)) {
      const at = (size: number, round: number) => t.find((x) => x.rows === size && x.round === round)?.meanMs;
      const median = (size: number) => percentile(t.filter((x) => x.rows === size).map((x) => x.meanMs), 50);
      const rounds = [...Array(roundCount).keys()].map((round) => ({
        a: at(large, round),
        b: at(small, round),
      }));
      roundRatios[name] = rounds.map((r) => ratio(r.a, r.b));
      ratios[name] = medianOfRoundRatios(rounds);
      const medianNote = roundCount > 1 ? `the median of ${roundCount} rounds'` : undefined;
      // Where the probe read its plan: the highest estimate of the rounds, and in how many JIT compiled it.
      const note = (size: number) => {
        const plans = t.filter((x) => x.rows === size && x.plan).map((x) => x.plan!);
        if (!plans.length) return medianNote;
        const cost = Math.max(...plans.map((p) => p.cost)).toFixed(0);
        const jit = `JIT in ${plans.filter((p) => p.jit).length} of ${plans.length}`;
        return [medianNote, `planned cost up to ${cost}, ${jit}`].filter(Boolean).join("; ");
      };
      rows.push(
        {
          section: "3 growth",
          metric: `${name} at ${sizeLabel(small)} rows`,
          postgres: fmt.ms(median(small)),
          note: note(small),
        },
        {
          section: "3 growth",
          metric: `${name} at ${sizeLabel(large)} rows`,
          postgres: fmt.ms(median(large)),
          note: note(large),
        },
        {
          section: "3 growth",
          metric: `${name}: ${sizeLabel(large)} ÷ ${sizeLabel(small)}`,
          postgres: fmt.ratio(ratios[name]),
          note: roundCount > 1 ? `the median of the rounds' ratios; by round: ${byRound(name)}` : undefined,
        },
      );
    }
    return {
      rows,
      // One bar per target probe: the forwarder's claim query is held to the same ≤ 1.5×.
      targets: Object.entries(ratios).filter(([name]) => targetNames.has(name)).map(([name, r]) =>
        check(
          `growth ratio, ${name} (${sizeLabel(large)} ÷ ${sizeLabel(small)})`,
          "≤ 1.5×",
          r,
          roundCount > 1 ? `${fmt.ratio(r)} (by round: ${byRound(name)})` : fmt.ratio(r),
          (v) => v <= 1.5,
          ctx.quick ? "quick run: 50 k, not 1 M" : undefined,
        )
      ),
      data: {
        sizes,
        rounds: roundCount,
        upsertsPerProbe: payloads,
        clients: 1,
        loadS,
        timings,
        ratios,
        roundRatios,
      },
    };
  },
};
