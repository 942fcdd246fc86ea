// A webhook that authenticated and was then refused is Chatwoot's own event, which it never sends again: it is
// recorded in public.webhook_lost_events (error_code the refusal's), unless its body is stored already (a
// replayed old request), and readiness and stats say what to do per cause. A secret or token mismatch cannot
// be recorded (anyone can send one), but readiness warns while such refusals came after the last verified
// webhook. Over real HTTP (loopback), on the real database.
import assert from "node:assert/strict";
import { dbTest, startTestDb } from "./_db.ts";
import { runScript } from "./_dev.ts";
import { serveOnLoopback, signedRequest, TEST_SECRET } from "./_http.ts";
import { createChatwootWebhookApp } from "../supabase/functions/_shared/chatwoot_webhook.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";
import {
  checkWebhookPipeline,
  readinessConfigFromEnv,
} from "../supabase/functions/_shared/readiness_checks.ts";
import { sha256Hex, signChatwoot } from "../supabase/functions/_shared/signature.ts";
import { webhookConfigFromEnv } from "../supabase/functions/_shared/webhook_config.ts";
import { samplePayload } from "../scripts/lib/samples.ts";
import { messageEventKey } from "../supabase/functions/_shared/chatwoot_payload.ts";
import { lostEventsSince, refusalAdvice } from "../supabase/functions/_shared/lost_events.ts";
import { RejectionCounter, writeRejections } from "../supabase/functions/_shared/rejection_counter.ts";

const db = await startTestDb();
const URL_TOKEN = "tok_0123456789abcdefghijklmnopqrstuv";

interface LostRow {
  event: string;
  event_key: string;
  delivery_id: string | null;
  inbox_id: string | null;
  account_id: string | null;
  received_at: Date | null;
  message_created_at: Date | null;
  recover_command: string | null;
  error_code: string | null;
  tried_for_ms: string;
}

/**
 * The webhook app on a loopback port, signed or URL-token requests accepted; `stop` writes what it kept (the
 * lost-event records, the refusal counts) and closes the server.
 */
function serveWebhook() {
  const stops: Array<() => Promise<unknown>> = [];
  const config = webhookConfigFromEnv({
    CHATWOOT_WEBHOOK_SECRET: TEST_SECRET,
    CHATWOOT_WEBHOOK_URL_TOKEN: URL_TOKEN,
  });
  assert.ok(config.ok);
  config.config.storeBudgetMs = 60_000;
  const log = memoryLogger();
  const app = createChatwootWebhookApp({ config, sql: db.sql, log, onStop: (stop) => stops.push(stop) });
  const server = serveOnLoopback((req) => app.fetch(req));
  const url = `${server.url}/chatwoot-webhook`;
  /** Sends a request built for `url` over HTTP; the answer's status and JSON. */
  const send = async (req: Request) => {
    const res = await fetch(req);
    return { status: res.status, body: await res.json() };
  };
  const stop = async () => {
    for (const s of stops) await s();
    await server.stop();
  };
  return { url, send, stop, log };
}

/** A verified webhook of the test's own (a contact_created): the mismatch tests count from the latest one. */
async function storeVerifiedWebhook(): Promise<void> {
  const web = serveWebhook();
  try {
    const ok = await web.send(signedRequest(web.url, JSON.stringify(samplePayload("contact_created"))));
    assert.equal(ok.status, 200);
  } finally {
    await web.stop();
  }
}

const lostRows = (delivery: string) =>
  db.sql<LostRow[]>`
    select event, event_key, delivery_id, inbox_id, account_id, received_at, message_created_at,
           recover_command, error_code, tried_for_ms
      from public.webhook_lost_events where delivery_id = ${delivery}`;

const RECOVER = /^deno task recover --since \S+ --until \S+ --inbox 7 --store$/;
const WINDOW = "X-Chatwoot-Timestamp is outside the accepted window of ±300 s";

let nextId = 961_000;

/** Thrown to roll a test's transaction back. */
class Rollback extends Error {}

