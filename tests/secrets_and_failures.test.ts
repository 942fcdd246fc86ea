// Secrets never reach a log line, an answer or a stored row, whatever fails; and bodies Postgres cannot hold
// as jsonb are refused with a clear 400 (nothing stored), not a 500 or a hung database.
import assert from "node:assert/strict";
import { createChatwootWebhookApp } from "../supabase/functions/_shared/chatwoot_webhook.ts";
import { MAX_JSON_DEPTH } from "../supabase/functions/_shared/chatwoot_payload.ts";
import { connect, isTransientDbError } from "../supabase/functions/_shared/db.ts";
import { createForwardEventsApp } from "../supabase/functions/_shared/forward_events.ts";
import { drain, type DrainOptions, EXCERPT_BYTES } from "../supabase/functions/_shared/forwarder.ts";
import { jsonLogger, type Logger, memoryLogger } from "../supabase/functions/_shared/log.ts";
import { createReadinessApp } from "../supabase/functions/_shared/readiness.ts";
import { webhookConfigFromEnv } from "../supabase/functions/_shared/webhook_config.ts";
import { undiciTransport } from "../scripts/lib/undici_transport.ts";
import { runCommand } from "../bench/lib/proc.ts";
import { samplePayload } from "../scripts/lib/samples.ts";
import { dbIndependentTest, dbTest, HOLDS_DB, lockWebhookEvents, startTestDb } from "./_db.ts";
import { runScript, startDev } from "./_dev.ts";
import { redact } from "../scripts/lib/cli.ts";
import { secretValues } from "../supabase/functions/_shared/env.ts";
import { startAgentSdk } from "./_agent_sdk.ts";
import { fastSettings, storeSample } from "./_forwarding.ts";
import { assertStoredLateOnce, signedRequest, TEST_SECRET } from "./_http.ts";
import { ensureDeliveryHealthView, fullEnv, startChatwootStandIn } from "./_readiness.ts";
import { CLOSED_PORT } from "./_closed_port.ts";

const db = await startTestDb();
const sql = db.sql;
const URL_BASE = "http://relay.test/chatwoot-webhook";

// Every value below is a secret some part of the relay holds; none may ever be printed, answered or stored.
const DB_PASSWORD = "dbpw-SECRET-7f3a9c1e5b";
const URL_TOKEN = "urltok-SECRET-0123456789abcdef";
const AGENT_SDK_SECRET = "agentsecret-SECRET-44d1";
const AGENT_SDK_TOKEN = "agenttoken-SECRET-9e0b";
const AGENT_SDK_PASSWORD = "agentpw-SECRET-61c2";
const FORWARDER_TOKEN = "fwdtoken-SECRET-0123456789abcdef";
const CHATWOOT_PASSWORD = "cwpw-SECRET-0d8e";
const SECRETS = [
  TEST_SECRET,
  DB_PASSWORD,
  URL_TOKEN,
  AGENT_SDK_SECRET,
  AGENT_SDK_TOKEN,
  AGENT_SDK_PASSWORD,
  FORWARDER_TOKEN,
  CHATWOOT_PASSWORD,
];

function assertNoSecret(text: string, where: string, secrets = SECRETS) {
  for (const secret of secrets) {
    assert.ok(!text.includes(secret), `${where} contains a secret (${secret.split("-")[0]}):\n${text}`);
  }
}

/** Runs `fn` with console.* captured (jsonLogger writes through console.log/console.error). */
async function capturingConsole<T>(fn: () => Promise<T>): Promise<{ result: T; output: string }> {
  const lines: string[] = [];
  const methods = ["log", "error", "warn", "info", "debug"] as const;
  const saved = methods.map((m) => console[m]);
  for (const m of methods) {
    console[m] = (...args: unknown[]) =>
      void lines.push(args.map((a) => typeof a === "string" ? a : Deno.inspect(a)).join(" "));
  }
  try {
    const result = await fn();
    return { result, output: lines.join("\n") };
  } finally {
    methods.forEach((m, i) => console[m] = saved[i]);
  }
}

let nextId = 700_000;
const message = () => JSON.stringify(samplePayload("message_created", { messageId: nextId++ }));

async function answer(res: Response) {
  const text = await res.text();
  return { status: res.status, text, body: JSON.parse(text) };
}

// ---------------------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------------------

