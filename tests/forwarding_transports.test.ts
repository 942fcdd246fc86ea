// Delivery semantics on the wire, alike for both ways a delivery goes out: fetch (the Edge Functions) and
// undici (the standalone forwarder, `deno task forward` and the dev server's loop). Each case runs through
// drain() against a real database and the real Agent SDK stand-in, once per transport.
import assert from "node:assert/strict";
import { dbTest } from "./_db.ts";
import { ok, startAgentSdk } from "./_agent_sdk.ts";
import { closedPortUrl } from "./_closed_port.ts";
import {
  assertUntouched,
  attemptsOf,
  closeSharedDb,
  statusOf,
  storeSample,
  withForwardingSetup,
} from "./_forwarding.ts";
import {
  type DeliveryTransport,
  drain,
  EXCERPT_BYTES,
  fetchTransport,
  storableText,
} from "../supabase/functions/_shared/forwarder.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";
import { ChatwootSignatureVerifier } from "../supabase/functions/_shared/signature.ts";
import { undiciTransport } from "../scripts/lib/undici_transport.ts";

const TRANSPORTS: Array<[string, () => { send: DeliveryTransport; close(): Promise<void> }]> = [
  ["fetch", () => ({ send: fetchTransport, close: async () => {} })],
  ["undici", undiciTransport],
];

function transportTest(
  name: string,
  fn: (transport: DeliveryTransport) => Promise<void>,
) {
  for (const [label, make] of TRANSPORTS) {
    dbTest(`delivery over ${label}: ${name}`, async () => {
      const transport = make();
      try {
        await fn(transport.send);
      } finally {
        await transport.close();
      }
    });
  }
}

transportTest("exact raw bytes, every header, a signature that verifies", async (transport) => {
  await withForwardingSetup(async (db, sdk, base) => {
    const secret = "agent-sdk-shared-secret-0123456789";
    const config = { ...base, agentSdkSecret: secret, agentSdkToken: "agent-token-xyz" };
    // Odd spacing, escapes and key order: only a byte-exact copy matches this.
    const raw = `{ "event":"message_created",  "id": 778, "content":"caf\\u00e9 \u00e9 \u{1F600}",` +
      `"message_type":"incoming","private":false,"created_at":"2026-11-21T10:00:00Z",` +
      `"conversation":{"id":5,"inbox_id":3},"account":{"id":1,"name":"HotDash"},"inbox":{"id":3,"name":"x"},` +
      `"sender":{"id":9,"name":"J"} , "n": 1.000000000000000000001 }`;
    const id = await storeSample(db.sql, "message_created", { raw });
    const log = memoryLogger();
    const summary = await drain(db.sql, config, { budgetMs: 5_000, log, transport });
    assert.equal(summary.delivered, 1);
    assert.equal(summary.stopped, "idle");
    assert.equal(sdk.received.length, 1);
    const got = sdk.received[0];
    assert.deepEqual(got.body, new TextEncoder().encode(raw));
    assert.equal(got.headers.get("content-type"), "application/json");
    assert.equal(got.headers.get("idempotency-key"), "message:778:message_created");
    assert.equal(got.headers.get("x-chatwoot-event"), "message_created");
    assert.equal(got.headers.get("x-relay-event-id"), String(id));
    assert.equal(got.headers.get("x-relay-event-version"), "1");
    assert.equal(got.headers.get("x-relay-attempt"), "1");
    assert.equal(got.headers.get("authorization"), "Bearer agent-token-xyz");
    assert.ok(
      new ChatwootSignatureVerifier([secret]).verify(
        got.headers.get("x-chatwoot-signature")!,
        got.headers.get("x-chatwoot-timestamp")!,
        got.body,
      ),
    );
    assert.equal(await statusOf(db.sql, id), "delivered");
    assert.deepEqual((await attemptsOf(db.sql, id)).map((a) => [a.attempt, a.http_status, a.outcome]), [
      [1, 200, "delivered"],
    ]);
    assert.ok(log.lines.some((l) => l.msg === "Processed successfully" && l.status === 200));
    const logged = JSON.stringify(log.lines);
    assert.ok(!logged.includes(secret) && !logged.includes("agent-token-xyz"), "no secret in the log");
    // Nothing more to do: a second drain sends nothing.
    assert.equal((await drain(db.sql, config, { log, transport })).claimed, 0);
    assert.equal(sdk.received.length, 1);
  });
});