dbTest(
  `refused events [${db.kind}]: each authenticated refusal is recorded once as lost, its answer unchanged`,
  async () => {
    const web = serveWebhook();
    const now = Math.floor(Date.now() / 1000);
    const message = (overrides: Record<string, unknown> = {}) =>
      JSON.stringify({
        ...samplePayload("message_created", { messageId: nextId++, inboxId: 7, accountId: 4 }),
        created_at: "2026-11-30T10:00:00Z",
        ...overrides,
      });
    const tokenPost = (body: string | Uint8Array<ArrayBuffer>, delivery: string) =>
      new Request(`${web.url}?token=${URL_TOKEN}`, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Chatwoot-Delivery": delivery },
        body,
      });
    const signedAt = (body: string, timestamp: string, delivery: string) =>
      new Request(web.url, {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          "X-Chatwoot-Delivery": delivery,
          "X-Chatwoot-Timestamp": timestamp,
          "X-Chatwoot-Signature": signChatwoot(TEST_SECRET, timestamp, body),
        },
        body,
      });

    const stale = message();
    const future = JSON.stringify(samplePayload("conversation_created", { conversationId: 96_101 }));
    const badTime = message();
    const notUtf8 = new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x7d]);
    const badPayload = message({ message_type: 1 });
    const noJsonb = message({ content: "\\ud83d" }).replace('"\\\\ud83d"', '"\\ud83d"');
    assert.ok(noJsonb.includes('"\\ud83d"'), "a lone surrogate escape, which jsonb refuses");
    const cases: Array<{
      code: string;
      req: (delivery: string) => Request;
      answer: Record<string, unknown>;
      status: number;
      row: (r: LostRow) => void;
    }> = [
      {
        code: "timestamp_stale",
        req: (d) => signedRequest(web.url, stale, { deliveryId: d, nowSeconds: now - 301 }),
        status: 401,
        answer: { ok: false, error: "timestamp_stale", message: WINDOW },
        row: (r) => {
          assert.equal(r.event, "message_created");
          assert.equal(r.event_key, `message:${JSON.parse(stale).id}:message_created`);
          assert.deepEqual([Number(r.inbox_id), Number(r.account_id)], [7, 4]);
          assert.equal(r.message_created_at?.toISOString(), "2026-11-30T10:00:00.000Z");
          assert.match(String(r.recover_command), RECOVER);
        },
      },
      {
        code: "timestamp_future",
        req: (d) => signedRequest(web.url, future, { deliveryId: d, nowSeconds: now + 900 }),
        status: 401,
        answer: { ok: false, error: "timestamp_future", message: WINDOW },
        row: (r) => {
          assert.equal(r.event, "conversation_created");
          // As its store would have keyed it: an event other than a message's by its body's hash.
          assert.equal(r.event_key, `conversation_created:${sha256Hex(future)}`);
          assert.equal(r.message_created_at, null);
          assert.equal(r.recover_command, null, "only a message_created can be recovered");
        },
      },
      {
        code: "timestamp_invalid",
        req: (d) => signedAt(badTime, "12ab", d),
        status: 401,
        answer: {
          ok: false,
          error: "timestamp_invalid",
          message: "X-Chatwoot-Timestamp must be Unix seconds",
        },
        row: (r) => {
          assert.equal(r.event_key, `message:${JSON.parse(badTime).id}:message_created`);
          assert.match(String(r.recover_command), RECOVER);
        },
      },
      {
        code: "invalid_json",
        req: (d) => tokenPost(notUtf8, d),
        status: 400,
        answer: { ok: false, error: "invalid_json", message: "Body is not valid UTF-8" },
        row: (r) => {
          // Nothing is known of it but its hash: the event key no store could ever make good.
          assert.equal(r.event, "unknown");
          assert.equal(r.event_key, `unknown:${sha256Hex(notUtf8)}`);
          assert.deepEqual([r.inbox_id, r.account_id, r.recover_command], [null, null, null]);
        },
      },
      {
        code: "missing_event",
        req: (d) => tokenPost(JSON.stringify({ id: 5, inbox: { id: 7 }, account: { id: 4 } }), d),
        status: 400,
        answer: { ok: false, error: "missing_event", message: 'Body has no "event" field' },
        row: (r) => {
          assert.equal(r.event, "unknown");
          assert.match(r.event_key, /^unknown:[0-9a-f]{64}$/);
          assert.deepEqual([Number(r.inbox_id), Number(r.account_id)], [7, 4]);
        },
      },
      {
        code: "invalid_payload",
        req: (d) => signedRequest(web.url, badPayload, { deliveryId: d }),
        status: 400,
        answer: {
          ok: false,
          error: "invalid_payload",
          message: "Payload does not match the message_created schema",
          issues: [{ path: "message_type", message: "Invalid input: expected string, received number" }],
        },
        row: (r) => {
          assert.equal(r.event_key, `message:${JSON.parse(badPayload).id}:message_created`);
          assert.match(String(r.recover_command), RECOVER);
        },
      },
      {
        code: "invalid_payload",
        req: (d) => signedRequest(web.url, noJsonb, { deliveryId: d }),
        status: 400,
        answer: {
          ok: false,
          error: "invalid_payload",
          message: "Body cannot be stored as jsonb; nothing stored",
        },
        row: (r) => {
          assert.equal(r.event_key, `message:${JSON.parse(noJsonb).id}:message_created`);
          assert.match(String(r.recover_command), RECOVER);
        },
      },
    ];
    const deliveries: string[] = [];
    try {
      for (const c of cases) {
        const delivery = crypto.randomUUID();
        deliveries.push(delivery);
        const res = await web.send(c.req(delivery));
        assert.deepEqual(res, { status: c.status, body: c.answer }, c.code);
      }
    } finally {
      await web.stop();
    }
    for (const [i, c] of cases.entries()) {
      const rows = await lostRows(deliveries[i]);
      assert.equal(rows.length, 1, `${c.code} (case ${i}): recorded once`);
      const row = rows[0];
      assert.equal(row.error_code, c.code);
      assert.equal(row.delivery_id, deliveries[i]);
      assert.ok(row.received_at instanceof Date);
      assert.equal(Number(row.tried_for_ms), 0);
      c.row(row);
    }
    // Nothing of the body or its headers: the columns above are all a row has besides its times and counts.
    const [{ n }] = await db.sql<{ n: number }[]>`
      select count(*)::int as n from public.webhook_events where event_key = ${`message:${
      JSON.parse(stale).id
    }:message_created`}`;
    assert.equal(n, 0, "refused: nothing stored");
  },
);