dbIndependentTest(
  "failures: which database errors may pass (retried, then a late store) and which will not",
  () => {
    const err = (message: string, code?: string) => Object.assign(new Error(message), code ? { code } : {});
    const transient = [
      err("canceling statement due to lock timeout", "55P03"),
      err("canceling statement due to statement timeout", "57014"),
      err("cannot execute INSERT in a read-only transaction", "25006"),
      err("terminating connection due to administrator command", "57P01"),
      err("could not serialize access due to concurrent update", "40001"),
      err("deadlock detected", "40P01"),
      err("sorry, too many clients already", "53300"),
      err("write CONNECTION_CLOSED 127.0.0.1:5432", "CONNECTION_CLOSED"),
      // Supavisor, the hosted pooler, reports its own troubles as XX000.
      err("Max client connections reached", "XX000"),
      err(
        "(EMAXCONNSESSION) max clients reached in session mode - max clients are limited to pool_size",
        "XX000",
      ),
      err("Subscribe error: {:error, :worker_not_found}", "XX000"),
    ];
    const permanent = [
      err("function public.ingest_webhook_event(text) does not exist", "42883"),
      err("permission denied for table webhook_events", "42501"),
      err("unsupported Unicode escape sequence", "22P05"),
      new TypeError("cannot read properties of undefined"),
    ];
    assert.deepEqual(transient.filter((e) => !isTransientDbError(e)).map((e) => e.message), []);
    assert.deepEqual(permanent.filter((e) => isTransientDbError(e)).map((e) => e.message), []);
  },
);

dbIndependentTest(
  "secrets: credentials in a URL's query (libpq's ?password=, a gateway's ?key=) are secrets too",
  () => {
    assert.deepEqual(
      secretValues({
        DATABASE_URL:
          "postgresql://db.example.com:5432/postgres?user=postgres&password=pw-SECRET-123456&sslmode=require",
        AGENT_SDK_URL: "https://agent.example.com/base?key=gatewaykey-SECRET-7c1d&region=eu-west-1",
      }),
      ["pw-SECRET-123456", "gatewaykey-SECRET-7c1d"],
    );
    // A local database's password is not one (it would refuse every note naming Postgres), nor plain settings.
    assert.deepEqual(
      secretValues({
        DATABASE_URL: "postgresql://127.0.0.1:54322/postgres?user=postgres&password=postgres",
        AGENT_SDK_URL: "https://agent.example.com/base?region=eu-west-1&version=2026-11",
      }),
      [],
    );
  },
);

dbIndependentTest(
  "secrets: a password holding an unencoded #, / or ? is never shown by the CLIs",
  async () => {
    const secret = "s3cret-Pa55word";
    for (const password of [`#${secret}`, `/${secret}`, `?${secret}`, `1234#${secret}`, `a@b:${secret}`]) {
      const url = `postgresql://postgres:${password}@db.example.com:5432/postgres`;
      const shown = redact(url);
      assert.equal(shown, "postgresql://postgres:***@db.example.com:5432/postgres");
      assert.deepEqual(secretValues({ DATABASE_URL: url }), [password]);
    }
    assert.equal(redact("https://agent.example.com/base"), "https://agent.example.com/base");
    assert.equal(redact("postgresql://postgres@127.0.0.1:5432/x"), "postgresql://postgres@127.0.0.1:5432/x");
    // What the tools print before they connect (the host cannot be reached: nothing is touched).
    const url = `postgresql://postgres:#${secret}@127.0.0.1:9/relay_none`;
    for (
      const [script, args] of [["scripts/replay.ts", ["1", "--dry-run"]], ["scripts/migrate.ts", ["--check"]]]
    ) {
      const run = await runScript(script as string, args as string[], url);
      assert.ok(!(run.stdout + run.stderr).includes(secret), `${script} printed the password`);
    }
  },
);

dbIndependentTest(
  "secrets: a benchmark's failed command (pgbench, given the database URL) is shown without the password",
  async () => {
    // The message is printed and kept in the run's report (bench/results.json, `failures`).
    const url = `postgresql://postgres:${DB_PASSWORD}@127.0.0.1:9/relay_bench`;
    const failed = await runCommand("sh", ["-c", "echo 'connection refused' >&2; exit 2", "pgbench", url])
      .then(() => null, (error: Error) => error);
    assert.ok(failed instanceof Error, "the command fails");
    assert.match(failed.message, /failed \(2\):\nconnection refused/);
    assert.match(failed.message, /postgresql:\/\/postgres:\*\*\*@127\.0\.0\.1:9\/relay_bench/);
    assertNoSecret(`${failed.message}\n${failed.stack}`, "the error");
  },
);

