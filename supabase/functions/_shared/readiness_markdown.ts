// The readiness document as Markdown, in the layout of docs/seeds/chatwoot_readiness.md: rendered from the rows,
// and parsed back (to check the seed and the round trip).
//
// doc_hash = hex SHA-256 of the UTF-8 bytes of the *body*: everything after the front matter's closing "---"
// line (starting at the "# <title>" line), with LF line endings and exactly one trailing newline. The front
// matter is excluded so the hash does not depend on itself; documentBody() applies the same normalisation to a
// file read from disk, so `sha256(documentBody(file)) == doc_hash` verifies a committed copy.
import {
  type Blocker,
  type Credential,
  type InboxConfigItem,
  type ReadinessDoc,
  type Status,
  STATUSES,
  statusText,
  type Task,
  type Validation,
} from "./readiness_model.ts";
import { sha256Hex } from "./signature.ts";

/** Appended to a row's evidence-required / notes text when evidence has been provided. */
export const PROVIDED_MARKER = " · Provided: ";
/** Appended to a blocker or validation line whose status is not the one its list syntax implies. */
const STATUS_MARKER = " — ";

const HEADINGS = {
  currentStatus: "## Current Status",
  credentials: "## Production Credential Requirements",
  inbox: "## Shared Inbox Configuration Requirements",
  blockers: "## Current Blockers (From Integration Dashboard)",
  checklist: "## Readiness Checklist",
  supportPlan: "## Support Coordination Plan",
  inboxScope: "### Inbox Scope Requirements",
  actionItems: "### Action Items for Support Team",
  testing: "## Integration Testing Requirements",
  validation: "### Pre-production Validation",
  evidence: "### Evidence Capture Requirements",
  risks: "## Dependencies & Risks",
  contacts: "## Contact Log",
  timeline: "## Timeline",
} as const;

const EVIDENCE_SENTENCE = /^All testing evidence should be stored in `([^`]*)`:$/s;

// ---------------------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------------------

/**
 * GitHub (cmark-gfm) takes every "\|" in a row for a pipe inside a cell, then reads the cell's backslash
 * escapes: text "a\|b" written as "a\\|b" showed as "a|b". So the backslashes right before a "|" are doubled.
 */
function cell(value: string): string {
  return value.replace(/\r?\n/g, " ").replace(
    /(\\*)\|/g,
    (_, backslashes: string) => `${backslashes.repeat(2)}\\|`,
  );
}

function row(cells: string[]): string {
  return `| ${cells.map(cell).join(" | ")} |`;
}

function table(header: string[], rows: string[][]): string[] {
  return [row(header), `| ${header.map(() => "---").join(" | ")} |`, ...rows.map(row)];
}

/**
 * Evidence is anyone's text (PATCH): "<" would open raw HTML in Markdown (GitHub drops `<env>` from
 * "vault/occ/<env>/…" and acts on `<details>`), so it is written as an entity, and "&" too, so that an entity
 * typed by hand reads back as typed. A "·" that would spell the marker (" · Provided: ") is an entity as well:
 * the reader splits a row at the marker, and one inside the evidence cut it short (and lost the status written
 * before it).
 */
function withEvidence(text: string, evidence: string | null): string {
  if (evidence === null) return text;
  const written = evidence.replaceAll("&", "&amp;").replaceAll("<", "&lt;")
    .replace(/·(?= Provided: )/g, "&#183;");
  return `${text}${PROVIDED_MARKER}${written}`;
}

const EVIDENCE_ENTITIES: Record<string, string> = { "&amp;": "&", "&lt;": "<", "&#183;": "·" };

function evidenceFromMarkdown(text: string): string {
  return text.replace(/&amp;|&lt;|&#183;/g, (entity) => EVIDENCE_ENTITIES[entity]);
}

/** A list line's status suffix, omitted when the status is the one the list syntax already implies. */
function statusSuffix(status: Status, implied: Status[]): string {
  return implied.includes(status) ? "" : `${STATUS_MARKER}${statusText(status)}`;
}

/** The body (everything after the front matter), ending with one newline. */
export function renderBody(doc: ReadinessDoc): string {
  const out: string[] = [`# ${doc.document.title}`, "", HEADINGS.currentStatus];
  for (const s of doc.current_status) out.push(`- **${s.label}:** ${s.value}`);

  out.push("", HEADINGS.credentials, "");
  out.push(...table(
    ["Credential", "Description", "Storage Target", "Status", "Notes"],
    doc.credentials.map((c) => [
      `\`${c.name}\``,
      c.description,
      c.storage_target,
      statusText(c.status),
      withEvidence(c.notes, c.evidence),
    ]),
  ));

  out.push("", HEADINGS.inbox, "", doc.document.inbox_note, "");
  out.push(...table(
    ["Configuration Item", "Owner", "Status", "Evidence Required"],
    doc.inbox_config.map((
      i,
    ) => [i.item, i.owner, statusText(i.status), withEvidence(i.evidence_required, i.evidence)]),
  ));

  out.push("", HEADINGS.blockers);
  doc.blockers.forEach((b, i) => {
    out.push(
      withEvidence(`${i + 1}. **${b.title}:** ${b.detail}${statusSuffix(b.status, ["blocked"])}`, b.evidence),
    );
  });

  out.push("", HEADINGS.checklist, "");
  out.push(...table(
    ["#", "Task", "Owner", "Due", "Status", "Evidence"],
    doc.tasks.map((t) => [
      String(t.number),
      t.task,
      t.owner,
      t.due,
      statusText(t.status),
      withEvidence(t.evidence_required, t.evidence),
    ]),
  ));

  out.push("", HEADINGS.supportPlan, "", HEADINGS.inboxScope);
  for (const s of doc.support_plan.inbox_scope) out.push(`- **${s.label}:** ${s.text}`);
  out.push("", HEADINGS.actionItems);
  doc.support_plan.action_items.forEach((a, i) => out.push(`${i + 1}. ${a.text}`));

  out.push("", HEADINGS.testing, "", HEADINGS.validation);
  for (const v of doc.validations) {
    const box = v.status === "done" ? "x" : " ";
    out.push(
      withEvidence(`- [${box}] ${v.description}${statusSuffix(v.status, ["pending", "done"])}`, v.evidence),
    );
  }
  out.push("", HEADINGS.evidence);
  out.push(`All testing evidence should be stored in \`${doc.document.evidence_location}\`:`);
  for (const e of doc.evidence_requirements) out.push(`- ${e.text}`);

  out.push("", HEADINGS.risks);
  for (const r of doc.dependencies_risks) out.push(`- **${r.label}:** ${r.text}`);

  out.push("", HEADINGS.contacts);
  out.push(...table(
    ["Date (UTC)", "Contact", "Team", "Channel", "Summary", "Next Step"],
    doc.contact_log.map((c) => [c.date, c.contact, c.team, c.channel, c.summary, c.next_step]),
  ));

  out.push("", HEADINGS.timeline);
  out.push(...table(["Date", "Milestone"], doc.timeline.map((m) => [m.date, m.milestone])));
  return out.join("\n") + "\n";
}

