// The function under test, as deployed: its own index.ts in its own process, on a chosen loopback port.
import { type DenoProcess, type ServerProcess, startDenoProcess, startDenoServer } from "./proc.ts";

const FUNCTIONS_DIR = new URL("../../supabase/functions/", import.meta.url);

/** Supabase's memory limit per function (docs: Edge Functions limits); `supabase functions serve` uses it too. */
export const FUNCTION_MEMORY_LIMIT_MB = 256;

/**
 * The V8 heap a deployed function gets. The edge runtime creates each function's isolate with heap limits
 * set from its memory limit (`heap_limits(0, limit)`), and V8 sizes both generations from that maximum;
 * `--max-heap-size` goes through the same V8 rule, so a plain `deno run` with it has a deployed function's
 * heap. Without it, Deno sizes the heap from the machine's RAM (a 4 GB limit and 16 MB semi-spaces on a
 * 24 GB machine), which no deployed function has: that is the "plain deno run" context row.
 */
export const EDGE_RUNTIME_HEAP_FLAGS = `--max-heap-size=${FUNCTION_MEMORY_LIMIT_MB}`;

/** No V8 flags: the heap plain `deno run` sizes from the machine's RAM (`deno task dev`, a self-hosted run). */
export const PLAIN_DENO_HEAP = {
  v8Flags: "",
  note: "no V8 flags: heap sized from the machine's RAM, as deno task dev runs it",
};

/** The V8 flags a function process gets unless told otherwise, and how the result tables name them. */
export function functionHeap(): { v8Flags: string; note: string } {
  const v8Flags = Deno.env.get("BENCH_FUNCTION_V8_FLAGS") ?? EDGE_RUNTIME_HEAP_FLAGS;
  return {
    v8Flags,
    note: v8Flags === EDGE_RUNTIME_HEAP_FLAGS
      ? `--v8-flags=${v8Flags}: a deployed function's heap (edge runtime, ${FUNCTION_MEMORY_LIMIT_MB} MB limit)`
      : `BENCH_FUNCTION_V8_FLAGS=${v8Flags}`,
  };
}

/** Scripts outside a function resolve their imports through the project's deno.json. */
export const PROJECT_IMPORTS = ["--config", new URL("../../deno.json", import.meta.url).pathname];

export function startFunction(
  name: string,
  {
    port,
    databaseUrl,
    env = {},
    v8Flags = functionHeap().v8Flags,
  }: {
    port: number;
    databaseUrl: string;
    env?: Record<string, string>;
    /** The edge runtime's heap unless BENCH_FUNCTION_V8_FLAGS says otherwise; "" for plain `deno run`. */
    v8Flags?: string;
  },
): Promise<ServerProcess> {
  return startDenoServer({
    args: [
      ...(v8Flags ? [`--v8-flags=${v8Flags}`] : []),
      "--no-lock", // the function resolves through its own deno.json; do not write a lockfile beside it
      "--allow-net",
      "--allow-env",
      "--allow-read",
      new URL(`${name}/index.ts`, FUNCTIONS_DIR).pathname,
    ],
    env: { ...env, DATABASE_URL: databaseUrl },
    port,
  });
}

/** A server script of bench/lib/ that needs no imports beyond the runtime's, on `port`. */
function startLibServer(file: string, port: number): Promise<ServerProcess> {
  return startDenoServer({
    args: ["--allow-net", "--allow-env", new URL(file, import.meta.url).pathname],
    env: {},
    port,
  });
}

/** Limit B's server: Deno.serve reading the body and answering 200, nothing else. */
export function startBareServer(port: number): Promise<ServerProcess> {
  return startLibServer("./bare_server.ts", port);
}

/** Limit C's server and the forwarding benchmark's Agent SDK stand-in (answers 200, records arrivals). */
export function startSinkServer(port: number): Promise<ServerProcess> {
  return startLibServer("./sink_server.ts", port);
}

/**
 * `deno task forward` as an operator runs it outside Supabase (LISTEN/NOTIFY plus a periodic sweep), in its
 * own process. Runs from `cwd` so no developer .env is picked up.
 */
export function startForwarderProcess(
  { databaseUrl, agentSdkUrl, agentSdkSecret, batchSize, lanes, sweepMs, cwd }: {
    databaseUrl: string;
    agentSdkUrl: string;
    agentSdkSecret: string;
    batchSize: number;
    lanes: number;
    sweepMs?: number;
    cwd: string;
  },
): DenoProcess {
  return startDenoProcess({
    args: [
      ...PROJECT_IMPORTS,
      "--allow-net",
      "--allow-env",
      "--allow-read",
      new URL("../../scripts/forward.ts", import.meta.url).pathname,
      "--batch",
      String(batchSize),
      "--lanes",
      String(lanes),
      ...(sweepMs ? ["--sweep-ms", String(sweepMs)] : []),
    ],
    env: {
      DATABASE_URL: databaseUrl,
      AGENT_SDK_URL: agentSdkUrl,
      AGENT_SDK_SECRET: agentSdkSecret,
      AGENT_SDK_TOKEN: "",
    },
    cwd,
  });
}