dbIndependentTest(
  "secrets: a database URL postgres.js cannot parse is reported without its password",
  async () => {
    // An unescaped # or / in the password: postgres.js' `new URL()` fails, and its message quoted the whole URL.
    for (const password of [`p#${DB_PASSWORD}`, `p/${DB_PASSWORD}`]) {
      const url = `postgresql://postgres:${password}@127.0.0.1:5432/postgres`;
      let thrown: unknown = null;
      try {
        connect(url, { max: 1 });
      } catch (error) {
        thrown = error;
      }
      assert.ok(thrown instanceof Error, "connect refuses the URL");
      assertNoSecret(`${thrown.message}\n${thrown.stack}\n${Deno.inspect(thrown)}`, "the error");
      assert.match(thrown.message, /cannot be parsed/);
    }
    // The same through a CLI script, as an operator sees it in a terminal or a CI log.
    const run = await runScript(
      "scripts/migrate.ts",
      [],
      `postgresql://postgres:p#${DB_PASSWORD}@127.0.0.1:5432/postgres`,
    );
    assert.notEqual(run.code, 0);
    assertNoSecret(run.stdout + run.stderr, "deno task migrate's output");
    assert.match(run.stderr, /cannot be parsed/);
  },
  HOLDS_DB,
);

dbTest("secrets: chatwoot-webhook's logs and answers hold none, database down or token wrong", async () => {
  // Database unreachable, its URL carrying a password: postgres.js' connection errors must not echo it.
  const deadSql = connect(`postgresql://postgres:${DB_PASSWORD}@127.0.0.1:${CLOSED_PORT}/postgres`, {
    max: 1,
  });
  const down = createChatwootWebhookApp({
    config: webhookConfigFromEnv({ CHATWOOT_WEBHOOK_SECRET: TEST_SECRET }),
    sql: deadSql,
    log: jsonLogger,
  });
  const { result: refused, output: downLog } = await capturingConsole(async () =>
    await answer(await down.fetch(signedRequest(URL_BASE, message())))
  );
  await deadSql.end({ timeout: 1 });
  assert.equal(refused.status, 503);
  assert.match(downLog, /Store failed/);
  assertNoSecret(downLog + refused.text, "database-down output");

  // The URL-token path: neither the configured token nor a presented one is logged or answered.
  const app = createChatwootWebhookApp({
    config: webhookConfigFromEnv({
      CHATWOOT_WEBHOOK_SECRET: TEST_SECRET,
      CHATWOOT_WEBHOOK_URL_TOKEN: URL_TOKEN,
    }),
    sql,
    log: jsonLogger,
  });
  const guess = "guess-SECRET-0123456789abcdef";
  const { result, output } = await capturingConsole(async () => {
    const post = async (url: string, init: RequestInit) =>
      await answer(await app.fetch(new Request(url, { method: "POST", ...init })));
    const json = { "content-type": "application/json" };
    return [
      await post(`${URL_BASE}?token=${URL_TOKEN}`, { headers: json, body: message() }),
      await post(`${URL_BASE}?token=${guess}`, { headers: json, body: message() }),
      await post(`${URL_BASE}?token=${URL_TOKEN}`, { headers: json, body: "{not json" }),
      await answer(
        await app.fetch(signedRequest(`${URL_BASE}?token=${URL_TOKEN}`, message(), { secret: "wrong" })),
      ),
    ];
  });
  assert.deepEqual(result.map((r) => r.status), [200, 401, 400, 401]);
  assertNoSecret(output + result.map((r) => r.text).join("\n"), "webhook output", [...SECRETS, guess]);
});

