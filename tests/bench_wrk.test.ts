// The benchmark's paced load: latency counted from each request's slot in the schedule, so that requests kept
// waiting for their connection while the server stalls count as late, by as long as they waited.
import assert from "node:assert/strict";
import { parseWrkOutput, runWrk } from "../bench/lib/wrk.ts";
import { WRK_POOL_SEPARATOR } from "../bench/lib/pool.ts";
import { dbIndependentTest } from "./_db.ts";

const BENCH_JSON = 'BENCH_JSON {"requests":7,"duration_us":1000000,"bytes":500,' +
  '"errors":{"connect":0,"read":0,"write":0,"status":0,"timeout":0},' +
  '"latency_us":{"p50":1000,"p90":2000,"p95":2000,"p99":3000,"p999":3000,"max":3000,"mean":1800.0}}';

dbIndependentTest(
  "parseWrkOutput: a paced run's latency comes from the schedule, wrk's own is kept beside it",
  () => {
    const stdout = (paced: string) =>
      [
        "Running 1s test",
        BENCH_JSON,
        "BENCH_SLOT_US 1000,90000",
        "BENCH_SLOT_US ",
        "BENCH_SLOT_US 2000,3000,4000",
        paced,
      ].join("\n");
    const r = parseWrkOutput(stdout('BENCH_PACED {"requests":5}'), 5);
    // The requests scheduled within wrk's measured second, not wrk's own 7 (threads send before its clock starts).
    assert.equal(r.requests, 5);
    assert.equal(r.requestsPerS, 5);
    assert.equal(r.targetRate, 5);
    assert.deepEqual(r.latencyMs, { p50: 3, p90: 90, p95: 90, p99: 90, p999: 90, max: 90, mean: 20 });
    assert.equal(r.writeLatencyMs?.p99, 3);
    assert.equal(r.writeLatencyMs?.mean, 1.8);
    assert.throws(
      () => parseWrkOutput(stdout('BENCH_PACED {"requests":6}'), 5),
      /5 latencies for 6 requests/,
    );
  },
);

dbIndependentTest(
  "parseWrkOutput: a run at full speed keeps wrk's own latency; a paced one must bring its own",
  () => {
    const r = parseWrkOutput(BENCH_JSON);
    assert.equal(r.requests, 7);
    assert.equal(r.latencyMs.p99, 3);
    assert.equal(r.writeLatencyMs, undefined);
    assert.equal(r.targetRate, undefined);
    assert.throws(() => parseWrkOutput(BENCH_JSON, 5), /no latencies from its schedule/);
  },
);

// Inside the promise: Command.output() throws at once (not a rejection) when there is no such program.
const hasWrk = await Promise.resolve()
  .then(() => new Deno.Command("wrk", { args: ["-v"], stdout: "null", stderr: "null" }).output())
  .then(() => true, () => false);

dbIndependentTest({
  name: "runWrk paced: requests due while the server stalls count as late, by as long as they waited",
  ignore: !hasWrk, // the benchmark's load generator (apt-get install wrk); CI installs it
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "wrk-pace-" });
    // Holds every request that arrives in [1000, 1300) ms after the first one until 1300 ms: the connections
    // are all busy meanwhile, so the requests due in that window can only be written after it.
    let first: number | null = null;
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
      await req.arrayBuffer();
      const now = performance.now();
      first ??= now;
      const t = now - first;
      if (t >= 1000 && t < 1300) await new Promise((resolve) => setTimeout(resolve, 1300 - t));
      return new Response("ok");
    });
    try {
      const poolFile = `${dir}/pool.bin`;
      const request = "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
        "Content-Length: 2\r\n\r\n{}";
      await Deno.writeTextFile(poolFile, request + WRK_POOL_SEPARATOR);
      const rate = 200, connections = 4;
      const r = await runWrk({
        url: `http://127.0.0.1:${server.addr.port}/`,
        poolFile,
        connections,
        durationS: 3,
        rate,
        workDir: dir,
      });
      assert.ok(r.writeLatencyMs, "wrk's own figures are kept");
      assert.equal(r.errors.status + r.errors.connect + r.errors.read + r.errors.timeout, 0);
      // Paced: about 600 requests in 3 s, not as many as the server could take.
      assert.ok(r.requests >= 0.9 * rate * 3 && r.requests <= 1.05 * rate * 3, `${r.requests} requests`);
      // 60 of the ~600 slots fall in the 300 ms stall, each late by the rest of it: 0–300 ms, evenly spread. So
      // the 5 % latest requests (~30) waited ~150 ms, and most (those due outside the stall) are on time. The
      // upper bounds leave room for a machine loaded by the other test files (CI runs them in parallel);
      // counted from the write, or from a misplaced schedule, the figures would be ~1 ms or seconds. Not p90
      // for "on time": it sits at the stall's edge (its 60th latest request is the stall's least late), so some
      // 20 requests a busy machine made 100 ms late anywhere in the 3 s moved it past 100 ms (1 run in 10).
      assert.ok(
        r.latencyMs.p95 >= 90 && r.latencyMs.p95 <= 260,
        `from the schedule: p95 ${r.latencyMs.p95} ms`,
      );
      assert.ok(r.latencyMs.p50 < 100, `from the schedule: p50 ${r.latencyMs.p50} ms`);
      assert.ok(r.latencyMs.max >= 250, `from the schedule: max ${r.latencyMs.max} ms`);
    } finally {
      await server.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
