// The sections `deno task bench` runs, in order. A new section is one module plus one line here.
import type { BenchSection } from "../lib/context.ts";
import { ingestSection } from "./ingest.ts";
import { forwardingSection } from "./forwarding.ts";
import { growthSection } from "./growth.ts";
import { memorySection } from "./memory.ts";

export const SECTIONS: BenchSection[] = [ingestSection, forwardingSection, growthSection, memorySection];
