// V8's `--trace-gc-nvp` output (one "GC: {json}" line per collection on the process's stdout), summed up for
// bench/profile_half_rate.ts: how often each kind of collection ran, how much each scavenge promoted to the
// old generation, and the pauses.
import { percentile, summarize } from "./stats.ts";

export interface GcSummary {
  scavenges: number;
  /** Full (mark-compact) collections, incremental or not. */
  markCompacts: number;
  /** Medians over the scavenges, in MB: allocated since the previous one, and promoted by it. */
  allocatedMbPerScavenge: number;
  promotedMbPerScavenge: number;
  /** Main-thread pauses of all collections, ms. */
  pauseP99Ms: number;
  pauseMaxMs: number;
  pauseTotalMs: number;
  /** "GC:" lines that did not hold readable JSON (cut off at the end of the output, say). */
  unreadable: number;
}

interface GcEvent {
  gc: string;
  pause: number;
  allocated?: number;
  promoted?: number;
}

export function summarizeGcTrace(text: string): GcSummary {
  const events: GcEvent[] = [];
  let unreadable = 0;
  for (const line of text.split("\n")) {
    const at = line.indexOf("GC: {");
    if (at < 0) continue;
    try {
      const event = JSON.parse(line.slice(at + 4)) as GcEvent;
      if (typeof event.gc !== "string" || typeof event.pause !== "number") throw new Error("not a GC event");
      events.push(event);
    } catch {
      unreadable++;
    }
  }
  const scavenges = events.filter((e) => e.gc === "s");
  const mb = (bytes: number) => bytes / 1e6;
  const pauseMs = events.map((e) => e.pause);
  const pauses = summarize(pauseMs);
  return {
    scavenges: scavenges.length,
    markCompacts: events.filter((e) => e.gc === "mc").length,
    allocatedMbPerScavenge: mb(percentile(scavenges.map((e) => e.allocated ?? 0), 50)),
    promotedMbPerScavenge: mb(percentile(scavenges.map((e) => e.promoted ?? 0), 50)),
    pauseP99Ms: pauses.p99,
    pauseMaxMs: pauses.max,
    pauseTotalMs: pauseMs.reduce((sum, p) => sum + p, 0),
    unreadable,
  };
}
