// A database that answers but cannot write (read-only: hosted Supabase's answer to a full disk, a hot standby),
// or that is gone for a moment: what readiness, stats, the logs, the answers and the refusal counts make of it.
import assert from "node:assert/strict";
import { dbTest, startTestDb } from "./_db.ts";
import { runScript } from "./_dev.ts";
import { startDbProxy } from "./_proxy.ts";
import { eventually, signedRequest, TEST_SECRET } from "./_http.ts";
import { storeSample } from "./_forwarding.ts";
import { connect, readOnlyProblem, type Sql } from "../supabase/functions/_shared/db.ts";
import { createChatwootWebhookApp } from "../supabase/functions/_shared/chatwoot_webhook.ts";
import { createForwardEventsApp } from "../supabase/functions/_shared/forward_events.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";
import { checkDatabase, readinessConfigFromEnv } from "../supabase/functions/_shared/readiness_checks.ts";
import { webhookConfigFromEnv } from "../supabase/functions/_shared/webhook_config.ts";
import { samplePayload } from "../scripts/lib/samples.ts";

const db = await startTestDb();
const URL_BASE = "http://functions.local/chatwoot-webhook";
const FORWARDER_TOKEN = "forwarder-token-0123456789abcdef";

/**
 * Makes the test's database read-only for new transactions. On a server, per database (as hosted Supabase
 * does it): new connections see it. PGlite is one session shared by every client: set on that session.
 */
async function setReadOnly(on: boolean): Promise<void> {
  if (db.kind === "postgres") {
    const [{ name }] = await db.sql<{ name: string }[]>`select current_database() as name`;
    await db.sql.begin("read write", (tx) =>
      tx.unsafe(
        on
          ? `alter database "${name}" set default_transaction_read_only = on`
          : `alter database "${name}" reset default_transaction_read_only`,
      ));
  } else {
    await db.sql.unsafe(
      on ? "set default_transaction_read_only = on" : "reset default_transaction_read_only",
    );
  }
}

/** The webhook function on a pool of its own through a database proxy the test can cut. */
function webhookBehindProxy() {
  const proxy = startDbProxy(db.url);
  const viaProxy = connect(proxy.url, { max: 1 });
  const log = memoryLogger();
  const app = createChatwootWebhookApp({
    config: webhookConfigFromEnv({ CHATWOOT_WEBHOOK_SECRET: TEST_SECRET }),
    sql: viaProxy,
    log,
  });
  return { proxy, viaProxy, log, app };
}

/** How many refusals for `reason` webhook_rejections holds (read directly, not through the proxy). */
async function rejectionsCounted(reason: string): Promise<number> {
  const [{ n }] = await db.sql<{ n: number }[]>`
    select coalesce(sum(count), 0)::int as n from public.webhook_rejections where reason = ${reason}`;
  return n;
}

function message(id: number): string {
  return JSON.stringify(samplePayload("message_created", { messageId: id, conversationId: id }));
}

