// Seeded fuzzing of chatwoot-webhook over real HTTP: realistic bodies, mutated (tests/_fuzz.ts) and correctly
// signed, so that they reach validation and the database. Each answer must be 200 or a 4xx with a JSON error
// that stored nothing, never a 5xx (Chatwoot does not send the event again); each stored row must read back
// through the Data team's views. FUZZ_SEEDS=4-20 runs other seeds; a failure names the seed and the case.
import assert from "node:assert/strict";
import { createChatwootWebhookApp } from "../supabase/functions/_shared/chatwoot_webhook.ts";
import { memoryLogger } from "../supabase/functions/_shared/log.ts";
import { webhookConfigFromEnv } from "../supabase/functions/_shared/webhook_config.ts";
import { dbTest, startTestDb } from "./_db.ts";
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

/** What a refused body must leave as it was: the rows and every receipt counted. */
async function stored(): Promise<string> {
  const [row] = await sql`
    select count(*)::int as events, coalesce(sum(receive_count), 0)::int as receipts from webhook_events`;
  return JSON.stringify(row);
}

/**
 * The event's row, its jsonb written out, and its rows in the views: each read fails if the row cannot be.
 * Written out, the jsonb may have a space after each ":" and ",", and a number with an exponent in full:
 * at most 1001 characters for each mutation (1e1000 is accepted, 1e1001 not).
 */
async function readBack(id: number, mutations: number): Promise<void> {
  const [row] = await sql`
    select message_id, octet_length(payload::text) as jsonb_bytes, octet_length(raw_body) as raw_bytes
      from webhook_events where id = ${id}`;
  assert.ok(row, `event ${id} not stored`);
  assert.ok(
    row.jsonb_bytes <= 2 * row.raw_bytes + 1001 * mutations,
    `${row.raw_bytes} bytes read back as ${row.jsonb_bytes}`,
  );
  await sql`select * from public.chatwoot_messages where message_id = ${row.message_id}`;
  await sql`select * from public.chatwoot_conversation_events where event_id = ${id}`;
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
          await readBack(answer.id, c.mutations.length - 1)
            .catch((e) => problems.push(`${what}: read back: ${e.message}`));
          before = await stored();
        } else if (res.status >= 400 && res.status < 500 && typeof answer?.error === "string") {
          const after = await stored();
          if (after !== before) {
            problems.push(`${what}: ${res.status} ${answer.error}, yet ${before} -> ${after}`);
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
    await db.close();
  },
});
