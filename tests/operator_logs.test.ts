// The log lines an operator follows one event by (README, "Follow an event in the logs"), as the real webhook
// function, forwarder and forwarder loop write them: each names the event by its delivery id and event_key.
import assert from "node:assert/strict";
import {
  chatwootWebhookApp,
  createChatwootWebhookApp,
} from "../supabase/functions/_shared/chatwoot_webhook.ts";
import { connect } from "../supabase/functions/_shared/db.ts";
import type { EventToStore } from "../supabase/functions/_shared/ingest_store.ts";
import { recoverCommand } from "../supabase/functions/_shared/late_store.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";
import { webhookConfigFromEnv } from "../supabase/functions/_shared/webhook_config.ts";
import { connectForwarder, startForwarderLoop } from "../scripts/lib/forwarder_loop.ts";
import { samplePayload } from "../scripts/lib/samples.ts";
import { dbIndependentTest, dbTest } from "./_db.ts";
import { runScript } from "./_dev.ts";
import {
  closeSharedDb,
  fastSettings,
  freshForwardingDb,
  statusOf,
  withBackgroundAwaited,
  withForwardingSetup,
} from "./_forwarding.ts";
import { eventually, signedRequest, TEST_SECRET } from "./_http.ts";
import { startDbProxy } from "./_proxy.ts";

const URL_BASE = "http://relay.test/chatwoot-webhook";
type Lines = ReturnType<typeof memoryLogger>["lines"];
const lineOf = (lines: Lines, msg: string, match: Record<string, unknown> = {}) =>
  lines.find((l) => l.msg === msg && Object.entries(match).every(([k, v]) => l[k] === v));
/**
 * What postgres.js says of a database whose port went away (EPIPE: a write reached the socket as it closed,
 * seen once in a full run on a loaded machine; db.ts counts it transient too).
 */
const CONNECTION_CODE = /^(ECONNREFUSED|ECONNRESET|EPIPE|CONNECTION_(CLOSED|ENDED|DESTROYED))$/;
let nextMessageId = 700_000;
const message = (options: { content?: string; at?: Date } = {}) =>
  JSON.stringify(samplePayload("message_created", { messageId: nextMessageId++, inboxId: 3, ...options }));
const keyOf = (body: string) => `message:${JSON.parse(body).id}:message_created`;

/** The deployed webhook function (its immediate delivery included), signing with TEST_SECRET. */
function webhookApp(sql: Parameters<typeof chatwootWebhookApp>[0]["sql"], agentSdkUrl: string) {
  const log = memoryLogger();
  const app = chatwootWebhookApp({
    env: { CHATWOOT_WEBHOOK_SECRET: TEST_SECRET, AGENT_SDK_URL: agentSdkUrl },
    sql,
    log,
  });
  return { app, log };
}

/** The webhook function on a pool of its own through `proxyUrl`, with a short store budget. */
function appBehindProxy(proxyUrl: string, lateStoreSeconds: string) {
  const config = webhookConfigFromEnv({
    CHATWOOT_WEBHOOK_SECRET: TEST_SECRET,
    CHATWOOT_WEBHOOK_LATE_STORE_SECONDS: lateStoreSeconds,
  });
  assert.ok(config.ok);
  config.config.storeBudgetMs = 300;
  const proxiedSql = connect(proxyUrl, { max: 1 });
  const log = memoryLogger();
  return { app: createChatwootWebhookApp({ config, sql: proxiedSql, log }), log, proxiedSql };
}

dbTest("operator logs: one event is followed from Received to Processed successfully", async () => {
  await withForwardingSetup(async (db, sdk) => {
    const { app, log } = webhookApp(db.sql, sdk.url);
    const body = message();
    const delivery = crypto.randomUUID();
    await withBackgroundAwaited(async () => {
      const res = await app.fetch(signedRequest(URL_BASE, body, { deliveryId: delivery }));
      assert.equal(res.status, 200);
    });
    await eventually(() => Promise.resolve(lineOf(log.lines, "Processed successfully")), 15_000, "delivery");
    const key = keyOf(body);
    assert.deepEqual(
      ["[Chatwoot Webhook] Received", "[Chatwoot Webhook] Stored", "Processed successfully"].map((msg) => {
        const l = lineOf(log.lines, msg)!;
        return [l.msg, l.delivery_id, l.event_key, l.event];
      }),
      [
        ["[Chatwoot Webhook] Received", delivery, undefined, undefined],
        ["[Chatwoot Webhook] Stored", delivery, key, "message_created"],
        ["Processed successfully", undefined, key, "message_created"],
      ],
    );
  });
});