dbTest(
  `refused events [${db.kind}]: a replayed old request whose body is stored is no loss`,
  async () => {
    const web = serveWebhook();
    const now = Math.floor(Date.now() / 1000);
    const stored = JSON.stringify(samplePayload("message_created", { messageId: nextId++, inboxId: 7 }));
    const storedOther = JSON.stringify(samplePayload("conversation_created", { conversationId: 96_201 }));
    const never = JSON.stringify(samplePayload("message_created", { messageId: nextId++, inboxId: 7 }));
    const replayed = [crypto.randomUUID(), crypto.randomUUID()];
    const notStored = crypto.randomUUID();
    try {
      for (const body of [stored, storedOther]) {
        const res = await web.send(signedRequest(web.url, body));
        assert.equal(res.status, 200, JSON.stringify(res.body));
      }
      for (const [i, body] of [stored, storedOther].entries()) {
        const res = await web.send(
          signedRequest(web.url, body, { deliveryId: replayed[i], nowSeconds: now - 900 }),
        );
        assert.deepEqual(res, {
          status: 401,
          body: { ok: false, error: "timestamp_stale", message: WINDOW },
        });
      }
      const res = await web.send(
        signedRequest(web.url, never, { deliveryId: notStored, nowSeconds: now - 900 }),
      );
      assert.equal(res.body.error, "timestamp_stale");
    } finally {
      await web.stop();
    }
    assert.equal((await lostRows(replayed[0])).length, 0, "a replay of a stored message is no loss");
    assert.equal(
      (await lostRows(replayed[1])).length,
      0,
      "a replay of a stored conversation event is no loss",
    );
    // Written in the same batch as the replays: the check leaves out those, not the batch.
    assert.equal((await lostRows(notStored)).length, 1, "a body never stored is lost");
  },
);

const env = { AGENT_SDK_URL: "http://agent-sdk.invalid" };
const pipeline = () =>
  checkWebhookPipeline({ sql: db.sql, env, config: readinessConfigFromEnv(env), now: () => new Date() });