for (const transport of ["fetch", "undici"] as const) {
  dbTest(`secrets: an unreachable Agent SDK with credentials in its URL (${transport})`, async () => {
    await fastSettings(sql, { max_attempts: 5, request_timeout_ms: 2000 });
    // Only this test's event is due (earlier tests' events are set aside).
    await sql`update webhook_events set status = 'skipped' where status = 'pending'`;
    const id = await storeSample(sql);
    const pooled = transport === "undici" ? undiciTransport() : null;
    const options: DrainOptions = {
      log: jsonLogger,
      maxEvents: 1,
      ...(pooled ? { transport: pooled.send } : {}),
    };
    const { result: summary, output } = await capturingConsole(() =>
      drain(sql, {
        agentSdkUrl: `http://relay:${AGENT_SDK_PASSWORD}@127.0.0.1:${CLOSED_PORT}/agent?x=1`,
        agentSdkSecret: AGENT_SDK_SECRET,
        agentSdkToken: AGENT_SDK_TOKEN,
      }, options)
    );
    await pooled?.close();
    assert.equal(summary.retried, 1);
    const [row] = await sql`
      select e.last_error, a.error, a.response_excerpt
        from webhook_events e join webhook_delivery_attempts a on a.event_id = e.id
       where e.id = ${id}`;
    assert.ok(row.error, "the attempt's error is recorded");
    assertNoSecret(
      `${output}\n${JSON.stringify(summary)}\n${JSON.stringify(row)}`,
      "forwarder output and rows",
    );
    await sql`update webhook_events set status = 'skipped' where id = ${id}`;
  });
}

for (const transport of ["fetch", "undici"] as const) {
  dbTest(`secrets: an Agent SDK that echoes our credentials in its answer (${transport})`, async () => {
    // A gateway's or a framework's error page quoting the request: the answer's start is logged and stored
    // (response_excerpt), and neither may then hold the token, the Basic credentials or the URL's ?key=.
    const key = "gatewaykey-SECRET-3b7e";
    let cut = false;
    const agent = startAgentSdk((r) => {
      const authorization = r.headers.get("authorization")!;
      const quoted = `denied ${r.url} authorization=${authorization} ` +
        `decoded=${atob(authorization.replace(/^Basic /, "").replace(/^Bearer .*/, ""))}`;
      // Or the token quoted where the excerpt ends (EXCERPT_BYTES): its start is a secret's start.
      const body = cut ? `denied ${"-".repeat(EXCERPT_BYTES - 30)} ${authorization}` : quoted;
      return new Response(body, { status: 401 });
    });
    const pooled = transport === "undici" ? undiciTransport() : null;
    try {
      await fastSettings(sql, { max_attempts: 5, request_timeout_ms: 5000 });
      for (
        const [agentSdkToken, cutOff] of [[AGENT_SDK_TOKEN, false], [null, false], [
          AGENT_SDK_TOKEN,
          true,
        ]] as const
      ) {
        cut = cutOff;
        await sql`update webhook_events set status = 'skipped' where status = 'pending'`;
        const id = await storeSample(sql);
        const { result: summary, output } = await capturingConsole(() =>
          drain(sql, {
            agentSdkUrl: agent.url.replace("http://", `http://relay:${AGENT_SDK_PASSWORD}@`) +
              `/a?key=${key}`,
            agentSdkSecret: AGENT_SDK_SECRET,
            agentSdkToken,
          }, { log: jsonLogger, maxEvents: 1, ...(pooled ? { transport: pooled.send } : {}) })
        );
        assert.equal(summary.retried, 1);
        const [row] = await sql`
          select e.last_error, a.error, a.response_excerpt
            from webhook_events e join webhook_delivery_attempts a on a.event_id = e.id
           where e.id = ${id}`;
        assert.match(row.response_excerpt, /^denied /, "the answer's start is still kept");
        const basic = btoa(`relay:${AGENT_SDK_PASSWORD}`);
        assertNoSecret(
          `${output}\n${JSON.stringify(summary)}\n${JSON.stringify(row)}`,
          `forwarder output and rows (token ${agentSdkToken ? "set" : "unset"}${cut ? ", cut off" : ""})`,
          [...SECRETS, key, basic, ...(cut ? [AGENT_SDK_TOKEN.slice(0, 10)] : [])],
        );
        await sql`update webhook_events set status = 'skipped' where id = ${id}`;
      }
    } finally {
      await pooled?.close();
      await agent.close();
    }
  });
}

