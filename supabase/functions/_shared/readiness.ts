// The readiness function: the production-readiness checklist from Postgres, with live checks.
//   GET   /readiness                 JSON (default), ?format=markdown, ?format=html or an Accept preferring HTML
//   GET   /readiness/probe           200 when ready, 503 with the failing items and checks
//   PATCH /readiness/items/<key>     {status?, evidence?, note?, by?, if_updated_at?} with Authorization: Bearer
//                                    <admin token>
import { Hono } from "hono";
import {
  acceptWeight,
  bodyReadRefusal,
  declaredCharsets,
  isJsonContentType,
  isUtf8Label,
  jsonError,
  notFoundJson,
  readBodyWithin,
} from "./http.ts";
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import {
  boundedTransaction,
  CommitOutcomeUnknown,
  connectionsHeld,
  DatabaseAbandoned,
  dbErrorCode,
  dbFailureReason,
  type Sql,
  type TransactionWait,
} from "./db.ts";
import { ConfigError, type Env, secretValues } from "./env.ts";
import type { Logger } from "./log.ts";
import { cachedChecks, type ReadinessConfig, readinessConfigFromEnv } from "./readiness_checks.ts";
import { renderHtml } from "./readiness_html.ts";
import { renderMarkdown } from "./readiness_markdown.ts";
import {
  assess,
  type Assessment,
  type CheckResult,
  effectiveStatus,
  type ItemBase,
  type ReadinessDoc,
  STATUS_DISPLAY,
  STATUSES,
  statusText,
} from "./readiness_model.ts";
import { NO_DATABASE, type Runtime } from "./runtime.ts";
import { timingSafeEqualStrings } from "./signature.ts";
import { withTimeout } from "./timeout.ts";

export const FUNCTION_NAME = "readiness";
const LOG = "[Readiness]";
/** A PATCH carries a status, a line of evidence (2 000 characters at most) and a note: 64 KB is ample. */
export const MAX_PATCH_BYTES = 64 * 1024;
const MAX_TEXT = 2000;
/** A PATCH body not complete by then is refused (408): a client that stalls must not hold the request. */
export const PATCH_BODY_DEADLINE_MS = 30_000;
/**
 * A PATCH's write not done by then is a 503: a lock held on the item's table (a migration, an SQL editor's
 * open transaction) or a database that does not answer must not hold the editor's request. Nothing is stored,
 * unless its COMMIT was already on its way (outcome_unknown).
 */
export const PATCH_WRITE_TIMEOUT_MS = 10_000;
/**
 * How long past a transaction's bound on the server (a PATCH's write, a GET's reads) the function waits for
 * the server's own answer before it answers 503 without it.
 */
const SERVER_ANSWER_MARGIN_MS = 2000;

/** A 503's `reason` (and `detail`) for a transaction that failed or was abandoned (withinBound). */
function failureReason(error: unknown): { reason: string; detail?: string } {
  if (error instanceof CommitOutcomeUnknown) return failureReason(error.cause);
  if (!(error instanceof DatabaseAbandoned)) return { reason: dbFailureReason(error) };
  // The database answered the work that held the connections: busy, as a lock the read waited on would be.
  return error.poolBusy ? { reason: "busy", detail: error.message } : { reason: "unreachable" };
}

/**
 * `work` in a boundedTransaction (db.ts) that the server ends `ms` after the call (statement_timeout and
 * lock_timeout: a lock held on a readiness table by a migration or an SQL editor's open transaction), or
 * DatabaseAbandoned once `ms` + SERVER_ANSWER_MARGIN_MS have passed without the server's answer (the database
 * out of reach); a transaction that begins after either rolls back. `begin`: postgres.js' begin options.
 *
 * Abandoned still waiting for a connection while this pool's every connection is held by another such
 * transaction (or a check's; the database began them), the pool was busy, not the database out of reach:
 * with DATABASE_POOL_SIZE=1, a GET's read queued behind a PATCH waiting on a lock. Said as that (poolBusy).
 * Abandoned, or failed, once its COMMIT was on its way, it may have committed: CommitOutcomeUnknown.
 */
