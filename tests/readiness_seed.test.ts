// The seeded rows are the document (docs/seeds/chatwoot_readiness.md, a copy of the user's checklist), and the
// Markdown rendered from the rows reads back to the same rows.
import assert from "node:assert/strict";
import { dbIndependentTest, dbTest, HOLDS_DB, startTestDb, type TestDb } from "./_db.ts";
import { SEED_PATH } from "./_readiness.ts";
import {
  docHash,
  documentBody,
  parseMarkdown,
  renderMarkdown,
} from "../supabase/functions/_shared/readiness_markdown.ts";
import {
  documentContent,
  ITEM_SECTIONS,
  type ItemSection,
  type ReadinessDoc,
  type Status,
  STATUSES,
} from "../supabase/functions/_shared/readiness_model.ts";
import { parsePatch } from "../supabase/functions/_shared/readiness.ts";
import { sha256Hex } from "../supabase/functions/_shared/signature.ts";

const db: TestDb = await startTestDb();
const seed = await Deno.readTextFile(SEED_PATH);

async function snapshot(): Promise<ReadinessDoc> {
  const [{ s }] = await db.sql<
    { s: ReadinessDoc & { statuses?: unknown } }[]
  >`select public.readiness_snapshot() as s`;
  const { statuses: _, ...doc } = s;
  return doc;
}

dbTest(
  "readiness seed: every section's rows equal the document's (all rows, owners, due dates)",
  async () => {
    const fromSeed = parseMarkdown(seed).doc;
    const fromDb = documentContent(await snapshot());
    // Section by section first, so a failure names the section.
    for (const section of Object.keys(fromSeed) as Array<keyof ReadinessDoc>) {
      assert.deepEqual(fromDb[section], fromSeed[section], `section ${section} differs from the document`);
    }
    assert.deepEqual(fromDb, fromSeed);
    // The counts the issue names, and a few values spelled out so a parser mistake cannot hide both sides.
    assert.equal(fromDb.credentials.length, 4);
    assert.equal(fromDb.inbox_config.length, 4);
    assert.equal(fromDb.blockers.length, 3);
    assert.equal(fromDb.tasks.length, 10);
    assert.equal(fromDb.validations.length, 5);
    assert.equal(fromDb.timeline.length, 4);
    assert.equal(fromDb.contact_log.length, 1);
    assert.deepEqual(fromDb.tasks.map((t) => t.owner), [
      ...Array(5).fill("Integrations"),
      "Support",
      "Support",
      "Support",
      "Data",
      "Integrations",
    ]);
    assert.deepEqual(fromDb.tasks.map((t) => t.due), [
      ...Array(5).fill("2025-10-11"),
      ...Array(5).fill("2025-10-12"),
    ]);
    assert.equal(fromDb.tasks[0].status, "in_progress");
    assert.equal(fromDb.credentials[3].status, "staging_only");
    assert.equal(fromDb.document.expires, "2025-10-25");
  },
);

dbTest(
  "readiness seed: Markdown rendered from the fresh seed is the document (but for doc_hash)",
  async () => {
    const { markdown, docHash: hash } = renderMarkdown(await snapshot());
    // The user's file carries one invisible private-use character (U+F8FF) before "🚧 Staging only"; the parser
    // ignores it and the rendering does not reproduce it. The file also lacks a final newline.
    const strays = seed.match(/\p{Co}/gu) ?? [];
    assert.deepEqual(strays, ["\uF8FF"]);
    const expected = seed.replace(/\p{Co}/gu, "").replace(/^doc_hash: TBD$/m, `doc_hash: ${hash}`).replace(
      /\n*$/,
      "\n",
    );
    assert.equal(markdown, expected);
  },
);

dbTest("readiness markdown: doc_hash is the SHA-256 of the body after the front matter", async () => {
  const { markdown, docHash: hash } = renderMarkdown(await snapshot());
  const body = markdown.slice(markdown.indexOf("\n---\n") + 5);
  assert.ok(body.startsWith("# Chatwoot Production Readiness Tracking\n"));
  assert.equal(hash, sha256Hex(new TextEncoder().encode(body)));
  assert.equal(documentBody(markdown), body);
  assert.equal(parseMarkdown(markdown).docHash, hash);
  // CRLF and missing final newline do not change what is hashed.
  assert.equal(docHash(documentBody(markdown.replaceAll("\n", "\r\n").trimEnd())), hash);
});