dbTest("secrets: an Agent SDK that quotes a ?key= holding '+' as it read it (a space)", async () => {
  // Base64 keys hold "+", and one written as is in AGENT_SDK_URL reaches a gateway that reads the query as a
  // form does ("+" is a space): its 401 page quotes the key so, and that form is the key too.
  const key = "gatewaykey+SECRET+9d4a/Zq";
  const agent = startAgentSdk((r) =>
    new Response(`invalid key ${new URL(r.url).searchParams.get("key")}`, { status: 401 })
  );
  try {
    await fastSettings(sql, { max_attempts: 5, request_timeout_ms: 5000 });
    await sql`update webhook_events set status = 'skipped' where status = 'pending'`;
    const id = await storeSample(sql);
    const { result: summary, output } = await capturingConsole(() =>
      drain(sql, {
        agentSdkUrl: `${agent.url}/a?key=${key}`,
        agentSdkSecret: AGENT_SDK_SECRET,
        agentSdkToken: AGENT_SDK_TOKEN,
      }, { log: jsonLogger, maxEvents: 1 })
    );
    assert.equal(summary.retried, 1);
    const [row] = await sql`
      select e.last_error, a.error, a.response_excerpt
        from webhook_events e join webhook_delivery_attempts a on a.event_id = e.id
       where e.id = ${id}`;
    assert.match(row.response_excerpt, /^invalid key /, "the answer's start is still kept");
    assertNoSecret(`${output}\n${JSON.stringify(row)}`, "forwarder output and rows", [
      key,
      key.replaceAll("+", " "),
    ]);
    await sql`update webhook_events set status = 'skipped' where id = ${id}`;
  } finally {
    await agent.close();
  }
});

dbTest("secrets: forward-events answers and logs a wrong token without either token", async () => {
  const guess = "guess-SECRET-fedcba9876543210";
  const app = createForwardEventsApp({
    auth: { forwarderTokens: [FORWARDER_TOKEN], serviceRoleKey: null },
    forwarder: { agentSdkUrl: null, agentSdkSecret: AGENT_SDK_SECRET, agentSdkToken: AGENT_SDK_TOKEN },
    sql,
    log: jsonLogger,
  });
  const { result, output } = await capturingConsole(async () =>
    await answer(
      await app.fetch(
        new Request("http://functions.local/forward-events", {
          method: "POST",
          headers: { Authorization: `Bearer ${guess}` },
        }),
      ),
    )
  );
  assert.equal(result.status, 401);
  assertNoSecret(output + result.text, "forward-events output", [...SECRETS, guess]);
});

dbTest("secrets: the public readiness page never shows a password in CHATWOOT_BASE_URL", async () => {
  await ensureDeliveryHealthView(sql);
  const chatwoot = startChatwootStandIn();
  try {
    for (const base of [chatwoot.url, `http://127.0.0.1:${CLOSED_PORT}`]) {
      // Basic auth in front of Chatwoot: the credentials ride in the URL (fetch sends them as Authorization).
      const withPassword = base.replace("http://", `http://ops:${CHATWOOT_PASSWORD}@`);
      const app = createReadinessApp({
        sql,
        env: fullEnv(withPassword, { CHATWOOT_WEBHOOK_SECRET: TEST_SECRET, AGENT_SDK_TOKEN }),
        log: jsonLogger,
        cacheMs: 0,
        checkTimeoutMs: 10_000,
      });
      const { result, output } = await capturingConsole(async () => [
        await (await app.request("/readiness")).text(),
        await (await app.request("/readiness?format=markdown")).text(),
        await (await app.request("/readiness?format=html")).text(),
        await (await app.request("/readiness/probe")).text(),
      ]);
      const health = JSON.parse(result[0]).checks.find((c: { name: string }) => c.name === "chatwoot_health");
      assert.equal(health.status, base === chatwoot.url ? "pass" : "fail", JSON.stringify(health));
      assertNoSecret(output + result.join("\n"), `readiness output (${health.status})`);
    }
  } finally {
    await chatwoot.close();
  }
});

