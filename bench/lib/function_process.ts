// The function under test, as deployed: its own index.ts in its own process, on a chosen loopback port.
import { type ServerProcess, startDenoServer } from "./proc.ts";

const FUNCTIONS_DIR = new URL("../../supabase/functions/", import.meta.url);

export function startFunction(
  name: string,
  { port, databaseUrl, env = {} }: { port: number; databaseUrl: string; env?: Record<string, string> },
): Promise<ServerProcess> {
  return startDenoServer({
    args: [
      // e.g. BENCH_FUNCTION_V8_FLAGS=--max-old-space-size=64 to try a tighter heap, as the edge runtime has
      ...(Deno.env.get("BENCH_FUNCTION_V8_FLAGS")
        ? [`--v8-flags=${Deno.env.get("BENCH_FUNCTION_V8_FLAGS")}`]
        : []),
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

/** Limit B's server: Deno.serve reading the body and answering 200, nothing else. */
export function startBareServer(port: number): Promise<ServerProcess> {
  return startDenoServer({
    args: ["--allow-net", "--allow-env", new URL("./bare_server.ts", import.meta.url).pathname],
    env: {},
    port,
  });
}
