// The benchmark's disk probe: paced fdatasyncs of a scratch file, summarised, and nothing left behind.
import assert from "node:assert/strict";
import { startDiskProbe, withDiskProbe } from "../bench/lib/disk_probe.ts";
import { dbIndependentTest } from "./_db.ts";

async function entries(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names;
}

dbIndependentTest("bench: the disk probe times paced fdatasyncs and removes its file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "disk-probe-" });
  try {
    const intervalMs = 20;
    const started = performance.now();
    const probe = await startDiskProbe(dir, intervalMs);
    assert.equal((await entries(dir)).length, 1, "the probe writes one scratch file");
    await new Promise((resolve) => setTimeout(resolve, 300));
    const d = await probe.stop();
    const elapsed = performance.now() - started;

    assert.ok(d.count >= 1, "at least one fdatasync was timed");
    // Paced: never more than one sync per interval (a slow disk only makes fewer).
    assert.ok(d.count <= Math.ceil(elapsed / intervalMs) + 1, `${d.count} syncs in ${elapsed.toFixed(0)} ms`);
    assert.ok(d.p50 >= 0 && d.p50 <= d.p99 && d.p99 <= d.max && Number.isFinite(d.max));
    assert.deepEqual(await entries(dir), [], "the scratch file is gone");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

dbIndependentTest(
  "bench: withDiskProbe returns the phase's result, and cleans up when the phase fails",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "disk-probe-" });
    try {
      const [result, disk] = await withDiskProbe(dir, async () => {
        await new Promise((resolve) => setTimeout(resolve, 120));
        return "phase result";
      });
      assert.equal(result, "phase result");
      assert.ok(disk.count >= 1);

      await assert.rejects(
        withDiskProbe(dir, () => Promise.reject(new Error("phase failed"))),
        /phase failed/,
      );
      assert.deepEqual(await entries(dir), [], "no scratch file left after a failed phase");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
