import type { BenchSection } from "../lib/context.ts";
export const growthSection: BenchSection = {
  name: "growth",
  title: "3. Growth",
  run: () => Promise.resolve({ rows: [], targets: [], data: {} }),
};