dbTest(
  `refused events [${db.kind}]: readiness and stats warn per cause and say what to do`,
  async () => {
    const check = await pipeline();
    assert.equal(check.status, "warn", check.detail);
    assert.match(
      check.detail,
      /\d+ events? refused and lost in 24 h \(timestamp_stale: \d+, timestamp_future: \d+, timestamp_invalid: 1\) \(last [^)]+\): Chatwoot's clock is off from ours by more than CHATWOOT_WEBHOOK_TOLERANCE_SECONDS/,
    );
    assert.match(
      check.detail,
      /\d+ events refused and lost in 24 h \(invalid_json: 1, missing_event: 1, invalid_payload: 2\) \(last [^)]+\): Chatwoot sent a body our checks refuse .*Rejected log line names its issues/,
    );
    assert.match(check.detail, /recover the message_created among them with each row's recover_command/);
    assert.doesNotMatch(check.detail, /the database did not answer/, "no loss of the database's here");
    const byCode = check.data?.lost_24h_missing_by_code as Record<string, number>;
    assert.deepEqual(
      [byCode.timestamp_invalid, byCode.invalid_json, byCode.missing_event, byCode.invalid_payload],
      [1, 1, 1, 2],
    );

    const text = await runScript("scripts/stats.ts", [], db.url);
    assert.equal(text.code, 0, text.stdout + text.stderr);
    // A line per cause, each with readiness's advice (refusalAdvice): stats once worded its own, which differed.
    const refusedLines = text.stdout.split("\n").filter((line) => /^\s*refused\s/.test(line));
    assert.equal(refusedLines.length, 2, text.stdout);
    assert.match(
      refusedLines[0],
      /refused\s+timestamp_stale \d+, timestamp_future \d+, timestamp_invalid 1 not stored \(Chatwoot's authenticated webhooks, refused\): /,
    );
    assert.ok(refusedLines[0].includes(refusalAdvice("timestamp_stale")), refusedLines[0]);
    assert.match(
      refusedLines[1],
      /refused\s+invalid_json 1, missing_event 1, invalid_payload 2 not stored \(Chatwoot's authenticated webhooks, refused\): /,
    );
    assert.ok(refusedLines[1].includes(refusalAdvice("invalid_payload")), refusedLines[1]);
    assert.match(text.stdout, /select public\.acknowledge_lost_events\(\)/, "stats says how to acknowledge");
    const json = JSON.parse((await runScript("scripts/stats.ts", ["--json"], db.url)).stdout);
    assert.equal(json.lost_missing_by_code.invalid_payload, 2);
    assert.equal(json.lost_acknowledged, 0);
    assert.equal(json.lost_missing_by_code.timestamp_invalid, 1);
  },
);

dbTest(
  `refused events [${db.kind}]: secret mismatches after the last verified webhook are told, not before one`,
  async () => {
    const mismatch = /secret or token mismatch/;
    let web = serveWebhook();
    try {
      const ok = await web.send(signedRequest(web.url, JSON.stringify(samplePayload("contact_created"))));
      assert.equal(ok.status, 200);
      const bad = await web.send(
        signedRequest(web.url, "{}", { secret: "whsec_not_the_one_we_hold_0123456789" }),
      );
      assert.deepEqual(bad, {
        status: 401,
        body: { ok: false, error: "signature_invalid", message: "Signature does not match the body" },
      });
      const badToken = await web.send(
        new Request(`${web.url}?token=not-the-token`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: "{}",
        }),
      );
      assert.equal(badToken.body.error, "token_invalid");
    } finally {
      await web.stop(); // writes the refusal counts
    }
    // Within one minute (a stranger's probes would be): said as text, with the counts, and no warning; two
    // minutes of them warn (the test below).
    const after = await pipeline();
    assert.doesNotMatch(after.detail, mismatch);
    assert.match(
      after.detail,
      /2 secret or token refusals since the last verified webhook, in 1 minute \(signature_invalid: 1, token_invalid: 1; a warning from 2 minutes on/,
    );
    assert.ok(!after.detail.includes(TEST_SECRET) && !after.detail.includes(URL_TOKEN), "never a value");
    assert.equal(after.data?.secret_mismatches_since_verified, 2);
    assert.equal(after.data?.secret_mismatch_minutes_since_verified, 1);

    // A verified webhook after them: the secret is right; a scanner or a second sender, said as text only.
    web = serveWebhook();
    try {
      const ok = await web.send(signedRequest(web.url, JSON.stringify(samplePayload("contact_updated"))));
      assert.equal(ok.status, 200);
    } finally {
      await web.stop();
    }
    const later = await pipeline();
    assert.doesNotMatch(later.detail, mismatch);
    assert.match(later.detail, /2 secret or token refusals in 24 h, none since the last verified webhook/);
    assert.equal(later.data?.secret_mismatches_since_verified, 0);
  },
);

dbTest(
  `refused events [${db.kind}]: each cause's warning names its own latest recover_command, or says there is none`,
  async () => {
    // Rolled back: only these losses. A database loss, then a later refused message_created (its command
    // newer), and a refused conversation_updated, which deno task recover cannot fetch (no command).
    await db.sql.begin(async (tx) => {
      await tx`delete from public.webhook_lost_events`;
      await tx`
        insert into public.webhook_lost_events (id, lost_at, event, event_key, recover_command, error_code,
                                                tried_for_ms)
        values (gen_random_uuid(), now() - interval '2 hours', 'message_created', 'message:1:message_created',
                'deno task recover --since DB-LOSS --store', '08006', 9000),
               (gen_random_uuid(), now() - interval '1 hour', 'message_created', 'message:2:message_created',
                'deno task recover --since CLOCK-LOSS --store', 'timestamp_stale', 0),
               (gen_random_uuid(), now() - interval '30 minutes', 'conversation_updated',
                'conversation_updated:' || repeat('c', 64), null, 'invalid_payload', 0)`;
      const check = await checkWebhookPipeline({
        sql: tx as unknown as typeof db.sql,
        env,
        config: readinessConfigFromEnv(env),
        now: () => new Date(),
      });
      const database =
        check.detail.match(/1 event lost in 24 h \(last [^)]+\): not stored[^]*?(?=\d+ events? refused|$)/)
          ?.[0] ?? "";
      assert.match(database, /latest: deno task recover --since DB-LOSS --store/, check.detail);
      assert.doesNotMatch(database, /CLOCK-LOSS/, "the database's warning names a refusal's command");
      const clock = check.detail.match(
        /1 event refused and lost in 24 h \(timestamp_stale: 1\)[^]*?(?=\d+ events? refused|$)/,
      )
        ?.[0] ?? "";
      assert.match(clock, /latest: deno task recover --since CLOCK-LOSS --store/, check.detail);
      const body = check.detail.match(/1 event refused and lost in 24 h \(invalid_payload: 1\)[^]*$/)?.[0] ??
        "";
      assert.doesNotMatch(body, /recover the message_created among them/, "none of them is one");
      assert.match(body, /none of them is a message_created.*missing for 24 h/, check.detail);
      throw new Rollback();
    }).catch((error) => {
      if (!(error instanceof Rollback)) throw error;
    });
  },
);

