// Pure helpers for benchmark figures: percentiles, ratios and a deterministic random source.

/** Nearest-rank percentile (p in 0..100) of unsorted samples; NaN for no samples. */
export function percentile(samples: readonly number[], p: number): number {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be within 0..100, got ${p}`);
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1];
}

export interface LatencySummary {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

export function summarize(samples: readonly number[]): LatencySummary {
  const sum = samples.reduce((a, b) => a + b, 0);
  return {
    count: samples.length,
    p50: percentile(samples, 50),
    p95: percentile(samples, 95),
    p99: percentile(samples, 99),
    // (Not Math.max(...samples): a long phase's samples would exceed the arguments a call can take.)
    max: samples.length ? samples.reduce((a, b) => Math.max(a, b), -Infinity) : NaN,
    mean: samples.length ? sum / samples.length : NaN,
  };
}

/** a ÷ b, or null when either side is missing or b is zero (a ratio we cannot state). */
export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a == null || b == null || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return null;
  return a / b;
}

/** mulberry32: a small seeded generator so every run posts the same bodies in the same order. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The median (nearest rank) of each round's a ÷ b, or null when no round gives a ratio. Each round measures
 * both sides back to back, so a drift in the machine's speed across the rounds cancels within a round's ratio.
 */
export function medianOfRoundRatios(
  rounds: readonly { a: number | null | undefined; b: number | null | undefined }[],
): number | null {
  const ratios = rounds.map((r) => ratio(r.a, r.b)).filter((r): r is number => r !== null);
  return ratios.length ? percentile(ratios, 50) : null;
}

/** The order round `round` (from 0) takes `items` in: as given, then reversed, and so on (ABBA…). */
export function alternatingOrder<T>(items: readonly T[], round: number): T[] {
  return round % 2 === 0 ? [...items] : [...items].reverse();
}
