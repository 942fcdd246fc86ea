// docs/sql.md, read as the Data team reads it: its text, its ```sql blocks, and their answers as data_analyst.
import assert from "node:assert/strict";
import type { Sql } from "../supabase/functions/_shared/db.ts";

/** docs/sql.md's text. */
export const sqlDoc = () => Deno.readTextFile(new URL("../docs/sql.md", import.meta.url));

/** Every ```sql block of docs/sql.md; fails when a block would be missed (a fence the pattern does not take). */
export async function sqlDocQueries(): Promise<string[]> {
  const doc = await sqlDoc();
  const blocks = [...doc.matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => m[1].trim());
  assert.equal(blocks.length, doc.match(/```sql/g)?.length, "every ```sql fence is read");
  return blocks;
}

/**
 * Each query's rows as data_analyst, one JSON line a row, in one transaction (one now()); rows of a query
 * without ORDER BY sorted, since they come in whatever order the plan gives.
 */
export async function answersAsDataAnalyst(sql: Sql, queries: string[]): Promise<string[]> {
  const out: string[] = [];
  await sql.begin(async (tx) => {
    await tx.unsafe("set local role data_analyst");
    for (const query of queries) {
      const rows = (await tx.unsafe(query)).map((row) => JSON.stringify(row));
      out.push((/\border by\b/i.test(query) ? rows : rows.sort()).join("\n"));
    }
  });
  return out;
}
