// Which copy of an event stays is one rule, webhook_event_replaced_by (migration 010700), which the store
// (ingest_webhook_event's ON CONFLICT ... WHERE) and the record of a refused webhook (writeLostEvents) both
// call. Until 2026-12-01 each carried its own copy of it. Over a matrix of stored and incoming copies, the
// store's decision, the function's answer and the lost record agree, and all three equal the rule as README
// (Storage) states it, written out below: a change to the rule must change that statement too.
import assert from "node:assert/strict";
import { dbTest, startTestDb } from "./_db.ts";
import { type LostEvent, writeLostEvents } from "../supabase/functions/_shared/lost_events.ts";
import { lostRecord } from "./_lost_events.ts";

const db = await startTestDb();

type VerifiedBy = "signature" | "url_token" | "chatwoot_api";

/** One copy of an event: its hash, signed time and build time (seconds from a base; null: none). */
interface Copy {
  sha: string;
  sent: number | null;
  built: number | null;
  verifiedBy: VerifiedBy;
}

interface Case {
  key: string;
  event: string;
  stored: Copy;
  incoming: Copy;
  /** The stored row predates migration 005100: its built_at column is null, its body has the time. */
  legacy: boolean;
}

const SENT_BASE = Date.UTC(2026, 10, 21, 10, 0, 0) / 1000;
const BUILT_BASE = Date.UTC(2026, 10, 21, 9, 59, 0) / 1000;
const SHA_LOW = "1".repeat(63) + "a";
const SHA_HIGH = "a".repeat(63) + "1";

/**
 * The rule, as README states it (Storage): a copy recovered from Chatwoot's API is replaced by a webhook; a
 * message_created, or the same body, is never replaced; otherwise the later-built state (conversation.updated_at)
 * wins, else (a build time missing, or equal) the later signed one, a copy unsigned on either side replacing;
 * signed in the same second, the later-built state, then the greater hash (as bytes).
 */
function replaces(c: Case): boolean {
  const { stored: s, incoming: i } = c;
  if (s.verifiedBy === "chatwoot_api" && i.verifiedBy !== "chatwoot_api") return true;
  if (s.sha === i.sha || c.event === "message_created") return false;
  const storedBuiltColumn = c.legacy ? null : s.built;
  if (i.built !== null && storedBuiltColumn !== null && i.built !== storedBuiltColumn) {
    return i.built > storedBuiltColumn;
  }
  if (i.sent === null || s.sent === null) return true;
  if (i.sent !== s.sent) return i.sent > s.sent;
  // A legacy row's build time is read from its body for this tie only.
  const ib = i.built ?? -Infinity;
  const sb = s.built ?? -Infinity;
  if (ib !== sb) return ib > sb;
  return i.sha > s.sha;
}

/** A body of `event` whose conversation.updated_at is `built` (left out when null); message_updated only. */
function body(event: string, id: number, copy: Copy): string {
  const payload: Record<string, unknown> = { event, id, content: copy.sha.slice(0, 8) };
  if (event === "message_updated" && copy.built !== null) {
    payload.conversation = { id: 1, updated_at: new Date((BUILT_BASE + copy.built) * 1000).toISOString() };
  }
  return JSON.stringify(payload);
}

const sentAt = (c: Copy) => c.sent === null ? null : new Date((SENT_BASE + c.sent) * 1000);

/** Every pair: build and signed times earlier/equal/later/missing, hashes same or either order, every auth. */
function matrix(): Case[] {
  const timePairs: Array<[number | null, number | null]> = [
    [0, -10],
    [0, 0],
    [0, 10],
    [0, null],
    [null, 0],
    [null, null],
  ];
  const shaPairs: Array<[string, string]> = [[SHA_LOW, SHA_LOW], [SHA_LOW, SHA_HIGH], [SHA_HIGH, SHA_LOW]];
  const auths: VerifiedBy[] = ["signature", "url_token", "chatwoot_api"];
  const cases: Case[] = [];
  for (const event of ["message_updated", "message_created", "conversation_updated"]) {
    // Only a message_updated has a build time (the others' rows never read one).
    const builtPairs = event === "message_updated" ? timePairs : [[null, null] as [null, null]];
    for (const [storedBuilt, incomingBuilt] of builtPairs) {
      for (const legacy of event === "message_updated" && storedBuilt !== null ? [false, true] : [false]) {
        for (const [storedSent, incomingSent] of timePairs) {
          for (const [storedSha, incomingSha] of shaPairs) {
            for (const storedAuth of auths) {
              for (const incomingAuth of auths) {
                cases.push({
                  key: `rule:${cases.length}`,
                  event,
                  legacy,
                  stored: { sha: storedSha, sent: storedSent, built: storedBuilt, verifiedBy: storedAuth },
                  incoming: {
                    sha: incomingSha,
                    sent: incomingSent,
                    built: incomingBuilt,
                    verifiedBy: incomingAuth,
                  },
                });
              }
            }
          }
        }
      }
    }
  }
  return cases;
}

