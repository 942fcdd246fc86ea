// The two commands of the README, for real: `deno task dev` as a subprocess, a signed webhook over HTTP,
// `deno task send`, and supabase-js reaching the function through Supabase's URL layout.
import assert from "node:assert/strict";
import { createClient } from "@supabase/supabase-js";
import postgres from "postgres";
import { chatwootSignatureHeaders } from "../supabase/functions/_shared/signature.ts";
import { samplePayload } from "../scripts/lib/samples.ts";
import { dbIndependentTest, lockWebhookEvents, startTestDb, type TestDb } from "./_db.ts";
import { devCommand, startDev } from "./_dev.ts";
import { startAgentSdk } from "./_agent_sdk.ts";
import { startDbProxy } from "./_proxy.ts";
import { startEmbeddedDb } from "../scripts/lib/embedded_db.ts";
import { connect } from "../supabase/functions/_shared/db.ts";
import { CLOSED_PORT } from "./_closed_port.ts";

const ROOT = new URL("..", import.meta.url).pathname;

async function signedPost(url: string, secret: string, body: string) {
  return await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...chatwootSignatureHeaders(secret, body) },
    body,
  });
}

Deno.test({
  name: "e2e: deno task dev serves the function, stores a signed webhook, and keeps it across restarts",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "relay-dev-" });
    const external: TestDb | null = Deno.env.get("DATABASE_URL") ? await startTestDb() : null;
    const env: Record<string, string> = { RELAY_DATA_DIR: dataDir };
    if (external) env.DATABASE_URL = external.url;
    let dev = await startDev(env);
    try {
      assert.ok(dev.lines.some((l) => l.includes(`${dev.base}/functions/v1/chatwoot-webhook`)));
      if (!external) {
        assert.match(dev.databaseUrl, /^postgresql:\/\/postgres:postgres@127\.0\.0\.1:\d+\/postgres$/);
      }
      // No secret configured: the dev server generated one, and refuses what is not signed with it.
      const secret = (await Deno.readTextFile(`${dataDir}/dev-webhook-secret`)).trim();
      assert.match(secret, /^[0-9a-f]{64}$/);
      assert.ok(!dev.lines.join("\n").includes(secret), "the dev secret is never printed");
      const url = `${dev.base}/functions/v1/chatwoot-webhook`;
      const body = JSON.stringify(samplePayload("message_created", { messageId: 9_000_001 }));
      const refused = await signedPost(url, "not-the-secret", body);
      assert.equal(refused.status, 401);
      await refused.body?.cancel();
      const res = await signedPost(url, secret, body);
      assert.equal(res.status, 200);
      const stored = await res.json();
      assert.equal(stored.outcome, "stored");

      // `deno task send` finds the same secret and posts a sample.
      const send = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "scripts/send.ts", "conversation_status_changed"],
        cwd: ROOT,
        env: { RELAY_DATA_DIR: dataDir, PORT: new URL(dev.base).port, NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const sendOut = new TextDecoder().decode(send.stdout);
      assert.equal(send.code, 0, sendOut + new TextDecoder().decode(send.stderr));
      assert.match(sendOut, /HTTP 200 .*"outcome":"stored"/);

      // supabase-js addresses functions as <url>/functions/v1/<name>: the dev server answers there.
      const supabase = createClient(dev.base, "local-anon-key", { auth: { persistSession: false } });
      const invokeBody = JSON.stringify(samplePayload("message_created", { messageId: 9_000_002 }));
      const { data, error } = await supabase.functions.invoke("chatwoot-webhook", {
        body: invokeBody,
        headers: {
          "Content-Type": "application/json",
          ...chatwootSignatureHeaders(secret, invokeBody),
        },
      });
      assert.equal(error, null);
      assert.equal(data.outcome, "stored");
      assert.equal(data.event_key, "message:9000002:message_created");

      // An unknown function is a JSON 404, as on Supabase, also when named like an Object.prototype member.
      const unknownNames = ["no-such-function", "constructor", "toString", "hasOwnProperty", "__proto__"];
      const answers: string[] = [];
      for (const name of unknownNames) {
        const res = await fetch(`${dev.base}/functions/v1/${name}`, { method: "POST", body: "{}" });
        const answer = await res.json().catch(() => null);
        answers.push(`${name}: ${res.status} ${answer?.error}`);
      }
      assert.deepEqual(answers, unknownNames.map((name) => `${name}: 404 not_found`));
      // The base `task dev` prints as `Ready: …/functions/v1/`, the first URL a newcomer opens, names no
      // function: its 404 says which are served (it said "No function named ", an empty name).
      for (const path of ["/functions/v1/", "/functions/v1/no-such-function"]) {
        const res = await fetch(`${dev.base}${path}`);
        const answer = await res.json();
        assert.equal(res.status, 404);
        assert.match(answer.message, /\/functions\/v1\/<name>: chatwoot-webhook, readiness, forward-events$/);
      }

      const dbUrl = external?.url ?? dev.databaseUrl;
      const sql = postgres(dbUrl, { max: 1, prepare: false, onnotice: () => {} });
      try {
        const rows = await sql`select event, message_id::int, raw_body from webhook_events order by id`;
        assert.deepEqual(rows.map((r) => r.event), [
          "message_created",
          "conversation_status_changed",
          "message_created",
        ]);
        assert.equal(rows[0].raw_body, body);
        assert.equal(rows[2].raw_body, invokeBody);
      } finally {
        await sql.end({ timeout: 1 });
      }

      // Nothing but its own lines: forwarding each request into its function read the request's signal, and
      // Deno 2.9 then printed a warning about its legacy abort behaviour on the first webhook.
      assert.equal((await dev.stop()).code, 0);
      assert.doesNotMatch(dev.lines.join(""), /legacy behavior|request\.signal/);

      if (!external) {
        // The embedded database persists in the data folder: restart and find the rows again.
        dev = await startDev(env);
        assert.ok(dev.lines.some((l) => l.includes("migrations up to date")));
        const again = postgres(dev.databaseUrl, { max: 1, prepare: false, onnotice: () => {} });
        try {
          const [{ n }] = await again`select count(*)::int as n from webhook_events`;
          assert.equal(n, 3);
        } finally {
          await again.end({ timeout: 1 });
        }
      }
    } finally {
      await dev.stop();
      await external?.close();
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});

