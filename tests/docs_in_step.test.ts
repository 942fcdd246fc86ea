// README.md and docs/sql.md checked against the code, code → docs: every setting the code reads, every task in
// deno.json and every public relation or function the migrations create is documented (or listed below as
// internal, with why). New code without docs fails here; docs alone are never read for what to expect.
import assert from "node:assert/strict";
import { dbIndependentTest } from "./_db.ts";

const ROOT = new URL("..", import.meta.url);
const read = (path: string) => Deno.readTextFile(new URL(path, ROOT));
const readme = await read("README.md");
const sqlDoc = await read("docs/sql.md");

/** Whether `text` names `name` as a whole word (not as part of a longer name). */
const names = (text: string, name: string) => new RegExp(`(?<![\\w-])${name}(?![\\w-])`).test(text);

/** Every .ts file under `dir` (relative to the repository), with its text. */
async function sources(dir: string): Promise<Array<[string, string]>> {
  const found: Array<[string, string]> = [];
  for await (const entry of Deno.readDir(new URL(dir, ROOT))) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) found.push(...await sources(path));
    else if (entry.name.endsWith(".ts")) found.push([path, await read(path)]);
  }
  return found;
}

/**
 * Settings the code reads that are no operator's to set, so README leaves them out. None so far: the tests'
 * own settings (RELAY_H1_* and the like) are read under tests/, which is not scanned.
 */
const TEST_ONLY_SETTINGS = new Set<string>([]);

