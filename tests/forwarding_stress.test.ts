// A seeded randomized run of the whole forwarding path on a server: several drain loops (batch sizes, lanes,
// both transports) and the webhook function's immediate drains, an Agent SDK that answers 200, 500, 429, too
// late or by dropping the connection, webhooks arriving meanwhile (new messages, exact duplicates, edits of a
// message, older edits arriving late) and an operator pausing, replaying and pointing forwarding elsewhere.
// Then the rows and what the Agent SDK received are checked against what the README promises. Every decision is
// drawn from the seed; which forwarder takes what still depends on timing, so the checks are invariants, not
// expected outputs. Server only: on PGlite the forwarders would share one session.
import assert from "node:assert/strict";
import { closeSharedDb, fastSettings, freshForwardingDb, withBackgroundAwaited } from "./_forwarding.ts";
import { closedPortUrl } from "./_closed_port.ts";
import { connect, type Sql } from "../supabase/functions/_shared/db.ts";
import { type DeliveryTransport, drain, fetchTransport } from "../supabase/functions/_shared/forwarder.ts";
import { chatwootWebhookApp } from "../supabase/functions/_shared/chatwoot_webhook.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";
import { chatwootSignatureHeaders, sha256Hex } from "../supabase/functions/_shared/signature.ts";
import { undiciTransport } from "../scripts/lib/undici_transport.ts";
import { samplePayload } from "../scripts/lib/samples.ts";

const SERVER = Boolean(Deno.env.get("DATABASE_URL"));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** xorshift32: the same seed, the same plan. */
function random(seed: number) {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
  return { next, int: (a: number, b: number) => a + Math.floor(next() * (b - a + 1)) };
}

/** A number in [0, 1) from the text: the sink answers an attempt the same way whichever forwarder sends it. */
function unit(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return ((h ^ (h >>> 16)) >>> 0) / 4294967296;
}

type Kind = "ok" | "500" | "429" | "late" | "drop";

interface SinkRequest {
  eventId: number;
  version: number;
  attempt: number;
  conversation: string | null;
  sha: string;
  builtAt: number | null;
  path: string;
  kind: Kind;
  arrival: number;
  /** Answered 2xx (a late answer, after the client gave up, is not). */
  accepted: boolean;
}

/**
 * The Agent SDK on a raw TCP socket, so that it can also drop a connection without answering. A "late" answer
 * comes after the forwarder's timeout (the client going away ends the request). Records every request, and
 * any request that arrived while another of its conversation was still being answered.
 */