export function docHash(body: string): string {
  return sha256Hex(new TextEncoder().encode(body));
}

/** The whole document: front matter (with the body's doc_hash) and body. */
export function renderMarkdown(doc: ReadinessDoc): { markdown: string; docHash: string } {
  const body = renderBody(doc);
  const hash = docHash(body);
  const d = doc.document;
  const front = [
    "---",
    `epoch: ${d.epoch}`,
    `doc: ${d.doc}`,
    `owner: ${d.owner}`,
    `last_reviewed: ${d.last_reviewed}`,
    `doc_hash: ${hash}`,
    `expires: ${d.expires}`,
    "---",
  ].join("\n");
  return { markdown: `${front}\n${body}`, docHash: hash };
}

// ---------------------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------------------

export class MarkdownFormatError extends Error {}

function splitFrontMatter(markdown: string): { front: string[]; body: string } {
  const text = markdown.replace(/\r\n?/g, "\n");
  const lines = text.split("\n");
  if (lines[0] !== "---") throw new MarkdownFormatError("front matter must start with ---");
  const end = lines.indexOf("---", 1);
  if (end < 0) throw new MarkdownFormatError("front matter is not closed with ---");
  return { front: lines.slice(1, end), body: lines.slice(end + 1).join("\n").replace(/\n*$/, "\n") };
}

/** The part of a Markdown file doc_hash covers (see the top of this file). */
export function documentBody(markdown: string): string {
  return splitFrontMatter(markdown).body;
}

function parseCells(line: string): string[] {
  const trimmed = line.trim();
  if (!trimmed.startsWith("|") || !trimmed.endsWith("|")) {
    throw new MarkdownFormatError(`not a table row: ${line}`);
  }
  const cells: string[] = [];
  let current = "";
  const inner = trimmed.slice(1, -1);
  for (let i = 0; i < inner.length; i++) {
    if (inner[i] === "\\") {
      // As GitHub reads a row: a backslash right before a "|" keeps it in the cell and goes; the backslashes
      // before that one are escapes of each other, so show half (what cell() doubled).
      let end = i;
      while (inner[end] === "\\") end++;
      if (inner[end] === "|") {
        current += "\\".repeat(Math.floor((end - i - 1) / 2)) + "|";
        i = end;
      } else {
        current += inner.slice(i, end);
        i = end - 1;
      }
    } else if (inner[i] === "|") {
      cells.push(current.trim());
      current = "";
    } else {
      current += inner[i];
    }
  }
  cells.push(current.trim());
  return cells;
}