transportTest(
  "a 500's body cut to the excerpt, a timeout, a refused connection, then delivered",
  async (transport) => {
    await withForwardingSetup(async (db, sdk, config) => {
      const id = await storeSample(db.sql);
      const longError = "é".repeat(5_000); // 10 000 bytes, two per character
      // By attempt, not by arrival: the second attempt is held until its timeout (the setup's 2 s) ends it. A
      // shorter timeout (it was 300 ms) could end it before a loaded machine had it reach the stand-in; then it
      // was not received, and the delay meant for it went to the next request.
      sdk.behave((r) =>
        r.attempt === 1 ? new Response(longError, { status: 500 }) : r.attempt === 2 ? { hold: true } : ok()
      );
      const log = memoryLogger();
      const round = (c = config) => drain(db.sql, c, { budgetMs: 0, log, transport });
      assert.equal((await round()).retried, 1);
      assert.equal((await round()).retried, 1);
      assert.equal((await round({ ...config, agentSdkUrl: closedPortUrl() })).retried, 1);
      assert.equal((await round()).delivered, 1);
      const attempts = await attemptsOf(db.sql, id);
      assert.deepEqual(attempts.map((a) => [a.attempt, a.http_status, a.outcome]), [
        [1, 500, "retry"],
        [2, null, "retry"],
        [3, null, "retry"],
        [4, 200, "delivered"],
      ]);
      assert.match(attempts[1].error!, /^timeout after 2000 ms$/);
      assert.match(attempts[2].error!, /^connection refused$/);
      const errors = log.lines.filter((l) => l.msg === "Agent SDK error");
      assert.equal(errors.length, 3);
      assert.equal(errors[0].status, 500);
      assert.equal(errors[0].body, "é".repeat(EXCERPT_BYTES / 2), "the first 300 bytes, decoded");
      // The refused attempt never arrived; the timed-out one arrived but was never answered to us.
      assert.deepEqual(sdk.received.map((r) => r.attempt), [1, 2, 4]);
      assert.deepEqual(sdk.accepted().map((r) => r.attempt), [4]);
      assert.equal(await statusOf(db.sql, id), "delivered");
    });
  },
);

transportTest(
  "an answer with a NUL byte or a broken UTF-16 pair is stored as U+FFFD; the batch is written back once",
  async (transport) => {
    await withForwardingSetup(async (db, sdk, config) => {
      // Three events, one batch: a 2xx whose body holds a NUL (a binary answer), a 500 with one, and a plain 200.
      const ids = [
        await storeSample(db.sql, "message_created", { conversationId: 1 }),
        await storeSample(db.sql, "message_created", { conversationId: 2 }),
        await storeSample(db.sql, "message_created", { conversationId: 3 }),
      ];
      sdk.behave((r) =>
        r.eventId === ids[0]
          ? new Response(new Uint8Array([0x6f, 0x6b, 0x00, 0xff, 0x21]), { status: 200 })
          : r.eventId === ids[1]
          ? new Response("bad\u0000input", { status: 500 })
          : ok()
      );
      const summary = await drain(db.sql, config, {
        budgetMs: 0,
        batchSize: 10,
        log: memoryLogger(),
        transport,
      });
      assert.deepEqual([summary.delivered, summary.retried], [2, 1]);
      assert.deepEqual(await Promise.all(ids.map((id) => statusOf(db.sql, id))), [
        "delivered",
        "pending",
        "delivered",
      ]);
      const excerpt = async (id: number) =>
        (await db.sql<{ response_excerpt: string }[]>`
          select response_excerpt from public.webhook_delivery_attempts where event_id = ${id}`)[0]
          .response_excerpt;
      assert.equal(await excerpt(ids[0]), "ok\uFFFD\uFFFD!");
      assert.equal(await excerpt(ids[1]), "bad\uFFFDinput");
      assert.equal(storableText("a\uD800b"), "a\uFFFDb", "a lone surrogate, which jsonb refuses too");
      assert.equal(sdk.received.length, 3, "each sent once");
    });
  },
);