function startChaosSink(seed: number, timeoutMs: number) {
  const received: SinkRequest[] = [];
  const overlaps: string[] = [];
  const inFlight = new Map<string, Set<SinkRequest>>();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const encoder = new TextEncoder();
  const kindOf = (r: number): Kind =>
    r < 0.08 ? "500" : r < 0.12 ? "429" : r < 0.17 ? "late" : r < 0.22 ? "drop" : "ok";

  async function serve(conn: Deno.Conn) {
    conns.add(conn);
    let buffer = new Uint8Array(0);
    const readMore = async () => {
      const chunk = new Uint8Array(65536);
      const n = await conn.read(chunk).catch(() => null);
      if (n === null) return false;
      const next = new Uint8Array(buffer.length + n);
      next.set(buffer);
      next.set(chunk.subarray(0, n), buffer.length);
      buffer = next;
      return true;
    };
    const answer = (status: number, extra = "") => {
      const body = status === 200 ? '{"ok":true}' : '{"error":"stress"}';
      return conn.write(encoder.encode(
        `HTTP/1.1 ${status} X\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n${extra}\r\n` +
          body,
      ));
    };
    try {
      for (;;) {
        let headEnd: number;
        while ((headEnd = indexOfBlankLine(buffer)) < 0) if (!await readMore()) return;
        const [requestLine, ...lines] = new TextDecoder().decode(buffer.subarray(0, headEnd)).split("\r\n");
        const headers = new Map(lines.map((l) => {
          const i = l.indexOf(":");
          return [l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim()] as [string, string];
        }));
        const length = Number(headers.get("content-length") ?? 0);
        while (buffer.length < headEnd + 4 + length) if (!await readMore()) return;
        const body = buffer.slice(headEnd + 4, headEnd + 4 + length);
        buffer = buffer.slice(headEnd + 4 + length);
        const payload = JSON.parse(new TextDecoder().decode(body));
        const conversationId = payload.conversation?.id ?? payload.conversation_id;
        const [eventId, version, attempt] = ["id", "version", "attempt"].map((h) =>
          Number(
            headers.get(h === "id" ? "x-relay-event-id" : `x-relay-${h === "version" ? "event-version" : h}`),
          )
        );
        const request: SinkRequest = {
          eventId,
          version,
          attempt,
          conversation: conversationId == null ? null : `${payload.account?.id}:${conversationId}`,
          sha: sha256Hex(body),
          builtAt: payload.event === "message_updated" ? Number(payload.conversation.updated_at) : null,
          path: requestLine.split(" ")[1],
          kind: kindOf(unit(`${seed}|${eventId}|${version}|${attempt}`)),
          arrival: Date.now(),
          accepted: false,
        };
        received.push(request);
        const others: Set<SinkRequest> = (request.conversation && inFlight.get(request.conversation)) ||
          new Set();
        for (const other of others) {
          // A late answer's client gave up at its timeout; the sink may notice the closed socket a moment later.
          if (other.kind === "late" && request.arrival >= other.arrival + timeoutMs) continue;
          overlaps.push(
            `${request.eventId}/v${request.version} came while ${other.eventId}/v${other.version} was`,
          );
        }
        if (request.conversation) inFlight.set(request.conversation, others.add(request));
        const done = () => others.delete(request);
        if (request.kind === "drop") {
          done();
          return;
        }
        if (request.kind === "late") {
          const gone = await Promise.race([readMore().then((more) => !more), sleep(timeoutMs + 400)]);
          done();
          if (gone !== true) await answer(200).catch(() => {});
          return;
        }
        if (request.kind === "ok") request.accepted = true;
        done();
        if (request.kind === "ok") await answer(200);
        else if (request.kind === "429") await answer(429, `retry-after: ${eventId % 2}\r\n`);
        else await answer(500);
      }
    } catch {
      // The client went away.
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch { /* already closed */ }
    }
  }
  const accepting = (async () => {
    for await (const conn of listener) serve(conn);
  })().catch(() => {});
  return {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    received,
    overlaps,
    async close() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch { /* already closed */ }
      }
      await accepting;
    },
  };
}

const isSuccessStatus = (status: number | null) => status !== null && status >= 200 && status < 300;

function indexOfBlankLine(b: Uint8Array): number {
  for (let i = 0; i + 3 < b.length; i++) {
    if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) return i;
  }
  return -1;
}

