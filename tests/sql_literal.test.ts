// The literals the ingest statement is written with: every text reads back exactly from a real Postgres
// (PGlite, or the server under DATABASE_URL), whatever standard_conforming_strings says, and a stored event
// keeps its body byte for byte.
import assert from "node:assert/strict";
import {
  eventColumns,
  jsonbText,
  parseChatwootEvent,
} from "../supabase/functions/_shared/chatwoot_payload.ts";
import { storeEvent } from "../supabase/functions/_shared/ingest_store.ts";
import { sha256Hex } from "../supabase/functions/_shared/signature.ts";
import { bigintLiteral, SqlLiteralError, textLiteral } from "../supabase/functions/_shared/sql_literal.ts";
import { samplePayload } from "../scripts/lib/samples.ts";
import { seededRandom } from "../bench/lib/stats.ts";
import { dbIndependentTest, dbTest, startTestDb } from "./_db.ts";

const db = await startTestDb();
const sql = db.sql;

const HOSTILE = [
  "",
  "plain",
  "it's",
  "''",
  "'",
  "\\",
  "\\'",
  "'\\",
  "ends with a backslash \\",
  "E'not an escape'",
  "\\x41 \\101 \\u0041 \\n \\t \\\\",
  "$$ dollar $tag$ quoted $tag$ $$",
  "'); drop table public.webhook_events; --",
  "\\'); select pg_sleep(10); --",
  "line\nbreak\r\nand\ttab",
  "\u0001\u001f\u007f",
  "héllo ☃ 😀 𝄞 ﷽",
  '{"json": "with \\"escaped quotes\\" and \\\\ backslashes"}',
];

/** Long strings drawn from the characters that matter to quoting. */
function randomHostile(seed: number, length: number): string {
  const alphabet = ["'", "\\", "E", "$", '"', ";", "-", "\n", "x", "😀", "é", " ", "0"];
  const random = seededRandom(seed);
  return Array.from({ length }, () => alphabet[Math.floor(random() * alphabet.length)]).join("");
}

const SAMPLES = [...HOSTILE, ...Array.from({ length: 20 }, (_, i) => randomHostile(i + 1, 2_000))];

for (const conforming of ["on", "off"]) {
  dbTest(
    `sql literal [${db.kind}]: text reads back exactly, standard_conforming_strings=${conforming}`,
    async () => {
      await sql.begin(async (tx) => {
        await tx.unsafe(`set local standard_conforming_strings = ${conforming}`);
        for (const value of SAMPLES) {
          const [row] = await tx.unsafe<{ v: string | null; n: number }[]>(
            `select ${textLiteral(value)} as v, 1 as n`,
          );
          assert.equal(row.v, value, `literal ${JSON.stringify(value.slice(0, 60))}`);
          assert.equal(row.n, 1, "nothing after the literal was run as SQL");
        }
        const [row] = await tx.unsafe<{ v: string | null }[]>(`select ${textLiteral(null)} as v`);
        assert.equal(row.v, null);
      });
    },
  );
}

dbTest(`sql literal [${db.kind}]: bigints read back exactly; null stays null`, async () => {
  for (const value of [0, 1, -1, 2 ** 31, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER]) {
    const [row] = await sql.unsafe<{ v: string }[]>(`select ${bigintLiteral(value)}::text as v`);
    assert.equal(row.v, String(value));
  }
  const [row] = await sql.unsafe<{ v: string | null }[]>(`select ${bigintLiteral(null)} as v`);
  assert.equal(row.v, null);
});

dbIndependentTest(
  "sql literal: what Postgres cannot hold or a double cannot state exactly is refused before sending",
  () => {
    assert.throws(() => textLiteral("a\u0000b"), SqlLiteralError);
    for (const value of [2 ** 53, -(2 ** 53), 1.5, NaN, Infinity]) {
      assert.throws(() => bigintLiteral(value), SqlLiteralError, String(value));
    }
  },
);

dbTest(`sql literal [${db.kind}]: an event with quotes and backslashes is stored byte for byte`, async () => {
  const content = `it's "quoted" \\ back\\slashed \\' E'x' $$ 😀 '); drop table public.webhook_events; --`;
  const text = JSON.stringify(samplePayload("message_created", { messageId: 990_001, content }));
  const parsed = parseChatwootEvent(text);
  assert.ok(parsed.ok);
  const bodySha256 = sha256Hex(text);
  const stored = await storeEvent(sql, {
    ...eventColumns(parsed.payload, parsed.event, bodySha256),
    deliveryId: "delivery-'quoted'-\\",
    payloadJson: jsonbText(text),
    rawBody: text,
    bodySha256,
    verifiedBy: "signature",
    sentAtSeconds: Math.floor(Date.now() / 1000),
    receiptId: crypto.randomUUID(),
  });
  assert.equal(stored.outcome, "stored");
  const [row] = await sql<{ raw_body: string; content: string; delivery_id: string; message_id: string }[]>`
    select raw_body, payload->>'content' as content, delivery_id, message_id::text
      from public.webhook_events where id = ${stored.id}`;
  assert.equal(row.raw_body, text);
  assert.equal(row.content, content);
  assert.equal(row.delivery_id, "delivery-'quoted'-\\");
  assert.equal(row.message_id, "990001");

  const again = await storeEvent(sql, {
    ...eventColumns(parsed.payload, parsed.event, bodySha256),
    deliveryId: null,
    payloadJson: null,
    rawBody: text,
    bodySha256,
    verifiedBy: "signature",
    sentAtSeconds: Math.floor(Date.now() / 1000),
    receiptId: crypto.randomUUID(),
  });
  assert.equal(again.outcome, "duplicate");
  assert.equal(again.id, stored.id);
});

dbTest(`sql literal [${db.kind}]: close database`, () => db.close());