dbTest("readiness markdown: after edits, the rendered Markdown parses back to the same rows", async () => {
  const tx = db.sql;
  await tx`select public.readiness_update_item('task-1', 'done', true, 'DSN fixed | see PR #12', null, 'test')`;
  await tx`select public.readiness_update_item('task-4', 'blocked', false, null, null, 'test')`;
  await tx`select public.readiness_update_item('blocker-2', 'done', true, '/hc answers 200', null, 'test')`;
  await tx`select public.readiness_update_item('validation-2', 'done', false, null, null, 'test')`;
  await tx`select public.readiness_update_item('validation-4', 'in_progress', true, 'first mail received', null, 't')`;
  // Text that Markdown would take for raw HTML or an entity, written so that it shows (and reads back) as typed.
  await tx`select public.readiness_update_item('task-5', null, true, 'at vault/occ/<env>/x.env; see <details> &amp; A&B',
    null, 'test')`;
  await tx`select public.readiness_update_item('credential-chatwoot_base_url_prod', 'done', true, 'prod URL set', null, 't')`;
  // Backslashes right before a pipe, which GFM pairs up when it splits a row into cells.
  await tx`select public.readiness_update_item('task-6', null, true, ${TASK_6_EVIDENCE},
    null, 'test')`;
  await tx`select public.readiness_update_item('inbox-2', 'staging_only', false, null, null, 'test')`;
  try {
    const doc = await snapshot();
    const { markdown, docHash: hash } = renderMarkdown(doc);
    const parsed = parseMarkdown(markdown);
    assert.deepEqual(parsed.doc, documentContent(doc));
    assert.equal(parsed.docHash, hash);
    assert.match(
      markdown,
      /\| 1 \| Fix Supabase DSN in Fly secrets .*\| ✅ Done \| .* · Provided: DSN fixed \\\| see PR #12 \|/,
    );
    assert.match(markdown, /^- \[x\] API token authentication test$/m);
    // Every table row has as many cells as its header, read as GitHub reads it: "\" escapes any character.
    let header = 0;
    for (const line of markdown.split("\n")) {
      if (!line.startsWith("|")) header = 0;
      else if (!header) header = gfmCellCount(line);
      else assert.equal(gfmCellCount(line), header, line);
    }
    const task6 = githubCells(markdown.split("\n").find((l) => l.startsWith("| 6 |"))!);
    assert.equal(task6.at(-1), `Inbox configuration screenshots · Provided: ${TASK_6_EVIDENCE}`);
    const task5 = markdown.split("\n").find((l) => l.startsWith("| 5 |"))!;
    assert.ok(
      task5.endsWith(" · Provided: at vault/occ/&lt;env>/x.env; see &lt;details> &amp;amp; A&amp;B |"),
      task5,
    );
    assert.match(
      markdown,
      /^- \[ \] Inbound email processing test — ⏳ In Progress · Provided: first mail received$/m,
    );
    assert.match(markdown, /^2\. \*\*Health check failure:\*\* .* — ✅ Done · Provided: \/hc answers 200$/m);
    // The rendering changed, and so did its hash.
    const fresh = parseMarkdown(seed).doc;
    assert.notDeepEqual(parsed.doc, fresh);
  } finally {
    await db.sql`select public.readiness_update_item(key, s, true, null, null, 'test')
      from (values ('task-1', 'in_progress'), ('task-4', 'pending'), ('task-5', 'pending'), ('task-6', 'pending'), ('blocker-2', 'blocked'),
        ('validation-2', 'pending'), ('validation-4', 'pending'), ('credential-chatwoot_base_url_prod', 'staging_only'),
        ('inbox-2', 'pending')) v(key, s)`;
  }
  assert.deepEqual(documentContent(await snapshot()), parseMarkdown(seed).doc);
});

