// Operators' typos in settings: each is named (the setting, never its value) where the operator looks, and
// does not pass for a working setup. No database needed: every answer here comes before any query.
import assert from "node:assert/strict";
import { createForwardEventsApp } from "../supabase/functions/_shared/forward_events.ts";
import { forwardEventsAuthFromEnv } from "../supabase/functions/_shared/forwarder_config.ts";
import { devCommand, startDev } from "./_dev.ts";
import { serveOnLoopback } from "./_http.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";
import { createReadinessApp, readinessApp } from "../supabase/functions/_shared/readiness.ts";
import { checkChatwootApi, readinessConfigFromEnv } from "../supabase/functions/_shared/readiness_checks.ts";
import { webhookConfigFromEnv } from "../supabase/functions/_shared/webhook_config.ts";
import { runtimeFromEnv } from "../supabase/functions/_shared/runtime.ts";
import { chatwootWebhookApp } from "../supabase/functions/_shared/chatwoot_webhook.ts";
import { forwardEventsApp } from "../supabase/functions/_shared/forward_events.ts";
import { dbIndependentTest } from "./_db.ts";

const TOKEN = "a-long-random-token-0123456789";
/** Pasted with the value and invisible in a terminal or a dashboard's secret field. */
const INVISIBLE = ["\u200b", "\u00ad", "\ufeff x"].map((tail) => TOKEN + tail);

dbIndependentTest(
  "FORWARDER_TOKEN with a character no Authorization header carries: 503 naming it, not 401",
  async () => {
    for (const value of [...INVISIBLE, "a-long-random token-0123456789", `${TOKEN},${TOKEN}\u200b`]) {
      const app = createForwardEventsApp({
        auth: forwardEventsAuthFromEnv({ FORWARDER_TOKEN: value }),
        forwarder: { agentSdkUrl: null, agentSdkSecret: null, agentSdkToken: null },
        sql: null,
        log: memoryLogger(),
      });
      const response = await app.request("/forward-events", {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      const text = await response.text();
      assert.equal(response.status, 503, JSON.stringify(value));
      assert.equal(JSON.parse(text).error, "not_configured");
      assert.match(text, /FORWARDER_TOKEN holds characters an HTTP header cannot carry/);
      assert.ok(!text.includes(TOKEN.slice(2)), "the value is never shown");
    }
  },
);

dbIndependentTest(
  "READINESS_ADMIN_TOKEN with a character no Authorization header carries: 503 naming it",
  async () => {
    for (const value of INVISIBLE) {
      const app = createReadinessApp({
        sql: null,
        env: { READINESS_ADMIN_TOKEN: value },
        log: memoryLogger(),
      });
      const response = await app.request("/readiness/items/task-2", {
        method: "PATCH",
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ status: "done" }),
      });
      const text = await response.text();
      assert.equal(response.status, 503, JSON.stringify(value));
      assert.equal(JSON.parse(text).error, "not_configured");
      assert.match(text, /READINESS_ADMIN_TOKEN holds characters/);
      assert.ok(!text.includes(TOKEN.slice(2)), "the value is never shown");
    }
  },
);

dbIndependentTest("READINESS_CHECK_TIMEOUT_MS beyond what a request can wait: 503 naming it", async () => {
  // 3 000 000 000 ms overflowed the timers (at most 2^31 - 1 ms): every check and the report gave up at once, and
  // GET answered 503 "database_unavailable, unreachable" of a database that answered.
  for (const value of ["3000000000", "120001"]) {
    const app = createReadinessApp({
      sql: null,
      env: { READINESS_CHECK_TIMEOUT_MS: value },
      log: memoryLogger(),
    });
    const response = await app.request("/readiness");
    const body = await response.json();
    assert.equal(response.status, 503, value);
    assert.equal(body.error, "not_configured");
    assert.match(body.message, /READINESS_CHECK_TIMEOUT_MS must be an integer from 1 to 120000/);
  }
  assert.equal(readinessConfigFromEnv({ READINESS_CHECK_TIMEOUT_MS: "120000" }).checkTimeoutMs, 120_000);
});

dbIndependentTest(
  "a DATABASE_POOL_SIZE typo: the default pool of 5, said once at start, naming it; no 503",
  async () => {
    const password = "a-real-password-0123456789";
    const url = `postgresql://postgres:${password}@127.0.0.1:1/postgres`;
    for (const value of ["10 connections", "30s", "-1", "0x10", "0"]) {
      const log = memoryLogger();
      const runtime = runtimeFromEnv({ DATABASE_URL: url, DATABASE_POOL_SIZE: value }, log);
      try {
        // It answered every request of every function 503 not_configured: a webhook so answered is lost.
        assert.ok(runtime.sql, value);
        assert.equal(runtime.databaseProblem ?? null, null);
        assert.equal(runtime.sql.options.max, 5);
        const warning = "DATABASE_POOL_SIZE must be an integer from 1 to 100; using the default 5";
        assert.deepEqual(log.lines.map((l) => [l.level, l.problem]), [["warn", warning]], "once, at start");
      } finally {
        await runtime.sql?.end();
      }
    }
  },
);

