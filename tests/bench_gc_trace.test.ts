// The GC trace summary of bench/profile_half_rate.ts, on lines as V8 15's --trace-gc-nvp prints them.
import assert from "node:assert/strict";
import { summarizeGcTrace } from "../bench/lib/gc_trace.ts";
import { dbIndependentTest } from "./_db.ts";

const line = (ms: number, fields: Record<string, unknown>) =>
  `[11764:0x558fa4ad8000:0]    ${ms} ms: GC: ${
    JSON.stringify({ mutator: 7.5, reason: "allocation failure", ...fields })
  }`;

dbIndependentTest("gc trace: counts scavenges and mark-compacts, medians per scavenge, pauses", () => {
  const text = [
    "Listening on http://127.0.0.1:8000/",
    line(30, { pause: 0.5, gc: "s", allocated: 5_000_000, promoted: 1_000_000 }),
    line(85, { pause: 0.9, gc: "s", allocated: 6_000_000, promoted: 1_200_000 }),
    line(140, { pause: 2.5, gc: "mc", reason: "finalize incremental marking via task" }),
    line(190, { pause: 0.7, gc: "s", allocated: 7_000_000, promoted: 100_000 }),
    "[11764:0x558fa4ad8000:0]       30 ms: Memory pool: Removed pages: 0, removed large pages: 0",
    `[11764:0x558fa4ad8000:0]      250 ms: GC: {"pause":0.4,"gc":"s","allocated":50`, // cut off at the end
  ].join("\n");
  const s = summarizeGcTrace(text);
  assert.equal(s.scavenges, 3);
  assert.equal(s.markCompacts, 1);
  assert.equal(s.allocatedMbPerScavenge, 6);
  assert.equal(s.promotedMbPerScavenge, 1);
  assert.equal(s.pauseMaxMs, 2.5);
  assert.equal(s.pauseP99Ms, 2.5);
  assert.equal(Math.round(s.pauseTotalMs * 10) / 10, 4.6);
  assert.equal(s.unreadable, 1);
});

dbIndependentTest("gc trace: no collections traced gives zero counts and no figures", () => {
  const s = summarizeGcTrace("Listening on http://127.0.0.1:8000/\n");
  assert.equal(s.scavenges, 0);
  assert.equal(s.markCompacts, 0);
  assert.ok(Number.isNaN(s.promotedMbPerScavenge));
  assert.ok(Number.isNaN(s.pauseMaxMs));
  assert.equal(s.unreadable, 0);
});
