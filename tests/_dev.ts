// The project's scripts as real subprocesses for tests: `deno task dev` (on free ports, ready once it prints
// "Ready:"), and the CLI scripts run against a given database.
const ROOT = new URL("..", import.meta.url).pathname;

export interface DevProcess {
  base: string;
  databaseUrl: string;
  lines: string[];
  /** Sends `signal` (a second SIGTERM or SIGINT makes the dev server quit at once). */
  kill(signal: Deno.Signal): void;
  /** Settles when the process has exited and `lines` holds all it printed. */
  status: Promise<Deno.CommandStatus>;
  stop(): Promise<Deno.CommandStatus>;
}

/**
 * `deno run scripts/dev.ts` on free ports (unless `env` names them), without the test run's own database or
 * secret settings.
 */
export function devCommand(env: Record<string, string>): Deno.Command {
  const parentEnv = Deno.env.toObject();
  delete parentEnv.DATABASE_URL;
  delete parentEnv.SUPABASE_DB_URL;
  delete parentEnv.CHATWOOT_WEBHOOK_SECRET;
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "scripts/dev.ts"],
    cwd: ROOT,
    clearEnv: true,
    env: { ...parentEnv, PORT: "0", DB_PORT: "0", NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  });
}

/** Starts `deno run scripts/dev.ts` on free ports and waits for its "Ready:" line. */
export async function startDev(env: Record<string, string>): Promise<DevProcess> {
  const child = devCommand(env).spawn();
  const lines: string[] = [];
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stderrDrained = child.stderr.pipeTo(
    new WritableStream({ write: (chunk) => void lines.push(new TextDecoder().decode(chunk)) }),
  )
    .catch(() => {});
  let buffered = "";
  let base = "", databaseUrl = "";
  // A liveness bound: starting PGlite and migrating a new data folder took 45-60 s on a loaded machine.
  const deadline = Date.now() + 180_000;
  while (!base) {
    if (Date.now() > deadline) throw new Error(`dev server did not start:\n${lines.join("\n")}`);
    const { value, done } = await reader.read();
    if (done) throw new Error(`dev server exited:\n${lines.join("\n")}`);
    buffered += value;
    const parts = buffered.split("\n");
    buffered = parts.pop()!;
    for (const line of parts) {
      lines.push(line);
      const db = /^\s+database\s+(\S+)/.exec(line);
      if (db) databaseUrl = db[1];
      const ready = /^Ready: (http:\/\/\S+)\/functions\/v1\//.exec(line);
      if (ready) base = ready[1];
    }
  }
  // Keep draining stdout so the child never blocks on a full pipe.
  const stdoutDrained = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      lines.push(value);
    }
  })().catch(() => {});
  const status = child.status.then(async (exit) => {
    await Promise.all([stderrDrained, stdoutDrained]);
    return exit;
  });
  let stopped: Promise<Deno.CommandStatus> | undefined;
  return {
    base,
    databaseUrl,
    lines,
    kill: (signal) => child.kill(signal),
    status,
    /** Stops it (once, however often called; a no-op once it exited); `lines` then holds all it printed. */
    stop() {
      stopped ??= (async () => {
        try {
          child.kill("SIGTERM");
        } catch {
          // It exited already (its output may still be draining).
        }
        return await status;
      })();
      return stopped;
    },
  };
}

export interface ScriptRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `deno run -A <script> <args>` from the project root with DATABASE_URL set to `databaseUrl`. */
export async function runScript(
  script: string,
  args: string[],
  databaseUrl: string,
  env: Record<string, string> = {},
): Promise<ScriptRun> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
    cwd: ROOT,
    env: { DATABASE_URL: databaseUrl, NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}
