// deno task bench [--quick] [--only=ingest,growth,...]
// Runs the benchmarks of issue 6 against PostgreSQL 15 (and PGlite for reference), prints a table and writes
// bench/results.json. BENCH_QUICK=1 is the same as --quick (what CI runs: it checks completion, not speed).
import postgres from "postgres";
import { parseArgsOrExit } from "../scripts/lib/cli.ts";
import {
  type BenchContext,
  markdownTable,
  type ResultRow,
  type SectionResult,
  type TargetCheck,
  textTable,
} from "./lib/context.ts";
import { closeAllDbs } from "./lib/pg.ts";
import { commandExists, runCommand, stopAllServers } from "./lib/proc.ts";
import { SECTIONS } from "./sections/mod.ts";

const { values } = parseArgsOrExit({
  args: Deno.args,
  options: {
    quick: { type: "boolean", default: false },
    only: { type: "string" },
    out: { type: "string", default: new URL("./results.json", import.meta.url).pathname },
  },
}, "usage: deno task bench [--quick] [--only=ingest,forwarding,growth,memory] [--out=FILE]");
const quick = values.quick || ["1", "true", "yes"].includes(Deno.env.get("BENCH_QUICK") ?? "");
const only = values.only?.split(",").map((s) => s.trim());
const sections = SECTIONS.filter((s) => !only || only.includes(s.name));
if (sections.length === 0) {
  console.error(`No section named ${only}. Sections: ${SECTIONS.map((s) => s.name).join(", ")}`);
  Deno.exit(2);
}

for (const tool of ["wrk", "pgbench"]) {
  if (!(await commandExists(tool))) {
    console.error(`${tool} is required: apt-get install -y wrk postgresql-client (pgbench ships with it)`);
    Deno.exit(2);
  }
}

const serverUrl = Deno.env.get("BENCH_DATABASE_URL") ?? "postgresql://postgres@127.0.0.1:5432/postgres";
const workDir = await Deno.makeTempDir({ prefix: "relay-bench-" });
const ctx: BenchContext = {
  quick,
  serverUrl,
  workDir,
  connections: Number(Deno.env.get("BENCH_CONNECTIONS") ?? 16),
  phaseSeconds: Number(Deno.env.get("BENCH_SECONDS") ?? (quick ? 2 : 15)),
  warmupSeconds: quick ? 1 : 3,
  secret: `bench-${crypto.randomUUID()}`,
  log: (line) => console.log(line),
};

let interrupted = false;
const cleanup = async () => {
  await stopAllServers();
  await closeAllDbs();
  await Deno.remove(workDir, { recursive: true }).catch(() => {});
};
Deno.addSignalListener("SIGINT", () => {
  if (interrupted) Deno.exit(130);
  interrupted = true;
  console.error("\ninterrupted: stopping servers and dropping benchmark databases");
  cleanup().finally(() => Deno.exit(130));
});

const startedAt = new Date();
const machine = await describeMachine(serverUrl);
console.log(
  `Chatwoot Relay benchmarks (${
    quick ? "quick run: smoke figures only" : "full run"
  }) on ${machine.cpuModel}, ` +
    `${machine.nproc} CPUs, load average ${machine.loadAverageAtStart}`,
);

const results: Record<string, SectionResult> = {};
const failures: Record<string, string> = {};
try {
  for (const section of sections) {
    console.log(`\n${section.title}`);
    const t0 = performance.now();
    try {
      results[section.name] = await section.run(ctx);
    } catch (error) {
      failures[section.name] = (error as Error).stack ?? String(error);
      console.error(`  FAILED: ${(error as Error).message}`);
    }
    console.log(`  (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  }
} finally {
  await cleanup();
}

const rows: ResultRow[] = Object.values(results).flatMap((r) => r.rows);
const targets: TargetCheck[] = Object.values(results).flatMap((r) => r.targets);
const header = ["Section", "Measure", "PostgreSQL 15", "PGlite", "Note"];
const cells = rows.map((r) => [r.section, r.metric, r.postgres ?? "", r.pglite ?? "", r.note ?? ""]);
const targetHeader = ["Target", "Bar", "This run", "Met"];
const targetCells = targets.map((t) => [
  t.target,
  t.bar,
  t.display + (t.note ? ` (${t.note})` : ""),
  t.met === null ? "not measured" : t.met ? "yes" : "NO",
]);
console.log(`\n${textTable(header, cells)}\n\n${textTable(targetHeader, targetCells)}`);
machine.loadAverageAtEnd = (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");

const report = {
  benchmark: "chatwoot-relay issue 6",
  mode: quick ? "quick" : "full",
  startedAt: startedAt.toISOString(),
  finishedAt: new Date().toISOString(),
  machine,
  settings: {
    connections: ctx.connections,
    phaseSeconds: ctx.phaseSeconds,
    warmupSeconds: ctx.warmupSeconds,
  },
  rows,
  targets,
  sections: Object.fromEntries(Object.entries(results).map(([name, r]) => [name, r.data])),
  failures,
  markdown: { table: markdownTable(header, cells), targets: markdownTable(targetHeader, targetCells) },
};
await Deno.mkdir(new URL(".", `file://${values.out}`), { recursive: true });
await Deno.writeTextFile(values.out!, JSON.stringify(report, null, 2) + "\n");
console.log(`\nwrote ${values.out}`);
if (Object.keys(failures).length > 0) {
  console.error(`failed sections: ${Object.keys(failures).join(", ")}`);
  Deno.exit(1);
}
Deno.exit(0);

async function describeMachine(url: string) {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo");
  const meminfo = await Deno.readTextFile("/proc/meminfo");
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  let pgVersion = "unreachable";
  // The server settings the figures depend on, as this server has them (a machine may change its defaults).
  let pgSettings: Record<string, string> = {};
  try {
    pgVersion = (await admin<{ v: string }[]>`select version() as v`)[0].v;
    const settings = await admin<{ name: string; setting: string }[]>`
      select name, current_setting(name) as setting from pg_settings
       where name in ('autovacuum', 'synchronous_commit', 'shared_buffers', 'max_wal_size', 'fsync',
                      'default_toast_compression', 'wal_compression')
       order by name`;
    pgSettings = Object.fromEntries(settings.map((s) => [s.name, s.setting]));
  } finally {
    await admin.end({ timeout: 1 });
  }
  const version = async (cmd: string, args: string[]) => {
    try {
      const { stdout, stderr } = await runCommand(cmd, args);
      return (stdout || stderr).split("\n")[0].trim();
    } catch (error) {
      return (error as Error).message.split("\n")[1]?.trim() ?? "unknown";
    }
  };
  return {
    nproc: navigator.hardwareConcurrency,
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? "unknown",
    memoryGb: Number((Number(/^MemTotal:\s+(\d+)/m.exec(meminfo)?.[1]) / 1024 / 1024).toFixed(1)),
    kernel: Deno.osRelease(),
    postgres: pgVersion,
    postgresSettings: pgSettings,
    deno: `deno ${Deno.version.deno} (v8 ${Deno.version.v8})`,
    wrk: await version("wrk", ["-v"]),
    pgbench: await version("pgbench", ["--version"]),
    loadAverageAtStart: (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" "),
    loadAverageAtEnd: "",
  };
}