transportTest(
  "an AGENT_SDK_TOKEN a header cannot carry claims nothing: no attempt spent, the setting named, never the token",
  async (transport) => {
    await withForwardingSetup(async (db, sdk, config) => {
      const tail = "SECRET-agent-3b9f1e";
      const id = await storeSample(db.sql);
      for (const token of [`agent-token\n${tail}`, `agent-token\u0000${tail}`, `agent token ${tail}`]) {
        const log = memoryLogger();
        const summary = await drain(db.sql, { ...config, agentSdkToken: token }, {
          budgetMs: 0,
          log,
          transport,
        });
        assert.deepEqual(
          { stopped: summary.stopped, ok: summary.ok, claimed: summary.claimed, problem: summary.problem },
          {
            stopped: "not_configured",
            ok: false,
            claimed: 0,
            problem:
              "AGENT_SDK_TOKEN holds characters an HTTP header cannot carry (a line break, a space, or a " +
              "character past ASCII)",
          },
        );
        for (const text of [JSON.stringify(summary), JSON.stringify(log.lines)]) {
          assert.ok(!text.includes(tail), `the token shows: ${text}`);
        }
      }
      await assertUntouched(db.sql, id);
      assert.equal(sdk.received.length, 0, "nothing sent");
      // Set right, the event that waited goes out on its first attempt.
      const fixed = await drain(db.sql, config, { budgetMs: 0, log: memoryLogger(), transport });
      assert.equal(fixed.delivered, 1);
      assert.equal(sdk.received.at(-1)?.attempt, 1);
    });
  },
);

transportTest("Retry-After of a 429 sets the next attempt", async (transport) => {
  await withForwardingSetup(async (db, sdk, config) => {
    const id = await storeSample(db.sql);
    sdk.behave(() => new Response("slow down", { status: 429, headers: { "Retry-After": "120" } }));
    const before = Date.now();
    const summary = await drain(db.sql, config, { budgetMs: 5_000, log: memoryLogger(), transport });
    assert.equal(summary.retried, 1);
    const [row] = await db.sql<{ next_attempt_at: Date }[]>`
      select next_attempt_at from public.webhook_events where id = ${id}`;
    assert.ok(row.next_attempt_at.getTime() >= before + 119_000, row.next_attempt_at.toISOString());
  });
});

transportTest(
  "a Retry-After date is read against the answer's own Date: a sink an hour ahead still means its delay",
  async (transport) => {
    await withForwardingSetup(async (db, sdk, config) => {
      const id = await storeSample(db.sql);
      sdk.behave(() => {
        // The Agent SDK's clock is an hour ahead of ours; it asks for 120 s by its own clock.
        const sinkNow = Math.floor((Date.now() + 3600_000) / 1000) * 1000;
        return new Response("busy", {
          status: 503,
          headers: {
            "Date": new Date(sinkNow).toUTCString(),
            "Retry-After": new Date(sinkNow + 120_000).toUTCString(),
          },
        });
      });
      const before = Date.now();
      const summary = await drain(db.sql, config, { budgetMs: 5_000, log: memoryLogger(), transport });
      const after = Date.now();
      assert.equal(summary.retried, 1);
      assert.ok(sdk.received.length === 1);
      const [row] = await db.sql<{ next_attempt_at: Date }[]>`
        select next_attempt_at from public.webhook_events where id = ${id}`;
      const at = row.next_attempt_at.getTime();
      assert.ok(
        at >= before + 119_000 && at <= after + 121_000,
        `next attempt ${row.next_attempt_at.toISOString()}`,
      );
    });
  },
);

transportTest(
  "a redirect is not followed: a failed attempt, nothing re-posted elsewhere",
  async (transport) => {
    await withForwardingSetup(async (db, sdk, config) => {
      const elsewhere = startAgentSdk();
      try {
        const id = await storeSample(db.sql);
        sdk.behave(() =>
          new Response(null, { status: 307, headers: { location: `${elsewhere.url}/webhooks/chatwoot` } })
        );
        const summary = await drain(db.sql, config, { budgetMs: 0, log: memoryLogger(), transport });
        assert.equal(summary.retried, 1);
        assert.equal(sdk.received.length, 1);
        assert.equal(elsewhere.received.length, 0);
        assert.deepEqual((await attemptsOf(db.sql, id)).map((a) => [a.http_status, a.outcome]), [[
          307,
          "retry",
        ]]);
      } finally {
        await elsewhere.close();
      }
    });
  },
);

