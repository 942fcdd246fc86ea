// Processes a benchmark starts: servers on loopback ports, their memory and CPU from /proc, and clean stops.
import { redact } from "../../scripts/lib/cli.ts";
import { hasUrlScheme } from "../../supabase/functions/_shared/env.ts";

export interface ProcMemory {
  /** Resident set now, MB. */
  rssMb: number;
  /** Peak resident set (VmHWM), MB. */
  peakRssMb: number;
}

export async function procMemory(pid: number): Promise<ProcMemory> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return { rssMb: kb("VmRSS") / 1024, peakRssMb: kb("VmHWM") / 1024 };
}

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** CPU seconds (user + system) a process has used so far. */
export async function procCpuSeconds(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  // Fields after the parenthesised command name; utime and stime are the 14th and 15th fields overall.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** CPU seconds used so far by each process named postgres (backends and the server's own), by pid. */
export async function postgresCpuByPid(): Promise<Map<number, number>> {
  const byPid = new Map<number, number>();
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      if ((await Deno.readTextFile(`/proc/${entry.name}/comm`)).trim() !== "postgres") continue;
      byPid.set(Number(entry.name), await procCpuSeconds(Number(entry.name)));
    } catch { /* exited meanwhile */ }
  }
  return byPid;
}

/**
 * Postgres' CPU seconds since `before` (a postgresCpuByPid() reading), process by process: one started since
 * counts from zero, one that exited since counts nothing. A difference of two plain sums fell by the whole
 * lifetime's CPU of every connection closed in between (the harness' pool closes idle ones after 20 s), and
 * once read as -62 % of a core.
 */
export async function postgresCpuSince(before: Map<number, number>): Promise<number> {
  let total = 0;
  for (const [pid, seconds] of await postgresCpuByPid()) total += seconds - (before.get(pid) ?? 0);
  return total;
}

/** A free loopback TCP port (bound then released, so another process can take it). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

export async function waitForPort(port: number, timeoutMs = 20_000, alive?: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (alive && !alive()) throw new Error(`server for port ${port} exited before listening`);
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error(`nothing listening on 127.0.0.1:${port} after ${timeoutMs} ms`);
}

export interface ServerProcess {
  pid: number;
  port: number;
  /** Last lines of stderr, for error messages. */
  stderrTail(): string;
  stop(): Promise<void>;
}

const running = new Set<ServerProcess>();

export interface DenoProcess {
  pid: number;
  /** Last lines of stderr, for error messages. */
  stderrTail(): string;
  /** False once the process has exited. */
  alive(): boolean;
  /** SIGTERM, then SIGKILL after 3 s. */
  stop(): Promise<void>;
}

const runningProcesses = new Set<DenoProcess>();

/** Stops every server or process still running (for error paths and Ctrl-C). */
export async function stopAllServers(): Promise<void> {
  await Promise.all([...running].map((s) => s.stop()));
  await Promise.all([...runningProcesses].map((p) => p.stop()));
}

/**
 * Runs `deno run <args>` as its own process (stdout dropped unless `stdoutFile` names a file for it, stderr
 * kept for error messages).
 */
export function startDenoProcess(
  { args, env, cwd, stdoutFile }: {
    args: string[];
    env: Record<string, string>;
    cwd?: string;
    stdoutFile?: string;
  },
): DenoProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...args],
    env: { ...env, NO_COLOR: "1" },
    ...(cwd ? { cwd } : {}),
    stdin: "null",
    stdout: stdoutFile ? "piped" : "null", // log lines are written (as in production) and, by default, dropped
    stderr: "piped",
  }).spawn();
  const stdoutCopied = stdoutFile
    ? Deno.open(stdoutFile, { write: true, create: true, truncate: true })
      .then((file) => child.stdout.pipeTo(file.writable))
      .catch(() => {})
    : Promise.resolve();
  let tail = "";
  let exited = false;
  const decoder = new TextDecoder();
  const drain = (async () => {
    for await (const chunk of child.stderr) tail = (tail + decoder.decode(chunk)).slice(-4000);
  })().catch(() => {});
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  let stopped: Promise<void> | null = null;
  const proc: DenoProcess = {
    pid: child.pid,
    stderrTail: () => tail,
    alive: () => !exited,
    stop() {
      stopped ??= (async () => {
        runningProcesses.delete(proc);
        if (!exited) {
          try {
            child.kill("SIGTERM");
          } catch { /* already gone */ }
          const timer = setTimeout(() => {
            try {
              child.kill("SIGKILL");
            } catch { /* already gone */ }
          }, 3000);
          await status;
          clearTimeout(timer);
        }
        await drain;
        await stdoutCopied;
      })();
      return stopped;
    },
  };
  runningProcesses.add(proc);
  return proc;
}

/**
 * Runs `deno run <args>` as its own process. Servers started through Deno.serve() listen where
 * DENO_SERVE_ADDRESS says, so a function's unmodified index.ts can be served on a chosen port.
 */
export async function startDenoServer(
  { args, env, port, waitMs, stdoutFile }: {
    args: string[];
    env: Record<string, string>;
    port: number;
    waitMs?: number;
    stdoutFile?: string;
  },
): Promise<ServerProcess> {
  const proc = startDenoProcess({
    args,
    env: { ...env, DENO_SERVE_ADDRESS: `tcp:127.0.0.1:${port}` },
    stdoutFile,
  });
  const server: ServerProcess = {
    pid: proc.pid,
    port,
    stderrTail: proc.stderrTail,
    async stop() {
      running.delete(server);
      await proc.stop();
    },
  };
  running.add(server);
  try {
    await waitForPort(port, waitMs, proc.alive);
  } catch (error) {
    await server.stop();
    throw new Error(`${(error as Error).message}\n${proc.stderrTail()}`);
  }
  return server;
}

/** Runs a command to completion; throws with its output when it fails. */
export async function runCommand(
  command: string,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<{ stdout: string; stderr: string }> {
  const out = await new Deno.Command(command, { args, ...options, stdin: "null" }).output();
  const decoder = new TextDecoder();
  const stdout = decoder.decode(out.stdout), stderr = decoder.decode(out.stderr);
  if (!out.success) {
    // pgbench is given the database URL: shown without its password (printed, and kept in the report).
    const shown = args.map((arg) => hasUrlScheme(arg) ? redact(arg) : arg);
    throw new Error(
      `${command} ${shown.join(" ")} failed (${out.code}):\n${stderr || stdout}`.slice(0, 4000),
    );
  }
  return { stdout, stderr };
}

export async function commandExists(command: string): Promise<boolean> {
  try {
    await runCommand("sh", ["-c", `command -v ${command}`]);
    return true;
  } catch {
    return false;
  }
}
