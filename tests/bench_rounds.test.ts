import assert from "node:assert/strict";
import { combineWrkRuns, type WrkResult } from "../bench/lib/wrk.ts";
import { combinePgbenchRuns, type PgbenchResult } from "../bench/lib/pg.ts";
import { dbIndependentTest } from "./_db.ts";

function wrkRun(requests: number, durationS: number, p99: number, status = 0): WrkResult {
  return {
    requests,
    durationS,
    requestsPerS: requests / durationS,
    errors: { connect: 0, read: 0, write: 0, status, timeout: 0 },
    latencyMs: {
      p50: p99 / 4,
      p90: p99 / 2,
      p95: p99 / 1.5,
      p99,
      p999: p99 * 2,
      max: p99 * 3,
      mean: p99 / 3,
    },
  };
}

dbIndependentTest(
  "combineWrkRuns: the rate is over all requests and seconds, not the mean of the rates",
  () => {
    const combined = combineWrkRuns([wrkRun(1_000, 5, 20), wrkRun(3_000, 5, 10), wrkRun(2_000, 10, 40, 2)]);
    assert.equal(combined.requests, 6_000);
    assert.equal(combined.durationS, 20);
    assert.equal(combined.requestsPerS, 300); // the mean of 200, 600 and 200 would be 333
    assert.equal(combined.errors.status, 2);
    assert.equal(combined.latencyMs.p99, 20, "each percentile is the median of the runs'");
    assert.equal(combined.latencyMs.max, 60);
    assert.equal(combined.targetRate, undefined);
    assert.throws(() => combineWrkRuns([]), RangeError);
  },
);

dbIndependentTest("combineWrkRuns of one run is that run", () => {
  const run = wrkRun(1_234, 2, 7);
  assert.deepEqual(combineWrkRuns([run]), run);
});

function pgbenchRun(tps: number, transactions: number, latencyMeanMs: number): PgbenchResult {
  return { tps, transactions, latencyMeanMs, clients: 16, durationS: 5 };
}

dbIndependentTest(
  "combinePgbenchRuns: transactions over the runs' measured seconds, the mean latency weighted",
  () => {
    const combined = combinePgbenchRuns([pgbenchRun(2_000, 10_000, 8), pgbenchRun(1_000, 5_000, 16)]);
    assert.equal(combined.transactions, 15_000);
    assert.equal(combined.durationS, 10);
    assert.equal(combined.tps, 1_500);
    assert.equal(combined.latencyMeanMs, (8 * 10_000 + 16 * 5_000) / 15_000);
    assert.equal(combined.clients, 16);
    assert.throws(() => combinePgbenchRuns([]), RangeError);
  },
);