dbTest(
  `degraded [${db.kind}]: a read-only database fails readiness, is named by stats and in answers`,
  async () => {
    // Pending before the database turns read-only: forward-events then has something to claim.
    await storeSample(db.sql, "message_created");
    await setReadOnly(true);
    const fresh: Sql = connect(db.url, { max: 2 });
    try {
      assert.match(String(await readOnlyProblem(fresh)), /read-only/);

      const env = { AGENT_SDK_URL: "http://agent-sdk.invalid" };
      const check = await checkDatabase({
        sql: fresh,
        env,
        config: readinessConfigFromEnv(env),
        now: () => new Date(),
      });
      assert.equal(check.status, "fail", check.detail);
      assert.match(check.detail, /read-only/);

      const log = memoryLogger();
      const app = createChatwootWebhookApp({
        config: webhookConfigFromEnv({
          CHATWOOT_WEBHOOK_SECRET: TEST_SECRET,
          CHATWOOT_WEBHOOK_LATE_STORE_SECONDS: "1",
        }),
        sql: fresh,
        log,
      });
      const res = await app.fetch(signedRequest(URL_BASE, message(731_001)));
      assert.equal(res.status, 503);
      const body = await res.json();
      assert.equal(body.error, "database_unavailable");
      assert.equal(body.reason, "read_only");
      assert.doesNotMatch(JSON.stringify(body), /transaction|25006/, "a fixed word, never the message");
      const failed = log.lines.find((l) => l.msg === "[Chatwoot Webhook] Store failed");
      assert.equal(failed?.code, "25006");
      const lost = await eventually(
        () => Promise.resolve(log.lines.find((l) => l.msg === "[Chatwoot Webhook] Lost")),
        15_000,
        "the late store giving up",
      );
      assert.equal(lost.code, "25006");

      const fwdLog = memoryLogger();
      const forward = await createForwardEventsApp({
        auth: { forwarderTokens: [FORWARDER_TOKEN], serviceRoleKey: null },
        forwarder: { agentSdkUrl: "http://127.0.0.1:9/", agentSdkSecret: null, agentSdkToken: null },
        sql: fresh,
        log: fwdLog,
      }).fetch(
        new Request("http://functions.local/forward-events", {
          method: "POST",
          headers: { Authorization: `Bearer ${FORWARDER_TOKEN}` },
        }),
      );
      assert.equal(forward.status, 503);
      assert.equal((await forward.json()).reason, "read_only");
      assert.equal(fwdLog.lines.find((l) => l.msg === "[Forward Events] Drain failed")?.code, "25006");

      const text = await runScript("scripts/stats.ts", [], db.url);
      assert.equal(text.code, 0, text.stdout + text.stderr);
      assert.match(text.stdout, /READ-ONLY\s+database is read-only/);
      const json = await runScript("scripts/stats.ts", ["--json"], db.url);
      assert.equal(json.code, 0, json.stdout + json.stderr);
      assert.equal(JSON.parse(json.stdout).read_only, true);
    } finally {
      await fresh.end({ timeout: 1 });
      await setReadOnly(false);
    }
    const again = connect(db.url, { max: 1 });
    try {
      assert.equal(await readOnlyProblem(again), null);
    } finally {
      await again.end({ timeout: 1 });
    }
    const json = await runScript("scripts/stats.ts", ["--json"], db.url);
    assert.equal(JSON.parse(json.stdout).read_only, false);
    assert.doesNotMatch((await runScript("scripts/stats.ts", [], db.url)).stdout, /READ-ONLY/);
  },
);

dbTest(
  `degraded [${db.kind}]: refusals counted while the database is down are written once it is back`,
  async () => {
    const { proxy, viaProxy, log, app } = webhookBehindProxy();
    const refuse = async () => {
      const res = await app.fetch(
        signedRequest(URL_BASE, message(731_100), { secret: "whsec_not_the_secret_0123" }),
      );
      assert.equal(res.status, 401);
      await res.body?.cancel();
    };
    const counted = () => rejectionsCounted("signature_invalid");
    try {
      const before = await counted();
      proxy.takeDown();
      for (let i = 0; i < 3; i++) await refuse();
      await eventually(
        () => Promise.resolve(log.lines.some((l) => l.msg === "Background task failed")),
        15_000,
        "the failed write of the counts",
      );
      proxy.restore();
      await refuse();
      // The three counted while it was down, and the one after.
      await eventually(async () => (await counted()) === before + 4, 15_000, "all four refusals written");
    } finally {
      await viaProxy.end({ timeout: 1 });
      await proxy.close();
    }
  },
);

dbTest(
  `degraded [${db.kind}]: refusals counted while the database is down are written when it is back, with no more`,
  async () => {
    const { proxy, viaProxy, log, app } = webhookBehindProxy();
    const counted = () => rejectionsCounted("signature_missing");
    try {
      const before = await counted();
      proxy.takeDown();
      const failures = () =>
        log.lines.filter((l) => l.msg === "Background task failed" && l.task === "record_webhook_rejection")
          .length;
      // One at a time, each write seen failing: none is still in flight when the database comes back.
      for (let i = 1; i <= 2; i++) {
        // No signature: signature_missing, a reason no other test here counts.
        const res = await app.fetch(
          new Request(URL_BASE, {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify(samplePayload("message_created", { messageId: 731_200 })),
          }),
        );
        assert.equal(res.status, 401);
        await res.body?.cancel();
        await eventually(() => Promise.resolve(failures() >= i), 15_000, `failed write ${i}`);
      }
      proxy.restore();
      // No refusal after this: the counts kept go in on the counter's own retry.
      await eventually(async () => (await counted()) === before + 2, 60_000, "both refusals written");
    } finally {
      await viaProxy.end({ timeout: 1 });
      await proxy.close();
    }
  },
);

dbTest(`degraded [${db.kind}]: close the database`, async () => {
  await db.close();
});