async function withinBound<T>(
  db: Sql,
  ms: number,
  begin: string,
  work: (tx: Sql) => Promise<T>,
): Promise<T> {
  const deadline = performance.now() + ms;
  const wait: TransactionWait = { waiting: false, abandoned: false };
  const serverMs = () => deadline - performance.now();
  const transaction = boundedTransaction(db, { wait, serverMs, lockTimeout: true, begin }, work);
  const bound = ms + SERVER_ANSWER_MARGIN_MS;
  return await withTimeout(transaction, bound, () => {
    wait.abandoned = true;
    if (wait.waiting && connectionsHeld(db) >= (db.options?.max ?? Infinity)) {
      return new DatabaseAbandoned(
        `no pooled connection within ${bound} ms: each one held by other work of this function (a PATCH or ` +
          "the checklist's read waiting on a lock, say); see DATABASE_POOL_SIZE",
        true,
      );
    }
    const none = new DatabaseAbandoned(`no answer from the database within ${bound} ms`);
    return wait.committing ? new CommitOutcomeUnknown(none) : none;
  });
}

export interface ReadinessDeps {
  sql: Sql | null;
  env: Env;
  log: Logger;
  /** Injectable clock (overdue, cache, checked_at). */
  now?: () => Date;
  /** Overrides READINESS_CHECK_TIMEOUT_MS / READINESS_CACHE_SECONDS (tests). */
  checkTimeoutMs?: number;
  cacheMs?: number;
  /** Overrides PATCH_BODY_DEADLINE_MS (tests). */
  bodyDeadlineMs?: number;
  /** Overrides PATCH_WRITE_TIMEOUT_MS (tests). */
  writeTimeoutMs?: number;
  /** See CheckDeps.deliveryHealthView. */
  deliveryHealthView?: string;
  /** Why `sql` is null although a database is configured (Runtime.databaseProblem). */
  databaseProblem?: string | null;
}

export interface ReadinessReport {
  doc: ReadinessDoc;
  checks: CheckResult[];
  assessment: Assessment;
  docHash: string;
  markdown: string;
  generatedAt: string;
}

type ErrorCode =
  | "not_configured"
  | "database_unavailable"
  | "outcome_unknown"
  | "bad_format"
  | "unauthorized"
  | "unsupported_media_type"
  | "payload_too_large"
  | "request_timeout"
  | "body_incomplete"
  | "invalid_json"
  | "invalid_body"
  | "invalid_status"
  | "invalid_evidence"
  | "nothing_to_update"
  | "secret_in_evidence"
  | "stale_item"
  | "unknown_item"
  | "method_not_allowed"
  | "not_found"
  | "internal_error";

const fail = (c: Context, status: ContentfulStatusCode, error: ErrorCode, message: string, extra = {}) =>
  jsonError(c, status, error, message, extra);