async function stressRun(seed: number) {
  const rnd = random(seed);
  const db = await freshForwardingDb();
  const maxAttempts = 4;
  const timeoutMs = 400;
  await fastSettings(db.sql, {
    max_attempts: maxAttempts,
    retry_schedule_seconds: [0, 1],
    request_timeout_ms: timeoutMs,
    lease_seconds: 2,
  });
  await db.sql`update public.relay_settings set max_retry_after_seconds = 2,
    forward_events = '{message_created,message_updated,conversation_status_changed}'`;
  // When each event went to 'delivering', with the claim's own clock (the lease's start is its transaction's).
  await db.sql.unsafe(`
    create table if not exists public.stress_claims (event_id bigint, attempt int, version int,
      claimed_at timestamptz default clock_timestamp());
    truncate public.stress_claims;
    create or replace function public.stress_claim_seen() returns trigger language plpgsql as $$
    begin
      insert into public.stress_claims (event_id, attempt, version) values (new.id, new.attempts, new.version);
      return null;
    end $$;
    drop trigger if exists stress_claim_seen on public.webhook_events;
    create trigger stress_claim_seen after update of status on public.webhook_events for each row
      when (new.status = 'delivering' and old.status <> 'delivering') execute function public.stress_claim_seen();`)
    .simple();
  const sink = startChaosSink(seed, timeoutMs);
  const config = { agentSdkUrl: sink.url, agentSdkSecret: null, agentSdkToken: null };
  const pools: Sql[] = [];
  const pool = (max: number) => {
    const sql = connect(db.url, { max });
    pools.push(sql);
    return sql;
  };
  const undici = undiciTransport();
  const failures: string[] = [];
  const pauses: { committed: number; resumed: number }[] = [];
  let stop = false;
  // Per message, the newest edit posted (by when Chatwoot built it): what must end up stored.
  const newestEdit = new Map<number, string>();
  try {
    await withBackgroundAwaited(async () => {
      const forwarders = [
        { batchSize: 1, lanes: 1, transport: fetchTransport },
        { batchSize: 5, lanes: 2, transport: undici.send },
        { batchSize: 10, lanes: 3, transport: fetchTransport },
      ].map(async (f: { batchSize: number; lanes: number; transport: DeliveryTransport }, i) => {
        const sql = pool(f.lanes + 1);
        while (!stop) {
          const summary = await drain(sql, config, {
            batchSize: f.batchSize,
            lanes: f.lanes,
            transport: f.transport,
            budgetMs: 1_000,
            worker: `stress${i}`,
            log: memoryLogger(),
          });
          if (summary.claimed === 0) await sleep(30);
        }
      });
      const secret = "chatwoot-webhook-secret-for-tests";
      const app = chatwootWebhookApp({
        env: { CHATWOOT_WEBHOOK_SECRET: secret, AGENT_SDK_URL: sink.url },
        sql: pool(5),
        log: memoryLogger(),
      });
      const post = async (body: string) => {
        const response = await app.fetch(
          new Request("http://functions.local/chatwoot-webhook", {
            method: "POST",
            headers: { "Content-Type": "application/json", ...chatwootSignatureHeaders(secret, body) },
            body,
          }),
        );
        if (response.status !== 200) failures.push(`webhook answered ${response.status}`);
        await response.body?.cancel();
      };

      // Each of three conversations' webhooks arrive one after another (Chatwoot's own order), the three
      // side by side; within one, exact duplicates and edits come back later, some older than one already sent.
      const base = Date.now() - 60_000;
      let nextMessage = 70_000 + seed * 1_000;
      const streams = [1, 2, 3].map((conversationId) => {
        const steps: string[] = [];
        const messages: number[] = [];
        const accountId = 1 + (conversationId % 2);
        for (let i = 0; i < 14; i++) {
          const r = rnd.next();
          if (r < 0.5 || messages.length === 0) {
            const messageId = nextMessage++;
            messages.push(messageId);
            steps.push(JSON.stringify(samplePayload("message_created", {
              messageId,
              conversationId,
              accountId,
              content: `message ${messageId}`,
            })));
          } else if (r < 0.6) {
            steps.push(steps[rnd.int(0, steps.length - 1)]);
          } else if (r < 0.9) {
            const messageId = messages[rnd.int(0, messages.length - 1)];
            const edit = rnd.int(1, 5);
            const body = JSON.stringify(samplePayload("message_updated", {
              messageId,
              conversationId,
              accountId,
              content: `message ${messageId}, edit ${edit}`,
              at: new Date(base + edit * 1_000),
            }));
            const newest = newestEdit.get(messageId);
            if (
              !newest || JSON.parse(newest).conversation.updated_at < JSON.parse(body).conversation.updated_at
            ) {
              newestEdit.set(messageId, body);
            }
            steps.push(body);
          } else {
            steps.push(JSON.stringify(samplePayload("conversation_status_changed", {
              conversationId,
              accountId,
              at: new Date(base + i * 1_000),
            })));
          }
        }
        return steps;
      });
      const ingests = streams.map(async (steps) => {
        for (const body of steps) {
          await post(body);
          await sleep(rnd.int(50, 250));
        }
      });

      const operator = (async () => {
        const sql = pool(1);
        for (let i = 0; i < 8; i++) {
          await sleep(rnd.int(150, 400));
          // The first change is a pause, so that every run has one.
          const r = i === 0 ? 0 : rnd.next();
          if (r < 0.4) {
            await sql`update public.relay_settings set forwarding_paused = true`;
            const pause = { committed: Date.now(), resumed: Infinity };
            pauses.push(pause);
            await sleep(rnd.int(200, 600));
            pause.resumed = Date.now();
            await sql`update public.relay_settings set forwarding_paused = false`;
          } else if (r < 0.6) {
            await sql`select public.replay_webhook_events_between(now() - interval '1 hour', now() + interval '1 hour')`;
          } else if (r < 0.8) {
            await sql`update public.relay_settings set agent_sdk_url_override = ${`${sink.url}/staging`}`;
            await sleep(rnd.int(100, 400));
            await sql`update public.relay_settings set agent_sdk_url_override = null`;
          } else {
            // A target that refuses connections: attempts fail, and retry once it is set back.
            await sql`update public.relay_settings set agent_sdk_url_override = ${closedPortUrl()}`;
            await sleep(rnd.int(100, 300));
            await sql`update public.relay_settings set agent_sdk_url_override = null`;
          }
        }
      })();
      await Promise.all([...ingests, operator]);

      // Settled: nothing pending or being delivered (retries come due, leases expire).
      const deadline = Date.now() + 60_000;
      let open = -1;
      while (Date.now() < deadline) {
        [{ open }] = await db.sql<{ open: number }[]>`
          select count(*)::int as open from public.webhook_events where status in ('pending', 'delivering')`;
        if (open === 0) break;
        await sleep(200);
      }
      assert.equal(open, 0, `seed ${seed}: events still pending or delivering after 60 s`);
      stop = true;
      await Promise.all(forwarders);
    });
    await sleep(timeoutMs + 600); // late answers end

    const events = await db.sql<
      {
        id: string;
        event_key: string;
        event: string;
        status: string;
        version: number;
        attempts: number;
        sha: string;
      }[]
    >`select id, event_key, event, status, version, attempts, body_sha256 as sha from public.webhook_events`;
    const attempts = await db.sql<
      {
        event_id: string;
        attempt: number;
        version: number;
        outcome: string;
        http_status: number | null;
        error: string | null;
      }[]
    >`select event_id, attempt, version, outcome, http_status, error from public.webhook_delivery_attempts
       order by id`;
    const claims = await db.sql<{ event_id: string; attempt: number; version: number; claimed_at: Date }[]>`
      select event_id, attempt, version, claimed_at from public.stress_claims`;
    const [health] = await db.sql<{ backlog: string; dead_total: string }[]>`
      select backlog, dead_total from public.webhook_pipeline_health`;

    const problems = [...failures];
    for (const o of sink.overlaps) problems.push(`two requests of one conversation at once: ${o}`);
    for (const e of events) {
      const id = Number(e.id);
      const rows = attempts.filter((a) => Number(a.event_id) === id);
      const accepted = sink.received.filter((r) => r.eventId === id && r.accepted);
      if (!["delivered", "dead", "skipped"].includes(e.status)) problems.push(`${id} ends ${e.status}`);
      if (e.attempts > maxAttempts || rows.some((a) => a.attempt > maxAttempts)) {
        problems.push(`${id}: more than ${maxAttempts} attempts`);
      }
      for (const version of new Set(rows.map((a) => a.version))) {
        const n = rows.filter((a) => a.version === version && a.outcome === "delivered").length;
        if (n > 1) problems.push(`${id} v${version}: delivered recorded ${n} times`);
      }
      if (e.status === "delivered" && !accepted.some((r) => r.sha === e.sha)) {
        problems.push(`${id}: delivered, but its stored body never reached the Agent SDK`);
      }
      // Sent twice only when a lease was lost (a forwarder reported after its lease expired), or when the
      // forwarder never saw the 2xx: the sink's answer reached it after its request timeout (a loaded machine
      // answers 400 ms late), recorded as that timeout and sent again, as at-least-once delivery does. A 2xx
      // the forwarder saw is recorded with its status; an answer it did not see, with the transport's error.
      const leaseLost = rows.some((a) => a.outcome === "lease_lost" || a.outcome === "lease_expired");
      const recordedOf = (r: SinkRequest) =>
        rows.filter((a) => a.attempt === r.attempt && a.version === r.version);
      const describe = () =>
        `sent: ${
          sink.received.filter((r) => r.eventId === id).map((r) => `a${r.attempt}v${r.version} ${r.kind}`)
            .join(", ")
        }; recorded: ${
          rows.map((a) => `a${a.attempt}v${a.version} ${a.outcome} ${a.http_status ?? a.error}`).join(", ")
        }`;
      for (const r of accepted) {
        if (recordedOf(r).some((a) => a.http_status !== null && !isSuccessStatus(a.http_status))) {
          problems.push(`${id} a${r.attempt}v${r.version}: answered 2xx, recorded otherwise (${describe()})`);
        }
      }
      const seen = accepted.filter((r) => recordedOf(r).some((a) => isSuccessStatus(a.http_status)));
      for (const sha of new Set(seen.map((r) => r.sha))) {
        const n = seen.filter((r) => r.sha === sha).length;
        if (n > 1 && !leaseLost) {
          problems.push(
            `${id}: the same body accepted ${n} times as its forwarder saw, no lease lost (${describe()})`,
          );
        }
      }
      if (e.event === "message_updated") {
        const newest = newestEdit.get(Number(e.event_key.split(":")[1]));
        if (newest && sha256Hex(newest) !== e.sha) problems.push(`${id}: the stored edit is not the newest`);
        const built = accepted.map((r) => r.builtAt!);
        if (built.some((b, i) => i > 0 && b < built[i - 1])) {
          problems.push(`${id}: an older edit sent after a newer`);
        }
      }
    }
    // Nothing claimed after a pause had returned, until the resume.
    for (const c of claims) {
      const at = c.claimed_at.getTime();
      if (pauses.some((p) => at > p.committed && at < p.resumed)) {
        problems.push(`${c.event_id} a${c.attempt} claimed while paused`);
      }
    }
    // Within a conversation, each message's first delivery in the order the messages came, unless the earlier
    // one died (a dead event holds nothing back).
    const died = new Set(
      attempts.filter((a) => a.outcome === "dead" || a.outcome === "lease_expired")
        .map((a) => Number(a.event_id)),
    );
    const firstAccepted = new Map<number, SinkRequest>();
    for (const r of sink.received) {
      if (r.accepted && !firstAccepted.has(r.eventId)) firstAccepted.set(r.eventId, r);
    }
    const created = events.filter((e) => e.event === "message_created").map((e) => Number(e.id)).sort((
      a,
      b,
    ) => a - b);
    for (const [i, earlier] of created.entries()) {
      for (const later of created.slice(i + 1)) {
        const a = firstAccepted.get(earlier), b = firstAccepted.get(later);
        if (a && b && a.conversation === b.conversation && a.arrival > b.arrival && !died.has(earlier)) {
          problems.push(`${later} delivered before ${earlier} of the same conversation`);
        }
      }
    }
    assert.equal(Number(health.backlog ?? 0), 0);
    assert.equal(Number(health.dead_total), events.filter((e) => e.status === "dead").length);
    assert.deepEqual(problems, [], `seed ${seed}`);
    // The run did what it is for: deliveries, and failures of more than one kind (which, depends on timing).
    assert.ok(
      sink.received.filter((r) => r.accepted).length >= events.length / 2,
      `seed ${seed}: deliveries`,
    );
    const kinds = new Set(sink.received.map((r) => r.kind));
    assert.ok(kinds.has("ok") && kinds.size >= 3, `seed ${seed}: answers of several kinds (${[...kinds]})`);
  } finally {
    stop = true;
    await db.sql.unsafe(`drop trigger if exists stress_claim_seen on public.webhook_events`).simple();
    await undici.close();
    await sink.close();
    await Promise.all(pools.map((sql) => sql.end({ timeout: 1 })));
  }
}

for (const seed of [11, 29]) {
  Deno.test({
    name: `forwarding stress: seed ${seed}, forwarders, webhooks and an operator at once keep every promise`,
    ignore: !SERVER,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: () => stressRun(seed),
  });
}

Deno.test({
  name: "forwarding stress: (close the shared database)",
  ignore: !SERVER,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: closeSharedDb,
});