dbTest(
  "operator logs: a dead letter is an error with the SQL that replays it; a 410 (gone) stays a warning",
  async () => {
    await withForwardingSetup(async (db, sdk) => {
      await fastSettings(db.sql, { max_attempts: 1 });
      sdk.behave((r) => new Response("no", { status: r.text.includes("gone-for-good") ? 410 : 500 }));
      const { app, log } = webhookApp(db.sql, sdk.url);
      const failing = message({ content: "fails" });
      const gone = message({ content: "gone-for-good" });
      await withBackgroundAwaited(async () => {
        for (const body of [failing, gone]) {
          assert.equal((await app.fetch(signedRequest(URL_BASE, body))).status, 200);
        }
      });
      const dead = (body: string) => lineOf(log.lines, "[Forwarder] Event dead", { event_key: keyOf(body) });
      await eventually(() => Promise.resolve(dead(failing) && dead(gone)), 15_000, "both dead");
      const [failed, goneLine] = [dead(failing)!, dead(gone)!];
      assert.deepEqual(
        [failed.level, failed.event, failed.reason, failed.http_status],
        ["error", "message_created", "attempts_exhausted", 500],
      );
      assert.deepEqual([goneLine.level, goneLine.reason, goneLine.http_status], ["warn", "gone", 410]);
      assert.equal(failed.replay, `select public.replay_webhook_events('{${failed.event_id}}');`);
      const sdkError = lineOf(log.lines, "Agent SDK error", { event_key: keyOf(failing) });
      assert.deepEqual([sdkError?.event, sdkError?.status], ["message_created", 500]);
      // The line's SQL, run as an operator would, puts the event back in the queue.
      await db.sql.unsafe(String(failed.replay));
      assert.equal(await statusOf(db.sql, Number(failed.event_id)), "pending");
    });
  },
);

dbTest(
  "operator logs: a refused webhook names its delivery id, and its event once the body is read",
  async () => {
    const db = await freshForwardingDb();
    const { app, log } = webhookApp(db.sql, "http://127.0.0.1:9");
    const delivery = () => crypto.randomUUID();
    const ids = [delivery(), delivery(), delivery()];
    const unsupported = signedRequest(URL_BASE, message(), {
      deliveryId: ids[0],
      headers: { "Content-Type": "text/plain" },
    });
    assert.equal((await app.fetch(unsupported)).status, 415);
    const invalid = JSON.stringify({ ...JSON.parse(message()), conversation: "none" });
    assert.equal((await app.fetch(signedRequest(URL_BASE, invalid, { deliveryId: ids[1] }))).status, 400);
    // A body cut off mid-read (the client gone): a refusal, not an error of ours.
    const cut = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"event":'));
        controller.error(new Error("connection reset"));
      },
    });
    const res = await app.fetch(
      new Request(URL_BASE, {
        method: "POST",
        headers: { "content-type": "application/json", "x-chatwoot-delivery": ids[2] },
        body: cut,
      }),
    );
    assert.equal(res.status, 400);
    await res.body?.cancel();
    const rejected = log.lines.filter((l) => l.msg === "[Chatwoot Webhook] Rejected");
    assert.deepEqual(rejected.map((l) => [l.status, l.delivery_id, l.event]), [
      [415, ids[0], undefined],
      [400, ids[1], "message_created"],
      [400, ids[2], undefined],
    ]);
    // The schema's refusal names what it refused (paths and reasons, never values): Chatwoot's own webhook
    // log does not show our answer, and readiness and deno task stats send the operator to this line for it.
    assert.deepEqual(rejected[1].issues, [{
      path: "conversation",
      message: "Invalid input: expected object, received string",
    }]);
    assert.ok(!JSON.stringify(rejected[1]).includes('"none"'), "no value of the body in the line");
    // An error of ours nothing expected (here the clock throws): Hono's error handler answers, "Unhandled".
    const broken = memoryLogger();
    const config = webhookConfigFromEnv({ CHATWOOT_WEBHOOK_SECRET: TEST_SECRET });
    const brokenApp = createChatwootWebhookApp({
      config,
      sql: db.sql,
      log: broken,
      nowSeconds: () => {
        throw new Error("the clock broke");
      },
    });
    const unhandledId = delivery();
    const failed = await brokenApp.fetch(signedRequest(URL_BASE, message(), { deliveryId: unhandledId }));
    assert.equal(failed.status, 500);
    await failed.body?.cancel();
    assert.equal(lineOf(broken.lines, "[Chatwoot Webhook] Unhandled")?.delivery_id, unhandledId);
  },
);