dbTest(
  `refused events [${db.kind}]: a refused message_created is made good once recover stores its message`,
  async () => {
    const since = new Date(Date.now() - 24 * 3600_000);
    const id = nextId++;
    const body = JSON.stringify({
      ...samplePayload("message_created", { messageId: id, inboxId: 7, accountId: 4 }),
      created_at: new Date().toISOString(),
    });
    const missing = async () =>
      (await lostEventsSince(db.sql, since)).missing_by_code.timestamp_stale?.missing ?? 0;
    const before = await missing();
    const web = serveWebhook();
    try {
      const stale = await web.send(
        signedRequest(web.url, body, { nowSeconds: Math.floor(Date.now() / 1000) - 301 }),
      );
      assert.equal(stale.body.error, "timestamp_stale");
    } finally {
      await web.stop(); // writes the record
    }
    assert.equal(await missing(), before + 1);
    // As deno task recover stores it (scripts/lib/chatwoot_recover.ts storeOne): its own body, under the key
    // messageEventKey(id, "message_created"); the refusal's record must name that key.
    await db.sql`
      select public.recover_webhook_event(${messageEventKey(id, "message_created")}, 'message_created',
        ${id}::bigint, null, 4, 7, ${body}, ${sha256Hex(body + " rebuilt")}, false)`;
    assert.equal(await missing(), before, "made good by the recovered copy");
  },
);

/** readiness's webhook_pipeline check read in `tx` (a test's transaction, rolled back after). */
const pipelineIn = (tx: unknown) =>
  checkWebhookPipeline({
    sql: tx as typeof db.sql,
    env,
    config: readinessConfigFromEnv(env),
    now: () => new Date(),
  });

