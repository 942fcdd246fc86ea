import type { BenchSection } from "../lib/context.ts";
export const memorySection: BenchSection = {
  name: "memory",
  title: "4. Memory",
  run: () => Promise.resolve({ rows: [], targets: [], data: {} }),
};
