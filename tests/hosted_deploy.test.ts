// The hosted deploy as README.md tells an operator to run it: every `supabase …` command README.md and docs/
// show exists, with those flags, in the Supabase CLI CI installs (its own --help says so); and the Deploy
// section's `secrets set` sets every name the deployed functions read, except the ones it says why not.
import assert from "node:assert/strict";
import { databaseUrlFromEnv } from "../supabase/functions/_shared/db.ts";
import { type Env, secretValues } from "../supabase/functions/_shared/env.ts";
import {
  forwarderConfigFromEnv,
  forwardEventsAuthFromEnv,
} from "../supabase/functions/_shared/forwarder_config.ts";
import { silentLogger } from "../supabase/functions/_shared/log.ts";
import {
  CREDENTIAL_ALIASES,
  readinessConfigFromEnv,
} from "../supabase/functions/_shared/readiness_checks.ts";
import { runtimeFromEnv } from "../supabase/functions/_shared/runtime.ts";
import { webhookConfigFromEnv } from "../supabase/functions/_shared/webhook_config.ts";
import { dbIndependentTest } from "./_db.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const FUNCTIONS_DIR = `${ROOT}supabase/functions`;

/** The CLI version CI installs (.ci/run), so the docs are checked against the CLI the suite runs beside. */
const CLI_VERSION = /\bsupabase@([\w.^~-]+)/.exec(await Deno.readTextFile(`${ROOT}.ci/run`))?.[1];

/** README.md and docs/*.md: what an operator reads. */
async function docs(): Promise<Array<{ file: string; text: string }>> {
  const files = ["README.md"];
  for await (const entry of Deno.readDir(`${ROOT}docs`)) {
    if (entry.isFile && entry.name.endsWith(".md")) files.push(`docs/${entry.name}`);
  }
  return await Promise.all(
    files.sort().map(async (file) => ({ file, text: await Deno.readTextFile(ROOT + file) })),
  );
}

interface ShownCommand {
  where: string;
  shown: string;
  /** After `supabase`: subcommand words, arguments and flags; a `<placeholder>` is one word. */
  args: string[];
}

const SUPABASE_COMMAND = /^(?:npx\s+(?:-y\s+)?)?supabase(?:@\S+)?\s+(?=[a-z])/;

/** Every `supabase …` command in `text`: fenced lines (with `\` continuations) and code spans. */
export function supabaseCommands(file: string, text: string): ShownCommand[] {
  const found: ShownCommand[] = [];
  // Outside fences, as written; fenced lines as blanks, so that a span's line number is the file's.
  const prose: string[] = [];
  const lines = text.split("\n");
  let fenced = false;
  for (let i = 0; i < lines.length; i++) {
    const fence = lines[i].trimStart().startsWith("```");
    if (fence) fenced = !fenced;
    prose.push(fenced || fence ? "" : lines[i]);
    if (!fenced || fence) continue;
    const start = i;
    let line = lines[i];
    while (line.trimEnd().endsWith("\\") && i + 1 < lines.length) {
      line = line.trimEnd().slice(0, -1) + lines[++i];
      prose.push("");
    }
    const command = line.replace(/\s#.*$/, "").trim();
    if (SUPABASE_COMMAND.test(command)) found.push(shown(`${file}:${start + 1}`, command));
  }
  // A code span may wrap onto the next line.
  const outside = prose.join("\n");
  for (const match of outside.matchAll(/`([^`]+)`/g)) {
    const span = match[1].replace(/\s+/g, " ").trim();
    const line = outside.slice(0, match.index).split("\n").length;
    if (SUPABASE_COMMAND.test(span)) found.push(shown(`${file}:${line}`, span));
  }
  return found;
}

function shown(where: string, command: string): ShownCommand {
  const args = command.replace(SUPABASE_COMMAND, "").replace(/<[^>]*>/g, "<x>").split(/\s+/).filter(Boolean);
  return { where, shown: command, args };
}

/** The npm package's `supabase` executable, installed (or found in npm's cache) by npx once. */
let cli: Promise<string> | undefined;
function cliPath(): Promise<string> {
  cli ??= run("npx", ["-y", "-p", `supabase@${CLI_VERSION}`, "-c", "command -v supabase"]).then((p) =>
    p.trim()
  );
  return cli;
}

async function run(program: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(program, {
    args,
    env: { NO_COLOR: "1", DO_NOT_TRACK: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (out.code !== 0) throw new Error(`${program} ${args.join(" ")} exited ${out.code}: ${text}`);
  return text;
}

const helps = new Map<string, Promise<string>>();

/** `supabase <path> --help`, once per path. */
function help(path: string[]): Promise<string> {
  const key = path.join(" ");
  if (!helps.has(key)) helps.set(key, cliPath().then((supabase) => run(supabase, [...path, "--help"])));
  return helps.get(key)!;
}

/** The help's USAGE line after `supabase`, e.g. "functions deploy [flags] [<Function name...>]". */
function usage(text: string): string {
  const match = /^USAGE\s*\n\s*supabase\s+(.*)$/m.exec(text);
  if (!match) throw new Error(`no USAGE line in:\n${text}`);
  return match[1].trim();
}

/** The flags a help lists (FLAGS and GLOBAL FLAGS), each with whether it takes a value. */
function flags(text: string): Map<string, boolean> {
  const known = new Map<string, boolean>();
  let inFlags = false;
  for (const line of text.split("\n")) {
    if (/^[A-Z][A-Z ]*$/.test(line.trim())) inFlags = /^(GLOBAL )?FLAGS$/.test(line.trim());
    const spec = inFlags ? /^\s+(-.*?)(?:\s{2,}|$)/.exec(line)?.[1] : undefined;
    if (!spec) continue;
    const names = spec.match(/(?<![\w-])--?[a-zA-Z][\w-]*/g) ?? [];
    const takesValue = /\[=|<|\b(string|integer|choice|strings|int|duration)\b/.test(spec);
    for (const name of names) known.set(name, takesValue);
  }
  return known;
}

/** Why `command` would not run as shown, or null: no such subcommand, or a flag it does not take. */
async function problem(command: ShownCommand): Promise<string | null> {
  const path: string[] = [];
  let rest = command.args;
  // Walk down the command groups: a word is a subcommand when its help's USAGE names it.
  while (usage(await help(path)).includes("<subcommand>")) {
    const word = rest[0];
    if (!word || word.startsWith("-")) return `\`supabase ${path.join(" ")}\` needs a subcommand`;
    const text = await help([...path, word]);
    if (!usage(text).startsWith(`${[...path, word].join(" ")} `)) {
      return `no subcommand \`${word}\` in \`supabase ${path.join(" ")}\``;
    }
    path.push(word);
    rest = rest.slice(1);
  }
  const known = flags(await help(path));
  for (const arg of rest.filter((a) => a.startsWith("-"))) {
    const [name, value] = arg.split(/=(.*)/s);
    if (!known.has(name)) return `\`supabase ${path.join(" ")}\` has no flag ${name}`;
    if (value !== undefined && !known.get(name)) {
      return `\`supabase ${path.join(" ")}\` ${name} takes no value`;
    }
  }
  return null;
}

