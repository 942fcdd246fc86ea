// One rule for Chatwoot's times, in SQL (chatwoot_timestamp(), behind chatwoot_messages.created_at and
// chatwoot_conversation_events.occurred_at) and in TS (chatwoot_time.ts, behind the CLIs' --since/--until):
// a zone or offset as written, none = UTC whatever the session's or the machine's zone, "t"/"z" as "T"/"Z".
import assert from "node:assert/strict";
import { chatwootTime } from "../supabase/functions/_shared/chatwoot_time.ts";
import { createChatwootWebhookApp } from "../supabase/functions/_shared/chatwoot_webhook.ts";
import { silentLogger } from "../supabase/functions/_shared/log.ts";
import { webhookConfigFromEnv } from "../supabase/functions/_shared/webhook_config.ts";
import { samplePayload } from "../scripts/lib/samples.ts";
import { dbTest, startTestDb } from "./_db.ts";
import { signedRequest, TEST_SECRET } from "./_http.ts";

const db = await startTestDb();
const sql = db.sql;
const URL_BASE = "http://relay.test/chatwoot-webhook";

/** 200 digits of fractional seconds (a tenth of a millisecond past .123). */
const LONG_FRACTION = "1234" + "0".repeat(196);

/** Input -> the instant it names (ISO, UTC), or null. */
const CASES: Array<[unknown, string | null]> = [
  ["2026-11-21T10:00:00.000Z", "2026-11-21T10:00:00.000Z"],
  ["2026-11-21T10:00:00", "2026-11-21T10:00:00.000Z"],
  ["2026-11-21T10:00", "2026-11-21T10:00:00.000Z"],
  ["2026-11-21 10:00:00.25", "2026-11-21T10:00:00.250Z"],
  ["2026-11-21t10:00:00z", "2026-11-21T10:00:00.000Z"],
  ["2026-11-21t10:00:00", "2026-11-21T10:00:00.000Z"],
  ["2026-11-21T10:00:00z", "2026-11-21T10:00:00.000Z"],
  ["2026-11-21T10:00:00+05:30", "2026-11-21T04:30:00.000Z"],
  ["2026-11-21T10:00:00-0500", "2026-11-21T15:00:00.000Z"],
  ["2026-11-21T10:00-05", "2026-11-21T15:00:00.000Z"],
  ["2024-02-29T23:59:59.999", "2024-02-29T23:59:59.999Z"],
  ["2026-12-31T23:59:60Z", "2027-01-01T00:00:00.000Z"],
  ["0099-03-01T00:00:00", "0099-03-01T00:00:00.000Z"],
  [1795255200, "2026-11-21T10:00:00.000Z"],
  [1795255200.123, "2026-11-21T10:00:00.123Z"],
  ["1795255200", "2026-11-21T10:00:00.000Z"],
  ["2026-02-29T10:00:00", null],
  ["0000-01-01T00:00:00", null],
  ["2026-11-21", null],
  ["2026-11-21T10:00:00 UTC", null],
  ["2026-11-21T24:00:00", null],
  ["21/11/2026 10:00", null],
  // Fractional seconds past the 9th digit are dropped (Postgres refused some 130 digits or more).
  [`2026-11-21T10:00:00.${LONG_FRACTION}Z`, "2026-11-21T10:00:00.123Z"],
  [`2026-11-21t10:00:00.${LONG_FRACTION}`, "2026-11-21T10:00:00.123Z"],
  [`2026-11-21T10:00:00.${LONG_FRACTION}+05:30`, "2026-11-21T04:30:00.123Z"],
  [`1795255200.${LONG_FRACTION}`, "2026-11-21T10:00:00.123Z"],
  [1e20, null],
  [true, null],
];

// A zone east of UTC and one west of it: a zone-less time read in either is off by hours.
const ZONES = ["America/New_York", "Asia/Kolkata"];

