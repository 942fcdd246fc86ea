// The readiness page rendered by a real headless Chromium (Debian's `chromium`), driven over the DevTools
// protocol with Deno's WebSocket: the DOM is checked and a full-page screenshot is saved to
// tests/artifacts/readiness.png (git-ignored). Without Chromium this test fails: CI installs it.
import assert from "node:assert/strict";
import { dbTest, startTestDb, type TestDb } from "./_db.ts";
import { fullEnv, startChatwootStandIn, storeVerifiedWebhook } from "./_readiness.ts";
import { createReadinessApp } from "../supabase/functions/_shared/readiness.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";

const CHROMIUM = Deno.env.get("CHROMIUM_PATH") ?? "/usr/bin/chromium";
const ARTIFACTS = new URL("./artifacts/", import.meta.url);
const STEP_TIMEOUT_MS = 30_000;

function within<T>(promise: Promise<T>, what: string, ms = STEP_TIMEOUT_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** A minimal DevTools protocol client: commands with ids, events by name, flat sessions. */
class DevTools {
  #nextId = 1;
  #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #waiters: Array<{ method: string; sessionId?: string; resolve: (params: unknown) => void }> = [];

  private constructor(private ws: WebSocket) {
    ws.onmessage = (event) => {
      const msg = JSON.parse(String(event.data));
      if (msg.id !== undefined) {
        const pending = this.#pending.get(msg.id);
        this.#pending.delete(msg.id);
        if (msg.error) pending?.reject(new Error(`${msg.error.message} (${msg.error.code})`));
        else pending?.resolve(msg.result);
        return;
      }
      for (const w of [...this.#waiters]) {
        if (w.method === msg.method && (w.sessionId === undefined || w.sessionId === msg.sessionId)) {
          this.#waiters.splice(this.#waiters.indexOf(w), 1);
          w.resolve(msg.params);
        }
      }
    };
  }

  static async connect(url: string): Promise<DevTools> {
    const ws = new WebSocket(url);
    await within(
      new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = () => reject(new Error(`cannot connect to ${url}`));
      }),
      "DevTools WebSocket",
    );
    return new DevTools(ws);
  }

  // deno-lint-ignore no-explicit-any
  send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<any> {
    const id = this.#nextId++;
    const result = new Promise((resolve, reject) => this.#pending.set(id, { resolve, reject }));
    this.ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    return within(result, method);
  }

  event(method: string, sessionId?: string): Promise<unknown> {
    return within(new Promise((resolve) => this.#waiters.push({ method, sessionId, resolve })), method);
  }

  close() {
    this.ws.close();
  }
}

interface Browser {
  devtools: DevTools;
  close(): Promise<void>;
}

async function launchChromium(): Promise<Browser> {
  try {
    await Deno.stat(CHROMIUM);
  } catch {
    throw new Error(
      `Chromium not found at ${CHROMIUM}: install it (apt-get install -y chromium; .ci/run does) or set CHROMIUM_PATH`,
    );
  }
  const profile = await Deno.makeTempDir({ prefix: "readiness-chromium-" });
  const child = new Deno.Command(CHROMIUM, {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--hide-scrollbars",
      `--user-data-dir=${profile}`,
      "--remote-debugging-port=0",
      "about:blank",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* already gone */ }
    await child.status;
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  };

  // The DevTools URL is printed on stderr; keep draining it afterwards so Chromium never blocks on the pipe.
  const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const wsUrl = await within(
    (async () => {
      for (;;) {
        const { value, done } = await lines.read();
        if (done) throw new Error(`Chromium exited before DevTools was ready:\n${buffered.slice(-2000)}`);
        buffered += value;
        const match = /DevTools listening on (ws:\/\/\S+)/.exec(buffered);
        if (match) return match[1];
      }
    })(),
    "Chromium start",
  ).catch(async (error) => {
    await stop();
    throw error;
  });
  (async () => {
    while (!(await lines.read()).done) { /* drain */ }
  })().catch(() => {});

  const devtools = await DevTools.connect(wsUrl);
  return {
    devtools,
    async close() {
      await devtools.send("Browser.close").catch(() => {});
      devtools.close();
      await stop();
    },
  };
}

const db: TestDb = await startTestDb();
const chatwoot = startChatwootStandIn();

dbTest(
  "readiness HTML: renders in headless Chromium with every section, status colours and overdue tasks",
  async () => {
    // A state worth looking at: one task done with evidence, a blocked inbox item, a webhook received (task 9 proven),
    // Chatwoot healthy (task 3 proven) but the API token wrong (a failing check), a clock one day after the first due date.
    await db
      .sql`select public.readiness_update_item('task-2', 'done', true, 'db:chatwoot_prepare log attached', null, 't')`;
    await db.sql`select public.readiness_update_item('inbox-2', 'blocked', false, null, null, 't')`;
    await db
      .sql`select public.readiness_update_item('validation-1', 'done', true, 'curl log 2025-10-12', null, 't')`;
    await storeVerifiedWebhook(db.sql, 1);
    const app = createReadinessApp({
      sql: db.sql,
      env: fullEnv(chatwoot.url, { CHATWOOT_API_TOKEN: "wrong-token" }),
      log: memoryLogger(),
      now: () => new Date("2025-10-12T08:00:00Z"),
      // Generous, as in the other readiness tests: the checks run while Chromium loads the page, and a loaded
      // machine must not turn a pass into "no answer within 3000 ms" (the default).
      checkTimeoutMs: 10_000,
    });
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, app.fetch);
    const browser = await launchChromium();
    try {
      const { devtools } = browser;
      const { targetId } = await devtools.send("Target.createTarget", { url: "about:blank" });
      const { sessionId } = await devtools.send("Target.attachToTarget", { targetId, flatten: true });
      await devtools.send("Page.enable", {}, sessionId);
      await devtools.send("Emulation.setDeviceMetricsOverride", {
        width: 1280,
        height: 900,
        deviceScaleFactor: 1,
        mobile: false,
      }, sessionId);
      const loaded = devtools.event("Page.loadEventFired", sessionId);
      const nav = await devtools.send("Page.navigate", {
        url: `http://127.0.0.1:${server.addr.port}/readiness?format=html`,
      }, sessionId);
      assert.equal(nav.errorText, undefined, `navigation failed: ${nav.errorText}`);
      await loaded;

      const { result, exceptionDetails } = await devtools.send("Runtime.evaluate", {
        returnByValue: true,
        expression: `(() => {
        const bg = (el) => el ? getComputedStyle(el).backgroundColor : null;
        const row = (key) => document.querySelector('tr[data-key="' + key + '"]');
        return {
          title: document.title,
          h1: document.querySelector("h1")?.textContent,
          sections: [...document.querySelectorAll("section")].map((s) => s.id),
          headings: [...document.querySelectorAll("h2")].map((h) => h.textContent),
          ready: document.getElementById("ready")?.dataset.ready,
          banner: document.getElementById("ready")?.textContent.trim(),
          overdue: [...document.querySelectorAll("tr.overdue")].map((r) => r.dataset.key),
          overdueTag: row("task-1")?.querySelector(".overdue-tag")?.textContent,
          overdueBg: bg(row("task-1")?.querySelector("td")),
          normalBg: bg(row("task-6")?.querySelector("td")),
          doneBg: bg(row("task-2")?.querySelector(".status")),
          pendingBg: bg(row("task-6")?.querySelector(".status")),
          blockedBg: bg(row("inbox-2")?.querySelector(".status")),
          verified3: row("task-3")?.querySelector(".verified")?.textContent,
          verified9: row("task-9")?.querySelector(".verified")?.textContent,
          checks: [...document.querySelectorAll("tr[data-check]")].map((r) =>
            [r.dataset.check, r.querySelector(".check")?.textContent.trim()]),
          taskRows: document.querySelectorAll("#tasks tbody tr").length,
          width: document.documentElement.scrollWidth,
          height: document.documentElement.scrollHeight,
        };
      })()`,
      }, sessionId);
      assert.equal(exceptionDetails, undefined, JSON.stringify(exceptionDetails));
      const page = result.value;

      assert.equal(page.h1, "Chatwoot Production Readiness Tracking");
      assert.match(page.title, /^⛔ Chatwoot Production Readiness Tracking \(\d+ open\)$/);
      assert.deepEqual(page.sections, [
        "checks",
        "current-status",
        "credentials",
        "inbox-config",
        "blockers",
        "tasks",
        "support-plan",
        "validations",
        "risks",
        "contacts",
        "timeline",
      ]);
      assert.deepEqual(page.headings, [
        "Live checks",
        "Current Status",
        "Production Credential Requirements",
        "Shared Inbox Configuration Requirements",
        "Current Blockers (From Integration Dashboard)",
        "Readiness Checklist",
        "Support Coordination Plan",
        "Integration Testing Requirements",
        "Dependencies & Risks",
        "Contact Log",
        "Timeline",
      ]);
      assert.equal(page.ready, "false");
      assert.match(page.banner, /^⛔ Not ready for production/);
      assert.equal(page.taskRows, 10);
      // Due 2025-10-11, not done: 1, 4 and 5 (2 is done, 3 is proven by the health check).
      assert.deepEqual(page.overdue, ["task-1", "task-4", "task-5"]);
      assert.equal(page.overdueTag, "OVERDUE 1 d");
      assert.equal(page.overdueBg, "rgb(255, 241, 240)");
      assert.notEqual(page.normalBg, page.overdueBg);
      assert.equal(page.doneBg, "rgb(220, 245, 227)");
      assert.equal(page.pendingBg, "rgb(255, 244, 214)");
      assert.equal(page.blockedBg, "rgb(253, 226, 225)");
      assert.equal(page.verified3, "✔ verified by chatwoot_health at 2025-10-12 08:00:00 UTC");
      assert.equal(page.verified9, "✔ verified by webhook_pipeline at 2025-10-12 08:00:00 UTC");
      const checks = Object.fromEntries(page.checks);
      // webhook_pipeline warns until the forwarding view is installed; its value depends on that, not on this page.
      assert.match(checks.webhook_pipeline, /^(✅ pass|⚠️ warn)$/);
      delete checks.webhook_pipeline;
      assert.deepEqual(checks, {
        database: "✅ pass",
        chatwoot_health: "✅ pass",
        chatwoot_credentials: "✅ pass",
        chatwoot_api: "❌ fail",
      });
      assert.ok(page.width <= 1280, `no horizontal overflow (scrollWidth ${page.width})`);

      // Full-page screenshot: grow the viewport to the page, then capture.
      await devtools.send("Emulation.setDeviceMetricsOverride", {
        width: 1280,
        height: Math.min(page.height, 16_000),
        deviceScaleFactor: 1,
        mobile: false,
      }, sessionId);
      const shot = await devtools.send("Page.captureScreenshot", { format: "png" }, sessionId);
      const png = Uint8Array.from(atob(shot.data), (c) => c.charCodeAt(0));
      assert.deepEqual([...png.slice(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
      const width = new DataView(png.buffer).getUint32(16);
      const height = new DataView(png.buffer).getUint32(20);
      assert.equal(width, 1280);
      assert.ok(height >= 2000, `the whole page is captured (${height} px)`);
      await Deno.mkdir(ARTIFACTS, { recursive: true });
      await Deno.writeFile(new URL("readiness.png", ARTIFACTS), png);
    } finally {
      await browser.close();
      await server.shutdown();
    }
  },
);

dbTest("readiness HTML: close the stand-in and the database", async () => {
  await chatwoot.close();
  await db.close();
});