dbIndependentTest(
  "a database URL typo: every function answers 503 naming it, none fails to boot",
  async () => {
    const password = "a-real-password-0123456789";
    const url = `postgresql://postgres:${password}@127.0.0.1:1/postgres`;
    const cases: [Record<string, string>, RegExp][] = [
      [{ SUPABASE_DB_URL: `"${url}"` }, /DATABASE_URL \/ SUPABASE_DB_URL\) is not a postgresql:/],
      // postgres.js sends text as UTF-8 whatever the URL asks the server to read it as: stored garbled, and the
      // ingest's inline literals (sql_literal.ts) quote for UTF-8 alone.
      [{ DATABASE_URL: `${url}?client_encoding=SJIS` }, /client_encoding/],
      [{ DATABASE_URL: `${url}?options=-c%20client_encoding%3DLATIN1` }, /client_encoding/],
    ];
    for (const [env, named] of cases) {
      const log = memoryLogger();
      // index.ts builds its app from this at start: a throw here was the worker's boot error, a stack trace.
      const runtime = runtimeFromEnv({ CHATWOOT_WEBHOOK_SECRET: TOKEN, FORWARDER_TOKEN: TOKEN, ...env }, log);
      assert.equal(runtime.sql, null);
      const requests: [ReturnType<typeof chatwootWebhookApp>, string, RequestInit][] = [
        [chatwootWebhookApp(runtime), "/chatwoot-webhook", { method: "POST" }],
        [forwardEventsApp(runtime), "/forward-events", {
          method: "POST",
          headers: { authorization: `Bearer ${TOKEN}` },
        }],
        [readinessApp(runtime), "/readiness", {}],
      ];
      for (const [app, path, init] of requests) {
        const response = await app.request(path, init);
        const text = await response.text();
        assert.equal(response.status, 503, `${path} ${text}`);
        assert.equal(JSON.parse(text).error, "not_configured");
        assert.match(text, named, path);
        assert.ok(!text.includes(password));
      }
      assert.ok(
        log.lines.some((l) => named.test(String(l.problem))),
        "said once at start, in the function's log",
      );
      assert.ok(!JSON.stringify(log.lines).includes(password));
    }
  },
);

dbIndependentTest(
  "deno task dev names at start every setting a function refuses, never its value",
  async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "relay_misconfig_" });
    const dev = await startDev({
      RELAY_DATA_DIR: dataDir,
      CHATWOOT_WEBHOOK_TOLERANCE_SECONDS: "30s",
      CHATWOOT_WEBHOOK_MAX_BODY_BYTES: "0x10",
      DATABASE_POOL_SIZE: "-1",
      READINESS_CACHE_SECONDS: "30s",
      FORWARDER_TOKEN: `${TOKEN}\u200b`,
    });
    try {
      const before = dev.lines.slice(0, dev.lines.findIndex((l) => l.startsWith("Ready:")) + 1).join("\n");
      // A knob with a safe default is not a reason to lose webhooks: its default is used, and said.
      assert.match(
        before,
        /chatwoot-webhook.*CHATWOOT_WEBHOOK_TOLERANCE_SECONDS must be an integer from 1 to 86400; using the default 300/,
      );
      assert.match(
        before,
        /chatwoot-webhook.*CHATWOOT_WEBHOOK_MAX_BODY_BYTES must be an integer from 1 to 67108864; using the default 6291456/,
      );
      assert.match(before, /DATABASE_POOL_SIZE must be an integer from 1 to 100; using the default 5/);
      assert.doesNotMatch(before, /chatwoot-webhook.*NOT CONFIGURED/);
      assert.ok(!/0x10|"-1"|=-1/.test(before), "never the value");
      const webhook = await fetch(`${dev.base}/functions/v1/chatwoot-webhook`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{}",
      });
      assert.equal(webhook.status, 401, "checked as usual (no signature), not 503 not_configured");
      assert.equal((await webhook.json()).error, "signature_missing");
      assert.match(before, /readiness.*READINESS_CACHE_SECONDS must be an integer/);
      assert.match(before, /forward-events.*FORWARDER_TOKEN holds characters/);
      assert.ok(!before.includes(TOKEN.slice(2)));
    } finally {
      await dev.stop();
      await Deno.remove(dataDir, { recursive: true });
    }
  },
);

