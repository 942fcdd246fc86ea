// The delivery attempt chatwoot-webhook starts after storing an event: within one function instance at most one
// such drain runs at a time (a burst of stores must not become a burst of drains, each claiming and holding
// connections of the instance's small pool), and an event stored while one runs is still forwarded promptly.
import assert from "node:assert/strict";
import { dbIndependentTest, dbTest } from "./_db.ts";
import { eventually } from "./_http.ts";
import {
  assertUntouched,
  attemptsOf,
  closeSharedDb,
  fastSettings,
  statusOf,
  storeSample,
  webhookInstance,
  withBackgroundAwaited,
  withForwardingSetup,
} from "./_forwarding.ts";
import type { Sql } from "../supabase/functions/_shared/db.ts";
import { drain, type DrainSummary } from "../supabase/functions/_shared/forwarder.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";
import { startForwarderLoop } from "../scripts/lib/forwarder_loop.ts";

/**
 * `sql` as the function sees it, with every claim_webhook_events call counted (how many at once, at most) and
 * `afterEmptyClaim` run after a claim that found nothing, before the drain sees its answer.
 */
function observedSql(sql: Sql, afterEmptyClaim: () => Promise<void> = async () => {}) {
  const stats = { claims: 0, active: 0, maxActive: 0 };
  const proxy = new Proxy(sql, {
    apply(target, thisArg, args: unknown[]) {
      const query = Reflect.apply(target, thisArg, args);
      const strings = args[0] as TemplateStringsArray | undefined;
      if (!Array.isArray(strings) || !strings.join("").includes("claim_webhook_events")) return query;
      stats.claims++;
      stats.active++;
      stats.maxActive = Math.max(stats.maxActive, stats.active);
      return (async () => {
        try {
          const rows = await query;
          if (rows.length === 0) await afterEmptyClaim();
          return rows;
        } finally {
          stats.active--;
        }
      })();
    },
  });
  return { sql: proxy as Sql, stats };
}

/** `deno task forward <args>` as a subprocess, with only `env` (and NO_COLOR) in its environment. */
function forwardCommand(args: string[], env: Record<string, string>): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "scripts/forward.ts", ...args],
    cwd: ROOT,
    env: { ...env, NO_COLOR: "1" },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  });
}