dbIndependentTest(
  "docs: every supabase command in README.md and docs/ exists in the CLI with those flags",
  async () => {
    assert.ok(CLI_VERSION, "no supabase@<version> in .ci/run");
    const commands = (await docs()).flatMap(({ file, text }) => supabaseCommands(file, text));
    // The extraction itself: the deploy's steps are among what it found.
    const found = new Set(commands.map((c) => c.args.slice(0, 2).join(" ")));
    for (const step of ["login", "link --project-ref", "db push", "secrets set", "functions deploy"]) {
      assert.ok(
        found.has(step) || [...found].some((f) => f.startsWith(step)),
        `${step} not found in the docs`,
      );
    }
    const problems = (await Promise.all(commands.map(async (command) => {
      const why = await problem(command);
      return why ? [`${command.where} \`${command.shown}\`: ${why}`] : [];
    }))).flat();
    assert.deepEqual(problems, [], `supabase@${CLI_VERSION}`);
  },
);

/** Read by the deployed functions, not on the deploy's `secrets set` line; each named in that section. */
const NOT_ON_THE_LINE: Record<string, string> = {
  DATABASE_URL: "never set hosted: it wins over the SUPABASE_DB_URL Supabase gives the functions (db.ts)",
  CHATWOOT_BASE_URL_PROD: "the readiness document's name, read when CHATWOOT_BASE_URL is unset",
  CHATWOOT_TOKEN_PROD: "the readiness document's name, read when CHATWOOT_API_TOKEN is unset",
  CHATWOOT_ACCOUNT_ID_PROD: "the readiness document's name, read when CHATWOOT_ACCOUNT_ID is unset",
  AGENT_SDK_SECRET: "only when the Agent SDK checks a signature",
  AGENT_SDK_TOKEN: "only when the Agent SDK wants a bearer token",
  CHATWOOT_WEBHOOK_URL_TOKEN: "only for a Chatwoot that cannot sign, instead of the secret",
  CHATWOOT_WEBHOOK_TOLERANCE_SECONDS: "a tuning setting with a default",
  CHATWOOT_WEBHOOK_MAX_BODY_BYTES: "a tuning setting with a default",
  CHATWOOT_WEBHOOK_LATE_STORE_SECONDS: "a tuning setting with a default",
  DATABASE_POOL_SIZE: "a tuning setting with a default",
  CHATWOOT_HEALTH_PATH: "a tuning setting with a default (/hc)",
  READINESS_CHECK_TIMEOUT_MS: "a tuning setting with a default",
  READINESS_CACHE_SECONDS: "a tuning setting with a default",
};
// SUPABASE_*: Supabase sets them for every function, and `secrets set` skips such a name ("Env name cannot
// start with SUPABASE_"). No test-only or dev-only name is read under supabase/functions/ (those live in
// scripts/: PORT, DB_PORT, RELAY_DATA_DIR, FORWARDER_SWEEP_MS).