export function createReadinessApp(deps: ReadinessDeps): Hono {
  const { sql, env, log } = deps;
  const now = deps.now ?? (() => new Date());
  let configError: string | null = null;
  let config: ReadinessConfig | null = null;
  try {
    config = readinessConfigFromEnv(env);
    if (deps.checkTimeoutMs !== undefined) config.checkTimeoutMs = deps.checkTimeoutMs;
    if (deps.cacheMs !== undefined) config.cacheMs = deps.cacheMs;
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    configError = error.message;
  }
  const checks = config
    ? cachedChecks({ sql, env, config, now, deliveryHealthView: deps.deliveryHealthView })
    : null;

  /**
   * readiness_update_item_if_unchanged within `writeTimeoutMs`: no row for an unknown key, else the item as
   * written, or as it is now with stale = true when it changed after `ifUpdatedAt`. One statement, so one
   * round trip inside the bound; the row's lock, the comparison and the write are the database's (migration
   * 007000). A failure means nothing was stored, except a CommitOutcomeUnknown (withinBound).
   */
  async function updateItem(db: Sql, key: string, p: ItemPatch, actor: string) {
    const ms = deps.writeTimeoutMs ?? PATCH_WRITE_TIMEOUT_MS;
    return await withinBound(db, ms, "", async (tx) => [
      ...await tx<(ItemBase & { section: string; stale: boolean })[]>`
        select (r.item).*, r.stale from public.readiness_update_item_if_unchanged(
          ${key}, ${p.status}, ${p.evidence !== undefined}, ${p.evidence ?? null}, ${p.note}, ${actor},
          ${p.ifUpdatedAt}::timestamptz) r`,
    ]);
  }

  /**
   * The checklist, bounded as each live check is (READINESS_CHECK_TIMEOUT_MS on the server, then the margin
   * for its answer): a lock held on a readiness table or a database out of reach is a 503, not a request
   * left waiting, nor a read left holding a pooled connection for as long as the lock is held. One statement,
   * so the server's bound is the read's whole bound (statement_timeout is per statement) and the document is
   * one view of the data; the credentials check takes its names from it.
   *
   * The checks start with the read and run beside it: each ends within READINESS_CHECK_TIMEOUT_MS of its
   * start (readiness_checks.ts; a cached run joined here started earlier), the read within that and the
   * margin, so the whole answer does too, the one bound a monitor sets its timeout by. Run after the read,
   * the checks added their bound to the read's: a lock released just before the read's bound, then a Chatwoot
   * stalling, was twice the bound and the margin.
   */
  async function report(db: Sql): Promise<ReadinessReport> {
    // The checks' reads first in the pool's queue: they are quick and wait on no readiness table; the read
    // loses the few milliseconds they take from its bound. Queued behind a read (or PATCH) already waiting on
    // a lock (a pool of one), a check that gets no connection in time says so and is not cached.
    const withCredentials = checks!();
    const doc = await sharedRead(db);
    const { markdown, docHash } = renderMarkdown(doc);
    const checked = await withCredentials(doc.credentials.map((c) => c.name));
    const at = now();
    return {
      doc,
      checks: checked,
      assessment: assess(doc, checked, at),
      docHash,
      markdown,
      generatedAt: at.toISOString(),
    };
  }

  /** The read in flight, and the count of this instance's PATCHes stored when it began. */
  let reading: { doc: Promise<ReadinessDoc>; writes: number } | null = null;
  /** PATCHes this instance has stored (answered 200). */
  let writes = 0;

  /**
   * The checklist's read, one at a time per instance: GETs arriving while one is in flight share it, its
   * answer or its failure (a 503 for each of them), and the next GET after it settles reads again. Each GET
   * read for itself before: under a lock held on a readiness table, N GETs held N pooled connections until
   * the bound, and with more GETs than the pool the checks of a new cache period queued behind them and
   * cached a timeout. A GET after a PATCH this instance stored does not join a read begun before it.
   */
  function sharedRead(db: Sql): Promise<ReadinessDoc> {
    if (reading && reading.writes === writes) return reading.doc;
    const doc = withinBound(db, config!.checkTimeoutMs, "read only", async (tx) => {
      const [row] = await tx<{ snapshot: ReadinessDoc }[]>`select public.readiness_snapshot() as snapshot`;
      return pickDoc(row.snapshot);
    });
    const flight = { doc, writes };
    reading = flight;
    // Its GETs take the outcome; this only ends the sharing (a failure is not kept past its read).
    const ended = () => {
      if (reading === flight) reading = null;
    };
    doc.then(ended, ended);
    return doc;
  }

  /** The shared preamble of the GET routes: configuration, then the report, or the 5xx that replaces it. */
  async function withReport(c: Context, render: (r: ReadinessReport) => Response | Promise<Response>) {
    c.header("Cache-Control", "no-store");
    if (configError) return fail(c, 503, "not_configured", configError);
    if (!sql) {
      return fail(c, 503, "not_configured", deps.databaseProblem ?? NO_DATABASE);
    }
    let r: ReadinessReport;
    try {
      r = await report(sql);
    } catch (error) {
      log("error", `${LOG} Report failed`, {
        error: error instanceof Error ? error.message : String(error),
        code: dbErrorCode(error),
      });
      return fail(
        c,
        503,
        "database_unavailable",
        "The readiness data could not be read",
        failureReason(error),
      );
    }
    return render(r);
  }

  const app = new Hono({ strict: false });

  app.get(`/${FUNCTION_NAME}`, (c) => {
    // The page when the client weighs HTML above JSON (a browser); JSON on a tie (*/*, none) and for a client
    // that takes HTML only at a lower q, or refuses it (q=0).
    const accept = c.req.header("accept") ?? "";
    const html = acceptWeight(accept, "text/html");
    const format = c.req.query("format") ??
      (html > 0 && html > acceptWeight(accept, "application/json") ? "html" : "json");
    if (!["json", "markdown", "html"].includes(format)) {
      return fail(c, 400, "bad_format", "format must be one of json, markdown, html", {
        allowed: ["json", "markdown", "html"],
      });
    }
    return withReport(c, (r) => {
      if (format === "markdown") {
        c.header("Content-Type", "text/markdown; charset=utf-8");
        c.header("X-Doc-Hash", r.docHash);
        return c.body(r.markdown);
      }
      if (format === "html") {
        c.header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'");
        return c.html(renderHtml(r));
      }
      return c.json(reportJson(r));
    });
  });

  app.get(`/${FUNCTION_NAME}/probe`, (c) =>
    withReport(c, (r) => {
      const { ready, failing } = r.assessment;
      return c.json({ ok: true, ready, generated_at: r.generatedAt, failing }, ready ? 200 : 503);
    }));

  app.patch(`/${FUNCTION_NAME}/items/:key`, async (c) => {
    if (configError) return fail(c, 503, "not_configured", configError);
    if (!config!.adminToken) {
      return fail(
        c,
        503,
        "not_configured",
        config!.adminTokenProblem ?? "Updates are disabled: READINESS_ADMIN_TOKEN is not set",
      );
    }
    const auth = c.req.header("authorization") ?? "";
    const presented = /^Bearer\s+(.+)$/i.exec(auth.trim())?.[1] ?? "";
    if (!timingSafeEqualStrings(presented, config!.adminToken)) {
      c.header("WWW-Authenticate", 'Bearer realm="readiness"');
      return fail(c, 401, "unauthorized", "Authorization: Bearer <READINESS_ADMIN_TOKEN> is required");
    }
    if (!sql) {
      return fail(c, 503, "not_configured", deps.databaseProblem ?? NO_DATABASE);
    }

    if (!isJsonContentType(c.req.raw)) {
      return fail(c, 415, "unsupported_media_type", "Content-Type must be application/json");
    }
    // JSON is UTF-8. A body declared in another charset (latin1, windows-1252) would be read as UTF-8 anyway,
    // and where its bytes happen to be valid UTF-8 ("Ã©" is C3 A9) stored as other text: refused instead.
    // Every charset parameter counts: one that contradicts the first declares another charset all the same.
    if (!declaredCharsets(c.req.raw).every(isUtf8Label)) {
      return fail(c, 415, "unsupported_media_type", "The body must be JSON in UTF-8 (charset=utf-8 or none)");
    }
    const limits = { maxBytes: MAX_PATCH_BYTES, deadlineMs: deps.bodyDeadlineMs ?? PATCH_BODY_DEADLINE_MS };
    const read = await readBodyWithin(c.req.raw, limits);
    if (!read.ok) {
      const r = bodyReadRefusal(read.reason, limits, "nothing changed");
      return fail(c, r.status, r.error, r.message, r.extra);
    }
    let body: unknown;
    try {
      // Fatal: bytes that are not UTF-8 are refused, not stored as U+FFFD in the item's evidence.
      body = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(read.body));
    } catch {
      return fail(c, 400, "invalid_json", "Body must be a JSON object, in UTF-8");
    }
    const parsed = parsePatch(body, secretValues(env));
    if (!parsed.ok) return fail(c, 400, parsed.error, parsed.message, parsed.extra);
    const p = parsed.value;
    const key = c.req.param("key");
    // Item keys are short lowercase words (task-1, credential-chatwoot_token_prod): anything else names no
    // item. Checked here, since text Postgres refuses (a NUL from %00) would fail as a database error.
    if (!/^[a-z0-9_-]{1,100}$/.test(key)) return fail(c, 404, "unknown_item", "No such readiness item");
    const actor = p.by ? `admin:${p.by}` : "admin";
    let rows: (ItemBase & { section: string; stale: boolean })[];
    try {
      rows = await updateItem(sql, key, p, actor);
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === "23514" && !(error instanceof CommitOutcomeUnknown)) {
        return fail(
          c,
          400,
          "secret_in_evidence",
          // The database's checks on evidence (migrations 000300, 003800) and updated_by (007600, whose
          // token-shaped `by` parsePatch refuses first): the page is public.
          "Evidence looks like a secret value (20 or more letters and digits in a row); store secrets in the " +
            "vault, and cite a commit by its short id",
        );
      }
      const unknown = error instanceof CommitOutcomeUnknown;
      log("error", `${LOG} Update failed`, {
        key,
        error: error instanceof Error ? error.message : String(error),
        code: dbErrorCode(error),
        ...(unknown ? { outcome: "unknown" } : {}),
      });
      if (unknown) {
        // Its own code, not database_unavailable's: that one has always meant nothing stored, and a client
        // that acts on it (says "not saved", gives up) must not read this one as that.
        return fail(
          c,
          503,
          "outcome_unknown",
          `The database did not confirm the update of "${key}": the connection was lost (or no answer ` +
            "came) after it was sent to be committed, so it may have been stored. GET the item to see; or " +
            "send it again with if_updated_at, the updated_at you had: if it was stored, that is 412 " +
            "stale_item with the item as it is",
          failureReason(error),
        );
      }
      return fail(
        c,
        503,
        "database_unavailable",
        "The item could not be updated; nothing changed",
        failureReason(error),
      );
    }
    if (rows.length === 0) return fail(c, 404, "unknown_item", `No readiness item "${key}"`);
    const { stale, ...item } = rows[0];
    if (stale) {
      return fail(
        c,
        412,
        "stale_item",
        `"${key}" changed after the if_updated_at given; nothing changed. Look at it again, then send its ` +
          "updated_at",
        { item: { ...item, status_text: statusText(item.status) } },
      );
    }
    writes++;
    log("info", `${LOG} Item updated`, { key, section: item.section, status: item.status, actor });
    return c.json({ ok: true, item: { ...item, status_text: statusText(item.status) } });
  });

  for (const path of [`/${FUNCTION_NAME}`, `/${FUNCTION_NAME}/probe`]) {
    app.all(path, (c) => {
      c.header("Allow", "GET");
      return fail(c, 405, "method_not_allowed", "Only GET is accepted here");
    });
  }
  app.all(`/${FUNCTION_NAME}/items/:key`, (c) => {
    c.header("Allow", "PATCH");
    return fail(c, 405, "method_not_allowed", "Only PATCH is accepted here");
  });
  app.notFound(notFoundJson);
  app.onError((error, c) => {
    log("error", `${LOG} Unhandled`, { error: error.message });
    return fail(c, 500, "internal_error", "Internal error");
  });
  return app;
}