dbTest(
  "secrets: a password in AGENT_SDK_URL or CHATWOOT_BASE_URL is refused as readiness evidence",
  async () => {
    // Evidence and notes are shown on the public page: the secrets the functions hold are refused there, and a
    // URL's password is one (a pasted URL that "proves" forwarding is set up), as written or percent-decoded.
    await ensureDeliveryHealthView(sql);
    const chatwoot = startChatwootStandIn();
    try {
      const encoded = "cwpw%2FSECRET%2B0d8e";
      const env = fullEnv(chatwoot.url.replace("http://", `http://ops:${encoded}@`), {
        CHATWOOT_BASE_URL_PROD: chatwoot.url.replace("http://", `http://ops:${CHATWOOT_PASSWORD}@`),
        AGENT_SDK_URL: `https://relay:${AGENT_SDK_PASSWORD}@agent.example.com/base`,
      });
      const app = createReadinessApp({ sql, env, log: jsonLogger, cacheMs: 0, checkTimeoutMs: 10_000 });
      const pasted = [
        `forwarding to https://relay:${AGENT_SDK_PASSWORD}@agent.example.com/base`,
        `basic auth ${CHATWOOT_PASSWORD} in front of Chatwoot`,
        `basic auth ${encoded} in front of Chatwoot`,
        "basic auth cwpw/SECRET+0d8e in front of Chatwoot",
      ];
      for (const evidence of pasted) {
        const res = await app.request("/readiness/items/task-2", {
          method: "PATCH",
          headers: {
            "content-type": "application/json",
            authorization: `Bearer ${env.READINESS_ADMIN_TOKEN}`,
          },
          body: JSON.stringify({ status: "done", evidence }),
        });
        const body = await answer(res);
        assert.deepEqual([body.status, body.body.error], [400, "secret_in_evidence"], evidence);
      }
      const page = await (await app.request("/readiness")).text();
      assertNoSecret(page, "the readiness page", [...SECRETS, encoded, "cwpw/SECRET+0d8e"]);
    } finally {
      await chatwoot.close();
    }
  },
);

dbIndependentTest({
  name: "secrets: deno task dev prints the Agent SDK URL without its password",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "relay-dev-" });
    const dev = await startDev({
      RELAY_DATA_DIR: dataDir,
      AGENT_SDK_URL: `http://relay:${AGENT_SDK_PASSWORD}@127.0.0.1:${CLOSED_PORT}`,
      AGENT_SDK_TOKEN,
      AGENT_SDK_SECRET,
    });
    try {
      const printed = dev.lines.join("\n");
      assert.match(printed, /forwarder\s+-> http:\/\/relay:\*\*\*@127\.0\.0\.1:\d+/);
      assertNoSecret(printed, "deno task dev's output");
    } finally {
      await dev.stop();
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  },
});

// ---------------------------------------------------------------------------------------------------------
// Bodies jsonb cannot hold, and a database that stops answering
// ---------------------------------------------------------------------------------------------------------

async function rowsFor(messageId: number): Promise<number> {
  const [{ n }] = await sql<{ n: number }[]>`
    select count(*)::int as n from webhook_events where message_id = ${messageId}`;
  return n;
}

/** chatwoot-webhook on this file's database, verifying TEST_SECRET's signatures. */
function signedWebhookApp(log: Logger) {
  return createChatwootWebhookApp({
    config: webhookConfigFromEnv({ CHATWOOT_WEBHOOK_SECRET: TEST_SECRET }),
    sql,
    log,
  });
}

/** A message_created with `extra` spliced in as raw JSON text (so it can hold what JSON.stringify never writes). */
function messageWith(extra: string): { id: number; body: string } {
  const id = nextId++;
  const body = JSON.stringify(samplePayload("message_created", { messageId: id })).replace(
    /}$/,
    `,${extra}}`,
  );
  return { id, body };
}

/** Each of `cases` ([what, extra JSON text]) spliced into a message is refused 400 invalid_payload, unstored. */
async function assertRefusedInvalid(
  app: ReturnType<typeof signedWebhookApp>,
  cases: Array<[string, string]>,
) {
  for (const [what, extra] of cases) {
    const { id, body } = messageWith(extra);
    const res = await answer(await app.fetch(signedRequest(URL_BASE, body)));
    assert.equal(res.status, 400, `${what}: ${res.text}`);
    assert.equal(res.body.error, "invalid_payload", what);
    assert.equal(await rowsFor(id), 0, what);
  }
}

dbTest(
  `webhook [${db.kind}]: JSON that jsonb cannot hold gets 400 invalid_payload, nothing stored`,
  async () => {
    const log = memoryLogger();
    const app = signedWebhookApp(log);
    const nest = (depth: number) => `"deep":${"[".repeat(depth)}${"]".repeat(depth)}`;
    const cases: Array<[string, string]> = [
      ["a lone surrogate escape (half an emoji)", `"note":"cut \\ud83d"`],
      ["a number beyond numeric's range", `"n":1e1000000`],
      // The body itself is level 1: this array's innermost level is MAX_JSON_DEPTH + 1.
      ["nesting one level too deep", nest(MAX_JSON_DEPTH)],
      ["nesting 100 000 levels deep", nest(100_000)],
    ];
    await assertRefusedInvalid(app, cases);
    assert.ok(
      !log.lines.some((l) => l.level === "error"),
      JSON.stringify(log.lines.filter((l) => l.level === "error")),
    );
    // Nesting up to the limit is stored, byte for byte; and the database still answers after all of the above.
    const { id, body } = messageWith(nest(MAX_JSON_DEPTH - 1));
    const stored = await answer(await app.fetch(signedRequest(URL_BASE, body)));
    assert.equal(stored.status, 200, stored.text);
    const [row] = await sql`select raw_body from webhook_events where message_id = ${id}`;
    assert.equal(row.raw_body, body);
  },
);