dbTest("immediate drain: a burst of stores runs one drain at a time, and every event goes out", async () => {
  await withForwardingSetup((db, sdk) =>
    withBackgroundAwaited(async () => {
      sdk.behave(() => ({ hold: true }));
      const { sql, stats } = observedSql(db.sql);
      const instance = webhookInstance(sql, sdk.url);
      const post = async (messageId: number, conversationId: number) =>
        (await instance("message_created", messageId, conversationId)).id;
      const burst = 30;
      const ids = await Promise.all(
        Array.from({ length: burst }, (_, i) => post(77_000 + i, 7_000 + i)),
      );
      await sdk.waitFor(() => sdk.received.length > 0, "the first immediate attempt");
      // Give piled-up drains (the defect) time to claim and post too.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const [{ drains }] = await db.sql<{ drains: number }[]>`
      select count(distinct leased_by)::int as drains from public.webhook_events where status = 'delivering'`;
      assert.equal(drains, 1, "one drain holds leases, not one per stored event");
      assert.equal(stats.maxActive, 1, "never two claims of this instance at once");

      sdk.behave(() => new Response("ok"));
      sdk.releaseHeld();
      // No forward-events call and no loop here: only the immediate drains can deliver them.
      await eventually(
        async () =>
          (await Promise.all(ids.map((id) => statusOf(db.sql, id)))).every((s) => s === "delivered"),
        10_000,
        "every event of the burst delivered",
      );
      assert.equal(new Set(sdk.accepted().map((r) => r.eventId)).size, burst);
    })
  );
});

dbTest(
  "immediate drain: with an AGENT_SDK_URL or token no request can use, a webhook claims nothing; an override does",
  async () => {
    await withForwardingSetup((db, sdk) =>
      withBackgroundAwaited(async () => {
        const { sql, stats } = observedSql(db.sql);
        const ids: number[] = [];
        for (const [i, url] of ["agent.internal:8080", "http://agent .internal"].entries()) {
          ids.push((await webhookInstance(sql, url)("message_created", 78_000 + i, 7_800 + i)).id);
        }
        assert.equal(stats.claims, 0, "no claim to hand back at every webhook");
        assert.deepEqual(await Promise.all(ids.map((id) => statusOf(db.sql, id))), ["pending", "pending"]);
        // An override is the target whatever AGENT_SDK_URL says: the webhook's drain delivers.
        await db.sql`update public.relay_settings set agent_sdk_url_override = ${sdk.url}`;
        const id = (await webhookInstance(sql, "agent.internal:8080")("message_created", 78_010, 7_810)).id;
        await sdk.waitFor(() => sdk.received.some((r) => r.eventId === id), "the override's delivery");
      })
    );
  },
);

dbTest(
  "immediate drain: an event stored after the running drain's last claim is forwarded by another drain",
  async () => {
    await withForwardingSetup((db, sdk) =>
      withBackgroundAwaited(async () => {
        let storeLate: (() => Promise<void>) | null = null;
        let lateId = 0;
        // The first drain's final (empty) claim has answered; before that drain finishes, another event is
        // stored: its own drain request must not be swallowed by the one that is ending.
        const { sql } = observedSql(db.sql, async () => {
          const store = storeLate;
          storeLate = null;
          await store?.();
        });
        const instance = webhookInstance(sql, sdk.url);
        const post = async (messageId: number, conversationId: number) =>
          (await instance("message_created", messageId, conversationId)).id;
        storeLate = async () => {
          lateId = await post(88_002, 8_802);
        };
        const firstId = await post(88_001, 8_801);
        await eventually(
          async () => (await statusOf(db.sql, firstId)) === "delivered",
          10_000,
          "the first event delivered",
        );
        // Its delivery is written back before the drain's next (empty) claim, which stores the late event.
        await eventually(
          () => Promise.resolve(lateId > 0),
          10_000,
          "the late event stored during the first drain",
        );
        await eventually(
          async () => (await statusOf(db.sql, lateId)) === "delivered",
          10_000,
          "the late event delivered without waiting for forward-events",
        );
      })
    );
  },
);

dbTest(
  "immediate drain: an event claimed after the target override was cleared is handed back, no attempt spent",
  async () => {
    await withForwardingSetup(async (db, sdk) => {
      // No AGENT_SDK_URL: relay_settings' override is the only target, as on a staging run.
      await db.sql`update public.relay_settings set agent_sdk_url_override = ${sdk.url}`;
      sdk.behave(() => ({ hold: true }));
      let second = 0;
      await withBackgroundAwaited(async () => {
        const instance = webhookInstance(db.sql, null);
        await instance("message_created", 92_001, 9_201);
        await sdk.waitFor(() => sdk.received.length === 1, "the first event held by the Agent SDK");
        // Stored while the target was set (its ingest said so); the drain after the held one claims it.
        second = (await instance("message_created", 92_002, 9_202)).id;
        await db.sql`update public.relay_settings set agent_sdk_url_override = null`;
        sdk.behave(() => new Response("ok"));
        sdk.releaseHeld();
      });
      const [row] = await db.sql<
        { status: string; attempts: number; due: boolean; leased_by: string | null }[]
      >`
        select status, attempts, next_attempt_at <= now() as due, leased_by
          from public.webhook_events where id = ${second}`;
      assert.deepEqual(
        { ...row, recorded: [...await attemptsOf(db.sql, second)], sent: sdk.received.length },
        { status: "pending", attempts: 0, due: true, leased_by: null, recorded: [], sent: 1 },
        "claimed with no target to send it to: as it was before the claim",
      );
      // The target back: it goes out as its first attempt.
      await db.sql`update public.relay_settings set agent_sdk_url_override = ${sdk.url}`;
      const summary = await drain(db.sql, { agentSdkUrl: null, agentSdkSecret: null, agentSdkToken: null }, {
        log: memoryLogger(),
      });
      assert.equal(summary.delivered, 1);
      assert.equal(sdk.received.at(-1)?.attempt, 1);
    });
  },
);

dbTest(
  "immediate drain: a setting that keeps it from sending is a warning naming it, once, never its value",
  async () => {
    await withForwardingSetup(async (db, sdk) => {
      const log = memoryLogger();
      const tail = "SECRET-immediate-7c41";
      await withBackgroundAwaited(async () => {
        // The ingest saw a target (AGENT_SDK_URL is set), but no request can carry the token.
        const instance = webhookInstance(db.sql, sdk.url, {
          env: { AGENT_SDK_TOKEN: `agent token ${tail}` },
          log,
        });
        // One store at a time; the first has the instance see the token, and the others it names no more.
        for (const n of [1, 2, 3]) await instance("message_created", 93_000 + n, 9_300 + n);
        await eventually(
          () => Promise.resolve(log.lines.some((l) => l.level === "warn")),
          20_000,
          "a warning before any drain",
        );
        // With an override as the target, the drain itself refuses, for the same reason: not said again.
        await db.sql`update public.relay_settings set agent_sdk_url_override = ${sdk.url}`;
        await instance("message_created", 93_004, 9_304);
        await eventually(
          () => Promise.resolve(log.lines.some((l) => l.msg.includes("Immediate delivery"))),
          20_000,
          "the override's drain",
        );
      });
      const warnings = log.lines.filter((l) => l.level === "warn" || l.level === "error");
      assert.deepEqual(warnings.map((l) => [l.level, l.msg, l.problem]), [[
        "warn",
        "[Chatwoot Webhook] Immediate delivery not configured",
        "AGENT_SDK_TOKEN holds characters an HTTP header cannot carry (a line break, a space, or a character " +
        "past ASCII)",
      ]]);
      assert.ok(!JSON.stringify(log.lines).includes(tail));
      assert.equal(sdk.received.length, 0);
    });
  },
);

dbTest(
  "drain: a claim that finds no target sends nothing, spends no attempt and stops as not_configured",
  async () => {
    await withForwardingSetup(async (db, sdk) => {
      const id = await storeSample(db.sql);
      // The caller saw a target (settingsChecked) that is gone by the time of the claim.
      const summary = await drain(db.sql, { agentSdkUrl: null, agentSdkSecret: null, agentSdkToken: null }, {
        settingsChecked: true,
        log: memoryLogger(),
      });
      assert.deepEqual(
        { stopped: summary.stopped, ok: summary.ok, claimed: summary.claimed },
        { stopped: "not_configured", ok: false, claimed: 0 },
      );
      await assertUntouched(db.sql, id);
      assert.equal(sdk.received.length, 0);
    });
  },
);

dbTest(
  "drain: an Agent SDK URL no request can go to claims nothing, spends no attempt and names the setting",
  async () => {
    await withForwardingSetup(async (db, sdk, config) => {
      const id = await storeSample(db.sql);
      const stop = async (agentSdkUrl: string | null, settingsChecked = false) => {
        const s = await drain(db.sql, { ...config, agentSdkUrl }, { settingsChecked, log: memoryLogger() });
        return { stopped: s.stopped, ok: s.ok, claimed: s.claimed, problem: s.problem };
      };
      const refused = (problem: string) => ({ stopped: "not_configured", ok: false, claimed: 0, problem });
      // A typo in the environment: no scheme, a space in the host, another scheme.
      for (
        const url of [
          "agent.internal:8080",
          "http://agent .internal",
          "ftp://agent.internal",
          "https://",
          "http:///",
        ]
      ) {
        assert.deepEqual(await stop(url), refused("AGENT_SDK_URL is not an http(s) URL"), url);
      }
      // The override wins over AGENT_SDK_URL, for better and for worse; the claim's copy of it is checked too
      // (set after the caller looked), and its batch handed back.
      await db.sql`update public.relay_settings set agent_sdk_url_override = 'http://agent .internal'`;
      const overrideProblem = refused("public.relay_settings.agent_sdk_url_override is not an http(s) URL");
      assert.deepEqual(await stop(sdk.url), overrideProblem);
      assert.deepEqual(await stop(sdk.url, true), overrideProblem);
      await assertUntouched(db.sql, id);
      await db.sql`update public.relay_settings set agent_sdk_url_override = ${sdk.url}`;
      const fixed = await drain(db.sql, { ...config, agentSdkUrl: "agent.internal:8080" }, {
        log: memoryLogger(),
      });
      assert.equal(fixed.delivered, 1);
      assert.equal(sdk.received.at(-1)?.attempt, 1);
    });
  },
);

dbTest(
  "forwarder loop: stopped before its drain claims anything, it does not report a missing target",
  async () => {
    await withForwardingSetup(async (db, _sdk, config) => {
      // The start-up drain's read of relay_settings is held until stop() has been called.
      const reading = Promise.withResolvers<void>();
      const release = Promise.withResolvers<void>();
      const sql = new Proxy(db.sql, {
        apply(target, thisArg, args: unknown[]) {
          const query = Reflect.apply(target, thisArg, args);
          const strings = args[0] as TemplateStringsArray | undefined;
          if (
            !Array.isArray(strings) || !strings.join("").includes("from public.relay_settings")
          ) return query;
          return (async () => {
            reading.resolve();
            await release.promise;
            return await query;
          })();
        },
      });
      const log = memoryLogger();
      const loop = await startForwarderLoop({ sql, config, log, sweepMs: 60_000 });
      await reading.promise;
      const stopped = loop.stop();
      release.resolve();
      await stopped;
      // AGENT_SDK_URL is set: a "Not configured" warning here sends the operator after a setting that is fine.
      assert.deepEqual(log.lines.filter((l) => l.level !== "debug"), []);
    });
  },
);

dbTest(
  "forwarder loop: an AGENT_SDK_TOKEN no header can carry is named once in a warning, and nothing is claimed",
  async () => {
    await withForwardingSetup(async (db, sdk, config) => {
      const id = await storeSample(db.sql);
      const log = memoryLogger();
      const drains: DrainSummary[] = [];
      const loop = await startForwarderLoop({
        sql: db.sql,
        config: { ...config, agentSdkToken: "agent token SECRET-tail-5521" },
        log,
        sweepMs: 20,
        onDrain: (summary) => drains.push(summary),
      });
      try {
        await eventually(() => Promise.resolve(drains.length >= 3), 30_000, "three drains");
      } finally {
        await loop.stop();
      }
      const warnings = log.lines.filter((l) => l.level === "warn");
      assert.deepEqual(warnings.map((l) => l.msg), [
        "[Forwarder] Not configured: AGENT_SDK_TOKEN holds characters an HTTP header cannot carry (a line " +
        "break, a space, or a character past ASCII)",
      ]);
      assert.ok(!JSON.stringify(log.lines).includes("SECRET-tail-5521"));
      assert.equal(await statusOf(db.sql, id), "pending");
      assert.equal(sdk.received.length, 0);
    });
  },
);

const ROOT = new URL("..", import.meta.url).pathname;

/**
 * `deno task forward` (with `args`) as a subprocess against a backlog the Agent SDK answers slowly; SIGTERM
 * once it has sent something. It finishes what it has in flight, writes it back and exits; it claims nothing
 * new meanwhile (a supervisor's grace period is short, and what a SIGKILL cuts off is sent again).
 */
async function forwarderStopsOnSigterm(args: string[]) {
  await withForwardingSetup(async (db, sdk) => {
    const backlog = 40;
    for (let i = 0; i < backlog; i++) {
      await storeSample(db.sql, "message_created", { conversationId: 9_100 + i });
    }
    sdk.behave(() => ({ delayMs: 300, then: new Response("ok") }));
    const child = forwardCommand(["--batch", "2", ...args], { DATABASE_URL: db.url, AGENT_SDK_URL: sdk.url })
      .spawn();
    const output = child.output();
    try {
      await sdk.waitFor(() => sdk.received.length > 0, "the first delivery", 60_000);
    } finally {
      child.kill("SIGTERM");
    }
    const { code, stdout, stderr } = await output;
    const text = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
    assert.equal(code, 0, text);
    assert.ok(sdk.received.length <= 8, `stopped claiming: ${sdk.received.length} of ${backlog} sent`);
    // Every event it sent is written back; none is left leased to a forwarder that is gone.
    const rows = await db.sql<{ id: string; status: string }[]>`
      select id, status from public.webhook_events where status <> 'pending' order by id`;
    assert.deepEqual(
      rows.map((r) => [Number(r.id), r.status]),
      sdk.received.map((r) => r.eventId).sort((a, b) => a - b).map((id) => [id, "delivered"]),
    );
  });
}

dbTest("forwarder: deno task forward stops on SIGTERM after writing back its batches in flight", async () => {
  await forwarderStopsOnSigterm([]);
});

dbTest(
  "forwarder: deno task forward --once stops on SIGTERM after writing back its batches in flight",
  async () => {
    await forwarderStopsOnSigterm(["--once"]);
  },
);

for (const args of [[], ["--once"]]) {
  dbTest(
    `forwarder: deno task forward ${args.join(" ")} quits at once on a second signal`.replace("  ", " "),
    async () => {
      await withForwardingSetup(async (db, sdk) => {
        // A delivery the Agent SDK never answers, within a timeout far away: the first signal waits for it.
        await fastSettings(db.sql, { request_timeout_ms: 120_000, lease_seconds: 300 });
        sdk.behave(() => ({ hold: true }));
        await storeSample(db.sql, "message_created", { conversationId: 9_300 });
        const child = forwardCommand(args, { DATABASE_URL: db.url, AGENT_SDK_URL: sdk.url }).spawn();
        let printed = "";
        const reading = child.stdout.pipeThrough(new TextDecoderStream()).pipeTo(
          new WritableStream({ write: (chunk) => void (printed += chunk) }),
        );
        const stderr = new Response(child.stderr).text();
        // A guard only: a forwarder that ignores the second signal is still there when the delivery is held.
        const guard = setTimeout(() => child.kill("SIGKILL"), 60_000);
        try {
          await sdk.waitFor(() => sdk.received.length > 0, "the held delivery", 60_000);
          child.kill("SIGINT");
          // Signals of one kind do not queue up: the second goes once the first has been taken in.
          await eventually(
            () => Promise.resolve(printed.includes("Stopping")),
            30_000,
            "the first signal taken in",
          );
          child.kill("SIGINT");
          const { code } = await child.status;
          await reading;
          assert.equal(code, 130, printed + (await stderr));
        } finally {
          clearTimeout(guard);
          try {
            child.kill("SIGKILL"); // when an assertion above failed before it exited
          } catch { /* exited */ }
          await child.status;
          sdk.releaseHeld();
        }
      });
    },
  );
}

dbIndependentTest(
  "forwarder: deno task forward refuses options that are not whole numbers, before connecting",
  async () => {
    for (
      // Above what a drain takes (it would use 100 and 8, and the log would say 500 and 20).
      // A sweep past 2^31 - 1 ms made setInterval fire at once, every time: the loop polled without pause.
      const args of [
        ["--lanes", "two"],
        ["--batch", "1.5"],
        ["--sweep-ms", "0"],
        ["--sweep-ms", "9"],
        // FORWARDER_SWEEP_MS's rule (one for both): digits only; Number() read "1e3" as 1000, dev refused it.
        ["--sweep-ms", "1e3"],
        ["--sweep-ms", "2147483648"],
        [
          "--sweep-ms",
          "3600001",
        ],
        ["--batch", "500"],
        [
          "--lanes",
          "20",
        ],
        [
          "--once",
          "--budget-ms",
          "x",
        ],
      ]
    ) {
      // Nothing listens at that database: an attempt to forward would fail differently.
      const out = await forwardCommand(args, { DATABASE_URL: "postgresql://postgres@127.0.0.1:1/none" })
        .output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 2, `${args.join(" ")}: ${stderr}`);
      assert.match(stderr, new RegExp(`^--${args.at(-2)!.slice(2)} takes a whole number`, "m"));
      assert.match(stderr, /^usage: deno task forward/m);
    }
  },
);

dbTest("immediate drain: (close the shared database)", closeSharedDb);
