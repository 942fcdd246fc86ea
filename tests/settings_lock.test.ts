// Operators' commands (the README's SQL one-liners: pause, resume, target, what is sent, acknowledging dead
// events, replay, retry now, schedule_forwarder) never queue behind long work: while
// prune_webhook_events() is held up deleting, or a forwarder's batch waits for a slow Agent SDK, each of them
// runs to its end. Waiting is read from the server's lock table (pg_blocking_pids), not timed. Sessions contend only on a real server (DATABASE_URL);
// PGlite, one session, runs the checks that need no second one. Also what two of them do at the same moment:
// an acknowledgement and a death, a recovery's store and a prune, a prune and an operator's open transaction.
import assert from "node:assert/strict";
import { dbTest, startTestDb } from "./_db.ts";
import { connect, type Sql } from "../supabase/functions/_shared/db.ts";
import { drain } from "../supabase/functions/_shared/forwarder.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";
import { startAgentSdk } from "./_agent_sdk.ts";
import { storeSample } from "./_forwarding.ts";

const db = await startTestDb();
const sql = db.sql;
const onServer = db.kind === "postgres";
const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));

/** Every operator SQL line of the README that changes something: the settings' UPDATEs and the functions. */
const operatorCommands = [
  ...new Set(readme.match(/^(?:update public\.relay_settings set|select public\.)[^\n;]*;/gm) ?? []),
];

const OLD_EVENTS = 300;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Delivered events 40 days old (a retention of 30), oldest first by key, each with a delivery attempt. */
async function seedOldHistory(n = OLD_EVENTS) {
  await sql`insert into public.webhook_events (event_key, event, payload, raw_body, body_sha256, verified_by,
              status, received_at, last_received_at)
            select 'old-' || i, 'message_created', '{}', '{}', md5(i::text) || md5(i::text), 'signature',
                   'delivered', now() - interval '40 days' - make_interval(secs => ${n} + 1 - i),
                   now() - interval '40 days' - make_interval(secs => ${n} + 1 - i)
              from generate_series(1, ${n}::int) i`;
  await sql`insert into public.webhook_delivery_attempts (event_id, attempt, version, started_at, succeeded,
              outcome, http_status)
            select e.id, 1, 1, e.last_received_at, true, 'delivered', 200
              from public.webhook_events e where e.event_key like 'old-%'`;
  await sql`insert into public.webhook_rejections (minute, reason, http_status)
            values (date_trunc('minute', now() - interval '40 days'), 'signature_invalid', 401)`;
  await sql`insert into public.webhook_lost_events (id, lost_at, event, event_key, tried_for_ms)
            values (gen_random_uuid(), now() - interval '40 days', 'message_created', 'lost-old', 1000)`;
}

async function oldEventsLeft(): Promise<number> {
  const [{ n }] = await sql<{ n: number }[]>`
    select count(*)::int as n from public.webhook_events where event_key like 'old-%'`;
  return n;
}

async function prunedBefore(): Promise<Date | null> {
  const [{ pruned_before }] = await sql<{ pruned_before: Date | null }[]>`
    select pruned_before from public.relay_settings`;
  return pruned_before;
}

/** Removes what seedOldHistory added and puts the settings back as the migrations left them. */
async function cleanUp() {
  await sql`delete from public.webhook_events where event_key like 'old-%'`;
  await sql`delete from public.webhook_rejections where minute < now() - interval '30 days'`;
  await sql`delete from public.webhook_lost_events where lost_at < now() - interval '30 days'`;
  await sql`update public.relay_settings
               set forwarding_paused = false, agent_sdk_url_override = null,
                   forward_events = '{message_created}', dead_acknowledged_at = null, pruned_before = null,
                   lost_acknowledged_at = null`;
}

/** The sessions (server pids) holding the locks `pid` waits for. */
async function blockersOf(pid: number): Promise<number[]> {
  const [{ pids }] = await sql<{ pids: number[] }[]>`select pg_blocking_pids(${pid}::int) as pids`;
  return pids;
}

/** One server session of its own: a pool of one connection, and that connection's pid. */
async function session(name: string): Promise<{ sql: Sql; pid: number }> {
  const own = connect(db.url, { max: 1, applicationName: name });
  const [{ pid }] = await own<{ pid: number }[]>`select pg_backend_pid() as pid`;
  return { sql: own, pid };
}

/**
 * Holds `lockStatement`'s lock in a transaction of a session of its own until `release()`. Resolves once the
 * lock is held, with the session's pid.
 */