/**
 * Runs `deno run scripts/dev.ts` to its end (it is expected to exit on its own: one that starts serving instead
 * is killed after three minutes, so the test fails rather than hangs). Not a minute: one refused only once its
 * embedded database has started and migrated a new data folder (PORT taken) took that long on a loaded machine,
 * and was killed as if it served.
 */
async function devUntilExit(env: Record<string, string>) {
  const child = devCommand(env).spawn();
  const guard = setTimeout(() => child.kill("SIGKILL"), 180_000);
  const out = await child.output();
  clearTimeout(guard);
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

dbIndependentTest({
  name: "dev: stopping lets the delivery started after a store finish, so its event is not left leased",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "relay-dev-stop-" });
    const sdk = startAgentSdk(() => ({ hold: true }));
    const secret = "dev-stop-secret-0123456789abcdef";
    const dev = await startDev({
      RELAY_DATA_DIR: dataDir,
      AGENT_SDK_URL: sdk.url,
      CHATWOOT_WEBHOOK_SECRET: secret,
    });
    try {
      // It names where events are POSTed, the path included: it showed the base alone ("http://…/"), which
      // reads as the address a stand-in should answer on.
      const target = `${sdk.url.replace(/\/+$/, "")}/webhooks/chatwoot`;
      assert.ok(dev.lines.some((l) => l.trim() === `forwarder  -> ${target}`), dev.lines.join("\n"));
      const body = JSON.stringify(
        samplePayload("message_created", { messageId: 990_001, conversationId: 9_901 }),
      );
      const res = await signedPost(`${dev.base}/functions/v1/chatwoot-webhook`, secret, body);
      assert.equal(res.status, 200);
      const { id } = await res.json();
      await sdk.waitFor(() => sdk.received.length === 1, "the delivery started after the store");
      // Stop while the Agent SDK holds the delivery; answer it once the dev server says it waits for it (or
      // has exited without waiting, or after a while: the sweep's drain, not this one, may hold it).
      const stopped = dev.stop();
      let exited = false;
      stopped.finally(() => exited = true);
      for (
        let i = 0;
        i < 100 && !exited && !dev.lines.join("").includes("finishing 1 background task");
        i++
      ) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      sdk.releaseHeld();
      assert.equal((await stopped).code, 0);
      const db = await startEmbeddedDb({ dataDir: `${dataDir}/pglite` });
      const sql = connect(db.url, { max: 1 });
      try {
        const [row] = await sql`select status from webhook_events where id = ${id}`;
        assert.equal(row.status, "delivered", "written back before the dev server stopped");
      } finally {
        await sql.end({ timeout: 1 });
        await db.stop();
      }
    } finally {
      await sdk.close();
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});