function tableRows(lines: string[], columns: number, where: string): string[][] {
  const rows = lines.filter((l) => l.trim().startsWith("|")).map(parseCells);
  if (rows.length < 2 || !rows[1].every((c) => /^:?-+:?$/.test(c))) {
    throw new MarkdownFormatError(`${where}: expected a table with a header row`);
  }
  const body = rows.slice(2);
  for (const r of body) {
    if (r.length !== columns) {
      throw new MarkdownFormatError(`${where}: expected ${columns} cells, got ${r.length}`);
    }
  }
  return body;
}

const LABEL_TO_STATUS = new Map(STATUSES.map((s) => [statusText(s), s]));

/** Invisible characters editors leave around emoji (private-use glyphs, variation selectors, zero widths). */
const INVISIBLE = /[\p{Co}\uFE0E\uFE0F\u200B-\u200D\u2060]/gu;

function parseStatus(text: string, where: string): Status {
  const status = LABEL_TO_STATUS.get(text.replace(INVISIBLE, "").trim());
  if (!status) {
    throw new MarkdownFormatError(
      `${where}: unknown status "${text}" (expected one of ${STATUSES.map(statusText).join(", ")})`,
    );
  }
  return status;
}

function splitEvidence(text: string): { text: string; evidence: string | null } {
  // A table cell is trimmed, so an empty base text leaves the marker without its leading space.
  const marker = PROVIDED_MARKER.trimStart();
  if (text.startsWith(marker)) return { text: "", evidence: evidenceFromMarkdown(text.slice(marker.length)) };
  const at = text.lastIndexOf(PROVIDED_MARKER);
  if (at < 0) return { text, evidence: null };
  return {
    text: text.slice(0, at),
    evidence: evidenceFromMarkdown(text.slice(at + PROVIDED_MARKER.length)),
  };
}

// Patterns over a line carry the s flag: "." stops at U+2028 and U+2029, which Markdown takes for ordinary
// characters (evidence may hold them), so a line holding one was refused as malformed.
function splitStatusSuffix(text: string, fallback: Status, where: string): { text: string; status: Status } {
  const match = /^(.*) — ((?:⏳|🚧|✅) [A-Za-z ]+)$/su.exec(text);
  if (!match) return { text, status: fallback };
  return { text: match[1], status: parseStatus(match[2], where) };
}

function boldItem(line: string, where: string): { label: string; text: string } {
  const match = /^(?:- |\d+\. )\*\*(.+?):\*\* (.*)$/s.exec(line);
  if (!match) throw new MarkdownFormatError(`${where}: expected "- **Label:** text", got "${line}"`);
  return { label: match[1], text: match[2] };
}

/** Lines under each heading (## and ###), blank lines dropped. */
function sectionLines(body: string): Map<string, string[]> {
  const sections = new Map<string, string[]>();
  let current = "";
  for (const line of body.split("\n")) {
    if (/^#{1,3} /.test(line)) {
      current = line;
      if (sections.has(current)) throw new MarkdownFormatError(`duplicate heading ${line}`);
      sections.set(current, []);
    } else if (line.trim() !== "") {
      sections.get(current)?.push(line);
    }
  }
  return sections;
}

/** Item keys for rows read from Markdown, by the rule the seed uses. */
export function credentialKey(name: string): string {
  return `credential-${name.toLowerCase()}`;
}