async function holdLock(lockStatement: string) {
  const own = connect(db.url, { max: 1, applicationName: "test-lock-holder" });
  let release!: () => void;
  const released = new Promise<void>((resolve) => release = resolve);
  let held!: (pid: number) => void;
  const holding = new Promise<number>((resolve) => held = resolve);
  const transaction = own.begin(async (tx) => {
    const [{ pid }] = await tx<{ pid: number }[]>`select pg_backend_pid() as pid`;
    await tx.unsafe(lockStatement);
    held(pid);
    await released;
  });
  const pid = await Promise.race([holding, transaction.then(() => -1)]);
  assert.ok(pid > 0, `lock not taken: ${lockStatement}`);
  let ended: Promise<void> | undefined;
  return {
    pid,
    release: () =>
      ended ??= (async () => {
        release();
        await transaction.catch(() => {});
        await own.end({ timeout: 1 });
      })(),
  };
}

/** Waits until session `pid` waits for a lock of session `holder`'s. */
async function waitUntilBlocked(pid: number, holder: number, what: string) {
  const deadline = Date.now() + 30_000;
  while (!(await blockersOf(pid)).includes(holder)) {
    assert.ok(Date.now() < deadline, `${what} never waited for session ${holder}`);
    await sleep(10);
  }
}

/** Runs `command` in `operator`; fails as soon as it waits for a lock that session `pruner` holds. */
async function runsWithoutWaitingFor(
  operator: { sql: Sql; pid: number },
  command: string,
  pruner: number,
  inFlight: Promise<unknown>[],
) {
  let finished = false;
  const run = operator.sql.unsafe(command).finally(() => finished = true);
  inFlight.push(run.catch(() => {}));
  const deadline = Date.now() + 30_000;
  while (!finished) {
    const blockers = await blockersOf(operator.pid);
    assert.ok(!blockers.includes(pruner), `${command} waited for the prune (blocked by ${blockers})`);
    assert.ok(Date.now() < deadline, `${command} did not finish`);
    await sleep(5);
  }
  await run;
}

/** Where the prune is held up: a lock it needs, taken by another session first; what is seen meanwhile. */
const holdUps: { name: string; lock: string; call: string; whileHeld?: () => Promise<void> }[] = [
  {
    name: "its first batch (an attempt of the oldest event, deleted with it)",
    lock: `select 1 from public.webhook_delivery_attempts a
            where a.event_id = (select id from public.webhook_events where event_key = 'old-1') for update`,
    call: "call public.prune_webhook_events()",
    whileHeld: async () => assert.equal(await oldEventsLeft(), OLD_EVENTS, "nothing deleted yet"),
  },
  {
    name: "a later batch (an attempt of the newest old event, in the third batch of 100)",
    lock: `select 1 from public.webhook_delivery_attempts a
            where a.event_id = (select id from public.webhook_events where event_key = 'old-${OLD_EVENTS}')
              for update`,
    call: "call public.prune_webhook_events(batch_size => 100)",
    // Deletions seen, so the cutoff is seen too: a recovery never reaches back past what is gone.
    whileHeld: async () => {
      assert.equal(await oldEventsLeft(), OLD_EVENTS - 200);
      assert.notEqual(await prunedBefore(), null, "the cutoff committed with the first batch");
    },
  },
  {
    name: "the old refusal counts",
    lock: "lock table public.webhook_rejections in share mode",
    call: "call public.prune_webhook_events()",
  },
  {
    name: "the old lost-event records",
    lock: "lock table public.webhook_lost_events in share mode",
    call: "call public.prune_webhook_events()",
  },
];

for (const holdUp of holdUps) {
  Deno.test({
    name: `settings lock [${db.kind}]: operators' commands run while retention is held up in ${holdUp.name}`,
    ignore: !onServer,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      assert.ok(operatorCommands.length >= 9, `README operator commands: ${operatorCommands.join(" | ")}`);
      await seedOldHistory();
      const holder = await holdLock(holdUp.lock);
      const pruner = await session("test-pruner");
      const operator = await session("test-operator");
      const inFlight: Promise<unknown>[] = [];
      let prune: Promise<{ deleted: string }[]> | undefined;
      try {
        prune = pruner.sql.unsafe(holdUp.call) as unknown as Promise<{ deleted: string }[]>;
        inFlight.push(prune.catch(() => {}));
        await waitUntilBlocked(pruner.pid, holder.pid, "the prune");
        await holdUp.whileHeld?.();
        for (const command of operatorCommands) {
          await runsWithoutWaitingFor(operator, command, pruner.pid, inFlight);
        }
        const [{ paused, acknowledged }] = await sql`
          select forwarding_paused as paused, dead_acknowledged_at is not null as acknowledged
            from public.relay_settings`;
        assert.equal(paused, false, "the README's last pause command is its resume");
        assert.equal(acknowledged, true);
        await holder.release();
        const [{ deleted }] = await prune;
        assert.equal(Number(deleted), OLD_EVENTS);
        assert.equal(await oldEventsLeft(), 0);
        assert.notEqual(await prunedBefore(), null);
        const [{ rejections, lost }] = await sql`
          select (select count(*)::int from public.webhook_rejections where minute < now() - interval '30 days')
                   as rejections,
                 (select count(*)::int from public.webhook_lost_events where lost_at < now() - interval '30 days')
                   as lost`;
        assert.deepEqual([rejections, lost], [0, 0]);
      } finally {
        await holder.release();
        await Promise.all(inFlight);
        await pruner.sql.end({ timeout: 1 });
        await operator.sql.end({ timeout: 1 });
        await cleanUp();
      }
    },
  });
}