dbIndependentTest(
  "deno task dev: PORT, DB_PORT or FORWARDER_SWEEP_MS not a number: a line naming it, exit 2",
  async () => {
    for (const name of ["PORT", "DB_PORT", "FORWARDER_SWEEP_MS"]) {
      const out = await devCommand({ [name]: "54321x", RELAY_DATA_DIR: "/nonexistent/relay_misconfig" })
        .output();
      const stderr = new TextDecoder().decode(out.stderr);
      // A setting refused: 2, as every task's usage or setting error (1 is for failures at work).
      assert.equal(out.code, 2, stderr);
      assert.match(stderr, new RegExp(`^${name} must be an integer from \\d+ to \\d+\n$`, "m"));
      assert.doesNotMatch(stderr, /\bat \S+\.ts:\d+/, "no stack trace");
    }
  },
);

dbIndependentTest(
  "deno task dev: a port past 65535, a sweep out of forward's range: a line naming it",
  async () => {
    // A port past 65535 was Deno.serve's stack trace. A sweep past 2^31 - 1 ms made setInterval fire at once,
    // every time: the forwarder loop polled the database without pause.
    const cases: [string, string, string][] = [
      ["PORT", "65536", "from 0 to 65535"],
      ["DB_PORT", "70000", "from 0 to 65535"],
      ["FORWARDER_SWEEP_MS", "2147483648", "from 10 to 3600000"],
      ["FORWARDER_SWEEP_MS", "3600001", "from 10 to 3600000"],
      // deno task forward --sweep-ms's bound (one rule for both): 1 ms had the loop poll the database nearly
      // without pause, and was taken here while forward refused it.
      ["FORWARDER_SWEEP_MS", "1", "from 10 to 3600000"],
      ["FORWARDER_SWEEP_MS", "9", "from 10 to 3600000"],
    ];
    for (const [name, value, range] of cases) {
      const out = await devCommand({ [name]: value, RELAY_DATA_DIR: "/nonexistent/relay_misconfig" })
        .output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 2, `${name}=${value}: ${stderr}`);
      assert.equal(stderr, `${name} must be an integer ${range}\n`, `${name}=${value}`);
    }
  },
);

dbIndependentTest(
  "CHATWOOT_WEBHOOK_TOLERANCE_SECONDS over a day: the default 300, said; a day is taken",
  () => {
    // A year's tolerance let a signed body captured once be posted again a year later (webhook.test.ts shows it
    // refused end to end).
    for (const value of ["86401", "31536000", "9007199254740991"]) {
      const result = webhookConfigFromEnv({
        CHATWOOT_WEBHOOK_SECRET: TOKEN,
        CHATWOOT_WEBHOOK_TOLERANCE_SECONDS: value,
      });
      assert.ok(result.ok, value);
      assert.equal(result.config.toleranceSeconds, 300, value);
      assert.deepEqual(result.warnings, [
        "CHATWOOT_WEBHOOK_TOLERANCE_SECONDS must be an integer from 1 to 86400; using the default 300",
      ], value);
    }
    const day = webhookConfigFromEnv({
      CHATWOOT_WEBHOOK_SECRET: TOKEN,
      CHATWOOT_WEBHOOK_TOLERANCE_SECONDS: "86400",
    });
    assert.ok(day.ok && day.config.toleranceSeconds === 86_400 && day.warnings.length === 0);
  },
);

dbIndependentTest("CHATWOOT_WEBHOOK_MAX_BODY_BYTES over 64 MiB: the default, said; 64 MiB is taken", () => {
  // No bound at all: a body past 512 Mi characters cannot even be a string (a 500, the event lost), and one
  // far below runs a hosted function out of memory with every request it holds.
  for (const value of ["67108865", "9007199254740991"]) {
    const result = webhookConfigFromEnv({
      CHATWOOT_WEBHOOK_SECRET: TOKEN,
      CHATWOOT_WEBHOOK_MAX_BODY_BYTES: value,
    });
    assert.ok(result.ok, value);
    assert.equal(result.config.maxBodyBytes, 6 * 1024 * 1024, value);
    assert.deepEqual(result.warnings, [
      "CHATWOOT_WEBHOOK_MAX_BODY_BYTES must be an integer from 1 to 67108864; using the default 6291456",
    ], value);
  }
  const most = webhookConfigFromEnv({
    CHATWOOT_WEBHOOK_SECRET: TOKEN,
    CHATWOOT_WEBHOOK_MAX_BODY_BYTES: "67108864",
  });
  assert.ok(most.ok && most.config.maxBodyBytes === 64 * 1024 * 1024 && most.warnings.length === 0);
});

