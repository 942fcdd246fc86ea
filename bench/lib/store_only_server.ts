// The memory section's floor: the least a webhook receiver on this stack does per request. Deno.serve reads
// the body, decodes it, and stores the text with postgres.js (the function's own connect(): same driver,
// pool and socket settings) in one round trip; no signature, no validation, no framework. Listens where
// DENO_SERVE_ADDRESS says; DATABASE_URL is the database.
import { connect } from "../../supabase/functions/_shared/db.ts";

const sql = connect(Deno.env.get("DATABASE_URL")!, { max: 5, applicationName: "relay-bench-floor" });
await sql`create table if not exists bench_store_only (id bigint generated always as identity, body text)`;
const decoder = new TextDecoder();

Deno.serve(async (req) => {
  const text = decoder.decode(await req.arrayBuffer());
  const [row] = await sql<
    { id: string }[]
  >`insert into bench_store_only (body) values (${text}) returning id`;
  return Response.json({ ok: true, id: row.id });
});