/** The snapshot as the document model (drops the status catalogue, which the model hard-codes). */
function pickDoc(snapshot: ReadinessDoc & { statuses?: unknown }): ReadinessDoc {
  const { statuses: _statuses, ...doc } = snapshot;
  return doc;
}

export function reportJson(r: ReadinessReport) {
  const { doc, assessment } = r;
  const decorate = <T extends ItemBase>(rows: T[]) =>
    rows.map((item) => ({
      ...item,
      status_text: statusText(item.status),
      verified: assessment.verified[item.key] ?? null,
      effective_status: effectiveStatus(item, assessment.verified),
    }));
  const overdueKeys = new Set(assessment.overdue.map((o) => o.key));
  return {
    ok: true,
    ready: assessment.ready,
    generated_at: r.generatedAt,
    document: { ...doc.document, doc_hash: r.docHash, expired: assessment.document_expired },
    statuses: STATUSES.map((s) => ({ status: s, ...STATUS_DISPLAY[s] })),
    counts: assessment.counts,
    stored_counts: assessment.stored_counts,
    overdue: assessment.overdue,
    failing: assessment.failing,
    sections: {
      current_status: doc.current_status,
      credentials: decorate(doc.credentials),
      inbox_config: decorate(doc.inbox_config),
      blockers: decorate(doc.blockers),
      tasks: decorate(doc.tasks).map((t) => ({ ...t, overdue: overdueKeys.has(t.key) })),
      support_plan: doc.support_plan,
      validations: decorate(doc.validations),
      evidence_requirements: { location: doc.document.evidence_location, items: doc.evidence_requirements },
      dependencies_risks: doc.dependencies_risks,
      contact_log: doc.contact_log,
      timeline: doc.timeline,
    },
    checks: r.checks,
  };
}