dbTest("operator logs: a store that fails is refused naming its event_key and delivery id", async () => {
  const db = await freshForwardingDb();
  const proxy = startDbProxy(db.url);
  const { app, log, proxiedSql } = appBehindProxy(proxy.url, "0");
  proxy.takeDown();
  try {
    const body = message();
    const delivery = crypto.randomUUID();
    assert.equal((await app.fetch(signedRequest(URL_BASE, body, { deliveryId: delivery }))).status, 503);
    for (const msg of ["[Chatwoot Webhook] Store failed", "[Chatwoot Webhook] Rejected"]) {
      const l = lineOf(log.lines, msg);
      assert.deepEqual([l?.level, l?.event, l?.event_key, l?.delivery_id], [
        "error",
        "message_created",
        keyOf(body),
        delivery,
      ]);
    }
  } finally {
    await proxiedSql.end({ timeout: 1 });
    await proxy.close();
  }
});

dbTest(
  "operator logs: Lost carries the deno task recover command, its window holding receipt and created_at",
  async () => {
    const db = await freshForwardingDb();
    const proxy = startDbProxy(db.url);
    const { app, log, proxiedSql } = appBehindProxy(proxy.url, "1");
    proxy.takeDown();
    try {
      // Created 10 minutes before it came (a message Chatwoot was slow to send), and 10 minutes after (a
      // Chatwoot clock ahead of ours).
      const early = new Date(Date.now() - 10 * 60_000);
      const late = new Date(Date.now() + 10 * 60_000);
      const bodies = [message({ at: early }), message({ at: late })];
      const sending = Date.now();
      for (const body of bodies) assert.equal((await app.fetch(signedRequest(URL_BASE, body))).status, 503);
      const answered = Date.now();
      const lost = (body: string) => lineOf(log.lines, "[Chatwoot Webhook] Lost", { event_key: keyOf(body) });
      await eventually(() => Promise.resolve(bodies.every(lost)), 30_000, "both Lost");
      const pattern = /^deno task recover --since (\S+) --until (\S+) --inbox 3 --store$/;
      for (const [body, created] of [[bodies[0], early], [bodies[1], late]] as const) {
        const command = String(lost(body)!.recover);
        const m = pattern.exec(command);
        assert.ok(m, command);
        const [since, until] = [Date.parse(m[1]), Date.parse(m[2])];
        // The receipt was between sending and answered (by the requests' own time, not the time now, which a
        // slow wait for the Lost lines moves on).
        assert.ok(since <= created.getTime() && since <= sending, `${command}: from before both`);
        assert.ok(until > created.getTime() && until > answered, `${command}: until after both`);
        assert.equal(lost(body)!.recover_since, m[1]);
      }
      // The real task takes the command's options (no usage error), then asks for Chatwoot's settings.
      const args = String(lost(bodies[0])!.recover).replace(/^deno task recover /, "").split(" ");
      const run = await runScript("scripts/recover.ts", args, db.url, {
        CHATWOOT_BASE_URL: "",
        CHATWOOT_BASE_URL_PROD: "",
      });
      assert.equal(run.code, 2, run.stderr);
      assert.doesNotMatch(run.stderr, /usage:/);
      assert.match(run.stderr, /Set CHATWOOT_BASE_URL/);
    } finally {
      await proxiedSql.end({ timeout: 1 });
      await proxy.close();
    }
  },
);