dbTest(
  `webhook [${db.kind}]: a number whose exponent jsonb would write out in full gets 400, nothing stored`,
  async () => {
    const log = memoryLogger();
    const app = signedWebhookApp(log);
    // numeric holds 1e130000 in a few bytes but writes it as 130 001 digits: every read of the row (the views,
    // the forwarder's claim, stats) ran out of memory or returned megabytes.
    const cases: Array<[string, string]> = [
      ["a huge exponent", `"x":1e130000`],
      ["a huge negative exponent", `"x":-2.5E-16000`],
      ["an exponent one past the limit", `"x":1e1001`],
      ["an exponent written with leading zeros", `"x":1e00000000000130000`],
      ["exponents at the limit adding up past the body's allowance", `"xs":[${Array(1001).fill("1e1000")}]`],
    ];
    await assertRefusedInvalid(app, cases);
    assert.ok(!log.lines.some((l) => l.level === "error"));
    // Modest exponents, one at the limit, and exponent-like text inside strings are stored and read back.
    const { id, body } = messageWith(
      String.raw`"a":1e5,"b":2.5E-3,"c":-1e+2,"d":1e1000,"e":1E-1000,"note":"1e130000 \"2e99999\"",` +
        String.raw`"path":"C:\\","r":"3e5000","1e130000":0`,
    );
    const stored = await answer(await app.fetch(signedRequest(URL_BASE, body)));
    assert.equal(stored.status, 200, stored.text);
    const [row] = await sql`
      select e.raw_body, (e.payload ->> 'a')::numeric = 100000 as a, (e.payload ->> 'b')::numeric = 0.0025 as b
        from webhook_events e join public.chatwoot_messages m on m.message_id = e.message_id
       where e.message_id = ${id}`;
    assert.deepEqual(row, { raw_body: body, a: true, b: true });
  },
);

dbTest(
  `webhook [${db.kind}]: a database that stops answering is logged as such, not as "no attempt made"`,
  async () => {
    const log = memoryLogger();
    const app = signedWebhookApp(log);
    // A long lock on the table (a migration, a careless query): the ingest waits and never gets an answer.
    // Connections opened first, so that the store waits on the lock, not on a new connection (on PGlite,
    // opening one while the holder's transaction is open times out).
    await Promise.all([1, 2, 3].map(() => sql`select pg_sleep(0.05)`));
    const lock = await lockWebhookEvents(sql);
    const body = message();
    try {
      const res = await answer(await app.fetch(signedRequest(URL_BASE, body)));
      assert.equal(res.status, 503);
      assert.equal(res.body.error, "database_unavailable");
      const failure = log.lines.find((l) => l.msg === "[Chatwoot Webhook] Store failed");
      assert.match(String(failure?.error), /no answer from the database within \d+ ms/);
    } finally {
      await lock.release();
    }
    // The statement that was waiting stores the event once the lock is gone; the late store takes its answer
    // instead of sending a second one, which would count the event as its own duplicate.
    await assertStoredLateOnce(log, sql, body);
  },
);