/** Names the code reads from the environment, with the file that reads each (for the failure message). */
async function settingsRead(): Promise<Map<string, string>> {
  const NAME = String.raw`"([A-Z][A-Z0-9_]*)"`;
  const patterns = [
    new RegExp(String.raw`Deno\.env\.get\(\s*${NAME}`, "g"),
    // stringFromEnv(env, "A", "B"), intFromEnv(env, "A", 1), listFromEnv(…), intFromEnvOrDefault(…): the names.
    /\w+FromEnv\w*\(\s*[\w.]+\s*,((?:\s*"[A-Z][A-Z0-9_]*"\s*,?)+)/g,
    // dev.ts' intSetting("PORT", …), which reads through intFromEnv with a variable name.
    new RegExp(String.raw`\w+Setting\(\s*${NAME}`, "g"),
    /\benv\??\.([A-Z][A-Z0-9_]+)\b/g,
    new RegExp(String.raw`\benv\??\.?\[\s*${NAME}\s*\]`, "g"),
  ];
  const found = new Map<string, string>();
  for (const dir of ["supabase/functions", "scripts"]) {
    for (const [path, text] of await sources(dir)) {
      for (const pattern of patterns) {
        for (const match of text.matchAll(pattern)) {
          for (const [, name] of match[1].matchAll(/([A-Z][A-Z0-9_]*)/g)) found.set(name, path);
        }
      }
    }
  }
  return found;
}

dbIndependentTest("docs: README documents every setting the code reads", async () => {
  const read = await settingsRead();
  // The scan itself works: these are read through each of the patterns above.
  for (const name of ["DATABASE_URL", "AGENT_SDK_URL", "PORT", "RELAY_DATA_DIR", "CHATWOOT_WEBHOOK_SECRET"]) {
    assert.ok(read.has(name), `the scan found no read of ${name}`);
  }
  const missing = [...read].filter(([name]) => !TEST_ONLY_SETTINGS.has(name) && !names(readme, name))
    .map(([name, path]) => `${name} (${path})`);
  assert.deepEqual(missing, [], "settings read by the code that README.md never names");
  const stale = [...TEST_ONLY_SETTINGS].filter((name) => !read.has(name));
  assert.deepEqual(stale, [], "TEST_ONLY_SETTINGS lists names the code no longer reads");
});

dbIndependentTest("docs: README documents every task of deno.json", async () => {
  const { tasks } = JSON.parse(await read("deno.json")) as { tasks: Record<string, string> };
  assert.ok(Object.keys(tasks).length >= 10);
  const missing = Object.keys(tasks).filter((task) => !names(readme, `deno task ${task}`));
  assert.deepEqual(missing, [], "tasks of deno.json that README.md never names as `deno task <name>`");
});

/**
 * Public functions and relations the migrations create that are no one's to call or query: the functions'
 * and the forwarder's own machinery, reached through what README and docs/sql.md document.
 */
const INTERNAL_SQL = new Set([
  // The webhook function's store (README, Storage, describes what it does, not its calls).
  "webhook_initial_status",
  "record_webhook_rejection",
  "webhook_receipt_outcome",
  "webhook_receipts_after",
  // deno task recover's store of a rebuilt event (README documents the task).
  "recover_webhook_event",
  // Triggers, and the check constraint on relay_settings.forward_events.
  "notify_webhook_event_due",
  "wake_forwarders_on_resume",
  "webhook_event_names_valid",
  // A death's or a lost event's time, and an acknowledgement's wait for those being recorded (README,
  // "Acknowledge dead events", "Acknowledge lost events"): one pair of trigger functions, the lock an argument.
  "record_timed_after_acknowledgements",
  "acknowledgement_waits_for_records",
  // Helpers of the forwarder's claim and of schedule_forwarder() (documented; these say why it refuses).
  "relay_settings_claims_settled",
  "forwarder_secrets_problem",
  // The readiness function's storage (README, Readiness: "public.readiness_* tables") and its calls; the
  // function's HTTP API is the surface.
  "readiness_actor",
  "readiness_blockers",
  "readiness_contacts",
  "readiness_credentials",
  "readiness_current_status",
  "readiness_document",
  "readiness_evidence_requirements",
  "readiness_inbox_config",
  "readiness_items",
  "readiness_milestones",
  "readiness_record_item_history",
  "readiness_risks",
  "readiness_snapshot",
  "readiness_statuses",
  "readiness_support_plan",
  "readiness_tasks",
  "readiness_touch_item",
  "readiness_update_item",
  "readiness_update_item_if_unchanged",
  "readiness_validations",
]);

/**
 * Names of the views, tables, functions and procedures the migrations create in schema public, less those a
 * later migration drops for good (read in the order they apply).
 */
async function publicSqlObjects(): Promise<Set<string>> {
  const created = new Set<string>();
  const dir = new URL("supabase/migrations/", ROOT);
  const entries = await Array.fromAsync(Deno.readDir(dir));
  const files = entries.map((entry) => entry.name).filter((name) => name.endsWith(".sql")).sort();
  const kinds = "(?:materialized\\s+)?(?:view|function|procedure|table)";
  const named = '(?:"?(\\w+)"?\\.)?"?(\\w+)"?';
  const statement = new RegExp(
    `\\b(create\\s+(?:or\\s+replace\\s+)?|drop\\s+)${kinds}\\s+(?:if\\s+(?:not\\s+)?exists\\s+)?${named}`,
    "gi",
  );
  for (const file of files) {
    // Comments out: a comment saying "create table …" creates nothing.
    const text = (await Deno.readTextFile(new URL(file, dir))).replace(/--[^\n]*/g, "");
    for (const [, verb, schema, name] of text.matchAll(statement)) {
      if (schema && schema.toLowerCase() !== "public") continue;
      // A drop then a create again in the same file (a function whose type changed) leaves it created.
      if (/^drop/i.test(verb)) created.delete(name.toLowerCase());
      else created.add(name.toLowerCase());
    }
  }
  return created;
}

dbIndependentTest(
  "docs: README or docs/sql.md documents every public SQL object the migrations create",
  async () => {
    const created = await publicSqlObjects();
    // The scan itself works: a view, a table, a function and a procedure.
    for (
      const name of [
        "webhook_pipeline_health",
        "webhook_events",
        "schedule_forwarder",
        "prune_webhook_events",
      ]
    ) {
      assert.ok(created.has(name), `the scan found no create of ${name}`);
    }
    const missing = [...created].filter((name) =>
      !INTERNAL_SQL.has(name) && !names(readme, name) && !names(sqlDoc, name)
    ).sort();
    assert.deepEqual(missing, [], "public SQL objects named neither in README.md nor in docs/sql.md");
    const stale = [...INTERNAL_SQL].filter((name) => !created.has(name));
    assert.deepEqual(stale, [], "INTERNAL_SQL lists names no migration creates");
  },
);