Deno.test({
  name:
    `settings lock [${db.kind}]: operators' commands run while a forwarder's batch waits for the Agent SDK`,
  ignore: !onServer,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const sdk = startAgentSdk(() => ({ hold: true }));
    const forwarder = await session("test-forwarder");
    const operator = await session("test-operator");
    const inFlight: Promise<unknown>[] = [];
    try {
      const id = await storeSample(sql, "message_created", { conversationId: 4242 });
      const config = { agentSdkUrl: sdk.url, agentSdkSecret: null, agentSdkToken: null };
      const draining = drain(forwarder.sql, config, { log: memoryLogger() });
      inFlight.push(draining.catch(() => {}));
      // Claimed and sent: the claim has committed, the answer (and the write-back) is still to come.
      await sdk.waitFor(() => sdk.received.length === 1, "the event sent");
      for (const command of operatorCommands) {
        await runsWithoutWaitingFor(operator, command, forwarder.pid, inFlight);
      }
      sdk.releaseHeld();
      assert.equal((await draining).delivered, 1);
      const [{ status }] = await sql`select status from public.webhook_events where id = ${id}`;
      assert.equal(status, "delivered");
    } finally {
      sdk.releaseHeld();
      await Promise.all(inFlight);
      await forwarder.sql.end({ timeout: 1 });
      await operator.sql.end({ timeout: 1 });
      await sdk.close();
      await cleanUp();
    }
  },
});

dbTest(
  `settings lock [${db.kind}]: a prune one batch covers still runs inside a transaction; past one, it fails whole`,
  async () => {
    await seedOldHistory(3);
    try {
      // Inside BEGIN ... COMMIT no COMMIT between batches is possible: one batch that holds everything works.
      const [{ deleted }] = await sql.begin((tx) => tx`call public.prune_webhook_events()`);
      assert.equal(Number(deleted), 3);
      assert.notEqual(await prunedBefore(), null);
      await cleanUp();
      await seedOldHistory(3);
      // More than one batch: the COMMIT it needs fails, and the caller's transaction keeps nothing of it.
      await assert.rejects(
        sql.begin((tx) => tx`call public.prune_webhook_events(batch_size => 2)`),
        (error: { code?: string }) => error.code === "2D000",
      );
      assert.equal(await oldEventsLeft(), 3);
      assert.equal(await prunedBefore(), null);
    } finally {
      await cleanUp();
    }
  },
);

/** What a forwarder's write-back reports for one claimed event: `http_status` for its one attempt. */
function report(claimed: { id: string; attempt: number; version: number }, http_status: number): string {
  return JSON.stringify([{
    id: Number(claimed.id),
    attempt: claimed.attempt,
    version: claimed.version,
    started_at: new Date().toISOString(),
    duration_ms: 3,
    http_status,
    error: null,
    response_excerpt: null,
    retry_after_seconds: null,
  }]);
}

