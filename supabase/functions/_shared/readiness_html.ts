// The readiness page: every section of the document, status colours, overdue tasks highlighted, live checks.
// Self-contained (inline CSS, no scripts), so it renders under a strict Content-Security-Policy.
import type { ReadinessReport } from "./readiness.ts";
import {
  type CheckStatus,
  effectiveStatus,
  type ItemBase,
  type Status,
  statusText,
} from "./readiness_model.ts";

function esc(value: unknown): string {
  return String(value ?? "")
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}

/** Escaped text with the document's `code` spans kept. */
function inline(value: string): string {
  return esc(value).replace(/`([^`]+)`/g, "<code>$1</code>");
}

/** 2025-10-12T08:00:00.000Z → 2025-10-12 08:00:00 UTC */
function when(iso: string): string {
  return iso.replace("T", " ").replace(/(\.\d+)?Z$/, " UTC");
}

function statusBadge(status: Status): string {
  return `<span class="status s-${status}" data-status="${status}">${esc(statusText(status))}</span>`;
}

function checkBadge(status: CheckStatus): string {
  const glyph = status === "pass" ? "✅" : status === "warn" ? "⚠️" : "❌";
  return `<span class="check c-${status}">${glyph} ${status}</span>`;
}

const CSS = `
:root { color-scheme: light; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
body { margin: 0; background: #f5f6f8; color: #1d232b; font-size: 15px; line-height: 1.45; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 30px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #dde1e6; }
h3 { font-size: 16px; margin: 18px 0 8px; }
.meta { color: #5b6573; font-size: 13px; }
.meta b { color: #1d232b; }
.banner { margin: 16px 0; padding: 14px 18px; border-radius: 8px; font-size: 18px; font-weight: 600; }
.banner.ready { background: #dcf5e3; color: #135c2a; border: 1px solid #9fd9b0; }
.banner.not-ready { background: #fde2e1; color: #8a1c17; border: 1px solid #f3aaa6; }
.banner small { display: block; font-weight: 400; font-size: 13px; margin-top: 4px; }
.counts { display: flex; gap: 8px; flex-wrap: wrap; margin: 8px 0; }
.counts span { background: #fff; border: 1px solid #dde1e6; border-radius: 16px; padding: 3px 12px; font-size: 13px; }
table { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid #dde1e6; margin: 6px 0; }
th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid #eceef1; vertical-align: top; font-size: 14px; }
th { background: #eef1f4; font-weight: 600; font-size: 13px; color: #394350; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12.5px; background: #eef1f4;
  padding: 1px 4px; border-radius: 4px; }
.status, .check { display: inline-block; white-space: nowrap; padding: 2px 9px; border-radius: 12px;
  font-size: 12.5px; font-weight: 600; }
.s-pending { background: #fff4d6; color: #7a5300; }
.s-in_progress { background: #dbeafe; color: #1e4f9c; }
.s-blocked { background: #fde2e1; color: #9b1c16; }
.s-staging_only { background: #ffe8d1; color: #8a4100; }
.s-done { background: #dcf5e3; color: #135c2a; }
.c-pass { background: #dcf5e3; color: #135c2a; }
.c-warn { background: #fff4d6; color: #7a5300; }
.c-fail { background: #fde2e1; color: #9b1c16; }
tr.overdue td { background: #fff1f0; }
tr.overdue td:first-child { box-shadow: inset 4px 0 0 #d93025; }
.overdue-tag { display: inline-block; margin-left: 6px; padding: 1px 7px; border-radius: 10px; background: #d93025;
  color: #fff; font-size: 11.5px; font-weight: 700; }
.verified { display: block; margin-top: 3px; color: #135c2a; font-size: 12px; }
.recorded { display: block; color: #5b6573; font-size: 12px; }
.provided { display: block; margin-top: 3px; color: #394350; font-size: 12.5px; }
.optional { color: #5b6573; font-size: 12px; }
ul, ol { margin: 6px 0; padding-left: 24px; }
li { margin: 3px 0; }
.expired { color: #9b1c16; font-weight: 700; }
.nowrap { white-space: nowrap; }
`;

export function renderHtml(r: ReadinessReport): string {
  const { doc, assessment, checks } = r;
  // An item proven by a check shows as done, as the counts and the banner count it; the note says by what,
  // and what the document records.
  const verifiedNote = (item: ItemBase) => {
    const v = assessment.verified[item.key];
    return v
      ? `<span class="verified" title="${esc(v.at)}">✔ verified by ${esc(v.check)} at ${
        esc(when(v.at))
      }</span>${
        item.status === "done"
          ? ""
          : `<span class="recorded">recorded: ${esc(statusText(item.status))}</span>`
      }`
      : "";
  };
  const badge = (item: ItemBase) => statusBadge(effectiveStatus(item, assessment.verified));
  const provided = (item: ItemBase) =>
    item.evidence ? `<span class="provided"><b>Provided:</b> ${inline(item.evidence)}</span>` : "";
  const overdue = new Map(assessment.overdue.map((o) => [o.key, o]));
  const d = doc.document;
  const failingCount = assessment.failing.items.length + assessment.failing.checks.length;

  const parts: string[] = [];
  parts.push(`<header>
<h1>${esc(d.title)}</h1>
<div class="meta">Owner <b>${esc(d.owner)}</b> · epoch ${esc(d.epoch)} · doc <code>${esc(d.doc)}</code>
 · last reviewed <b>${esc(d.last_reviewed)}</b>
 · expires <b class="${assessment.document_expired ? "expired" : ""}">${esc(d.expires)}${
    assessment.document_expired ? " (expired)" : ""
  }</b> · doc_hash <code>${esc(r.docHash.slice(0, 12))}…</code> · generated ${esc(when(r.generatedAt))}</div>
<div id="ready" class="banner ${assessment.ready ? "ready" : "not-ready"}" data-ready="${assessment.ready}">
${assessment.ready ? "✅ Ready for production" : "⛔ Not ready for production"}
<small>${
    assessment.ready
      ? "Every required item is done and every live check passes."
      : `${assessment.failing.items.length} required item(s) not done, ${assessment.failing.checks.length} live check(s) not passing, ${assessment.overdue.length} task(s) overdue.`
  }</small></div>
<div class="counts">${
    Object.entries(assessment.counts).map(([s, n]) =>
      `<span>${esc(statusText(s as Status))}: <b>${n}</b></span>`
    )
      .join("")
  }</div>
</header>`);

  parts.push(`<section id="checks"><h2>Live checks</h2>
<table><thead><tr><th>Check</th><th>Result</th><th>Detail</th><th>Checked</th><th>ms</th></tr></thead><tbody>
${
    checks.map((c) =>
      `<tr data-check="${esc(c.name)}"><td><b>${esc(c.title)}</b><br><code>${esc(c.name)}</code></td><td>${
        checkBadge(c.status)
      }</td><td>${esc(c.detail)}</td><td class="nowrap">${
        esc(when(c.checked_at))
      }</td><td>${c.duration_ms}</td></tr>`
    ).join("\n")
  }
</tbody></table></section>`);

  parts.push(
    `<section id="current-status"><h2>Current Status</h2><ul>${
      doc.current_status.map((s) => `<li><b>${esc(s.label)}:</b> ${inline(s.value)}</li>`).join("")
    }</ul></section>`,
  );

  parts.push(`<section id="credentials"><h2>Production Credential Requirements</h2>
<table><thead><tr><th>Credential</th><th>Description</th><th>Storage Target</th><th>Status</th><th>Notes</th></tr></thead>
<tbody>${
    doc.credentials.map((c) =>
      `<tr data-key="${esc(c.key)}"><td><code>${esc(c.name)}</code></td><td>${
        inline(c.description)
      }</td><td>${inline(c.storage_target)}</td><td>${badge(c)}${verifiedNote(c)}</td><td>${inline(c.notes)}${
        provided(c)
      }</td></tr>`
    ).join("\n")
  }</tbody></table></section>`);

  parts.push(
    `<section id="inbox-config"><h2>Shared Inbox Configuration Requirements</h2><p>${inline(d.inbox_note)}</p>
<table><thead><tr><th>Configuration Item</th><th>Owner</th><th>Status</th><th>Evidence Required</th></tr></thead>
<tbody>${
      doc.inbox_config.map((i) =>
        `<tr data-key="${esc(i.key)}"><td>${inline(i.item)}</td><td>${esc(i.owner)}</td><td>${badge(i)}${
          verifiedNote(i)
        }</td><td>${inline(i.evidence_required)}${provided(i)}</td></tr>`
      ).join("\n")
    }</tbody></table></section>`,
  );

  parts.push(`<section id="blockers"><h2>Current Blockers (From Integration Dashboard)</h2>
<table><thead><tr><th>#</th><th>Blocker</th><th>Status</th></tr></thead><tbody>${
    doc.blockers.map((b, i) =>
      `<tr data-key="${esc(b.key)}"><td>${i + 1}</td><td><b>${esc(b.title)}:</b> ${inline(b.detail)}${
        provided(b)
      }</td><td>${badge(b)}${verifiedNote(b)}</td></tr>`
    ).join("\n")
  }</tbody></table></section>`);

  parts.push(`<section id="tasks"><h2>Readiness Checklist</h2>
<table><thead><tr><th>#</th><th>Task</th><th>Owner</th><th>Due</th><th>Status</th><th>Evidence</th></tr></thead>
<tbody>${
    doc.tasks.map((t) => {
      const o = overdue.get(t.key);
      return `<tr data-key="${esc(t.key)}" class="${o ? "overdue" : ""}"><td>${t.number}</td><td>${
        inline(t.task)
      }</td>
<td>${esc(t.owner)}</td><td>${esc(t.due)}${
        o ? `<span class="overdue-tag">OVERDUE ${o.days_overdue} d</span>` : ""
      }</td><td>${badge(t)}${verifiedNote(t)}</td><td>${inline(t.evidence_required)}${provided(t)}</td></tr>`;
    }).join("\n")
  }</tbody></table></section>`);

  parts.push(`<section id="support-plan"><h2>Support Coordination Plan</h2>
<h3>Inbox Scope Requirements</h3><ul>${
    doc.support_plan.inbox_scope.map((s) => `<li><b>${esc(s.label)}:</b> ${inline(s.text)}</li>`).join("")
  }</ul>
<h3>Action Items for Support Team</h3><ol>${
    doc.support_plan.action_items.map((a) => `<li>${inline(a.text)}</li>`).join("")
  }</ol></section>`);

  parts.push(
    `<section id="validations"><h2>Integration Testing Requirements</h2><h3>Pre-production Validation</h3>
<table><thead><tr><th>Validation</th><th>Status</th></tr></thead><tbody>${
      doc.validations.map((v) =>
        `<tr data-key="${esc(v.key)}"><td>${inline(v.description)}${
          v.required === false ? ' <span class="optional">(optional)</span>' : ""
        }${provided(v)}</td><td>${badge(v)}${verifiedNote(v)}</td></tr>`
      ).join("\n")
    }</tbody></table>
<h3>Evidence Capture Requirements</h3>
<p>All testing evidence should be stored in <code>${esc(d.evidence_location)}</code>:</p><ul>${
      doc.evidence_requirements.map((e) => `<li>${inline(e.text)}</li>`).join("")
    }</ul></section>`,
  );

  parts.push(
    `<section id="risks"><h2>Dependencies &amp; Risks</h2><ul>${
      doc.dependencies_risks.map((x) => `<li><b>${esc(x.label)}:</b> ${inline(x.text)}</li>`).join("")
    }</ul></section>`,
  );

  parts.push(`<section id="contacts"><h2>Contact Log</h2>
<table><thead><tr><th>Date (UTC)</th><th>Contact</th><th>Team</th><th>Channel</th><th>Summary</th><th>Next Step</th></tr>
</thead><tbody>${
    doc.contact_log.map((c) =>
      `<tr><td>${esc(c.date)}</td><td>${esc(c.contact)}</td><td>${esc(c.team)}</td><td>${
        esc(c.channel)
      }</td><td>${inline(c.summary)}</td><td>${inline(c.next_step)}</td></tr>`
    ).join("\n")
  }</tbody></table></section>`);

  parts.push(`<section id="timeline"><h2>Timeline</h2>
<table><thead><tr><th>Date</th><th>Milestone</th></tr></thead><tbody>${
    doc.timeline.map((m) => `<tr><td>${esc(m.date)}</td><td>${inline(m.milestone)}</td></tr>`).join("\n")
  }</tbody></table></section>`);

  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${assessment.ready ? "✅" : "⛔"} ${esc(d.title)}${
    failingCount ? ` (${failingCount} open)` : ""
  }</title>
<style>${CSS}</style></head>
<body><main>
${parts.join("\n")}
</main></body></html>
`;
}