Deno.test({
  name: "dev: stopping writes the refusal counts a database outage kept in memory",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "relay-dev-refusals-" });
    const db = await startTestDb();
    const proxy = startDbProxy(db.url);
    const dev = await startDev({
      RELAY_DATA_DIR: dataDir,
      DATABASE_URL: proxy.url,
      CHATWOOT_WEBHOOK_SECRET: "dev-refusals-secret-0123456789abcdef",
    });
    const failedWrites = () => dev.lines.join("").split('"task":"record_webhook_rejection"').length - 1;
    try {
      proxy.takeDown();
      const res = await fetch(`${dev.base}/functions/v1/chatwoot-webhook`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(samplePayload("message_created", { messageId: 990_201 })),
      });
      assert.equal(res.status, 401);
      await res.body?.cancel();
      // The write fails, and its retry 5 s later: the next retry is 10 s away, after the stop below.
      for (let i = 0; i < 600 && failedWrites() < 2; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.equal(failedWrites(), 2, dev.lines.join(""));
      proxy.restore();
      assert.equal((await dev.stop()).code, 0);
      const [{ n }] = await db.sql<{ n: number }[]>`
        select coalesce(sum(count), 0)::int as n from public.webhook_rejections where reason = 'signature_missing'`;
      assert.equal(n, 1, "written at the stop");
    } finally {
      await dev.stop();
      await proxy.close();
      await db.close();
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});

dbIndependentTest({
  name: "dev: a second Ctrl-C quits at once, and says Lost each event still waiting for the database",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "relay-dev-quit-" });
    const secret = "dev-quit-secret-0123456789abcdef";
    const dev = await startDev({ RELAY_DATA_DIR: dataDir, CHATWOOT_WEBHOOK_SECRET: secret });
    const holder = postgres(dev.databaseUrl, { max: 1, prepare: false, onnotice: () => {} });
    let lock: { release: () => Promise<void> } | null = null;
    try {
      // The table locked (a migration, a long query): the store runs out of budget, the late store waits.
      lock = await lockWebhookEvents(holder);
      const body = JSON.stringify(
        samplePayload("message_created", { messageId: 990_101, conversationId: 9_911 }),
      );
      const res = await signedPost(`${dev.base}/functions/v1/chatwoot-webhook`, secret, body);
      assert.equal(res.status, 503);
      assert.equal((await res.json()).retrying_seconds, 120);
      // The first signal waits for the late store; the second quits (Deno.exit) with it still pending.
      dev.kill("SIGTERM");
      for (let i = 0; i < 100 && !dev.lines.join("").includes("finishing 1 background task"); i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      dev.kill("SIGTERM");
      assert.equal((await dev.status).code, 130);
      const lost = dev.lines.join("\n").split("\n").filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l)).filter((l) => l.msg === "[Chatwoot Webhook] Lost");
      assert.deepEqual(
        lost.map((l) => [l.event_key, l.reason, typeof l.recover_since]),
        [["message:990101:message_created", "process_exit", "string"]],
        dev.lines.join(""),
      );
    } finally {
      await lock?.release().catch(() => {});
      await holder.end({ timeout: 1 });
      await dev.stop();
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});

dbIndependentTest({
  name: "dev: a second dev server on the same data folder, on other ports, is refused before opening it",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "relay-dev-lock-" });
    const first = await startDev({ RELAY_DATA_DIR: dataDir });
    try {
      // Both on free ports (PORT=0, DB_PORT=0): no port is taken twice, only the folder is shared.
      const second = await devUntilExit({ RELAY_DATA_DIR: dataDir });
      assert.equal(second.code, 1, second.stderr);
      assert.match(
        second.stderr,
        /^The embedded database in \S+ is in use: is another `deno task dev` running\?/m,
      );
      assert.doesNotMatch(second.stderr, /Uncaught|\n\s+at /, "a message, not a stack trace");
      // The first still serves.
      const res = await fetch(`${first.base}/functions/v1/readiness/probe`);
      await res.body?.cancel();
      assert.ok(res.status === 200 || res.status === 503, String(res.status));
    } finally {
      await first.stop();
    }
    // Stopped, it leaves the folder free for the next one.
    const next = await startDev({ RELAY_DATA_DIR: dataDir });
    await next.stop();
    await Deno.remove(dataDir, { recursive: true });
  },
});

