// The readiness document as the database holds it (public.readiness_snapshot()), and the pure logic on top of
// it: effective statuses (a passing live check proves an item), counts, overdue items, `ready`.
export const STATUSES = ["pending", "in_progress", "blocked", "staging_only", "done"] as const;
export type Status = typeof STATUSES[number];

/** How the document shows each status (also seeded in public.readiness_statuses). */
export const STATUS_DISPLAY: Record<Status, { label: string; glyph: "⏳" | "🚧" | "✅" }> = {
  pending: { label: "Pending", glyph: "⏳" },
  in_progress: { label: "In Progress", glyph: "⏳" },
  blocked: { label: "Blocked", glyph: "🚧" },
  staging_only: { label: "Staging only", glyph: "🚧" },
  done: { label: "Done", glyph: "✅" },
};

export function isStatus(value: unknown): value is Status {
  return typeof value === "string" && (STATUSES as readonly string[]).includes(value);
}

export function statusText(status: Status): string {
  return `${STATUS_DISPLAY[status].glyph} ${STATUS_DISPLAY[status].label}`;
}

/** Columns of every row that carries a status. updated_* and required exist only in the database. */
export interface ItemBase {
  key: string;
  status: Status;
  /** What was provided to prove the item; null until someone provides it. */
  evidence: string | null;
  required?: boolean;
  updated_at?: string;
  updated_by?: string;
}

export interface Credential extends ItemBase {
  name: string;
  description: string;
  storage_target: string;
  notes: string;
}
export interface InboxConfigItem extends ItemBase {
  item: string;
  owner: string;
  evidence_required: string;
}
export interface Blocker extends ItemBase {
  title: string;
  detail: string;
}
export interface Task extends ItemBase {
  number: number;
  task: string;
  owner: string;
  /** YYYY-MM-DD */
  due: string;
  evidence_required: string;
}
export interface Validation extends ItemBase {
  description: string;
}

export interface ReadinessDoc {
  document: {
    epoch: string;
    doc: string;
    owner: string;
    last_reviewed: string;
    expires: string;
    title: string;
    inbox_note: string;
    evidence_location: string;
  };
  current_status: Array<{ label: string; value: string }>;
  credentials: Credential[];
  inbox_config: InboxConfigItem[];
  blockers: Blocker[];
  tasks: Task[];
  support_plan: {
    inbox_scope: Array<{ label: string; text: string }>;
    action_items: Array<{ text: string }>;
  };
  validations: Validation[];
  evidence_requirements: Array<{ text: string }>;
  dependencies_risks: Array<{ label: string; text: string }>;
  contact_log: Array<
    { date: string; contact: string; team: string; channel: string; summary: string; next_step: string }
  >;
  timeline: Array<{ date: string; milestone: string }>;
}

export const ITEM_SECTIONS = ["credentials", "inbox_config", "blockers", "tasks", "validations"] as const;
export type ItemSection = typeof ITEM_SECTIONS[number];

export function allItems(doc: ReadinessDoc): Array<ItemBase & { section: ItemSection }> {
  return ITEM_SECTIONS.flatMap((section) => doc[section].map((item) => ({ ...item, section })));
}

/** The document's content only: drops what lives only in the database (positions are the row order). */
export function documentContent(doc: ReadinessDoc): ReadinessDoc {
  const strip = <T extends ItemBase>(rows: T[]): T[] =>
    rows.map(({ required: _r, updated_at: _a, updated_by: _b, ...rest }) => rest as T);
  return {
    ...doc,
    credentials: strip(doc.credentials),
    inbox_config: strip(doc.inbox_config),
    blockers: strip(doc.blockers),
    tasks: strip(doc.tasks),
    validations: strip(doc.validations),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Live checks, as the checks module reports them.
// ---------------------------------------------------------------------------------------------------------
export type CheckStatus = "pass" | "warn" | "fail";

export interface CheckResult {
  name: string;
  title: string;
  status: CheckStatus;
  detail: string;
  checked_at: string;
  duration_ms: number;
  /** Item keys this check proves done right now (only when the proving condition holds). */
  proves: string[];
  data?: Record<string, unknown>;
}

export interface Verification {
  check: string;
  at: string;
  text: string;
}

export interface Assessment {
  ready: boolean;
  /** Items by the status shown: proven items count as done (the same statuses `failing` and `overdue` use). */
  counts: Record<Status, number>;
  /** Items by the status recorded in the document (what the Markdown shows). */
  stored_counts: Record<Status, number>;
  overdue: Array<
    {
      key: string;
      number: number;
      task: string;
      owner: string;
      due: string;
      status: Status;
      days_overdue: number;
    }
  >;
  failing: { items: Array<{ key: string; section: ItemSection; status: Status }>; checks: string[] };
  /** Items proven by a passing condition of a live check, by key. */
  verified: Record<string, Verification>;
  document_expired: boolean;
}

const DAY_MS = 86_400_000;

/** UTC calendar date of `now` as YYYY-MM-DD: due dates are calendar days, compared in UTC. */
export function utcDate(now: Date): string {
  return now.toISOString().slice(0, 10);
}

/**
 * ready = every required item is done (set by hand, or proven by a live check) and every live check passes.
 * Overdue = a task whose due day has passed (UTC) and that is not done.
 */
/** The status an item is shown and counted with: done when a live check proves it, else the one recorded. */
export function effectiveStatus(item: ItemBase, verified: Record<string, Verification>): Status {
  return verified[item.key] ? "done" : item.status;
}

export function assess(doc: ReadinessDoc, checks: CheckResult[], now: Date): Assessment {
  const verified: Record<string, Verification> = {};
  for (const check of checks) {
    for (const key of check.proves) {
      verified[key] ??= {
        check: check.name,
        at: check.checked_at,
        text: `verified by ${check.name} at ${check.checked_at}`,
      };
    }
  }
  const effective = (item: ItemBase): Status => effectiveStatus(item, verified);

  const zero = () => Object.fromEntries(STATUSES.map((s) => [s, 0])) as Record<Status, number>;
  const counts = zero();
  const storedCounts = zero();
  const items = allItems(doc);
  for (const item of items) {
    counts[effective(item)]++;
    storedCounts[item.status]++;
  }

  const today = utcDate(now);
  const overdue = doc.tasks
    .filter((t) => t.due < today && effective(t) !== "done")
    .map((t) => ({
      key: t.key,
      number: t.number,
      task: t.task,
      owner: t.owner,
      due: t.due,
      status: t.status,
      days_overdue: Math.floor((Date.parse(today) - Date.parse(t.due)) / DAY_MS),
    }));

  const failingItems = items
    .filter((item) => item.required !== false && effective(item) !== "done")
    .map((item) => ({ key: item.key, section: item.section, status: item.status }));
  const failingChecks = checks.filter((c) => c.status !== "pass").map((c) => c.name);
  return {
    ready: failingItems.length === 0 && failingChecks.length === 0,
    counts,
    stored_counts: storedCounts,
    overdue,
    failing: { items: failingItems, checks: failingChecks },
    verified,
    document_expired: doc.document.expires < today,
  };
}