async function functionSources(dir = FUNCTIONS_DIR): Promise<Array<{ file: string; text: string }>> {
  const sources: Array<{ file: string; text: string }> = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) sources.push(...await functionSources(path));
    else if (entry.name.endsWith(".ts")) sources.push({ file: path, text: await Deno.readTextFile(path) });
  }
  return sources;
}

const NAME = String.raw`[A-Z][A-Z0-9_]*`;
const READS = [
  // stringFromEnv(env, "A", "B"), intFromEnv(env, "A", 1), intFromEnvOrDefault(…), listFromEnv(…)
  new RegExp(
    String.raw`\b(?:stringFromEnv|intFromEnv|intFromEnvOrDefault|listFromEnv)\(\s*[\w.]+\s*,([^)]*)\)`,
    "g",
  ),
  new RegExp(String.raw`\benv\.(${NAME})\b`, "g"),
  new RegExp(String.raw`\benv\[\s*"(${NAME})"\s*\]`, "g"),
  new RegExp(String.raw`\bDeno\.env\.get\(\s*"(${NAME})"\s*\)`, "g"),
];

/** The environment names read under supabase/functions/, by name in the code. */
async function namesRead(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const { file, text } of await functionSources()) {
    // Any other way of reading the environment would hide names from this scan.
    for (const use of text.matchAll(/Deno\.env\.[\w]+\([^)]*\)/g)) {
      assert.match(use[0], new RegExp(String.raw`^Deno\.env\.(toObject\(\)|get\("${NAME}"\))$`), file);
    }
    for (const pattern of READS) {
      for (const match of text.matchAll(pattern)) {
        for (const literal of match[1].matchAll(new RegExp(`"(${NAME})"|^(${NAME})$`, "g"))) {
          names.add(literal[1] ?? literal[2]);
        }
      }
    }
  }
  return names;
}

/** The names the functions' settings readers look up, run on an environment that records each lookup. */
function namesLookedUp(): Set<string> {
  const seen = new Set<string>();
  const env = new Proxy({} as Env, {
    get: (_, name) => {
      if (typeof name === "string") seen.add(name);
      return undefined;
    },
  });
  webhookConfigFromEnv(env);
  forwarderConfigFromEnv(env);
  forwardEventsAuthFromEnv(env);
  readinessConfigFromEnv(env);
  runtimeFromEnv(env, silentLogger);
  databaseUrlFromEnv(env);
  secretValues(env);
  for (const [name, aliases] of Object.entries(CREDENTIAL_ALIASES)) {
    for (const n of [name, ...aliases]) seen.add(n);
  }
  return seen;
}

/** The Deploy section of README.md. */
async function deploySection(): Promise<string> {
  const readme = await Deno.readTextFile(`${ROOT}README.md`);
  const section = /^## Deploy to hosted Supabase\n[^]*?(?=^## )/m.exec(readme)?.[0];
  assert.ok(section, 'README.md has no "## Deploy to hosted Supabase" section');
  return section;
}

dbIndependentTest(
  "docs: the deploy's secrets set line sets every name the deployed functions read",
  async () => {
    const read = await namesRead();
    // The scan misses nothing the settings readers actually look up.
    assert.deepEqual(
      [...namesLookedUp()].filter((n) => !read.has(n)),
      [],
      "looked up, yet not found by the scan",
    );
    for (const name of Object.keys(NOT_ON_THE_LINE)) assert.ok(read.has(name), `${name} is no longer read`);

    const section = await deploySection();
    const assignments = (c: ShownCommand) => c.args.flatMap((a) => /^([A-Z][A-Z0-9_]*)=/.exec(a)?.[1] ?? []);
    const setLines = supabaseCommands("README.md", section).filter((c) =>
      c.args[0] === "secrets" && c.args[1] === "set" && assignments(c).length > 0
    );
    assert.equal(
      setLines.length,
      1,
      "the Deploy section has one `supabase secrets set NAME=VALUE …` command",
    );
    const onTheLine = assignments(setLines[0]);

    const expected = [...read].filter((n) => !n.startsWith("SUPABASE_") && !(n in NOT_ON_THE_LINE));
    assert.deepEqual(onTheLine.toSorted(), expected.toSorted());
    // Each left off is accounted for where the operator reads the line; and what Supabase sets itself.
    const mentioned = (name: string) => section.includes(`\`${name}\``);
    const unnamed = [...Object.keys(NOT_ON_THE_LINE), "SUPABASE_DB_URL"].filter((n) => !mentioned(n));
    assert.deepEqual(unnamed, [], "names the Deploy section should mention");
  },
);