// ---------------------------------------------------------------------------------------------------------
// PATCH body
// ---------------------------------------------------------------------------------------------------------

export interface ItemPatch {
  status: string | null;
  /** undefined keeps the evidence; null clears it. */
  evidence?: string | null;
  note: string | null;
  by: string | null;
  /** The item's updated_at as the editor saw it: the write is refused (412) if it has changed since. */
  ifUpdatedAt: string | null;
}

type PatchResult =
  | { ok: true; value: ItemPatch }
  | { ok: false; error: ErrorCode; message: string; extra?: Record<string, unknown> };

const PATCH_FIELDS = ["status", "evidence", "note", "by", "if_updated_at"];
/** A run of 20 or more letters and digits with both in it: a token's shape (migration 003800). */
const TOKEN_SHAPED = /(^|[^A-Za-z0-9])(?=[A-Za-z0-9]*[0-9])(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{20,}/;

export function parsePatch(body: unknown, secrets: string[] = []): PatchResult {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return { ok: false, error: "invalid_json", message: "Body must be a JSON object" };
  }
  const b = body as Record<string, unknown>;
  const unknown = Object.keys(b).filter((k) => !PATCH_FIELDS.includes(k));
  if (unknown.length > 0) {
    return {
      ok: false,
      error: "invalid_body",
      message: `Unknown field(s) ${unknown.join(", ")}; allowed: ${PATCH_FIELDS.join(", ")}`,
    };
  }
  if (b.status !== undefined && !STATUSES.includes(b.status as typeof STATUSES[number])) {
    return {
      ok: false,
      error: "invalid_status",
      message: `status must be one of ${STATUSES.join(", ")}`,
      extra: { allowed: STATUSES },
    };
  }
  const text = (
    name: string,
    value: unknown,
    max: number,
    singleLine: boolean,
  ): string | null | PatchResult => {
    if (value === undefined || value === null) return null;
    // deno-lint-ignore no-control-regex
    const bad = singleLine ? /[\u0000-\u001f\u007f]/ : /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;
    // Characters are code points (an emoji is one); a lone surrogate, which a JSON escape can carry past the
    // fatal UTF-8 decoder, is refused like bytes that are not UTF-8.
    if (
      typeof value !== "string" || value.trim() === "" || [...value].length > max || bad.test(value) ||
      !value.isWellFormed()
    ) {
      return {
        ok: false,
        error: name === "evidence" ? "invalid_evidence" : "invalid_body",
        message: `${name} must be a non-empty ${
          singleLine ? "single-line " : ""
        }string of at most ${max} characters`,
      };
    }
    if (secrets.some((s) => value.includes(s))) {
      return {
        ok: false,
        error: "secret_in_evidence",
        message: `${name} contains a configured secret value`,
      };
    }
    return value.trim();
  };
  // Evidence is rendered into a Markdown table cell, so it stays on one line.
  const evidence = text("evidence", b.evidence, MAX_TEXT, true);
  const note = text("note", b.note, MAX_TEXT, false);
  const by = text("by", b.by, 100, true);
  for (const v of [evidence, note, by]) if (v !== null && typeof v === "object") return v;
  // `by` is published (updated_by) and logged. The database refuses such an updated_by too (migration
  // 007600), but its refusal is answered as evidence's: refused here first, so the answer names `by`.
  if (typeof by === "string" && TOKEN_SHAPED.test(by)) {
    return {
      ok: false,
      error: "secret_in_evidence",
      message: "by looks like a secret value (20 or more letters and digits in a row): it is shown publicly",
    };
  }
  // An ISO 8601 time with its offset, as the answers give updated_at ("2025-10-11T08:00:00.123456+00:00", "…Z").
  const ifUpdatedAt = b.if_updated_at;
  if (
    ifUpdatedAt !== undefined && ifUpdatedAt !== null && (
      typeof ifUpdatedAt !== "string" ||
      !/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}(:?\d{2})?)$/.test(ifUpdatedAt) ||
      Number.isNaN(Date.parse(ifUpdatedAt.replace(" ", "T")))
    )
  ) {
    return {
      ok: false,
      error: "invalid_body",
      message:
        "if_updated_at must be the item's updated_at, as GET or a PATCH answered it (ISO 8601, with offset)",
    };
  }
  if (b.status === undefined && b.evidence === undefined) {
    return { ok: false, error: "nothing_to_update", message: "Give status and/or evidence" };
  }
  return {
    ok: true,
    value: {
      status: (b.status as string | undefined) ?? null,
      ...(b.evidence !== undefined ? { evidence: evidence as string | null } : {}),
      note: note as string | null,
      by: by as string | null,
      ifUpdatedAt: (ifUpdatedAt as string | undefined) ?? null,
    },
  };
}

/** The function as deployed: settings from the runtime's environment. */
export function readinessApp(runtime: Runtime): Hono {
  return createReadinessApp({
    sql: runtime.sql,
    env: runtime.env,
    log: runtime.log,
    databaseProblem: runtime.databaseProblem,
  });
}