dbTest(
  `refused events [${db.kind}]: secret mismatches warn once counted in two minutes after the last verified webhook`,
  async () => {
    // Rolled back: only these counts, at times after the last verified webhook (v), as the writes would have
    // them. One stranger's probe (or a few in one minute) is no rotation: a one-sided rotation refuses every
    // event Chatwoot sends, which soon fills a second minute.
    const mismatch = /secret or token mismatch/;
    await storeVerifiedWebhook();
    await db.sql.begin(async (tx) => {
      await tx`delete from public.webhook_rejections`;
      const [{ v }] = await tx<{ v: Date }[]>`
        select max(last_received_at) as v from public.webhook_events where verified_by <> 'chatwoot_api'`;
      assert.ok(v, "the verified webhook just stored");
      await tx`
        insert into public.webhook_rejections (minute, reason, http_status, count, last_rejected_at)
        values (date_trunc('minute', ${v}::timestamptz + interval '2 minutes'), 'signature_invalid', 401, 3,
                ${v}::timestamptz + interval '2 minutes')`;
      const one = await pipelineIn(tx);
      assert.doesNotMatch(one.detail, mismatch, "one minute of mismatches warned");
      assert.match(one.detail, /3 secret or token refusals since the last verified webhook, in 1 minute/);
      assert.equal(one.data?.secret_mismatches_since_verified, 3);

      await tx`
        insert into public.webhook_rejections (minute, reason, http_status, count, last_rejected_at)
        values (date_trunc('minute', ${v}::timestamptz + interval '4 minutes'), 'token_invalid', 401, 1,
                ${v}::timestamptz + interval '4 minutes')`;
      const two = await pipelineIn(tx);
      assert.equal(two.status, "warn");
      assert.match(
        two.detail,
        /4 secret or token mismatches since the last verified webhook \([^)]+\), in 2 minutes \(signature_invalid: 3, token_invalid: 1\): .*CHATWOOT_WEBHOOK_SECRET/,
      );
      assert.equal(two.data?.secret_mismatches_since_verified, 4);

      // A verified webhook after them: the secret is right.
      await tx`
        update public.webhook_events set last_received_at = ${v}::timestamptz + interval '10 minutes'
         where id = (select id from public.webhook_events where verified_by <> 'chatwoot_api' limit 1)`;
      const after = await pipelineIn(tx);
      assert.doesNotMatch(after.detail, mismatch);
      assert.match(after.detail, /4 secret or token refusals in 24 h, none since the last verified webhook/);
      assert.equal(after.data?.secret_mismatches_since_verified, 0);
      throw new Rollback();
    }).catch((error) => {
      if (!(error instanceof Rollback)) throw error;
    });
  },
);

dbTest(
  `refused events [${db.kind}]: mismatch counts written after a verified webhook count when they were refused`,
  async () => {
    // Counts are gathered in memory and written later (retried while the database does not answer): two
    // refusals of minutes before the last verified webhook (v), written after it, are not since it. Until
    // 2026-12-01 they were counted at the write (last_rejected_at and minute both the write's), after v.
    await storeVerifiedWebhook();
    await db.sql.begin(async (tx) => {
      await tx`delete from public.webhook_rejections`;
      const [{ v }] = await tx<{ v: Date }[]>`
        select max(last_received_at) as v from public.webhook_events where verified_by <> 'chatwoot_api'`;
      let now = v.getTime() - 5 * 60_000;
      const counter = new RejectionCounter(writeRejections(tx as unknown as typeof db.sql), memoryLogger(), {
        now: () => now,
      });
      // Not written yet: the counter's first write starts now, so hold it with a clock that the write reads.
      counter.add("signature_invalid", 401);
      now = v.getTime() - 2 * 60_000;
      counter.add("token_invalid", 401);
      now = Date.now();
      await counter.close();
      const rows = await tx<{ minutes: number; before: boolean }[]>`
        select count(distinct minute)::int as minutes, bool_and(last_rejected_at < ${v}::timestamptz) as before
          from public.webhook_rejections where reason in ('signature_invalid', 'token_invalid')`;
      assert.deepEqual(rows[0], { minutes: 2, before: true }, "counted at the refusals' times");
      const check = await pipelineIn(tx);
      assert.equal(check.data?.secret_mismatches_since_verified, 0, check.detail);
      assert.match(check.detail, /2 secret or token refusals in 24 h, none since the last verified webhook/);
      throw new Rollback();
    }).catch((error) => {
      if (!(error instanceof Rollback)) throw error;
    });
  },
);

// A function deployed before migration 010010 is pushed writes its counts with the older form, at the write's
// time, rather than failing every write.
dbTest(`refused events [${db.kind}]: counts are written to a database without the age argument`, async () => {
  const migration = new URL(
    "../supabase/migrations/20261121010010_rejections_counted_when_refused.sql",
    import.meta.url,
  );
  await db.sql`drop function public.record_webhook_rejection(text, integer, integer, bigint)`;
  try {
    await writeRejections(db.sql)([
      { reason: "older_form_probe", status: 499, count: 3, refused_at: Date.now(), age_ms: 0 },
    ]);
    const [row] = await db.sql<{ count: number }[]>`
      select count from public.webhook_rejections where reason = 'older_form_probe'`;
    assert.equal(row?.count, 3);
  } finally {
    await db.sql.unsafe(await Deno.readTextFile(migration)).simple();
    await db.sql`delete from public.webhook_rejections where reason = 'older_form_probe'`;
  }
});

