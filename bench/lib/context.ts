// What every benchmark section receives and returns. A section is one module exporting a BenchSection;
// bench/sections/mod.ts lists them in the order they run.

export interface BenchContext {
  /** Small run for CI: shorter phases, fewer rows; figures are for smoke only. */
  quick: boolean;
  /** PostgreSQL server to create (and drop) benchmark databases on. */
  serverUrl: string;
  /** Scratch directory, removed after the run. */
  workDir: string;
  /** HTTP connections of the load generator = pgbench clients. */
  connections: number;
  /** Seconds per measured load phase. */
  phaseSeconds: number;
  /** Seconds of unrecorded warm-up before each measured phase. */
  warmupSeconds: number;
  /** CHATWOOT_WEBHOOK_SECRET given to the function under test. */
  secret: string;
  log(line: string): void;
}

/** One line of the printed table. */
export interface ResultRow {
  section: string;
  metric: string;
  postgres?: string;
  pglite?: string;
  note?: string;
}

/** A bar from issue 6 and where this run stands. */
export interface TargetCheck {
  target: string;
  bar: string;
  value: number | null;
  display: string;
  /** null when this run could not measure it. */
  met: boolean | null;
  note?: string;
}

export interface SectionResult {
  rows: ResultRow[];
  targets: TargetCheck[];
  /** Raw figures for results.json. */
  data: Record<string, unknown>;
}

export interface BenchSection {
  name: string;
  title: string;
  run(ctx: BenchContext): Promise<SectionResult>;
}

export const fmt = {
  rate: (n: number | null | undefined) => n == null || !Number.isFinite(n) ? "n/a" : `${Math.round(n)}/s`,
  ms: (n: number | null | undefined) => n == null || !Number.isFinite(n) ? "n/a" : `${n.toFixed(2)} ms`,
  mb: (n: number | null | undefined) => n == null || !Number.isFinite(n) ? "n/a" : `${n.toFixed(1)} MB`,
  ratio: (n: number | null | undefined) => n == null || !Number.isFinite(n) ? "n/a" : `${n.toFixed(2)}×`,
  pct: (n: number | null | undefined) =>
    n == null || !Number.isFinite(n) ? "n/a" : `${(n * 100).toFixed(0)}%`,
  int: (n: number | null | undefined) => n == null || !Number.isFinite(n) ? "n/a" : String(Math.round(n)),
};

export function check(
  target: string,
  bar: string,
  value: number | null,
  display: string,
  passes: (v: number) => boolean,
  note?: string,
): TargetCheck {
  return {
    target,
    bar,
    value,
    display,
    met: value == null ? null : passes(value),
    ...(note ? { note } : {}),
  };
}

/** Plain-text table with aligned columns. */
export function textTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => (c ?? "").padEnd(widths[i])).join("  ").trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

export function markdownTable(header: string[], rows: string[][]): string {
  const esc = (s: string) => (s ?? "").replaceAll("|", "\\|");
  return [
    `| ${header.map(esc).join(" | ")} |`,
    `|${header.map(() => "---").join("|")}|`,
    ...rows.map((r) => `| ${r.map(esc).join(" | ")} |`),
  ].join("\n");
}