dbIndependentTest(
  "readiness markdown: any evidence a PATCH accepts reads back as written, status included",
  () => {
    const base = parseMarkdown(seed).doc;
    const roundTrip = (section: ItemSection, index: number, status: Status, evidence: string) => {
      const doc = structuredClone(base);
      Object.assign(doc[section][index], { status, evidence });
      const { markdown } = renderMarkdown(doc);
      let parsed: ReadinessDoc;
      try {
        parsed = parseMarkdown(markdown).doc;
      } catch (error) {
        throw new Error(`${section} ${index} ${JSON.stringify(evidence)}: ${(error as Error).message}`);
      }
      assert.deepEqual(parsed, doc, `${section} ${index} ${status} ${JSON.stringify(evidence)}`);
      let header = 0;
      for (const line of markdown.split("\n")) {
        if (!line.startsWith("|")) header = 0;
        else if (!header) header = gfmCellCount(line);
        else assert.equal(gfmCellCount(line), header, line);
      }
    };
    // The marker that ends a row's own text, inside the evidence: the row was cut at the last one, so the
    // evidence lost its start, and a blocker's or validation's status (written before the marker) was lost too.
    roundTrip("blockers", 1, "done", "curl log · Provided: in artifacts/");
    roundTrip("validations", 0, "in_progress", "· Provided: twice");
    roundTrip("tasks", 2, "pending", "a · Provided: b");
    roundTrip("credentials", 0, "done", "x ·  · Provided:");
    // A line separator (U+2028, U+2029) is no line break in Markdown, but "." in a JS pattern stops at it.
    roundTrip("blockers", 0, "blocked", "first\u2028second");
    roundTrip("validations", 1, "pending", "a\u2029b");
    // Random evidence from the characters Markdown and this layout give meaning to, as a PATCH stores it.
    const pieces = [
      "|",
      "\\",
      "<",
      ">",
      "&",
      "&amp;",
      "&lt;",
      "&#183;",
      "`",
      "\n",
      " ",
      "a",
      "é",
      "😀",
      "·",
      " · Provided: ",
      "Provided:",
      " — ",
      "✅ Done",
      "⏳",
      "*",
      "#",
      "[x]",
      "- ",
      "\u00a0",
      "\u2028",
      "\u2029",
    ];
    let state = 20261121;
    const random = (n: number) => { // mulberry32: the same strings on every run
      state = (state + 0x6d2b79f5) | 0;
      let t = Math.imul(state ^ (state >>> 15), 1 | state);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) % n;
    };
    let tried = 0;
    while (tried < 3000) {
      const raw = Array.from({ length: 1 + random(10) }, () => pieces[random(pieces.length)]).join("");
      const patch = parsePatch({ evidence: raw });
      if (!patch.ok) continue;
      tried++;
      const section = ITEM_SECTIONS[random(ITEM_SECTIONS.length)];
      roundTrip(
        section,
        random(base[section].length),
        STATUSES[random(STATUSES.length)],
        patch.value.evidence!,
      );
    }
    return Promise.resolve();
  },
  HOLDS_DB,
);

dbIndependentTest(
  "readiness markdown: a document with an unknown status or a missing section is refused",
  () => {
    assert.throws(
      () => parseMarkdown(seed.replace("⏳ In Progress", "⏳ Almost")),
      /unknown status "⏳ Almost"/,
    );
    assert.throws(
      () => parseMarkdown(seed.replace("## Timeline", "## Later")),
      /missing section "## Timeline"/,
    );
    assert.throws(() => parseMarkdown(seed.replace(/^---\n/, "")), /front matter/);
    return Promise.resolve();
  },
  HOLDS_DB,
);

dbTest("readiness seed: close the database", () => db.close());

/** Backslashes right before pipes: GitHub reads "\\|" as a pipe in the cell, then "\\\\" as one backslash. */
const TASK_6_EVIDENCE = String.raw`one \| two \\| three \\\| end \ `.trimEnd();

/**
 * A table row's cells as GitHub shows them (cmark-gfm): a "|" right after a backslash stays in its cell and that
 * backslash goes; then a backslash before ASCII punctuation escapes it (entities and emphasis are left as written).
 */
function githubCells(line: string): string[] {
  const inner = line.trim().replace(/^\|/, "").replace(/(?<!\\)\|$/, "");
  return inner.split(/(?<!\\)\|/).map((cell) =>
    cell.replaceAll("\\|", "|").replace(/\\([!-/:-@[-`{-~])/g, "$1").trim()
  );
}

function gfmCellCount(line: string): number {
  return githubCells(line).length;
}