dbTest(
  `refused events [${db.kind}]: losses recorded before acknowledge_lost_events() warn no more; later ones do`,
  async () => {
    await db.sql.begin(async (tx) => {
      // Rolled back: only these. A refused conversation_updated (nothing fetches it back) and a database's
      // loss of a contact event, both recorded an hour ago.
      await tx`delete from public.webhook_lost_events`;
      await tx`
        insert into public.webhook_lost_events (id, lost_at, recorded_at, event, event_key, recover_command,
                                                error_code, tried_for_ms)
        values (gen_random_uuid(), now() - interval '70 minutes', now() - interval '1 hour',
                'conversation_updated', 'ack:refused', null, 'timestamp_stale', 0),
               (gen_random_uuid(), now() - interval '70 minutes', now() - interval '1 hour',
                'contact_created', 'ack:database', null, '57P01', 9000)`;
      const before = await pipelineIn(tx);
      assert.equal(before.status, "warn");
      assert.match(before.detail, /select public\.acknowledge_lost_events\(\)/, "says how to acknowledge");

      const [{ at }] = await tx<{ at: Date }[]>`select public.acknowledge_lost_events() as at`;
      const [settings] = await tx<{ lost_acknowledged_at: Date }[]>`
        select lost_acknowledged_at from public.relay_settings where id`;
      assert.deepEqual(settings.lost_acknowledged_at, at);
      const acked = await pipelineIn(tx);
      assert.doesNotMatch(acked.detail, /lost in 24 h \(last|refused and lost/, acked.detail);
      assert.equal(acked.status, "pass", acked.detail);
      assert.match(acked.detail, /2 events lost in 24 h \(2 acknowledged\)/);
      assert.equal(acked.data?.lost_24h, 2, "still counted");
      assert.equal(acked.data?.lost_24h_missing, 0);
      assert.equal(acked.data?.lost_24h_acknowledged, 2);

      // A loss lost before the acknowledgement but written after it (kept in memory, retried): unseen by the
      // operator, so not acknowledged. Its recorded_at is the INSERT's (the trigger's clock), not lost_at.
      await tx`
        insert into public.webhook_lost_events (id, lost_at, event, event_key, recover_command, error_code,
                                                tried_for_ms)
        values (gen_random_uuid(), now() - interval '30 minutes', 'message_updated', 'ack:late', null,
                'invalid_payload', 0)`;
      const late = await pipelineIn(tx);
      assert.equal(late.status, "warn");
      assert.match(late.detail, /1 event refused and lost in 24 h \(invalid_payload: 1\)/, late.detail);
      assert.doesNotMatch(late.detail, /timestamp_stale: 1/);
      assert.equal(late.data?.lost_24h_missing, 1);
      assert.equal(late.data?.lost_24h_acknowledged, 2);
      throw new Rollback();
    }).catch((error) => {
      if (!(error instanceof Rollback)) throw error;
    });
  },
);

dbTest(
  `refused events [${db.kind}]: a refused message_updated no newer than the stored version is no loss; a newer one is`,
  async () => {
    // Two versions of one message are ordered as ingest_webhook_event orders them (migration 005100): by when
    // Chatwoot built them (conversation.updated_at), else by their signed time. A refused replay of a version
    // the stored one supersedes lost nothing; until 2026-12-01 it was recorded, its body's hash not the
    // stored one's.
    const web = serveWebhook();
    const now = Math.floor(Date.now() / 1000);
    const id = nextId++;
    const version = (content: string, built = true) => {
      const payload = samplePayload("message_updated", { messageId: id, inboxId: 7, content });
      if (!built) delete (payload.conversation as Record<string, unknown>).updated_at;
      return JSON.stringify(payload);
    };
    // Built in this order (samplePayload's updated_at grows), v2 stored.
    const v1 = version("first edit");
    const v2 = version("second edit");
    const v3 = version("third edit");
    const delivery = { olderStale: "", olderFuture: "", newerStale: "" };
    for (const k of Object.keys(delivery) as (keyof typeof delivery)[]) delivery[k] = crypto.randomUUID();
    try {
      const stored = await web.send(signedRequest(web.url, v2));
      assert.equal(stored.status, 200, JSON.stringify(stored.body));
      const refusals: Array<[string, string, number, string]> = [
        // An older version, stale; and one signed after the stored one (in the future), built before it.
        [v1, delivery.olderStale, now - 900, "timestamp_stale"],
        [v1, delivery.olderFuture, now + 900, "timestamp_future"],
        // A newer version, refused: lost.
        [v3, delivery.newerStale, now - 900, "timestamp_stale"],
      ];
      for (const [body, deliveryId, nowSeconds, error] of refusals) {
        const res = await web.send(signedRequest(web.url, body, { deliveryId, nowSeconds }));
        assert.deepEqual(res, { status: 401, body: { ok: false, error, message: WINDOW } });
      }
    } finally {
      await web.stop(); // writes the records
    }
    assert.equal((await lostRows(delivery.olderStale)).length, 0, "an older version refused: no loss");
    assert.equal((await lostRows(delivery.olderFuture)).length, 0, "built before the stored one: no loss");
    const [newer] = await lostRows(delivery.newerStale);
    assert.equal(newer?.event_key, messageEventKey(id, "message_updated"), "a newer version refused: lost");

    // Without build times (an older Chatwoot), the signed times order them, as the store does.
    const unbuilt = nextId++;
    const plain = (content: string) => {
      const payload = samplePayload("message_updated", { messageId: unbuilt, inboxId: 7, content });
      delete (payload.conversation as Record<string, unknown>).updated_at;
      return JSON.stringify(payload);
    };
    const signedEarlier = crypto.randomUUID();
    const signedLater = crypto.randomUUID();
    const second = serveWebhook();
    try {
      assert.equal((await second.send(signedRequest(second.url, plain("stored")))).status, 200);
      const earlier = await second.send(
        signedRequest(second.url, plain("signed earlier"), {
          deliveryId: signedEarlier,
          nowSeconds: now - 900,
        }),
      );
      assert.equal(earlier.body.error, "timestamp_stale");
      const later = await second.send(
        signedRequest(second.url, plain("signed later"), { deliveryId: signedLater, nowSeconds: now + 900 }),
      );
      assert.equal(later.body.error, "timestamp_future");
    } finally {
      await second.stop();
    }
    assert.equal((await lostRows(signedEarlier)).length, 0, "signed before the stored version: no loss");
    assert.equal((await lostRows(signedLater)).length, 1, "signed after the stored version: lost");

    // A message_created is never replaced once stored (its store counts another body of it a duplicate):
    // a refused copy that differs lost nothing either.
    const created = nextId++;
    const copy = crypto.randomUUID();
    const third = serveWebhook();
    try {
      const body = (content: string) =>
        JSON.stringify(samplePayload("message_created", { messageId: created, inboxId: 7, content }));
      assert.equal((await third.send(signedRequest(third.url, body("as stored")))).status, 200);
      const res = await third.send(
        signedRequest(third.url, body("sent again, changed"), { deliveryId: copy, nowSeconds: now - 900 }),
      );
      assert.equal(res.body.error, "timestamp_stale");
    } finally {
      await third.stop();
    }
    assert.equal((await lostRows(copy)).length, 0, "its message_created is stored: no loss");
  },
);

dbTest(
  `refused events [${db.kind}]: a refused message event without an integer id is keyed by its body, with no recover_command`,
  async () => {
    // Its store would key it message:<id>:<event>: an id our schema refused gave message:null:…, one key for
    // every such refusal, which no recovery (it stores by the message's id) could ever make good.
    const web = serveWebhook();
    const bodies = ["abc", 12.5, null].map((id) =>
      JSON.stringify({ ...samplePayload("message_created", { inboxId: 7, accountId: 4 }), id })
    );
    bodies.push(
      JSON.stringify({ ...samplePayload("message_updated", { inboxId: 7, accountId: 4 }), id: "abc" }),
    );
    const deliveries = bodies.map(() => crypto.randomUUID());
    try {
      for (const [i, body] of bodies.entries()) {
        const res = await web.send(signedRequest(web.url, body, { deliveryId: deliveries[i] }));
        assert.equal(res.body.error, "invalid_payload", body);
      }
    } finally {
      await web.stop();
    }
    for (const [i, body] of bodies.entries()) {
      const rows = await lostRows(deliveries[i]);
      assert.equal(rows.length, 1, body);
      const event = JSON.parse(body).event;
      assert.equal(rows[0].event, event);
      assert.equal(rows[0].event_key, `${event}:${sha256Hex(body)}`, "unique to its body");
      assert.equal(rows[0].recover_command, null, "nothing recover stores could make it good");
      assert.deepEqual([Number(rows[0].inbox_id), Number(rows[0].account_id)], [7, 4]);
    }
  },
);

dbTest(`refused events [${db.kind}]: close the database`, async () => {
  await db.close();
});
