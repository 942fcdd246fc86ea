// The forward-events function: drains due events within a time budget and answers with the summary.
// pg_cron (through pg_net) calls it on hosted Supabase; it authenticates the caller itself.
import { Hono } from "hono";
import { jsonError, notFoundJson } from "./http.ts";
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { errorMessage } from "./background.ts";
import { dbErrorCode, isTransientDbError, type Sql } from "./db.ts";
import { drain } from "./forwarder.ts";
import { budgetFailureReason, givenUpUnanswered, lastDbError } from "./ingest_store.ts";
import {
  type ForwarderConfig,
  forwarderConfigFromEnv,
  type ForwardEventsAuthConfig,
  forwardEventsAuthFromEnv,
} from "./forwarder_config.ts";
import type { Logger } from "./log.ts";
import { NO_DATABASE, type Runtime } from "./runtime.ts";
import { timingSafeEqualStrings } from "./signature.ts";

export const FUNCTION_NAME = "forward-events";
const DEFAULT_BUDGET_MS = 25_000;
const MAX_BUDGET_MS = 120_000;
/**
 * Events per call: hosted Supabase allows 2 s of CPU per request, and a delivery costs the forwarder
 * ~0.2 ms of CPU here (docs/benchmarks-history.md), so 2 000 stays well inside it on slower hardware too.
 * A longer backlog is worked off by the next scheduled calls (and by chatwoot-webhook's immediate attempts).
 */
const DEFAULT_MAX_EVENTS = 2_000;
const MAX_MAX_EVENTS = 100_000;

export interface ForwardEventsDeps {
  auth: ForwardEventsAuthConfig;
  forwarder: ForwarderConfig;
  sql: Sql | null;
  log: Logger;
  /** Why `sql` is null although a database is configured (Runtime.databaseProblem). */
  databaseProblem?: string | null;
  /** Passed to drain(): see Runtime.workerDeadline. */
  writeBackDeadline?: number;
}

export function createForwardEventsApp(deps: ForwardEventsDeps): Hono {
  const { auth, sql, log } = deps;
  const accepted = [...auth.forwarderTokens, auth.serviceRoleKey].filter((v): v is string => !!v);
  const app = new Hono({ strict: false });

  const fail = (c: Context, status: ContentfulStatusCode, error: string, message: string, extra = {}) => {
    log(status >= 500 ? "error" : "warn", "[Forward Events] Rejected", { status, error });
    return jsonError(c, status, error, message, extra);
  };

  app.all(`/${FUNCTION_NAME}`, async (c) => {
    if (c.req.method !== "POST") {
      c.header("Allow", "POST");
      return fail(c, 405, "method_not_allowed", "Only POST is accepted");
    }
    if (auth.problem) return fail(c, 503, "not_configured", auth.problem);
    if (accepted.length === 0) {
      return fail(c, 503, "not_configured", "Set FORWARDER_TOKEN (or SUPABASE_SERVICE_ROLE_KEY)");
    }
    const match = /^Bearer\s+(\S+)\s*$/i.exec(c.req.header("authorization") ?? "");
    let authorized = false;
    if (match) {
      // Compare against every accepted value, so timing does not tell which one (if any) matched.
      for (const candidate of accepted) {
        if (timingSafeEqualStrings(match[1], candidate)) authorized = true;
      }
    }
    if (!authorized) return fail(c, 401, "unauthorized", "Authorization: Bearer <FORWARDER_TOKEN> required");
    if (!sql) {
      return fail(c, 503, "not_configured", deps.databaseProblem ?? NO_DATABASE);
    }

    const budgetMs = boundedInt(c.req.query("budget_ms"), DEFAULT_BUDGET_MS, 0, MAX_BUDGET_MS);
    const batchSize = boundedInt(c.req.query("batch_size"), 10, 1, 100);
    const maxEvents = boundedInt(c.req.query("max_events"), DEFAULT_MAX_EVENTS, 1, MAX_MAX_EVENTS);
    try {
      const summary = await drain(sql, deps.forwarder, {
        budgetMs,
        batchSize,
        maxEvents,
        worker: FUNCTION_NAME,
        log,
        writeBackDeadline: deps.writeBackDeadline,
      });
      log(summary.ok ? "info" : "error", "[Forward Events] Drained", { ...summary });
      return c.json(summary, summary.ok ? 200 : 503);
    } catch (thrown) {
      // A write-back given up (out of budget) is judged by the database's last error, not by the give-up;
      // one that got no answer at all could not reach the database in time, as the webhook says it.
      const error = lastDbError(thrown);
      log("error", "[Forward Events] Drain failed", { error: errorMessage(error), code: dbErrorCode(error) });
      return givenUpUnanswered(thrown) || isTransientDbError(error)
        ? fail(c, 503, "database_unavailable", "Database unavailable", {
          reason: budgetFailureReason(thrown),
        })
        : fail(c, 500, "internal_error", "Drain failed");
    }
  });

  app.notFound(notFoundJson);
  return app;
}

function boundedInt(raw: string | undefined, fallback: number, min: number, max: number): number {
  // Blank (?max_events=, a URL template's unset variable) is unset: Number("") is 0, which read as the minimum.
  const value = raw === undefined || raw.trim() === "" ? NaN : Number(raw);
  return Number.isInteger(value) ? Math.min(max, Math.max(min, value)) : fallback;
}

/** The function as deployed: settings from the runtime's environment. */
export function forwardEventsApp(runtime: Runtime): Hono {
  return createForwardEventsApp({
    auth: forwardEventsAuthFromEnv(runtime.env),
    forwarder: forwarderConfigFromEnv(runtime.env),
    sql: runtime.sql,
    log: runtime.log,
    databaseProblem: runtime.databaseProblem,
    writeBackDeadline: runtime.workerDeadline,
  });
}