Deno.test({
  name: `settings lock [${db.kind}]: a death that commits after an acknowledgement is not acknowledged by it`,
  ignore: !onServer,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const writer = await session("test-write-back");
    const inFlight: Promise<unknown>[] = [];
    const holders: { release: () => Promise<void> }[] = [];
    const claimOne = async (conversationId: number) => {
      const id = await storeSample(sql, "message_created", { conversationId });
      const claimed = await sql<{ id: string; attempt: number; version: number }[]>`
        select id, attempt, version from public.claim_webhook_events('w-ack', 10)`;
      const mine = claimed.find((c) => Number(c.id) === id);
      assert.ok(mine, "the event claimed");
      return mine;
    };
    const deadUnacknowledged = async () => {
      const [{ n }] = await sql<{ n: string }[]>`
        select dead_unacknowledged as n from public.webhook_delivery_health`;
      return Number(n);
    };
    try {
      // The write-back began before the acknowledgement, and waited for the event's row (an ingest of a
      // duplicate holds it) while the acknowledgement committed: the death it then records comes after it.
      const first = await claimOne(4343);
      const ingest = await holdLock(`select 1 from public.webhook_events where id = ${first.id} for update`);
      holders.push(ingest);
      const writeBack = writer.sql<{ outcome: string }[]>`
        select outcome from public.complete_webhook_deliveries('w-ack', ${report(first, 410)}::text::jsonb)`
        .execute();
      inFlight.push(writeBack.catch(() => {}));
      await waitUntilBlocked(writer.pid, ingest.pid, "the write-back");
      await sql`update public.relay_settings set dead_acknowledged_at = now() where id`;
      await ingest.release();
      assert.equal((await writeBack)[0].outcome, "dead");
      assert.equal(await deadUnacknowledged(), 1, "the death committed after the acknowledgement");

      // An acknowledgement left open holds no write-back up, and what dies meanwhile is not acknowledged.
      const second = await claimOne(4344);
      const acknowledgement = await holdLock("update public.relay_settings set dead_acknowledged_at = now()");
      holders.push(acknowledgement);
      await runsWithoutWaitingFor(
        writer,
        `select outcome from public.complete_webhook_deliveries('w-ack', '${report(second, 410)}'::jsonb)`,
        acknowledgement.pid,
        inFlight,
      );
      await acknowledgement.release();
      assert.equal(await deadUnacknowledged(), 1, "the death recorded while the acknowledgement was open");
    } finally {
      for (const holder of holders) await holder.release();
      await Promise.all(inFlight);
      await writer.sql.end({ timeout: 1 });
      await sql`delete from public.webhook_events where conversation_id in (4343, 4344)`;
      await cleanUp();
    }
  },
});

Deno.test({
  name:
    `settings lock [${db.kind}]: a loss written after an acknowledgement of losses is not acknowledged by it`,
  ignore: !onServer,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const writer = await session("test-lost-write");
    const inFlight: Promise<unknown>[] = [];
    const holders: { release: () => Promise<void> }[] = [];
    const counted = async (key: string) => {
      const [row] = await sql<{ acknowledged: boolean; missing: number }[]>`
        select l.recorded_at <= s.lost_acknowledged_at as acknowledged,
               (select missing from public.webhook_lost_events_since(now() - interval '1 day')) as missing
          from public.webhook_lost_events l, public.relay_settings s where s.id and l.event_key = ${key}`;
      return row;
    };
    const insertLoss = (tx: Sql, key: string) =>
      tx`insert into public.webhook_lost_events (id, lost_at, event, event_key, error_code, tried_for_ms)
         values (gen_random_uuid(), now() - interval '1 minute', 'conversation_updated', ${key},
                 'invalid_payload', 0)`;
    try {
      // The webhook's write began (its transaction's now()) before the acknowledgement, lost_at earlier still,
      // and inserted while the acknowledgement was open: the operator could not have seen it. It does not
      // wait for the acknowledgement, and is counted after it.
      let insert!: () => void;
      const inserting = new Promise<void>((resolve) => insert = resolve);
      let begun!: () => void;
      const began = new Promise<void>((resolve) => begun = resolve);
      const write = writer.sql.begin(async (tx) => {
        await tx`select now()`;
        begun();
        await inserting;
        await insertLoss(tx as unknown as Sql, "ack-race:late");
      });
      inFlight.push(write.catch(() => {}));
      await began;
      const acknowledgement = await holdLock("select public.acknowledge_lost_events()");
      holders.push(acknowledgement);
      insert();
      await write; // committed while the acknowledgement is still open: it did not wait for it
      await acknowledgement.release();
      const late = await counted("ack-race:late");
      assert.equal(
        late.acknowledged,
        false,
        "the loss written after the acknowledgement was taken as acknowledged",
      );
      assert.ok(late.missing >= 1);

      // A write holding its row uncommitted: the acknowledgement waits for it, and it is acknowledged.
      const open = await holdLock(
        `insert into public.webhook_lost_events (id, lost_at, event, event_key, error_code, tried_for_ms)
         values (gen_random_uuid(), now() - interval '1 minute', 'conversation_updated', 'ack-race:first',
                 'invalid_payload', 0)`,
      );
      holders.push(open);
      const acknowledging = writer.sql`select public.acknowledge_lost_events()`.execute();
      inFlight.push(acknowledging.catch(() => {}));
      await waitUntilBlocked(writer.pid, open.pid, "the acknowledgement");
      await open.release();
      await acknowledging;
      assert.equal((await counted("ack-race:first")).acknowledged, true);
      assert.equal((await counted("ack-race:late")).acknowledged, true, "acknowledged the second time");
    } finally {
      for (const holder of holders) await holder.release();
      await Promise.all(inFlight);
      await writer.sql.end({ timeout: 1 });
      await sql`delete from public.webhook_lost_events where event_key like 'ack-race:%'`;
      await cleanUp();
    }
  },
});

