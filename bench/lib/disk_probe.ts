// The disk's own commit latency while a phase runs. Every ingest commits through an fdatasync of Postgres'
// WAL, so a disk that stalls shows up whole in the phase's p99. On a shared virtual disk those stalls come and
// go with other tenants: a probe on an idle machine saw fdatasync take 100-540 ms in bursts, with nothing of
// ours running. Probing during the phase tells such a window apart from a slow build.
import { type LatencySummary, summarize } from "./stats.ts";

const BLOCK = 8192; // one WAL page
const BLOCKS = 128; // a 1 MB file, written in full first, so each later fdatasync flushes data, not metadata

export interface DiskProbe {
  /** Ends the probe, removes its file and summarises the fdatasync latencies (ms) it saw. */
  stop(): Promise<LatencySummary>;
}

/**
 * Writes one 8 KB block and fdatasyncs it every `intervalMs` (20 a second by default: next to a phase's
 * hundreds of commits a second it adds little) in a file under `dir`, which should be on Postgres' disk.
 */
export async function startDiskProbe(dir: string, intervalMs = 50): Promise<DiskProbe> {
  const path = `${dir}/disk_probe_${crypto.randomUUID()}.bin`;
  const file = await Deno.open(path, { read: true, write: true, create: true, truncate: true });
  const block = new Uint8Array(BLOCK).fill(0x5a);
  for (let i = 0; i < BLOCKS; i++) await writeAll(file, block);
  await file.sync();

  const samplesMs: number[] = [];
  let stopping = false;
  const loop = (async () => {
    for (let i = 0; !stopping; i++) {
      const next = performance.now() + intervalMs;
      await file.seek((i % BLOCKS) * BLOCK, Deno.SeekMode.Start);
      await writeAll(file, block);
      const start = performance.now();
      await file.syncData();
      samplesMs.push(performance.now() - start);
      const wait = next - performance.now();
      if (wait > 0 && !stopping) await new Promise((resolve) => setTimeout(resolve, wait));
    }
  })();

  return {
    async stop() {
      stopping = true;
      try {
        await loop;
      } finally {
        file.close();
        await Deno.remove(path).catch(() => {});
      }
      return summarize(samplesMs);
    },
  };
}

/** Runs `phase` with a disk probe beside it: the phase's result and what the disk did meanwhile. */
export async function withDiskProbe<T>(dir: string, phase: () => Promise<T>): Promise<[T, LatencySummary]> {
  const probe = await startDiskProbe(dir);
  let result: T;
  try {
    result = await phase();
  } catch (error) {
    await probe.stop();
    throw error;
  }
  return [result, await probe.stop()];
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let written = 0; written < bytes.length;) written += await file.write(bytes.subarray(written));
}
