import assert from "node:assert/strict";
import {
  alternatingOrder,
  medianOfRoundRatios,
  percentile,
  ratio,
  seededRandom,
  summarize,
} from "../bench/lib/stats.ts";
import { dbIndependentTest } from "./_db.ts";

dbIndependentTest("percentile uses the nearest rank on unsorted samples", () => {
  const samples = [5, 1, 4, 2, 3, 10, 9, 8, 7, 6];
  assert.equal(percentile(samples, 50), 5);
  assert.equal(percentile(samples, 95), 10);
  assert.equal(percentile(samples, 10), 1);
  assert.equal(percentile(samples, 0), 1);
  assert.equal(percentile(samples, 100), 10);
  assert.deepEqual(samples, [5, 1, 4, 2, 3, 10, 9, 8, 7, 6], "input is not reordered");
});

dbIndependentTest("percentile of 100 samples 1..100 is the sample of that rank", () => {
  const samples = Array.from({ length: 100 }, (_, i) => 100 - i);
  assert.equal(percentile(samples, 99), 99);
  assert.equal(percentile(samples, 99.5), 100);
  assert.equal(percentile(samples, 1), 1);
});

dbIndependentTest("percentile of nothing is NaN and rejects out-of-range p", () => {
  assert.ok(Number.isNaN(percentile([], 50)));
  assert.throws(() => percentile([1], 101), RangeError);
  assert.throws(() => percentile([1], -1), RangeError);
});

dbIndependentTest("summarize reports count, percentiles, max and mean", () => {
  const s = summarize([4, 1, 3, 2]);
  assert.deepEqual(s, { count: 4, p50: 2, p95: 4, p99: 4, max: 4, mean: 2.5 });
});

dbIndependentTest("ratio is null when it cannot be stated", () => {
  assert.equal(ratio(3, 4), 0.75);
  assert.equal(ratio(3, 0), null);
  assert.equal(ratio(null, 4), null);
  assert.equal(ratio(3, NaN), null);
});

dbIndependentTest("seededRandom repeats for a seed and differs between seeds", () => {
  const a = seededRandom(42), b = seededRandom(42), c = seededRandom(43);
  const xs = Array.from({ length: 5 }, a);
  assert.deepEqual(Array.from({ length: 5 }, b), xs);
  assert.notDeepEqual(Array.from({ length: 5 }, c), xs);
  assert.ok(xs.every((x) => x >= 0 && x < 1));
});

dbIndependentTest(
  "medianOfRoundRatios takes the median of the rounds' own ratios, skipping rounds without one",
  () => {
    // Ratio of medians would be 3 ÷ 2 = 1.5; the rounds' own ratios are 1.0, 1.1 and 3.0.
    assert.equal(medianOfRoundRatios([{ a: 1, b: 1 }, { a: 2.2, b: 2 }, { a: 3, b: 1 }]), 1.1);
    assert.equal(medianOfRoundRatios([{ a: 2, b: 1 }, { a: null, b: 1 }, { a: 1, b: 0 }]), 2);
    assert.equal(medianOfRoundRatios([{ a: undefined, b: 1 }]), null);
    assert.equal(medianOfRoundRatios([]), null);
  },
);

dbIndependentTest("alternatingOrder flips the order every other round and leaves its input alone", () => {
  const sizes = [10_000, 1_000_000];
  assert.deepEqual([0, 1, 2, 3].map((round) => alternatingOrder(sizes, round)), [
    [10_000, 1_000_000],
    [1_000_000, 10_000],
    [10_000, 1_000_000],
    [1_000_000, 10_000],
  ]);
  assert.deepEqual(sizes, [10_000, 1_000_000]);
});