dbIndependentTest(
  "dev: a port already taken is named with the setting to change, and the data folder is left alone",
  async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "relay-dev-port-" });
    const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    try {
      const port = String(taken.addr.port);
      const db = await devUntilExit({ RELAY_DATA_DIR: dataDir, DB_PORT: port });
      assert.equal(db.code, 1, db.stderr);
      assert.match(
        db.stderr,
        new RegExp(`^DB_PORT=${port} \\(the embedded database\\) is already in use`, "m"),
      );
      assert.doesNotMatch(db.stderr, /Uncaught|\n\s+at /, "a message, not a stack trace");
      // The port is bound before the database is opened: a second dev server never opens the first one's data.
      assert.equal(await Deno.stat(`${dataDir}/pglite`).then(() => true, () => false), false);

      const functions = await devUntilExit({ RELAY_DATA_DIR: dataDir, PORT: port });
      assert.equal(functions.code, 1, functions.stderr);
      assert.match(functions.stderr, new RegExp(`^PORT=${port} \\(the functions\\) is already in use`, "m"));
    } finally {
      taken.close();
      await Deno.remove(dataDir, { recursive: true });
    }
  },
);

dbIndependentTest(
  "dev: a DATABASE_URL it cannot reach is named (password hidden), not thrown as a stack trace",
  async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "relay-dev-db-" });
    const port = CLOSED_PORT;
    try {
      const run = await devUntilExit({
        RELAY_DATA_DIR: dataDir,
        DATABASE_URL: `postgresql://postgres:hunter2-secret@127.0.0.1:${port}/postgres`,
      });
      assert.equal(run.code, 1, run.stderr);
      assert.match(
        run.stderr,
        new RegExp(
          `^Cannot connect to the database .*postgres:\\*\\*\\*@127\\.0\\.0\\.1:${port}/postgres.*ECONNREFUSED`,
          "m",
        ),
      );
      assert.doesNotMatch(run.stderr, /hunter2-secret/);
      assert.doesNotMatch(run.stderr, /Uncaught|\n\s+at /, "a message, not a stack trace");
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  },
);

Deno.test({
  name: "dev: a DATABASE_URL naming a database the server lacks says to create it (a server's DATABASE_URL)",
  ignore: !Deno.env.get("DATABASE_URL"),
  async fn() {
    // "Start it" fits a server that is down, not a newcomer's database not yet made on a running one.
    const dataDir = await Deno.makeTempDir({ prefix: "relay-dev-db-" });
    const missing = new URL(Deno.env.get("DATABASE_URL")!);
    missing.pathname = `/relay_dev_missing_${crypto.randomUUID().replaceAll("-", "")}`;
    try {
      const run = await devUntilExit({ RELAY_DATA_DIR: dataDir, DATABASE_URL: missing.toString() });
      assert.equal(run.code, 1, run.stderr);
      assert.match(run.stderr, /^Cannot connect to the database .*does not exist\. Create it \(/m);
      assert.match(run.stderr, new RegExp(`createdb ${missing.pathname.slice(1)}`));
      assert.doesNotMatch(run.stderr, /Start it/);
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "dev + send: with only CHATWOOT_WEBHOOK_URL_TOKEN set (a rotation's two), `deno task send` posts one, unsigned",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // A fresh data folder: the dev server makes no secret when a URL token is configured, so none exists.
    const dataDir = await Deno.makeTempDir({ prefix: "relay-dev-url-token-" });
    const token = "url-token-for-send-0123456789abcdef";
    const newer = "url-token-for-send-newer-456789abcdef";
    const external: TestDb | null = Deno.env.get("DATABASE_URL") ? await startTestDb() : null;
    // As a rotation lists them: send takes the first, not the whole list (which no token matches).
    const env: Record<string, string> = {
      RELAY_DATA_DIR: dataDir,
      CHATWOOT_WEBHOOK_URL_TOKEN: `${token},${newer}`,
    };
    if (external) env.DATABASE_URL = external.url;
    const dev = await startDev(env);
    try {
      const parentEnv = Deno.env.toObject();
      delete parentEnv.CHATWOOT_WEBHOOK_SECRET;
      const url = `${dev.base}/functions/v1/chatwoot-webhook`;
      // With a --url carrying ?token=, and without --url (send adds the configured token).
      for (const args of [["--url", `${url}?token=${newer}`], []]) {
        const send = await new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", "scripts/send.ts", "message_created", ...args],
          cwd: ROOT,
          clearEnv: true,
          env: { ...parentEnv, ...env, PORT: new URL(dev.base).port, NO_COLOR: "1" },
          stdout: "piped",
          stderr: "piped",
        }).output();
        const said = new TextDecoder().decode(send.stdout) + new TextDecoder().decode(send.stderr);
        assert.equal(send.code, 0, said);
        assert.match(said, /HTTP 200 .*"outcome":"stored"/);
        assert.ok(!said.includes(token) && !said.includes(newer), "the token is never shown");
      }
    } finally {
      await dev.stop();
      await external?.close();
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});