dbTest(
  `data surface [${db.kind}]: a stored time that names no real time reads as null, not an error for every query`,
  async () => {
    const app = signedWebhookApp(memoryLogger());
    // Accepted at ingest (the schema checks the type, not the calendar) and stored as sent.
    const odd = ["2026-02-30T10:00:00Z", "2026-13-01T10:00:00Z", "0000-01-01T00:00:00Z", 1e20, 1e-400];
    const messageIds: number[] = [];
    const conversationIds: number[] = [];
    for (const value of odd) {
      const id = nextId++;
      const text = typeof value === "string" ? JSON.stringify(value) : value === 1e-400 ? "1e-400" : "1e20";
      const message = JSON.stringify(samplePayload("message_created", { messageId: id }))
        .replace(/"created_at":"[^"]*"/, `"created_at":${text}`);
      const conversation = JSON.stringify(samplePayload("conversation_updated", { conversationId: id }))
        .replace(/"updated_at":[\d.]+/, `"updated_at":${text}`);
      assert.ok(message.includes(`"created_at":${text}`) && conversation.includes(`"updated_at":${text}`));
      for (const body of [message, conversation]) {
        const res = await answer(await app.fetch(signedRequest(URL_BASE, body)));
        assert.equal(res.status, 200, res.text);
      }
      messageIds.push(id);
      conversationIds.push(id);
    }
    const messages = await sql`
      select message_id, created_at from public.chatwoot_messages where message_id = any(${messageIds}::bigint[])`;
    assert.equal(messages.length, odd.length);
    assert.deepEqual(
      messages.map((m) => m.created_at === null || m.created_at.getTime() === 0),
      odd.map(() => true),
    );
    const events = await sql`
      select conversation_id, occurred_at from public.chatwoot_conversation_events
       where conversation_id = any(${conversationIds}::bigint[])`;
    assert.ok(events.length >= odd.length);
    assert.ok(events.every((e) => e.occurred_at === null || e.occurred_at.getTime() === 0));
    // Real times still read as before.
    const [t] = await sql`
      select public.chatwoot_timestamp('"2024-02-29T10:00:00.5+01:00"') as iso,
             public.chatwoot_timestamp('1700000000.25') as epoch,
             public.chatwoot_timestamp('"1700000000"') as epoch_text`;
    assert.equal(t.iso.toISOString(), "2024-02-29T09:00:00.500Z");
    assert.equal(t.epoch.toISOString(), "2023-11-14T22:13:20.250Z");
    assert.equal(t.epoch_text.toISOString(), "2023-11-14T22:13:20.000Z");
  },
);

dbTest(
  `data surface [${db.kind}]: a sender id written 1.0 reads as the integer, not an error for every query`,
  async () => {
    const app = signedWebhookApp(memoryLogger());
    const id = nextId++;
    // JSON has one number type: 512.0 is the integer the schema asks for, and jsonb keeps it as written.
    const body = JSON.stringify(samplePayload("message_created", { messageId: id, contactId: 512 }))
      .replace(`"sender":{"id":512,`, `"sender":{"id":512.0,`);
    assert.ok(body.includes(`"sender":{"id":512.0,`));
    const res = await answer(await app.fetch(signedRequest(URL_BASE, body)));
    assert.equal(res.status, 200, res.text);
    const [m] = await sql`select sender_id from public.chatwoot_messages where message_id = ${id}`;
    assert.equal(Number(m.sender_id), 512);
    await sql`select count(sender_id) from public.chatwoot_messages`;
    const [ids] = await sql`
      select public.chatwoot_id('7') as seven, public.chatwoot_id('-3.00') as minus_three,
             public.chatwoot_id('1.5') as fraction, public.chatwoot_id('"7"') as text,
             public.chatwoot_id('1e30') as too_big, public.chatwoot_id('null') as json_null`;
    assert.deepEqual(
      { ...ids },
      { seven: "7", minus_three: "-3", fraction: null, text: null, too_big: null, json_null: null },
    );
  },
);

dbTest(
  `webhook [${db.kind}]: a body cut off mid-read gets the JSON 400 body_incomplete and one log line`,
  async () => {
    const log = memoryLogger();
    const app = signedWebhookApp(log);
    const cut = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"event":"message_created",'));
      },
      pull(controller) {
        controller.error(new Error("connection reset by peer"));
      },
    });
    const { result, output } = await capturingConsole(async () =>
      await app.fetch(
        new Request(URL_BASE, { method: "POST", headers: { "content-type": "application/json" }, body: cut }),
      )
    );
    // The client went away: a refusal (warn), not an error of ours.
    assert.equal(result.status, 400);
    assert.equal((await result.json()).error, "body_incomplete");
    assert.equal(output, "", "nothing printed past the logger");
    assert.deepEqual(log.lines.map((l) => [l.level, l.msg, l.error]), [
      ["warn", "[Chatwoot Webhook] Rejected", "body_incomplete"],
    ]);
  },
);

Deno.test({
  name: `secrets [${db.kind}]: close database`,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () => db.close(),
});