dbIndependentTest("DATABASE_POOL_SIZE over 100: the default pool of 5, said; the worker boots", async () => {
  // postgres.js builds all `max` connections' objects at start: 100 000 took 900 MB, a million ran out of
  // memory, 2^53 - 1 crashed the process at once (V8: "invalid array length").
  const url = "postgresql://postgres:a-real-password-0123456789@127.0.0.1:1/postgres";
  for (const value of ["101", "9007199254740991"]) {
    const log = memoryLogger();
    const runtime = runtimeFromEnv({ DATABASE_URL: url, DATABASE_POOL_SIZE: value }, log);
    try {
      assert.equal(runtime.databaseProblem ?? null, null, value);
      assert.ok(runtime.sql, value);
      assert.equal(runtime.sql.options.max, 5);
      assert.deepEqual(log.lines.map((l) => l.problem), [
        "DATABASE_POOL_SIZE must be an integer from 1 to 100; using the default 5",
      ]);
    } finally {
      await runtime.sql?.end();
    }
  }
  const most = runtimeFromEnv({ DATABASE_URL: url, DATABASE_POOL_SIZE: "100" }, memoryLogger());
  assert.equal(most.sql?.options.max, 100);
  await most.sql?.end();
});

dbIndependentTest("READINESS_CACHE_SECONDS over an hour: 503 naming it", async () => {
  // Cached for as long as it said, the probe went on answering what the checks saw once: an outage since
  // unseen by the uptime monitor.
  for (const value of ["3601", "9007199254740991"]) {
    const app = createReadinessApp({
      sql: null,
      env: { READINESS_CACHE_SECONDS: value },
      log: memoryLogger(),
    });
    const response = await app.request("/readiness/probe");
    const body = await response.json();
    assert.equal(response.status, 503, value);
    assert.equal(body.error, "not_configured", value);
    assert.match(body.message, /READINESS_CACHE_SECONDS must be an integer from 0 to 3600/);
  }
  assert.equal(readinessConfigFromEnv({ READINESS_CACHE_SECONDS: "3600" }).cacheMs, 3_600_000);
});

dbIndependentTest(
  "CHATWOOT_BASE_URL copied from the browser (/app/…): the API check fails on the dashboard's page",
  async () => {
    // Chatwoot answers every /app/… path with its dashboard page, 200, whatever the token.
    const paths: string[] = [];
    const server = serveOnLoopback((req) => {
      paths.push(new URL(req.url).pathname);
      return new Response("<!DOCTYPE html><html>Chatwoot</html>", {
        headers: { "content-type": "text/html" },
      });
    });
    try {
      const env = {
        CHATWOOT_BASE_URL: `${server.url}/app/accounts/7/dashboard`,
        CHATWOOT_API_TOKEN: "not-even-a-token",
        CHATWOOT_ACCOUNT_ID: "7",
      };
      const result = await checkChatwootApi({
        sql: null,
        env,
        config: readinessConfigFromEnv(env),
        now: () => new Date(),
      });
      assert.deepEqual(paths, ["/app/accounts/7/dashboard/api/v1/accounts/7"]);
      assert.equal(result.status, "fail", result.detail);
      assert.deepEqual(result.proves, []);
      assert.match(result.detail, /not JSON.*CHATWOOT_BASE_URL/);
    } finally {
      await server.stop();
    }
  },
);

dbIndependentTest(
  "a number setting is written in decimal digits: 0x10, 1e3, 4194304.0 are refused, not read",
  () => {
    for (const value of ["0x10", "0b11", "1e3", "4194304.0", "+300", "99999999999999999999"]) {
      const result = webhookConfigFromEnv({
        CHATWOOT_WEBHOOK_SECRET: TOKEN,
        CHATWOOT_WEBHOOK_MAX_BODY_BYTES: value,
      });
      // Read by Number(), "0x10" was a 16-byte limit: every webhook answered 413 and lost. Refused, the
      // default is used and said.
      assert.ok(result.ok, value);
      assert.equal(result.config.maxBodyBytes, 6 * 1024 * 1024, value);
      assert.deepEqual(result.warnings, [
        "CHATWOOT_WEBHOOK_MAX_BODY_BYTES must be an integer from 1 to 67108864; using the default 6291456",
      ], value);
    }
    const spaced = webhookConfigFromEnv({
      CHATWOOT_WEBHOOK_SECRET: TOKEN,
      CHATWOOT_WEBHOOK_MAX_BODY_BYTES: " 1024\n",
    });
    assert.ok(spaced.ok && spaced.config.maxBodyBytes === 1024);
  },
);