dbIndependentTest(
  "operator logs: a Lost line's recover window takes created_at within a day of the receipt only",
  () => {
    const received = Date.parse("2026-12-01T10:00:30Z");
    const windowOf = (messageCreatedAtMs: number) =>
      recoverCommand({ receivedAtMs: received, messageCreatedAtMs, inboxId: 3 } as EventToStore, received)
        .recover;
    assert.equal(
      windowOf(received - 10 * 60_000),
      "deno task recover --since 2026-12-01T09:49:00.000Z --until 2026-12-01T10:02:00.000Z --inbox 3 --store",
    );
    // A bogus created_at (the epoch, years off either way): the window stays a day and two minutes at most.
    assert.equal(
      windowOf(0),
      "deno task recover --since 2026-11-30T09:59:00.000Z --until 2026-12-01T10:02:00.000Z --inbox 3 --store",
    );
    assert.equal(
      windowOf(received + 5 * 365 * 86_400_000),
      "deno task recover --since 2026-12-01T09:59:00.000Z --until 2026-12-02T10:02:00.000Z --inbox 3 --store",
    );
  },
);

dbTest(
  "operator logs: the forwarder loop says an outage once, then at most once a minute, then Drain recovered",
  async () => {
    await withForwardingSetup(async (db, _sdk, config) => {
      const proxy = startDbProxy(db.url);
      const sql = connectForwarder(proxy.url);
      const log = memoryLogger();
      let drains = 0, failures = 0;
      const loop = await startForwarderLoop({
        sql,
        config,
        log,
        sweepMs: 10,
        onDrain: () => drains++,
        onDrainFailed: () => failures++,
      });
      const failedLines = () => log.lines.filter((l) => l.msg === "[Forwarder] Drain failed");
      try {
        await eventually(() => Promise.resolve(drains > 0), 15_000, "a drain");
        proxy.takeDown();
        // postgres.js backs off between reconnects after a cut: a drain fails about once a second.
        await eventually(() => Promise.resolve(failures >= 5), 60_000, "5 failed drains");
        assert.equal(failedLines().length, 1, "the outage's start, once");
        assert.equal(failedLines()[0].level, "error");
        // The database's port closed: postgres.js' code for it (the connection the drain held closed, or the
        // next one refused), as the operator would search for it.
        assert.match(String(failedLines()[0].code), CONNECTION_CODE);
        proxy.restore();
        const recovered = await eventually(
          () => Promise.resolve(lineOf(log.lines, "[Forwarder] Drain recovered")),
          30_000,
          "recovered",
        );
        assert.equal(typeof recovered.outage_ms, "number");
        assert.ok(Number(recovered.failed_drains) >= 5, String(recovered.failed_drains));
        assert.match(String(recovered.last_code), CONNECTION_CODE);
        assert.equal(failedLines().length, 1);
      } finally {
        await loop.stop();
        await sql.end({ timeout: 1 });
        await proxy.close();
      }
    });
  },
);

dbTest("operator logs: a long outage is said again, with how long and how many drains failed", async () => {
  await withForwardingSetup(async (db, _sdk, config) => {
    const proxy = startDbProxy(db.url);
    const sql = connectForwarder(proxy.url);
    const log = memoryLogger();
    let failures = 0;
    // Every failure is past the interval (0): each is said, as each would be a minute apart.
    const loop = await startForwarderLoop({
      sql,
      config,
      log,
      sweepMs: 10,
      failureLogEveryMs: 0,
      onDrainFailed: () => failures++,
    });
    try {
      proxy.takeDown();
      await eventually(() => Promise.resolve(failures >= 3), 30_000, "3 failed drains");
      const again = log.lines.filter((l) => l.msg === "[Forwarder] Drain failed")[1];
      assert.equal(again.failed_drains, 2);
      assert.match(String(again.code), CONNECTION_CODE);
      assert.equal(typeof again.failing_for_ms, "number");
    } finally {
      await loop.stop();
      await sql.end({ timeout: 1 });
      await proxy.close();
    }
  });
});

dbTest("operator logs: close database", () => closeSharedDb());