transportTest(
  "an override with spaces after it goes where new URL() reads it, as the check that let it through read it",
  async (transport) => {
    await withForwardingSetup(async (db, sdk, config) => {
      // relay_settings' check (^https?://) lets trailing spaces through, and new URL() ignores them; appended
      // to as text, the delivery URL had them before /webhooks/chatwoot: an invalid host, or another path.
      for (
        const [override, path] of [[`${sdk.url}  `, "/webhooks/chatwoot"], [
          `${sdk.url}/agent `,
          "/agent/webhooks/chatwoot",
        ]]
      ) {
        await db.sql`update public.relay_settings set agent_sdk_url_override = ${override}`;
        const id = await storeSample(db.sql);
        const summary = await drain(db.sql, config, { budgetMs: 0, log: memoryLogger(), transport });
        assert.equal(summary.delivered, 1, JSON.stringify(override));
        assert.equal(new URL(sdk.received.at(-1)!.url).pathname, path);
        assert.equal(await statusOf(db.sql, id), "delivered");
      }
    });
  },
);

transportTest(
  "credentials in the target URL go as Basic authorization, AGENT_SDK_TOKEN's Bearer instead when it is set",
  async (transport) => {
    await withForwardingSetup(async (db, sdk, config) => {
      // fetch made a Basic header of them and undici dropped them; with a token, fetch sent both in one header.
      const target = sdk.url.replace("://", "://us%20er:p%40ss@");
      const sent = async (agentSdkToken: string | null) => {
        const id = await storeSample(db.sql);
        const summary = await drain(db.sql, { ...config, agentSdkUrl: target, agentSdkToken }, {
          budgetMs: 0,
          log: memoryLogger(),
          transport,
        });
        assert.equal(summary.delivered, 1);
        assert.equal(await statusOf(db.sql, id), "delivered");
        const got = sdk.received.at(-1)!;
        return { authorization: got.headers.get("authorization"), path: new URL(got.url).pathname };
      };
      assert.deepEqual(await sent(null), {
        authorization: `Basic ${btoa("us er:p@ss")}`,
        path: "/webhooks/chatwoot",
      });
      assert.deepEqual(await sent("agent-token-xyz"), {
        authorization: "Bearer agent-token-xyz",
        path: "/webhooks/chatwoot",
      });
    });
  },
);

transportTest(
  "an Agent SDK URL with a query: the path goes before it, the query is sent as is and never shown",
  async (transport) => {
    await withForwardingSetup(async (db, sdk, config) => {
      const key = "gatewaykey-SECRET-7c1d";
      const id = await storeSample(db.sql);
      const withQuery = { ...config, agentSdkUrl: `${sdk.url}/agent/?key=${key}` };
      assert.equal(
        (await drain(db.sql, withQuery, { budgetMs: 0, log: memoryLogger(), transport })).delivered,
        1,
      );
      const url = new URL(sdk.received[0].url);
      assert.equal(url.pathname, "/agent/webhooks/chatwoot");
      assert.equal(url.searchParams.get("key"), key);
      assert.equal(await statusOf(db.sql, id), "delivered");
      // A server that takes the connection and closes it: the error (fetch names the URL in it) hides the query.
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const closing = (async () => {
        for await (const conn of listener) conn.close();
      })();
      try {
        const failing = await storeSample(db.sql, "message_created", { conversationId: 99 });
        const log = memoryLogger();
        const dead = { ...config, agentSdkUrl: `http://127.0.0.1:${listener.addr.port}/?key=${key}` };
        assert.equal((await drain(db.sql, dead, { budgetMs: 0, log, transport })).retried, 1);
        const [attempt] = await attemptsOf(db.sql, failing);
        assert.match(attempt.error!, /^connection error: /);
        for (const text of [attempt.error!, JSON.stringify(log.lines)]) {
          assert.ok(!text.includes(key), `the key shows: ${text}`);
        }
      } finally {
        listener.close();
        await closing.catch(() => {});
      }
    });
  },
);

dbTest("delivery transports: (close the shared database)", closeSharedDb);