/** Each case's copy as ingest_webhook_event's arguments (a jsonb array, read by jsonb_to_recordset). */
const ingestRows = (cases: Case[], which: "stored" | "incoming") =>
  JSON.stringify(cases.map((c, n) => {
    const copy = c[which];
    return {
      key: c.key,
      event: c.event,
      raw_body: body(c.event, n, copy),
      sha: copy.sha,
      verified_by: copy.verifiedBy,
      sent_at: sentAt(copy)?.toISOString() ?? null,
    };
  }));

/** Ingests each case's copy (one call each, its own receipt); the outcome per event key. */
async function ingest(cases: Case[], which: "stored" | "incoming"): Promise<Map<string, string>> {
  const rows = await db.sql<{ key: string; outcome: string }[]>`
    select c.key, i.outcome
      from jsonb_to_recordset(${ingestRows(cases, which)}::text::jsonb)
        as c(key text, event text, raw_body text, sha text, verified_by text, sent_at timestamptz)
      cross join lateral public.ingest_webhook_event(c.key, c.event, null, null, null, null, null, null,
        c.raw_body, c.sha, c.verified_by, c.sent_at, gen_random_uuid()) i`;
  return new Map(rows.map((r) => [r.key, r.outcome]));
}

dbTest(
  `which copy stays [${db.kind}]: the store, webhook_event_replaced_by and the lost record agree, as README says`,
  async () => {
    const cases = matrix();
    assert.ok(cases.length > 1000, `${cases.length} cases`);
    const byKey = new Map(cases.map((c) => [c.key, c]));
    await db.sql`delete from public.webhook_events where event_key like 'rule:%'`;
    await db.sql`delete from public.webhook_lost_events where event_key like 'rule:%'`;

    const first = await ingest(cases, "stored");
    assert.ok([...first.values()].every((outcome) => outcome === "stored"));
    const legacy = cases.filter((c) => c.legacy).map((c) => c.key);
    await db.sql`update public.webhook_events set built_at = null where event_key = any(${legacy})`;
    // Built times as stored: read from the body by ingest_webhook_event (message_updated only).
    const builtOk = await db.sql<{ key: string; built_at: Date | null }[]>`
      select event_key as key, built_at from public.webhook_events where event_key like 'rule:%'`;
    for (const { key, built_at } of builtOk) {
      const c = byKey.get(key)!;
      const expected = c.legacy || c.stored.built === null || c.event !== "message_updated"
        ? null
        : (BUILT_BASE + c.stored.built) * 1000;
      assert.equal(built_at?.getTime() ?? null, expected, key);
    }

    // The function's answer for the incoming copy, against the stored row (its build time read from the body
    // as ingest_webhook_event reads it).
    const answers = await db.sql<{ key: string; replaced: boolean }[]>`
      select c.key,
             public.webhook_event_replaced_by(e, c.sha, c.sent_at,
               case when c.event = 'message_updated'
                    then public.chatwoot_timestamp(c.raw_body::jsonb #> '{conversation,updated_at}') end,
               c.verified_by) as replaced
        from jsonb_to_recordset(${ingestRows(cases, "incoming")}::text::jsonb)
          as c(key text, event text, raw_body text, sha text, verified_by text, sent_at timestamptz)
        join public.webhook_events e on e.event_key = c.key`;
    const answer = new Map(answers.map((r) => [r.key, r.replaced]));

    // The incoming copy refused instead (a webhook's only: a refusal is never a recovered copy).
    const refusals: LostEvent[] = cases.filter((c) => c.incoming.verifiedBy !== "chatwoot_api").map((c) =>
      lostRecord({
        event: c.event,
        event_key: c.key,
        error_code: "timestamp_stale",
        body_sha256: c.incoming.sha,
        sent_at_seconds: c.incoming.sent === null ? null : SENT_BASE + c.incoming.sent,
        conversation_updated_at: c.event === "message_updated" && c.incoming.built !== null
          ? new Date((BUILT_BASE + c.incoming.built) * 1000).toISOString()
          : undefined,
        verified_by: c.incoming.verifiedBy as "signature" | "url_token",
      })
    );
    await writeLostEvents(db.sql)(refusals);
    const recorded = new Set(
      (await db.sql<{ key: string }[]>`
        select event_key as key from public.webhook_lost_events where event_key like 'rule:%'`).map((r) =>
        r.key
      ),
    );

    const second = await ingest(cases, "incoming");
    const rows = await db.sql<{ key: string; sha: string; verified_by: string }[]>`
      select event_key as key, body_sha256 as sha, verified_by from public.webhook_events
       where event_key like 'rule:%'`;
    const after = new Map(rows.map((r) => [r.key, r]));

    const disagreements: string[] = [];
    for (const c of cases) {
      const expected = replaces(c);
      const stored = second.get(c.key) !== "duplicate";
      const row = after.get(c.key)!;
      const kept = stored ? c.incoming : c.stored;
      const why = (what: string) =>
        disagreements.push(`${c.key} ${what}: ${JSON.stringify({ ...c, key: undefined, expected })}`);
      if (stored !== expected) why(`store ${second.get(c.key)}`);
      if (row.sha !== kept.sha || row.verified_by !== kept.verifiedBy) why("row not the copy kept");
      if (answer.get(c.key) !== expected) why(`function ${answer.get(c.key)}`);
      // A refusal is a loss when its store would have replaced the row, but for a replay of the same body.
      if (c.incoming.verifiedBy !== "chatwoot_api") {
        const lost = expected && c.incoming.sha !== c.stored.sha;
        if (recorded.has(c.key) !== lost) why(`lost record ${recorded.has(c.key)}`);
      }
    }
    assert.deepEqual(
      disagreements.slice(0, 10),
      [],
      `${disagreements.length} disagreements over ${cases.length} cases`,
    );
    // The matrix reaches both answers, each branch of the rule among them.
    const replacedCount = cases.filter(replaces).length;
    assert.ok(replacedCount > 100 && replacedCount < cases.length - 100, `${replacedCount} replaced`);
    const sameSecondTies = cases.filter((c) =>
      c.event === "message_updated" && c.stored.sent === 0 && c.incoming.sent === 0 &&
      c.stored.sha !== c.incoming.sha && c.stored.verifiedBy !== "chatwoot_api"
    );
    assert.ok(sameSecondTies.some(replaces) && !sameSecondTies.every(replaces));
  },
);

dbTest(`which copy stays [${db.kind}]: the store calls webhook_event_replaced_by, inlined`, async () => {
  // Inlined, the rule costs the upsert what the WHERE written out did: the plan names the columns it reads,
  // never the function. PGlite's planner is PostgreSQL's too.
  const plan = (await db.sql.unsafe(`
    explain (verbose, costs off)
    insert into public.webhook_events as e (event_key, event, payload, raw_body, body_sha256, verified_by)
    values ('rule:plan', 'message_updated', '{}', '{}', repeat('a', 64), 'signature')
    on conflict (event_key) do update set body_sha256 = excluded.body_sha256
    where public.webhook_event_replaced_by(e, excluded.body_sha256, excluded.sent_at, excluded.built_at,
                                           excluded.verified_by)`)).map((r) => r["QUERY PLAN"]).join("\n");
  assert.match(plan, /Conflict Filter: .*e\.verified_by = 'chatwoot_api'/);
  assert.doesNotMatch(plan, /webhook_event_replaced_by/);
});

dbTest(`which copy stays [${db.kind}]: close the database`, async () => {
  await db.close();
});