dbTest(`chatwoot time [${db.kind}]: SQL and TS read every time alike, in any session time zone`, async () => {
  for (const [value, expected] of CASES) {
    assert.equal(chatwootTime(value)?.toISOString() ?? null, expected, `TS ${JSON.stringify(value)}`);
  }
  for (const zone of ZONES) {
    const read = await sql.begin(async (tx) => {
      await tx`select set_config('TimeZone', ${zone}, true)`;
      // As text: postgres.js cannot read a year below 100 into a Date.
      return await tx<{ at: string | null }[]>`
        select to_char(public.chatwoot_timestamp(v) at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as at
          from jsonb_array_elements(${
        JSON.stringify(CASES.map(([v]) => v))
      }::text::jsonb) with ordinality u(v, n)
         order by n`;
    });
    assert.deepEqual(
      read.map((r, i) => [CASES[i][0], r.at]),
      CASES.map(([v, expected]) => [v, expected]),
      `SQL in ${zone}`,
    );
  }
});

dbTest(
  `chatwoot time [${db.kind}]: a zone-less created_at reads as UTC in chatwoot_messages, whatever the zone`,
  async () => {
    const app = createChatwootWebhookApp({
      config: webhookConfigFromEnv({ CHATWOOT_WEBHOOK_SECRET: TEST_SECRET }),
      sql,
      log: silentLogger,
    });
    const ids = [981_001, 981_002];
    for (const [i, createdAt] of ["2026-11-21T10:00:00", "2026-11-21t10:00:00.000z"].entries()) {
      const body = JSON.stringify(samplePayload("message_created", { messageId: ids[i] }))
        .replace(/"created_at":"[^"]*"/, `"created_at":"${createdAt}"`);
      assert.ok(body.includes(createdAt));
      const res = await app.fetch(signedRequest(URL_BASE, body));
      assert.equal(res.status, 200, await res.text());
    }
    for (const zone of ZONES) {
      const rows = await sql.begin(async (tx) => {
        await tx`select set_config('TimeZone', ${zone}, true)`;
        return await tx<{ created_at: Date | null }[]>`
          select created_at from public.chatwoot_messages where message_id = any(${ids}::bigint[])
           order by message_id`;
      });
      assert.deepEqual(
        rows.map((r) => r.created_at?.toISOString() ?? null),
        ["2026-11-21T10:00:00.000Z", "2026-11-21T10:00:00.000Z"],
        zone,
      );
    }
  },
);

dbTest(
  `chatwoot time [${db.kind}]: a message whose times carry 200 fractional digits is stored and read`,
  async () => {
    const app = createChatwootWebhookApp({
      config: webhookConfigFromEnv({ CHATWOOT_WEBHOOK_SECRET: TEST_SECRET }),
      sql,
      log: silentLogger,
    });
    const id = 981_003;
    const long = `2026-11-21T10:00:00.${LONG_FRACTION}Z`;
    // message_updated reads conversation.updated_at when it is stored (which copy is newer): it answered 500.
    for (const event of ["message_created", "message_updated"] as const) {
      const payload = samplePayload(event, { messageId: id });
      payload.created_at = long;
      (payload.conversation as Record<string, unknown>).updated_at = long;
      const res = await app.fetch(signedRequest(URL_BASE, JSON.stringify(payload)));
      assert.equal(res.status, 200, `${event}: ${await res.text()}`);
    }
    const [event] = await sql`
      select built_at from webhook_events where message_id = ${id} and event = 'message_updated'`;
    assert.equal(event.built_at?.toISOString(), "2026-11-21T10:00:00.123Z");
    const rows = await sql<{ created_at: Date | null }[]>`
      select created_at from public.chatwoot_messages where message_id = ${id}`;
    assert.deepEqual(rows.map((r) => r.created_at?.toISOString()), ["2026-11-21T10:00:00.123Z"]);
  },
);

Deno.test({
  name: `chatwoot time [${db.kind}]: close database`,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () => db.close(),
});
