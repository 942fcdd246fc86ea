// The operator CLIs (scripts/*.ts) as an operator runs them: from a folder holding a .env, against a
// database that is there, refuses, or rejects the password. Real subprocesses, a real database.
import assert from "node:assert/strict";
import postgres from "postgres";
import { dbIndependentTest, dbTest, migrationsBefore, startEmptyPglite, startTestDb } from "./_db.ts";
import { hostedStandIns } from "./_hosted.ts";
import { devCommand, startDev } from "./_dev.ts";
import { storeRecoveredCopy } from "./_forwarding.ts";
import { samplePayload } from "../scripts/lib/samples.ts";
import { KNOWN_EVENTS } from "../supabase/functions/_shared/chatwoot_events.ts";
import { CLOSED_PORT } from "./_closed_port.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const db = await startTestDb();

/** A postgres URL on which nothing listens, with a password that must never be shown. */
function refusedDatabaseUrl(): string {
  return `postgresql://postgres:hunter2-secret@127.0.0.1:${CLOSED_PORT}/postgres`;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * `deno run -A <script> <args>` from `cwd` (where it reads .env) with exactly `env` on top of the test run's
 * environment less its database settings.
 */
async function run(script: string, args: string[], env: Record<string, string>, cwd = ROOT): Promise<Run> {
  const parentEnv = Deno.env.toObject();
  delete parentEnv.DATABASE_URL;
  delete parentEnv.SUPABASE_DB_URL;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `--config=${ROOT}deno.json`, `${ROOT}${script}`, ...args],
    cwd,
    clearEnv: true,
    env: { ...parentEnv, NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
    // A run that never ends (a forwarder loop that keeps retrying a database it cannot reach) fails the
    // test instead of hanging it.
    signal: AbortSignal.timeout(120_000),
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

dbTest(`cli [${db.kind}]: a database URL exported as SUPABASE_DB_URL beats .env's DATABASE_URL`, async () => {
  const dir = await Deno.makeTempDir({ prefix: "relay-cli-env-" });
  try {
    await Deno.writeTextFile(`${dir}/.env`, `DATABASE_URL=${refusedDatabaseUrl()}\n`);
    const out = await run("scripts/stats.ts", ["--json"], { SUPABASE_DB_URL: db.url }, dir);
    assert.equal(out.code, 0, out.stdout + out.stderr);
    assert.equal(typeof JSON.parse(out.stdout).health.backlog, "number");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

dbTest(
  `cli [${db.kind}]: deno task stats shows the copies recovered from the API apart from receipts`,
  async () => {
    const raw = JSON.stringify(
      samplePayload("message_created", { messageId: 987_101, conversationId: 9872 }),
    );
    const id = await storeRecoveredCopy(db.sql, raw);
    // The copy's own UTC day, not today's: midnight may pass between the store and the reads.
    const [view] = await db.sql`select to_char(s.day, 'YYYY-MM-DD') as day, s.received::int, s.recovered::int
                                 from chatwoot_daily_event_stats s
                                 join webhook_events e on s.day = (e.received_at at time zone 'UTC')::date
                                where s.event = 'message_created' and e.id = ${id}`;
    assert.ok(view.recovered >= 1);
    const json = await run("scripts/stats.ts", ["--json"], { SUPABASE_DB_URL: db.url });
    assert.equal(json.code, 0, json.stdout + json.stderr);
    const row = JSON.parse(json.stdout).daily.find((r: { event: string; day: string }) =>
      r.event === "message_created" && r.day === view.day
    );
    assert.deepEqual([row.received, row.recovered], [view.received, view.recovered]);
    const text = await run("scripts/stats.ts", [], { SUPABASE_DB_URL: db.url });
    assert.equal(text.code, 0, text.stdout + text.stderr);
    const lines = text.stdout.split("\n");
    const header = lines.findIndex((l) => /^\s*day\s+event\s/.test(l));
    const columns = lines[header].trim().split(/\s+/);
    const cells = lines.slice(header + 1).find((l) => l.includes(view.day) && /\bmessage_created\b/.test(l))!
      .trim().split(/\s+/);
    assert.equal(cells[columns.indexOf("recovered")], String(view.recovered));
  },
);

/**
 * An operator's failure: exit 1 and one line on stderr saying what failed (matching `line`), no stack trace,
 * never the password.
 */
function assertOneLineFailure(out: Run, line: RegExp) {
  const said = out.stdout + out.stderr;
  assert.equal(out.code, 1, said);
  assert.doesNotMatch(said, /Uncaught|\n\s+at /, "a message, not a stack trace");
  assert.doesNotMatch(said, /hunter2-secret/);
  // Deno may say it downloads a package on a first run; that is not ours.
  const lines = out.stderr.split("\n").filter((l) => l.trim() !== "" && !/^Download /.test(l));
  assert.equal(lines.length, 1, out.stderr);
  assert.match(lines[0], line);
}

const CHATWOOT_ENV = {
  CHATWOOT_BASE_URL: "http://127.0.0.1:9",
  CHATWOOT_API_TOKEN: "chatwoot-token-for-cli-tests",
  CHATWOOT_ACCOUNT_ID: "1",
};

/** Each database CLI, as an operator would start it; `forward` without --once is the long-running loop. */
const DATABASE_RUNS: Array<[string, string[], Record<string, string>]> = [
  ["scripts/stats.ts", [], {}],
  ["scripts/migrate.ts", [], {}],
  ["scripts/migrate.ts", ["--check"], {}],
  ["scripts/replay.ts", ["1"], {}],
  ["scripts/forward.ts", ["--once"], {}],
  ["scripts/forward.ts", [], {}],
  ["scripts/recover.ts", ["--since", "2026-11-20T00:00Z"], CHATWOOT_ENV],
];

dbIndependentTest({
  name: "cli: a database that refuses the connection is said in one line with the URL redacted, exit 1",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const url = refusedDatabaseUrl();
    const port = new URL(url).port;
    for (const [script, args, env] of DATABASE_RUNS) {
      const out = await run(script, args, { DATABASE_URL: url, ...env });
      assertOneLineFailure(
        out,
        new RegExp(
          `failed \\(postgresql://postgres:\\*\\*\\*@127\\.0\\.0\\.1:${port}/postgres\\): .*ECONNREFUSED`,
        ),
      );
    }
  },
});

dbIndependentTest({
  name: "cli: a database CLI started with no database URL at all says what to set, exit 2 (README, Tasks)",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // A folder without .env: nothing but the environment could name a database, and it names none.
    const dir = await Deno.makeTempDir({ prefix: "relay-cli-no-url-" });
    try {
      for (const [script, args, env] of DATABASE_RUNS) {
        const out = await run(script, args, env, dir);
        assert.equal(out.code, 2, `${script} ${args.join(" ")}: ${out.stdout}${out.stderr}`);
        const lines = out.stderr.split("\n").filter((l) => l.trim() !== "" && !/^Download /.test(l));
        assert.equal(lines.length, 1, out.stderr);
        assert.match(lines[0], /^Set DATABASE_URL \(or SUPABASE_DB_URL\) to /);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

dbTest(`cli [${db.kind}]: a role the server refuses is said in one line, exit 1`, async () => {
  if (db.kind !== "postgres") return; // PGlite's socket takes any user
  const url = new URL(db.url);
  url.username = "relay_h1_no_such_role";
  url.password = "hunter2-secret";
  for (const [script, args, env] of DATABASE_RUNS) {
    const out = await run(script, args, { DATABASE_URL: url.toString(), ...env });
    assertOneLineFailure(
      out,
      /failed \(postgresql:\/\/relay_h1_no_such_role:\*\*\*@.*\): .*relay_h1_no_such_role/,
    );
  }
});

dbIndependentTest({
  name: "cli: a database without the relay's schema is an SQL error said in one line, exit 1",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const empty = await startEmptyPglite();
    try {
      for (
        const [script, args, env] of [
          ["scripts/replay.ts", ["1"], {}],
          ["scripts/forward.ts", ["--once"], {}],
          ["scripts/recover.ts", ["--since", "2026-11-20T00:00Z"], CHATWOOT_ENV],
        ] as const
      ) {
        const out = await run(script, [...args], { DATABASE_URL: empty.url, ...env });
        assertOneLineFailure(
          out,
          /failed \(postgresql:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/postgres\): .*does not exist/,
        );
      }
    } finally {
      await empty.stop();
    }
  },
});

dbIndependentTest(
  "cli: deno task send to a server that is not there says so in one line, exit 1",
  async () => {
    const url = `http://127.0.0.1:${CLOSED_PORT}/functions/v1/chatwoot-webhook`;
    const out = await run("scripts/send.ts", ["--url", url], {
      CHATWOOT_WEBHOOK_SECRET: "local-secret-for-cli-tests",
    });
    assertOneLineFailure(out, new RegExp(`^send failed \\(${url.replaceAll(".", "\\.")}\\): .*refused`, "i"));
  },
);

dbIndependentTest(
  "cli: deno task send to its default URL with nothing there asks whether deno task dev runs",
  async () => {
    // Terminal 2 run before terminal 1 says Ready: "Connection refused" alone left a newcomer guessing.
    const port = String(CLOSED_PORT);
    const out = await run("scripts/send.ts", [], {
      CHATWOOT_WEBHOOK_SECRET: "local-secret-for-cli-tests",
      PORT: port,
    });
    assertOneLineFailure(
      out,
      /^send failed \(http:\/\/127\.0\.0\.1:\d+\/.*refused.*is `deno task dev` running/i,
    );
    // A URL given is the user's own server: no word about task dev.
    const given = await run("scripts/send.ts", [
      "--url",
      `http://127.0.0.1:${port}/functions/v1/chatwoot-webhook`,
    ], {
      CHATWOOT_WEBHOOK_SECRET: "local-secret-for-cli-tests",
    });
    assertOneLineFailure(given, /refused/i);
    assert.doesNotMatch(given.stderr, /deno task dev/);
  },
);

/** Two CLIs that print the database they work on. */
const SHOWING_THE_DATABASE: Array<[string, string[]]> = [["scripts/migrate.ts", ["--check"]], [
  "scripts/stats.ts",
  [],
]];

dbTest(
  `cli [${db.kind}]: a database URL with a space before it works and its password is never shown`,
  async () => {
    // new URL() (postgres.js) drops leading and trailing spaces and control characters: such a URL connects.
    const url = new URL(db.url);
    url.password = "hunter2-secret";
    for (const [script, args] of SHOWING_THE_DATABASE) {
      const out = await run(script, args, { DATABASE_URL: ` ${url}\n` });
      assert.equal(out.code, 0, out.stdout + out.stderr);
      assert.doesNotMatch(out.stdout + out.stderr, /hunter2-secret/);
      assert.match(out.stdout, /postgresql:\/\/postgres:\*\*\*@127\.0\.0\.1:/);
    }
  },
);

dbIndependentTest({
  name:
    "cli: a database URL's password is never shown, whatever the URL's form, and a malformed URL is refused",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const port = new URL(refusedDatabaseUrl()).port;
    const at = `127.0.0.1:${port}/postgres`;
    // Not scheme://…: postgres.js read these as a database on localhost:5432 named after the rest of the text
    // ("postgres:hunter2-secret@…"), and the tools showed them whole.
    for (const url of [`postgresql:/postgres:hunter2-secret@${at}`, `postgres:hunter2-secret@${at}`]) {
      for (const [script, args] of SHOWING_THE_DATABASE) {
        const out = await run(script, args, { DATABASE_URL: url });
        assertOneLineFailure(
          out,
          /failed \(\*\*\*@127\.0\.0\.1:\d+\/postgres\): .*not a postgresql:\/\/user:password@host/,
        );
      }
      const dataDir = await Deno.makeTempDir({ prefix: "relay-cli-dev-" });
      const dev = await devCommand({ DATABASE_URL: url, RELAY_DATA_DIR: dataDir })
        .output().finally(() => Deno.remove(dataDir, { recursive: true }));
      const devSaid = new TextDecoder().decode(dev.stdout) + new TextDecoder().decode(dev.stderr);
      assert.equal(dev.code, 1, devSaid);
      assert.doesNotMatch(devSaid, /hunter2-secret|Uncaught/);
      assert.match(devSaid, /not a postgresql:\/\/user:password@host/);
    }
    // Well-formed but unusual: a space before it, a libpq-style ?password= (postgres.js sends it to the server
    // as a setting, which refuses it; here nothing listens).
    for (
      const [url, shown] of [
        [` postgresql://postgres:hunter2-secret@${at}`, `postgresql://postgres:***@${at}`],
        [`postgresql://postgres@${at}?password=hunter2-secret`, `postgresql://postgres@${at}?password=***`],
      ]
    ) {
      const out = await run("scripts/migrate.ts", ["--check"], { DATABASE_URL: url });
      assertOneLineFailure(
        out,
        new RegExp(`failed \\(${shown.replace(/[.*?]/g, "\\$&")}\\): .*ECONNREFUSED`),
      );
    }
  },
});

dbTest(
  `cli [${db.kind}]: deno task migrate refuses a migration older than the last applied, unless --include-all`,
  async () => {
    // 002800 (idempotent: alter function, create or replace) made pending again, behind a newer version.
    const older = "20261121002800";
    const history = async () =>
      (await db.sql`select version from supabase_migrations.schema_migrations order by version`)
        .map((r) => r.version);
    const before = await history();
    await db.sql`delete from supabase_migrations.schema_migrations where version = ${older}`;
    await db.sql`insert into supabase_migrations.schema_migrations (version, statements, name)
                 values ('20991231000000', '{}', 'from_another_branch')`;
    try {
      const refused = await run("scripts/migrate.ts", [], { DATABASE_URL: db.url });
      assert.equal(refused.code, 1, refused.stdout + refused.stderr);
      assert.match(refused.stderr, /Found local migration files to be inserted before the last migration/);
      assert.match(
        refused.stderr,
        new RegExp(`^ +${older}_readiness_iso_dates_and_no_op_writes\\.sql$`, "m"),
      );
      assert.match(refused.stderr, /--include-all/);
      assert.doesNotMatch(refused.stderr, /Uncaught|\n\s+at /);
      const applied = async () =>
        (await db.sql`select 1 from supabase_migrations.schema_migrations where version = ${older}`).length;
      assert.equal(await applied(), 0, "nothing applied");

      // `deno task dev` on that database refuses as well, and says how to go on.
      const dataDir = await Deno.makeTempDir({ prefix: "relay-cli-dev-" });
      const dev = await devCommand({ DATABASE_URL: db.url, RELAY_DATA_DIR: dataDir })
        .output().finally(() => Deno.remove(dataDir, { recursive: true }));
      const devStderr = new TextDecoder().decode(dev.stderr);
      assert.equal(dev.code, 1, devStderr);
      assert.match(devStderr, /inserted before the last migration[^]*deno task migrate --include-all/);
      assert.doesNotMatch(devStderr, /Uncaught|\n\s+at /);

      const check = await run("scripts/migrate.ts", ["--check"], { DATABASE_URL: db.url });
      assert.equal(check.code, 1, check.stdout + check.stderr);
      assert.match(check.stdout, new RegExp(`^pending ${older}_\\S+ .*--include-all`, "m"));

      const all = await run("scripts/migrate.ts", ["--include-all"], { DATABASE_URL: db.url });
      assert.equal(all.code, 0, all.stdout + all.stderr);
      assert.match(all.stdout, new RegExp(`applied migration ${older}_`));
      assert.equal(await applied(), 1);
    } finally {
      await db.sql`delete from supabase_migrations.schema_migrations where version = '20991231000000'`;
    }
    assert.deepEqual(await history(), before);
  },
);

dbTest(
  `cli [${db.kind}]: deno task migrate shows the migrations' warnings`,
  async () => {
    // pg_cron 1.4 (stand-in) with pg_net and the Vault secrets made first: migration 010110 warns that no job
    // calls forward-events, and what to run. An operator migrating with the task must see it.
    const dir = await migrationsBefore("20261121010110");
    const old = await startTestDb({
      beforeMigrations: hostedStandIns(undefined, { seconds: false }),
      migrationsDir: dir,
    });
    try {
      const out = await run("scripts/migrate.ts", [], { DATABASE_URL: old.url });
      assert.equal(out.code, 0, out.stdout + out.stderr);
      assert.match(out.stdout, /applied migration 20261121010110_/);
      assert.match(
        out.stderr,
        /^WARNING: forwarding: no relay-forward-events job, .* run: select public\.schedule_forwarder\(\);$/m,
      );
    } finally {
      await old.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

dbTest(
  `cli [${db.kind}]: deno task migrate names versions applied in the database that have no file here`,
  async () => {
    // Older than every file: nothing is refused (the Supabase CLI refuses; its way out is migration repair).
    await db.sql`insert into supabase_migrations.schema_migrations (version, statements, name)
                 values ('20000101000000', '{}', 'applied_by_hand')`;
    try {
      for (const args of [[], ["--check"]]) {
        const out = await run("scripts/migrate.ts", args, { DATABASE_URL: db.url });
        assert.equal(out.code, 0, out.stdout + out.stderr);
        assert.match(
          out.stdout,
          /^warning: applied in the database but not in supabase\/migrations\/: 20000101000000 /m,
        );
        assert.match(out.stdout, /migrations up to date/);
      }
    } finally {
      await db.sql`delete from supabase_migrations.schema_migrations where version = '20000101000000'`;
    }
  },
);

dbIndependentTest({
  name: "cli: deno task dev applies a migration older than the last applied to its embedded database",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "relay-cli-dev-" });
    const older = "20261121002800";
    try {
      const first = await startDev({ RELAY_DATA_DIR: dataDir });
      const sql = postgres(first.databaseUrl, { max: 1, onnotice: () => {} });
      try {
        await sql`delete from supabase_migrations.schema_migrations where version = ${older}`;
        await sql`insert into supabase_migrations.schema_migrations (version, statements, name)
                   values ('20991231000000', '{}', 'from_another_branch')`;
      } finally {
        await sql.end();
        await first.stop();
      }
      const again = await startDev({ RELAY_DATA_DIR: dataDir });
      await again.stop();
      assert.ok(again.lines.some((l) => l.includes(`applied migration ${older}_`)), again.lines.join("\n"));
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});

dbTest(`cli [${db.kind}]: (close the database)`, () => db.close());

dbIndependentTest({
  name: "cli: dev and migration-versions refuse a command line they do not take: exit 2 with the usage",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "relay-cli-args-" });
    try {
      // `deno task dev --port 8000` served on 54321 all the same; settings are environment variables.
      const runs: Array<[string, string[]]> = [
        ["scripts/dev.ts", ["--port", "8000"]],
        ["scripts/dev.ts", ["serve"]],
        ["scripts/migration_versions.ts", ["--check"]],
      ];
      for (const [script, args] of runs) {
        const out = await run(script, args, { RELAY_DATA_DIR: dataDir, PORT: "0", DB_PORT: "0" });
        assert.equal(out.code, 2, `${script} ${args.join(" ")}: ${out.stdout}${out.stderr}`);
        assert.match(out.stderr, /^usage: deno task /m);
      }
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});

/** stderr's lines, less Deno's first-run "Download …" notes (not ours). */
const stderrLines = (out: Run) =>
  out.stderr.split("\n").filter((l) => l.trim() !== "" && !/^Download /.test(l));

/** Each script that takes a command line, and the task name its usage starts with. */
const SCRIPTS_WITH_USAGE: Array<[string, string]> = [
  ["scripts/recover.ts", "recover"],
  ["scripts/replay.ts", "replay"],
  ["scripts/forward.ts", "forward"],
  ["scripts/stats.ts", "stats"],
  ["scripts/send.ts", "send"],
  ["scripts/migrate.ts", "migrate"],
  ["scripts/dev.ts", "dev"],
  ["scripts/migration_versions.ts", "migration-versions"],
];

dbIndependentTest({
  name:
    "cli: every script prints its usage for --help (stdout, exit 0) and for an unknown option (stderr, exit 2)",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "relay-cli-help-" });
    try {
      // A script that went on past its command line would meet a refusing database, not a real one.
      const env = { RELAY_DATA_DIR: dataDir, PORT: "0", DB_PORT: "0", DATABASE_URL: refusedDatabaseUrl() };
      for (const [script, task] of SCRIPTS_WITH_USAGE) {
        const usage = new RegExp(`^usage:\\s+deno task ${task}\\b`, "m");
        for (const flag of ["--help", "-h"]) {
          const out = await run(script, [flag], env);
          const said = `${script} ${flag}: ${out.stdout}${out.stderr}`;
          assert.equal(out.code, 0, said);
          assert.match(out.stdout, usage, said);
          assert.deepEqual(stderrLines(out), [], said);
        }
        const wrong = await run(script, ["--no-such-option"], env);
        const said = `${script}: ${wrong.stdout}${wrong.stderr}`;
        assert.equal(wrong.code, 2, said);
        assert.match(wrong.stderr, usage, said);
        assert.match(wrong.stderr, /no-such-option/, said);
        assert.equal(wrong.stdout, "", said);
      }
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});

dbIndependentTest("cli: deno task send --help names every event it can send and the default", async () => {
  // The README sends "any event of the contract"; only a wrong name listed them, so --help left a newcomer
  // guessing the names.
  const out = await run("scripts/send.ts", ["--help"], { DATABASE_URL: refusedDatabaseUrl() });
  assert.equal(out.code, 0, out.stderr);
  for (const event of KNOWN_EVENTS) assert.match(out.stdout, new RegExp(`\\b${event}\\b`), event);
  assert.match(out.stdout, /default message_created/);
});

dbIndependentTest(
  "cli: stats --days 0 and send <unknown event> say what is wrong, then the usage, exit 2",
  async () => {
    const runs: Array<[string, string[], RegExp]> = [
      ["scripts/stats.ts", ["--days", "0"], /--days takes a whole number/],
      // Past about 2.4 million days the window starts before Postgres' dates: an SQL error, exit 1.
      ["scripts/stats.ts", ["--days", "3000000"], /--days takes a whole number of days \(1 to 36500\)/],
      ["scripts/send.ts", ["message_create"], /Unknown event message_create\b/],
    ];
    for (const [script, args, line] of runs) {
      const out = await run(script, args, { DATABASE_URL: refusedDatabaseUrl() });
      const said = `${script} ${args.join(" ")}: ${out.stdout}${out.stderr}`;
      assert.equal(out.code, 2, said);
      const lines = stderrLines(out);
      assert.match(lines[0], line, said);
      assert.match(lines[1], /^usage: deno task /, said);
    }
  },
);

dbIndependentTest(
  "cli: deno task recover names a Chatwoot setting it cannot use in one line, never its value, exit 2",
  async () => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ CHATWOOT_BASE_URL: "not a url" }, /^CHATWOOT_BASE_URL is not an http\(s\) URL/],
      [
        { CHATWOOT_BASE_URL: "http://relay:hunter2-secret@[no-host" },
        /^CHATWOOT_BASE_URL is not an http\(s\) URL/,
      ],
      [{ CHATWOOT_BASE_URL: "" }, /^Set CHATWOOT_BASE_URL \(or CHATWOOT_BASE_URL_PROD\)/],
      [{ CHATWOOT_ACCOUNT_ID: "hunter2-secret" }, /^CHATWOOT_ACCOUNT_ID must be a whole number/],
      // Read back as a number for the rebuilt events, it was rounded to another account's id.
      [{ CHATWOOT_ACCOUNT_ID: "9007199254740993" }, /^CHATWOOT_ACCOUNT_ID must be a whole number/],
      [
        { CHATWOOT_ACCOUNT_ID: "", CHATWOOT_ACCOUNT_ID_PROD: "1/../hunter2-secret" },
        /^CHATWOOT_ACCOUNT_ID_PROD must be a whole number/,
      ],
      [{ CHATWOOT_API_TOKEN: "hunter2-secret with a space" }, /^CHATWOOT_API_TOKEN holds characters/],
      [
        { CHATWOOT_API_TOKEN: "", CHATWOOT_ACCOUNT_ID: "" },
        /^Set CHATWOOT_API_TOKEN \(or CHATWOOT_TOKEN_PROD\), CHATWOOT_ACCOUNT_ID/,
      ],
    ];
    for (const [settings, line] of cases) {
      const out = await run("scripts/recover.ts", ["--since", "2026-11-20T00:00Z"], {
        DATABASE_URL: refusedDatabaseUrl(),
        ...CHATWOOT_ENV,
        ...settings,
      });
      const said = `${JSON.stringify(settings)}: ${out.stdout}${out.stderr}`;
      assert.equal(out.code, 2, said);
      assert.doesNotMatch(out.stdout + out.stderr, /Uncaught|\n\s+at |hunter2-secret|not a url/, said);
      assert.equal(stderrLines(out).length, 1, said);
      assert.match(stderrLines(out)[0], line, said);
      assert.equal(out.stdout, "", "nothing was tried: " + said);
    }
    // The readiness page's own settings are none of recover's business: a bad one does not stop it.
    const readiness: Record<string, string>[] = [{ READINESS_CHECK_TIMEOUT_MS: "soon" }, {
      READINESS_CACHE_SECONDS: "-1",
    }];
    for (const settings of readiness) {
      const out = await run("scripts/recover.ts", ["--since", "2026-11-20T00:00Z"], {
        DATABASE_URL: refusedDatabaseUrl(),
        ...CHATWOOT_ENV,
        ...settings,
      });
      assertOneLineFailure(out, /^recover failed \(postgresql:\/\/postgres:\*\*\*@.*ECONNREFUSED/);
    }
  },
);
