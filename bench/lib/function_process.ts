// The function under test, as deployed: its own index.ts in its own process, on a chosen loopback port.
import { type DenoProcess, type ServerProcess, startDenoProcess, startDenoServer } from "./proc.ts";

const FUNCTIONS_DIR = new URL("../../supabase/functions/", import.meta.url);
/** Scripts outside a function resolve their imports through the project's deno.json. */
const PROJECT_IMPORTS = ["--config", new URL("../../deno.json", import.meta.url).pathname];

export function startFunction(
  name: string,
  { port, databaseUrl, env = {}, v8Flags = Deno.env.get("BENCH_FUNCTION_V8_FLAGS") }: {
    port: number;
    databaseUrl: string;
    env?: Record<string, string>;
    /** e.g. BENCH_FUNCTION_V8_FLAGS=--max-old-space-size=64 to try a tighter heap, as the edge runtime has. */
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

/** The memory section's floor: Deno.serve + postgres.js storing each body, nothing else. */
export function startStoreOnlyServer(port: number, databaseUrl: string): Promise<ServerProcess> {
  return startDenoServer({
    args: [
      ...PROJECT_IMPORTS,
      "--allow-net",
      "--allow-env",
      new URL("./store_only_server.ts", import.meta.url).pathname,
    ],
    env: { DATABASE_URL: databaseUrl },
    port,
  });
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