export function parseMarkdown(markdown: string): { doc: ReadinessDoc; docHash: string | null } {
  const { front, body } = splitFrontMatter(markdown);
  const meta = new Map<string, string>();
  for (const line of front) {
    const match = /^([a-z_]+):\s*(.*)$/s.exec(line);
    if (!match) throw new MarkdownFormatError(`front matter: cannot read "${line}"`);
    meta.set(match[1], match[2]);
  }
  const need = (key: string) => {
    const value = meta.get(key);
    if (value === undefined) throw new MarkdownFormatError(`front matter: ${key} is missing`);
    return value;
  };

  const sections = sectionLines(body);
  const title = [...sections.keys()].find((h) => h.startsWith("# "));
  if (!title) throw new MarkdownFormatError("missing the # title");
  const get = (heading: string) => {
    const lines = sections.get(heading);
    if (!lines) throw new MarkdownFormatError(`missing section "${heading}"`);
    return lines;
  };

  const inboxLines = get(HEADINGS.inbox);
  const inboxNote = inboxLines.find((l) => !l.trim().startsWith("|"));
  if (inboxNote === undefined) throw new MarkdownFormatError("inbox section: missing the direction line");

  const evidenceLines = get(HEADINGS.evidence);
  const location = EVIDENCE_SENTENCE.exec(evidenceLines[0] ?? "");
  if (!location) throw new MarkdownFormatError("evidence section: missing the storage sentence");

  const credentials: Credential[] = tableRows(get(HEADINGS.credentials), 5, "credentials").map((r) => {
    const name = /^`([A-Z][A-Z0-9_]*)`$/.exec(r[0])?.[1];
    if (!name) throw new MarkdownFormatError(`credentials: bad name cell ${r[0]}`);
    const notes = splitEvidence(r[4]);
    return {
      key: credentialKey(name),
      name,
      description: r[1],
      storage_target: r[2],
      status: parseStatus(r[3], `credential ${name}`),
      notes: notes.text,
      evidence: notes.evidence,
    };
  });

  const inbox: InboxConfigItem[] = tableRows(inboxLines, 4, "inbox configuration").map((r, i) => {
    const e = splitEvidence(r[3]);
    return {
      key: `inbox-${i + 1}`,
      item: r[0],
      owner: r[1],
      status: parseStatus(r[2], `inbox item ${r[0]}`),
      evidence_required: e.text,
      evidence: e.evidence,
    };
  });

  const blockers: Blocker[] = get(HEADINGS.blockers).map((line, i) => {
    const e = splitEvidence(line);
    const s = splitStatusSuffix(e.text, "blocked", `blocker ${i + 1}`);
    const b = boldItem(s.text, "blockers");
    return {
      key: `blocker-${i + 1}`,
      title: b.label,
      detail: b.text,
      status: s.status,
      evidence: e.evidence,
    };
  });

  const tasks: Task[] = tableRows(get(HEADINGS.checklist), 6, "checklist").map((r) => {
    if (!/^\d+$/.test(r[0])) throw new MarkdownFormatError(`checklist: bad task number ${r[0]}`);
    if (!/^\d{4}-\d{2}-\d{2}$/.test(r[3])) throw new MarkdownFormatError(`checklist: bad due date ${r[3]}`);
    const e = splitEvidence(r[5]);
    return {
      key: `task-${Number(r[0])}`,
      number: Number(r[0]),
      task: r[1],
      owner: r[2],
      due: r[3],
      status: parseStatus(r[4], `task ${r[0]}`),
      evidence_required: e.text,
      evidence: e.evidence,
    };
  });

  const validations: Validation[] = get(HEADINGS.validation).map((line, i) => {
    const match = /^- \[( |x)\] (.*)$/s.exec(line);
    if (!match) throw new MarkdownFormatError(`validations: expected "- [ ] text", got "${line}"`);
    const e = splitEvidence(match[2]);
    const s = splitStatusSuffix(e.text, match[1] === "x" ? "done" : "pending", `validation ${i + 1}`);
    return { key: `validation-${i + 1}`, description: s.text, status: s.status, evidence: e.evidence };
  });

  const bullets = (lines: string[], where: string) =>
    lines.map((l) => {
      if (!l.startsWith("- ")) throw new MarkdownFormatError(`${where}: expected "- text", got "${l}"`);
      return { text: l.slice(2) };
    });

  const doc: ReadinessDoc = {
    document: {
      epoch: need("epoch"),
      doc: need("doc"),
      owner: need("owner"),
      last_reviewed: need("last_reviewed"),
      expires: need("expires"),
      title: title.slice(2),
      inbox_note: inboxNote,
      evidence_location: location[1],
    },
    current_status: get(HEADINGS.currentStatus).map((l) => {
      const b = boldItem(l, "current status");
      return { label: b.label, value: b.text };
    }),
    credentials,
    inbox_config: inbox,
    blockers,
    tasks,
    support_plan: {
      inbox_scope: get(HEADINGS.inboxScope).map((l) => boldItem(l, "inbox scope")),
      action_items: get(HEADINGS.actionItems).map((l) => {
        const match = /^\d+\. (.*)$/s.exec(l);
        if (!match) throw new MarkdownFormatError(`action items: expected "1. text", got "${l}"`);
        return { text: match[1] };
      }),
    },
    validations,
    evidence_requirements: bullets(evidenceLines.slice(1), "evidence requirements"),
    dependencies_risks: get(HEADINGS.risks).map((l) => boldItem(l, "dependencies & risks")),
    contact_log: tableRows(get(HEADINGS.contacts), 6, "contact log").map((r) => ({
      date: r[0],
      contact: r[1],
      team: r[2],
      channel: r[3],
      summary: r[4],
      next_step: r[5],
    })),
    timeline: tableRows(get(HEADINGS.timeline), 2, "timeline").map((r) => ({ date: r[0], milestone: r[1] })),
  };
  const hash = meta.get("doc_hash");
  return { doc, docHash: hash && /^[0-9a-f]{64}$/.test(hash) ? hash : null };
}
