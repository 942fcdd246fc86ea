// Values written into a statement as SQL literals, for the one statement that is sent without parameters.
//
// Why: postgres.js with `prepare: false` (Supavisor's transaction mode cannot keep prepared statements) sends
// every statement that has parameters in two round trips: Parse + Describe, wait for the parameter types, then
// Bind + Execute (`describeFirst` in its connection.js). The ingest upsert is one statement per webhook, so
// half of its round trips were that wait. Written as literals, the same call goes in one round trip, as
// pgbench's extended protocol sends it (docs/benchmarks-history.md: ingest 1.3-1.6× the rate, the same p99
// at a higher half rate). postgres.js exports no literal quoting, hence these few lines. A body of megabytes
// goes as a parameter instead (ingest_store.ts, BODY_PARAMETER_FROM_CHARS): its copies cost more than a wait.
//
// Safety: E'...' with each backslash and each quote doubled reads back the same text whatever
// standard_conforming_strings says, and postgres.js sets client_encoding to UTF8, where no multibyte character
// can end in a quote or backslash byte. Postgres text cannot hold U+0000; it is refused here, before sending.

export class SqlLiteralError extends Error {}

/** `E'…'::text`, or `null::text`. */
export function textLiteral(value: string | null): string {
  if (value === null) return "null::text";
  if (value.includes("\u0000")) throw new SqlLiteralError("text for Postgres cannot contain U+0000");
  return `E'${value.replaceAll("\\", "\\\\").replaceAll("'", "''")}'::text`;
}

/** `'123'::bigint`, or `null::bigint`; only for integers a double holds exactly. */
export function bigintLiteral(value: number | null): string {
  if (value === null) return "null::bigint";
  if (!Number.isSafeInteger(value)) throw new SqlLiteralError(`not a safe integer: ${value}`);
  return `'${value}'::bigint`;
}