Deno.test({
  name: `settings lock [${db.kind}]: a recovery does not store again what a prune running meanwhile deletes`,
  ignore: !onServer,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const recoverer = await session("test-recover");
    const inFlight: Promise<unknown>[] = [];
    let pruner: { release: () => Promise<void> } | undefined;
    // Two messages of 40 days ago, delivered as the webhook stored them; the same bodies, as recovered.
    const messages = [990001, 990002];
    const body = (id: number) =>
      JSON.stringify({
        id,
        event: "message_created",
        created_at: new Date(Date.now() - 40 * 86_400_000).toISOString(),
      });
    const recover = (id: number) =>
      recoverer.sql`
        select public.recover_webhook_event(${`message:${id}:message_created`}::text, 'message_created',
          ${id}::bigint, 1::bigint, 1::bigint, 1::bigint, ${body(id)}::text, ${"0".repeat(64)}::text) as id`
        .execute();
    try {
      for (const id of messages) {
        await sql`insert into public.webhook_events (event_key, event, message_id, payload, raw_body,
                    body_sha256, verified_by, status, received_at, last_received_at)
                  values (${`message:${id}:message_created`}, 'message_created', ${id}, ${body(id)}::jsonb,
                          ${body(id)}, ${"1".repeat(64)}, 'signature', 'delivered',
                          now() - interval '40 days', now() - interval '40 days')`;
      }
      // The daily prune, held before its commit: the recovery's store of the first message meets it.
      const held = await holdLock("call public.prune_webhook_events()");
      pruner = held;
      const first = recover(messages[0]);
      inFlight.push(first.catch(() => {}));
      await waitUntilBlocked(recoverer.pid, held.pid, "the recovery's store");
      await held.release();
      const refused = (error: { code?: string; message?: string }) =>
        error.code === "55000" && /delivered twice/.test(error.message ?? "");
      await assert.rejects(first, refused, "stored a message whose event the prune deleted");
      // A store after the prune committed (a long scan's later conversation), the horizon read before it.
      await assert.rejects(recover(messages[1]), refused, "stored a message older than the horizon");
      const [{ n }] = await sql<{ n: number }[]>`
        select count(*)::int as n from public.webhook_events where message_id = any(${messages}::bigint[])`;
      assert.equal(n, 0);
    } finally {
      await pruner?.release();
      await Promise.all(inFlight);
      await recoverer.sql.end({ timeout: 1 });
      await sql`delete from public.webhook_events where message_id = any(${messages}::bigint[])`;
      await cleanUp();
    }
  },
});

Deno.test({
  name: `settings lock [${db.kind}]: a prune waiting for the settings row holds no event a webhook stores`,
  ignore: !onServer,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await seedOldHistory();
    // An operator's transaction left open with the settings row updated.
    const operator = await holdLock("update public.relay_settings set forwarding_paused = forwarding_paused");
    const pruner = await session("test-pruner");
    const ingest = await session("test-ingest");
    const inFlight: Promise<unknown>[] = [];
    try {
      const prune = pruner.sql.unsafe("call public.prune_webhook_events()");
      inFlight.push(prune.catch(() => {}));
      await waitUntilBlocked(pruner.pid, operator.pid, "the prune");
      // What an ingest of the oldest event's key again does to its row (ON CONFLICT DO UPDATE).
      await runsWithoutWaitingFor(
        ingest,
        "update public.webhook_events set receive_count = receive_count + 1 where event_key = 'old-1'",
        pruner.pid,
        inFlight,
      );
      await operator.release();
      const [{ deleted }] = await prune;
      assert.equal(Number(deleted), OLD_EVENTS);
    } finally {
      await operator.release();
      await Promise.all(inFlight);
      await pruner.sql.end({ timeout: 1 });
      await ingest.sql.end({ timeout: 1 });
      await cleanUp();
    }
  },
});

Deno.test({
  name: `settings lock [${db.kind}]: close database`,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () => db.close(),
});
