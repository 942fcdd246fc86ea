// Seeded fuzzing of chatwoot-webhook over real HTTP: realistic bodies, mutated (tests/_fuzz.ts) and correctly
// signed, so that they reach validation and the database. Each answer must be 200 or a 4xx with a JSON error
// that stored nothing, never a 5xx (Chatwoot does not send the event again); each stored row must read back
// through the Data team's views, and be forwarded byte for byte. FUZZ_SEEDS=4-20 runs other seeds; a failure
// names the seed and the case.
import assert from "node:assert/strict";
import { createChatwootWebhookApp } from "../supabase/functions/_shared/chatwoot_webhook.ts";
import { drain } from "../supabase/functions/_shared/forwarder.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";
import { webhookConfigFromEnv } from "../supabase/functions/_shared/webhook_config.ts";
import { startAgentSdk } from "./_agent_sdk.ts";
import { dbTest, startTestDb } from "./_db.ts";
import { fastSettings } from "./_forwarding.ts";
import { fuzzCases, fuzzSeeds } from "./_fuzz.ts";
import { serveOnLoopback, signedRequest, TEST_SECRET } from "./_http.ts";

const db = await startTestDb();
const sql = db.sql;
const CASES_PER_SEED = 300;
const log = memoryLogger();
const app = createChatwootWebhookApp({
  config: webhookConfigFromEnv({ CHATWOOT_WEBHOOK_SECRET: TEST_SECRET }),
  sql,
  log,
});
const server = serveOnLoopback((req) => app.fetch(req));
const URL_WEBHOOK = `${server.url}/chatwoot-webhook`;
const sdk = startAgentSdk();
await fastSettings(sql);

/** What a refused body must leave as it was: the rows and every receipt counted. */
const STORED =
  "select count(*)::int as events, coalesce(sum(receive_count), 0)::int as receipts from webhook_events";

async function stored(): Promise<string> {
  const [row] = await sql.unsafe(STORED);
  return JSON.stringify(row);
}

/**
 * Reads the event's row back, its jsonb written out and every column of its rows in the views (json_agg of
 * the whole row: a column left unread is not computed), in one statement; returns what stored() returns.
 * Written out, the jsonb may have a space after each ":" and ",", and a number with an exponent in full:
 * at most 1001 characters for each mutation (1e1000 is accepted, 1e1001 not).
 */
async function readBack(id: number, mutations: number): Promise<string> {
  const [row] = await sql`
    select octet_length(e.payload::text) as jsonb_bytes, octet_length(e.raw_body) as raw_bytes,
           (select json_agg(m)::text from public.chatwoot_messages m where m.message_id = e.message_id) is null
             as no_message,
           (select json_agg(c)::text from public.chatwoot_conversation_events c where c.event_id = e.id) is null
             as no_changes,
           (select row_to_json(s)::text from (${sql.unsafe(STORED)}) s) as stored
      from webhook_events e where e.id = ${id}`;
  assert.ok(row, `event ${id} not stored`);
  assert.ok(
    row.jsonb_bytes <= 2 * row.raw_bytes + 1001 * mutations,
    `${row.raw_bytes} bytes read back as ${row.jsonb_bytes}`,
  );
  return row.stored;
}

for (const seed of fuzzSeeds([1, 2, 3])) {
  dbTest(
    `webhook fuzz [${db.kind}]: seed ${seed}, ${CASES_PER_SEED} mutated signed bodies get 200 or a JSON 4xx`,
    async () => {
      const problems: string[] = [];
      let accepted = 0;
      let before = await stored();
      for (const c of fuzzCases(seed, CASES_PER_SEED)) {
        const what = `seed ${seed} case ${c.index} (${c.mutations.join("; ")})`;
        const res = await fetch(signedRequest(URL_WEBHOOK, c.body));
        const text = await res.text();
        let answer: { ok?: unknown; id?: unknown; error?: unknown } | null = null;
        try {
          answer = JSON.parse(text);
        } catch { /* reported below */ }
        if (res.status === 200 && answer?.ok === true && typeof answer.id === "number") {
          accepted++;
          before = await readBack(answer.id, c.mutations.length - 1).catch((e) => {
            problems.push(`${what}: read back: ${e.message}`);
            return stored();
          });
        } else if (res.status >= 400 && res.status < 500 && typeof answer?.error === "string") {
          const after = await stored();
          if (after !== before) {
            problems.push(`${what}: ${res.status} ${answer.error}, yet ${before} -> ${after}`);
            before = after;
          }
        } else {
          problems.push(`${what}: ${res.status} ${text.slice(0, 300)}`);
        }
      }
      // The whole of every view, as the Data team reads them.
      for (
        const view of ["chatwoot_messages", "chatwoot_conversation_events", "chatwoot_daily_event_stats"]
      ) {
        await sql.unsafe(`select * from public.${view}`)
          .catch((e) => problems.push(`seed ${seed}: ${view}: ${e.message}`));
      }
      await sql`select * from public.webhook_pipeline_health`
        .catch((e) => problems.push(`seed ${seed}: webhook_pipeline_health: ${e.message}`));
      // And the forwarder claims what is due and sends each body as it came.
      const sent = sdk.received.length;
      const summary = await drain(sql, { agentSdkUrl: sdk.url, agentSdkSecret: null, agentSdkToken: null }, {
        budgetMs: 20_000,
        log,
      });
      if (
        !summary.ok || summary.stopped !== "idle" || !summary.delivered ||
        summary.delivered !== summary.claimed
      ) {
        problems.push(`seed ${seed}: drain ${JSON.stringify(summary)}`);
      }
      for (const r of sdk.received.slice(sent)) {
        const [row] = await sql`select raw_body from webhook_events where id = ${r.eventId}`;
        if (row?.raw_body !== r.text) problems.push(`seed ${seed}: event ${r.eventId} forwarded otherwise`);
      }
      const errors = log.lines.filter((l) => l.level === "error");
      assert.deepEqual(problems.slice(0, 10), [], `${problems.length} problem(s)`);
      assert.deepEqual(errors.slice(0, 5), []);
      // Most mutations leave a body Chatwoot could send: the stores and reads above were exercised.
      assert.ok(accepted > CASES_PER_SEED / 5, `only ${accepted} of ${CASES_PER_SEED} accepted`);
    },
  );
}

Deno.test({
  name: `webhook fuzz [${db.kind}]: close server and database`,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await server.stop();
    await sdk.close();
    await db.close();
  },
});
