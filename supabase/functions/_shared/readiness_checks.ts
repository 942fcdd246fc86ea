// Live checks behind `ready`: database and migrations, Chatwoot health, credentials present, API token works,
// webhook pipeline. Each one reports pass/warn/fail with a detail, is bounded by a timeout and runs in
// parallel with the others; results are cached briefly so monitors polling the page do not hammer Chatwoot.
import type { Row } from "postgres";
import { boundedTransaction, type BoundOptions, readOnlyProblem, type Sql } from "./db.ts";
import {
  isClockRefusal,
  isRefusalCode,
  lostEventsSince,
  REFUSAL_CODES,
  refusalAdvice,
  type RefusalCode,
} from "./lost_events.ts";
import {
  CREDENTIAL_PARAMETER,
  type Env,
  headerTokenProblem,
  httpUrlProblem,
  intFromEnv,
  namedStringFromEnv,
  secretValues,
  stringFromEnv,
  withoutSecrets,
} from "./env.ts";
import { KNOWN_EVENTS } from "./chatwoot_events.ts";
import { forwarderConfigFromEnv, NO_TARGET, sendingProblem } from "./forwarder_config.ts";
import { MIGRATION_VERSIONS } from "./migration_versions.ts";
import { webhookConfigFromEnv } from "./webhook_config.ts";
import {
  EDGE_WALL_CLOCK_MARGIN_MS,
  EDGE_WALL_CLOCK_MS,
  poolSizeFromEnv,
  WRITE_BACK_MIN_BUDGET_MS,
} from "./runtime.ts";
import { withTimeout } from "./timeout.ts";
import type { CheckResult, CheckStatus } from "./readiness_model.ts";

export interface ChatwootTarget {
  /** Without a trailing slash; null when unset or not an http(s) URL (see baseUrlProblem). */
  baseUrl: string | null;
  baseUrlProblem: string | null;
  apiToken: string | null;
  accountId: string | null;
  healthPath: string;
}

export interface ReadinessConfig {
  chatwoot: ChatwootTarget;
  /** null when READINESS_ADMIN_TOKEN is unset (PATCH answers 503); adminTokenProblem when it is too short. */
  adminToken: string | null;
  adminTokenProblem: string | null;
  checkTimeoutMs: number;
  cacheMs: number;
}

/** Environment names of the document's credentials, and the generic names that may supply them instead. */
export const CREDENTIAL_ALIASES: Record<string, string[]> = {
  CHATWOOT_TOKEN_PROD: ["CHATWOOT_API_TOKEN"],
  CHATWOOT_ACCOUNT_ID_PROD: ["CHATWOOT_ACCOUNT_ID"],
  CHATWOOT_BASE_URL_PROD: ["CHATWOOT_BASE_URL"],
  CHATWOOT_WEBHOOK_SECRET: [],
};

const MIN_ADMIN_TOKEN_LENGTH = 24;
/**
 * A GET answers within the checks' bound and 2 s: past 2 minutes the platform has ended the request (Supabase:
 * 150 s), and past 2^31 - 1 ms the timers fire at once, failing every check and the report as unanswered.
 */
const MAX_CHECK_TIMEOUT_MS = 120_000;
/**
 * The probe answers from this cache: longer than an hour, an uptime monitor would go on hearing what the
 * checks saw then (a database down since, a Chatwoot token revoked) for as long as the value says.
 */
const MAX_CACHE_SECONDS = 3600;
/**
 * The longest request timeout with which an Edge Function's drain can still claim a batch: the delivery and
 * WRITE_BACK_MIN_BUDGET_MS must end before the worker's deadline (forwarder.ts, batchFits). Longer, hosted
 * forwarding claimed nothing at all, and the only sign was a stall 5 minutes later that named no cause.
 */
export const MAX_EDGE_REQUEST_TIMEOUT_MS = EDGE_WALL_CLOCK_MS - EDGE_WALL_CLOCK_MARGIN_MS -
  WRITE_BACK_MIN_BUDGET_MS;

export function readinessConfigFromEnv(env: Env): ReadinessConfig {
  const rawBase = stringFromEnv(env, "CHATWOOT_BASE_URL", "CHATWOOT_BASE_URL_PROD");
  let baseUrl: string | null = null;
  let baseUrlProblem: string | null = null;
  if (rawBase) {
    baseUrlProblem = httpUrlProblem("CHATWOOT_BASE_URL", rawBase);
    if (!baseUrlProblem) baseUrl = new URL(rawBase).toString().replace(/\/+$/, "");
  }
  const healthPath = stringFromEnv(env, "CHATWOOT_HEALTH_PATH") ?? "/hc";
  const adminToken = stringFromEnv(env, "READINESS_ADMIN_TOKEN");
  // A token no client can present (an invisible character pasted with it) answered every PATCH 401, as if
  // the caller's token were wrong: refused as a setting instead, like a short one.
  const adminTokenProblem = adminToken && adminToken.length < MIN_ADMIN_TOKEN_LENGTH
    ? `READINESS_ADMIN_TOKEN must be at least ${MIN_ADMIN_TOKEN_LENGTH} characters`
    : headerTokenProblem("READINESS_ADMIN_TOKEN", adminToken);
  return {
    chatwoot: {
      baseUrl,
      baseUrlProblem,
      apiToken: stringFromEnv(env, "CHATWOOT_API_TOKEN", "CHATWOOT_TOKEN_PROD"),
      accountId: stringFromEnv(env, "CHATWOOT_ACCOUNT_ID", "CHATWOOT_ACCOUNT_ID_PROD"),
      healthPath: healthPath.startsWith("/") ? healthPath : `/${healthPath}`,
    },
    adminToken: adminToken && !adminTokenProblem ? adminToken : null,
    adminTokenProblem,
    checkTimeoutMs: intFromEnv(env, "READINESS_CHECK_TIMEOUT_MS", 3000, 1, MAX_CHECK_TIMEOUT_MS),
    cacheMs: intFromEnv(env, "READINESS_CACHE_SECONDS", 30, 0, MAX_CACHE_SECONDS) * 1000,
  };
}

/** Chatwoot's REST API as `deno task recover` calls it, every part set and usable. */
export interface ChatwootApiTarget {
  /** Without a trailing slash. */
  baseUrl: string;
  apiToken: string;
  accountId: string;
}

/**
 * The API target from the CHATWOOT_* settings alone (each or its _PROD name), or why not in one line naming
 * the setting read, never its value. Not readinessConfigFromEnv: a bad READINESS_* setting is not recover's.
 */
export function chatwootTargetFromEnv(
  env: Env,
): { target: ChatwootApiTarget; problem: null } | { target: null; problem: string } {
  const base = namedStringFromEnv(env, "CHATWOOT_BASE_URL", "CHATWOOT_BASE_URL_PROD");
  const token = namedStringFromEnv(env, "CHATWOOT_API_TOKEN", "CHATWOOT_TOKEN_PROD");
  const account = namedStringFromEnv(env, "CHATWOOT_ACCOUNT_ID", "CHATWOOT_ACCOUNT_ID_PROD");
  if (!base || !token || !account) {
    const unset = [
      !base && "CHATWOOT_BASE_URL (or CHATWOOT_BASE_URL_PROD)",
      !token && "CHATWOOT_API_TOKEN (or CHATWOOT_TOKEN_PROD)",
      !account && "CHATWOOT_ACCOUNT_ID (or CHATWOOT_ACCOUNT_ID_PROD)",
    ].filter(Boolean);
    return { target: null, problem: `Set ${unset.join(", ")} to read Chatwoot's API` };
  }
  const problem = httpUrlProblem(base.name, base.value) ??
    headerTokenProblem(token.name, token.value) ??
    // It goes into the API's paths: "1/../2" would read another account's. And recovered events carry it as a
    // number: past 2^53 it was rounded (9007199254740993 stored as …992), another account's id.
    (/^\d+$/.test(account.value) && Number.isSafeInteger(Number(account.value))
      ? null
      : `${account.name} must be a whole number (the account's id)`);
  if (problem) return { target: null, problem };
  return {
    target: {
      baseUrl: new URL(base.value).toString().replace(/\/+$/, ""),
      apiToken: token.value,
      accountId: account.value,
    },
    problem: null,
  };
}

export interface CheckDeps {
  sql: Sql | null;
  env: Env;
  config: ReadinessConfig;
  now: () => Date;
  fetch?: typeof fetch;
  /** The forwarding migration's view, in schema public; tests point it at views with chosen values. */
  deliveryHealthView?: string;
}

type Outcome = { status: CheckStatus; detail: string; proves?: string[]; data?: Record<string, unknown> };

class CheckTimeout extends Error {}

/**
 * Results that must not stand for their cache period: a database check that got no connection within its
 * bound said nothing of the database, only that the pool was busy (with DATABASE_POOL_SIZE=1, the GET's
 * read waiting on a lock) or could not connect. Kept, it was shown as the database not answering for
 * READINESS_CACHE_SECONDS; cachedChecks runs such a check again at the next call instead.
 */
const NOT_CACHED = new WeakSet<CheckResult>();

/**
 * An error's message with its causes': fetch says only "fetch failed", and why (connection refused, a DNS
 * name not found, a TLS error) is in its cause, which an operator needs to see.
 */
function errorText(error: unknown): string {
  const messages: string[] = [];
  for (let e: unknown = error, depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    // "error sending request from <the function's own address:port> for <url>": the page is public.
    const message = (e instanceof Error ? e.message : String(e)).replace(/ from \S+ for /g, " for ");
    if (message && !messages.includes(message)) messages.push(message);
    e = e instanceof Error ? e.cause : undefined;
  }
  return messages.join(": ");
}

function atMost(characters: number, text: string): string {
  return text.length > characters ? `${text.slice(0, characters - 1)}…` : text;
}

/**
 * Runs one check within `timeoutMs`; a thrown error or the timeout becomes a fail with the reason. A database
 * check runs its queries in boundedTransaction(`bound`): timed out still waiting for a connection, uncached.
 * The server ends that transaction at the timeout too: a query left waiting on a lock (a migration's) held its
 * pooled connection as long as the lock, and the next runs queued behind it and timed out as well.
 */
async function timed(
  name: string,
  title: string,
  deps: CheckDeps,
  run: (signal: AbortSignal, bound: BoundOptions) => Promise<Outcome>,
): Promise<CheckResult> {
  const checkedAt = deps.now();
  const started = performance.now();
  const controller = new AbortController();
  const wait = { waiting: false, abandoned: false };
  const timeoutMs = deps.config.checkTimeoutMs;
  const bound: BoundOptions = { wait, serverMs: () => timeoutMs };
  let outcome: Outcome;
  let noConnection = false;
  try {
    outcome = await withTimeout(run(controller.signal, bound), timeoutMs, () => {
      controller.abort();
      wait.abandoned = true;
      return new CheckTimeout();
    });
  } catch (error) {
    noConnection = error instanceof CheckTimeout && wait.waiting;
    outcome = {
      status: "fail",
      detail: noConnection
        ? `no database connection within ${timeoutMs} ms (every pooled connection busy, see ` +
          "DATABASE_POOL_SIZE, or the database not answering); not cached: the next request checks again"
        : error instanceof CheckTimeout
        ? `no answer within ${timeoutMs} ms`
        // The page is public: an error's text (fetch's quotes a header value it refused) shows no secret.
        // Cut after the secrets are masked, so no part of one survives the cut.
        : `error: ${atMost(500, withoutSecrets(errorText(error), secretValues(deps.env)))}`,
    };
  }
  const result: CheckResult = {
    name,
    title,
    status: outcome.status,
    detail: outcome.detail,
    checked_at: checkedAt.toISOString(),
    duration_ms: Math.round(performance.now() - started),
    proves: outcome.proves ?? [],
    ...(outcome.data ? { data: outcome.data } : {}),
  };
  if (noConnection) NOT_CACHED.add(result);
  return result;
}

// ---------------------------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------------------------

/** `result`, warning first when a setting was refused and its default is in use: `ready` stays false. */
function withDefaultWarning(result: CheckResult, warning: string | null): CheckResult {
  if (!warning) return result;
  const warned: CheckResult = {
    ...result,
    status: result.status === "pass" ? "warn" : result.status,
    detail: `${warning}; ${result.detail}`,
  };
  if (NOT_CACHED.has(result)) NOT_CACHED.add(warned);
  return warned;
}

export function checkDatabase(deps: CheckDeps): Promise<CheckResult> {
  // Every function's pool: a refused DATABASE_POOL_SIZE runs on the default (runtime.ts), said here.
  const poolWarning = poolSizeFromEnv(deps.env).warning;
  return timed("database", "Database reachable and migrations current", deps, async (_signal, bound) => {
    const sql = deps.sql;
    if (!sql) return { status: "fail", detail: "no database configured (SUPABASE_DB_URL or DATABASE_URL)" };
    const { rows, readOnly } = await boundedTransaction(sql, bound, async (tx) => {
      // Reachable is not enough: a read-only database answers every read and refuses every webhook's store.
      const readOnly = await readOnlyProblem(tx);
      const [{ has_history }] = await tx<{ has_history: boolean }[]>`
        select to_regclass('supabase_migrations.schema_migrations') is not null as has_history`;
      const rows = has_history
        ? [
          ...await tx<{ version: string }[]>`
            select version from supabase_migrations.schema_migrations order by version`,
        ]
        : null;
      return { rows, readOnly };
    });
    if (readOnly) return { status: "fail", detail: readOnly, data: { read_only: true } };
    if (!rows) {
      return {
        status: "fail",
        detail: "database reachable, but supabase_migrations.schema_migrations is missing",
      };
    }
    const applied = new Set(rows.map((r) => r.version));
    const expected = new Set(MIGRATION_VERSIONS);
    const missing = MIGRATION_VERSIONS.filter((v) => !applied.has(v));
    const unknown = [...applied].filter((v) => !expected.has(v));
    const data = { applied: applied.size, expected: MIGRATION_VERSIONS.length, missing, unknown };
    if (missing.length > 0) {
      return { status: "fail", detail: `migrations not applied: ${missing.join(", ")}`, data };
    }
    if (unknown.length > 0) {
      return {
        status: "warn",
        detail: `database has migrations this function does not know (deploy the function?): ${
          unknown.join(", ")
        }`,
        data,
      };
    }
    return {
      status: "pass",
      detail: `reachable; all ${MIGRATION_VERSIONS.length} migrations applied (latest ${
        MIGRATION_VERSIONS.at(-1)
      })`,
      data,
    };
  }).then((result) => withDefaultWarning(result, poolWarning));
}

async function httpGet(deps: CheckDeps, url: string, headers: Record<string, string>, signal: AbortSignal) {
  const response = await (deps.fetch ?? fetch)(url, { headers, signal, redirect: "manual" });
  await response.body?.cancel().catch(() => {});
  return { status: response.status, json: /\bjson\b/i.test(response.headers.get("content-type") ?? "") };
}

/** `url` as the public page may show it: no user:password, and credential query parameters as ***. */
function withoutCredentials(url: string): string {
  const u = new URL(url);
  u.username = "";
  u.password = "";
  // A gateway's key in CHATWOOT_BASE_URL's query (?token=, ?api_key=) is as secret as a password (secretValues).
  return u.toString().replace(CREDENTIAL_PARAMETER, (_, name: string) => `${name}***`);
}

export function checkChatwootHealth(deps: CheckDeps): Promise<CheckResult> {
  const { baseUrl, baseUrlProblem, healthPath } = deps.config.chatwoot;
  return timed("chatwoot_health", "Chatwoot health endpoint", deps, async (signal) => {
    if (baseUrlProblem) return { status: "fail", detail: baseUrlProblem };
    if (!baseUrl) {
      return { status: "warn", detail: "not configured: set CHATWOOT_BASE_URL (or CHATWOOT_BASE_URL_PROD)" };
    }
    const { status } = await httpGet(deps, `${baseUrl}${healthPath}`, {}, signal);
    // The page is public: a base URL's user:password (basic auth in front of Chatwoot) is never shown.
    const data = { url: withoutCredentials(`${baseUrl}${healthPath}`), http_status: status };
    return status === 200
      ? {
        status: "pass",
        detail: `GET ${healthPath} answered 200`,
        proves: ["task-3", "validation-1", "blocker-2"],
        data,
      }
      : { status: "fail", detail: `GET ${healthPath} answered ${status}, expected 200`, data };
  });
}

/**
 * Presence only: reports which environment name supplied each credential, never a value. The webhook secret
 * is present as the chatwoot-webhook function reads it: a signing secret, or for Chatwoot versions that cannot
 * sign (docs/chatwoot-contract.md) a URL token; a setting that function refuses supplies nothing.
 */
export function checkCredentials(deps: CheckDeps, credentialNames: string[]): Promise<CheckResult> {
  return timed("chatwoot_credentials", "Credentials present", deps, () => {
    const present: Record<string, string> = {};
    const missing: string[] = [];
    const problems: string[] = [];
    for (const name of credentialNames) {
      if (name === "CHATWOOT_WEBHOOK_SECRET") {
        const webhook = webhookConfigFromEnv(deps.env);
        if (webhook.ok) {
          present[name] = webhook.config.secrets.length > 0 ? name : "CHATWOOT_WEBHOOK_URL_TOKEN";
        } else {
          missing.push(name);
          // Set but refused (a short URL token): why. The message names settings, never values.
          const set = ["CHATWOOT_WEBHOOK_SECRET", "CHATWOOT_WEBHOOK_URL_TOKEN"].some((n) =>
            deps.env[n]?.trim()
          );
          if (set) problems.push(webhook.message);
        }
        continue;
      }
      const source = [name, ...(CREDENTIAL_ALIASES[name] ?? [])].find((n) => deps.env[n]?.trim());
      if (source) present[name] = source;
      else missing.push(name);
    }
    const data = { present, missing };
    const urlToken = present.CHATWOOT_WEBHOOK_SECRET === "CHATWOOT_WEBHOOK_URL_TOKEN"
      ? " (CHATWOOT_WEBHOOK_SECRET as a URL token, CHATWOOT_WEBHOOK_URL_TOKEN: unsigned, so prefer a signature)"
      : "";
    return Promise.resolve(
      missing.length === 0
        ? { status: "pass" as const, detail: `all ${credentialNames.length} present${urlToken}`, data }
        : {
          status: "fail" as const,
          detail: [`missing: ${missing.map(missingCredentialText).join(", ")}`, ...problems].join("; "),
          data,
        },
    );
  });
}

/**
 * A missing credential as the user would set it: the generic name the README's deploy steps use first, the
 * document's *_PROD name beside it, as the other checks name them.
 */
function missingCredentialText(name: string): string {
  const generic = CREDENTIAL_ALIASES[name] ?? [];
  return generic.length > 0 ? `${generic.join(", ")} (or ${name})` : name;
}

/**
 * GET /api/v1/accounts/{account_id} with the api_access_token header (Chatwoot's Application API "Get account
 * details"): a 200 proves that the token authenticates and that it belongs to the configured account.
 */
export function checkChatwootApi(deps: CheckDeps): Promise<CheckResult> {
  const { baseUrl, baseUrlProblem, apiToken, accountId } = deps.config.chatwoot;
  return timed("chatwoot_api", "Chatwoot API token works", deps, async (signal) => {
    if (baseUrlProblem) return { status: "fail", detail: baseUrlProblem };
    const unset = [
      !baseUrl && "CHATWOOT_BASE_URL",
      !apiToken && "CHATWOOT_API_TOKEN",
      !accountId && "CHATWOOT_ACCOUNT_ID",
    ].filter(Boolean);
    if (unset.length > 0) {
      return { status: "warn", detail: `not configured: set ${unset.join(", ")} (or their *_PROD names)` };
    }
    if (!/^\d+$/.test(accountId!)) return { status: "fail", detail: "CHATWOOT_ACCOUNT_ID must be a number" };
    const tokenProblem = headerTokenProblem("CHATWOOT_API_TOKEN", apiToken);
    if (tokenProblem) return { status: "fail", detail: tokenProblem };
    const path = `/api/v1/accounts/${accountId}`;
    const { status, json } = await httpGet(
      deps,
      `${baseUrl}${path}`,
      { api_access_token: apiToken! },
      signal,
    );
    const data = { path, http_status: status };
    // Chatwoot answers every /app/… path with its dashboard page, 200 whatever the token: a base URL copied
    // from the browser's address bar passed here, and proved a token never checked.
    if (status === 200 && !json) {
      return {
        status: "fail",
        detail:
          `GET ${path} answered 200 but not JSON, so not Chatwoot's API: CHATWOOT_BASE_URL must be the ` +
          "instance's address without a path such as /app/…",
        data,
      };
    }
    if (status === 200) {
      return { status: "pass", detail: `GET ${path} answered 200`, proves: ["task-5", "validation-2"], data };
    }
    const why = status === 401
      ? "token rejected"
      : status === 403
      ? "token lacks access to this account"
      : status === 404
      ? "account not found"
      : "unexpected answer";
    return { status: "fail", detail: `GET ${path} answered ${status}: ${why}`, data };
  });
}

/** Columns the forwarding migration's view promises (its contract with this check). */
export const DELIVERY_HEALTH_COLUMNS = [
  "backlog",
  "oldest_pending_at",
  "oldest_pending_age_seconds",
  "dead_count",
  "last_success_at",
  "last_failure_at",
  "failing_since",
  "escalate",
  "paused",
  "stalled_since",
  "dead_unacknowledged",
] as const;

const num = (value: unknown) => value === null || value === undefined ? null : Number(value);
const iso = (value: unknown) =>
  value instanceof Date ? value.toISOString() : (value as string | null) ?? null;

/**
 * What public.relay_settings.forward_events forwards less than it seems to: names of no event the webhook
 * knows (a typo such as message_create), and a list that forwards none. Such events are stored 'skipped' and
 * the replay functions take only dead ones, so it is said here rather than found out from the Agent SDK.
 * Names are shown quoted (a trailing space shows), at most 10 and 64 characters each: the page is public.
 */
export function forwardEventsWarnings(listed: (string | null)[]): string[] {
  const known = new Set<string | null>(KNOWN_EVENTS);
  const unknown = listed.filter((name) => !known.has(name));
  const warnings: string[] = [];
  if (unknown.length === listed.length) {
    warnings.push(
      "public.relay_settings.forward_events forwards no known event: every webhook is stored 'skipped', none " +
        "is sent",
    );
  }
  if (unknown.length > 0) {
    const show = (name: string | null) =>
      name === null ? "null" : JSON.stringify(name.length > 64 ? `${name.slice(0, 64)}…` : name);
    const more = unknown.length > 10 ? ` and ${unknown.length - 10} more` : "";
    warnings.push(
      `public.relay_settings.forward_events lists ${unknown.slice(0, 10).map(show).join(", ")}${more}, no ` +
        `event the webhook knows (it knows ${KNOWN_EVENTS.join(", ")}); such names forward nothing`,
    );
  }
  return warnings;
}

/** Refusals a wrong secret or URL token would cause (chatwoot_webhook.ts): anyone's, so never recorded. */
const MISMATCH_REASONS = ["signature_invalid", "token_invalid"];
/** Minutes with such refusals since the last verified webhook before they warn (checkWebhookPipeline). */
const MISMATCH_MINUTES_TO_WARN = 2;
const plural = (n: number, what: string, ending: string) => `${n} ${what}${n === 1 ? "" : ending}`;

export function checkWebhookPipeline(deps: CheckDeps): Promise<CheckResult> {
  return timed("webhook_pipeline", "Webhook pipeline", deps, async (_signal, bound) => {
    const sql = deps.sql;
    if (!sql) return { status: "fail", detail: "no database configured" };
    const now = deps.now();
    const view = deps.deliveryHealthView ?? "webhook_delivery_health";
    const since = new Date(now.getTime() - 24 * 3600_000);
    const read = await boundedTransaction(sql, bound, async (tx) => {
      const [intake] = await tx<
        {
          last_received_at: Date | null;
          events_24h: string;
          rejections_24h: Record<string, number>;
          forwarding_installed: boolean;
          lost_installed: boolean;
          lost_read_installed: boolean;
          lost_ack_installed: boolean;
        }[]
      >`
      -- Per status, so that each term reads an index of its own (the delivered and skipped rows, nearly all
      -- of a big table, through webhook_events_prunable_idx), as webhook_pipeline_health does: a term over the
      -- whole table scanned all of it at every uncached request (0.3-0.8 s at 1 M events). An event recovered
      -- from Chatwoot's API (deno task recover) came by no webhook: it is counted, but proves nothing.
      select
        greatest(
          (select max(e.last_received_at) from public.webhook_events e
            where e.status in ('delivered', 'skipped') and e.verified_by <> 'chatwoot_api'),
          (select max(e.last_received_at) from public.webhook_events e
            where e.status = 'pending' and e.verified_by <> 'chatwoot_api'),
          (select max(e.last_received_at) from public.webhook_events e
            where e.status = 'delivering' and e.verified_by <> 'chatwoot_api'),
          (select max(e.last_received_at) from public.webhook_events e
            where e.status = 'dead' and e.verified_by <> 'chatwoot_api')
        ) as last_received_at,
        (select count(*) from public.webhook_events e
          where e.status in ('delivered', 'skipped') and e.last_received_at > ${since}::timestamptz)
        + (select count(*) from public.webhook_events e
            where e.status = 'pending' and e.last_received_at > ${since}::timestamptz)
        + (select count(*) from public.webhook_events e
            where e.status = 'delivering' and e.last_received_at > ${since}::timestamptz)
        + (select count(*) from public.webhook_events e
            where e.status = 'dead' and e.last_received_at > ${since}::timestamptz) as events_24h,
        (select coalesce(jsonb_object_agg(reason, total), '{}'::jsonb) from (
          select reason, sum(count)::int as total from public.webhook_rejections
           where minute > ${now}::timestamptz - interval '24 hours' group by reason) r) as rejections_24h,
        to_regclass(${"public." + view}) is not null as forwarding_installed,
        to_regclass('public.webhook_lost_events') is not null as lost_installed,
        to_regprocedure('public.webhook_lost_events_since(timestamptz)') is not null
          as lost_read_installed,
        to_regprocedure('public.acknowledge_lost_events()') is not null as lost_ack_installed`;
      // Events the webhook gave up on (README, "Lost events"); the table comes with a later migration, the
      // function that reads it without JIT (lostEventsSince) with a later one still.
      const lost = intake.lost_installed
        ? await lostEventsSince(tx, since, intake.lost_read_installed)
        : null;
      // Refusals that a wrong secret or token would cause, since the last verified webhook (per reason), and
      // in how many minutes (webhook_rejections' rows): after it, the secret held may no longer be Chatwoot's.
      const [mismatch] = await tx<{ since_verified: Record<string, number>; minutes: number }[]>`
        with since_verified as (
          select minute, reason, count from public.webhook_rejections
           where minute > ${now}::timestamptz - interval '24 hours'
             and reason in ('signature_invalid', 'token_invalid')
             and (${intake.last_received_at}::timestamptz is null
                  or last_rejected_at > ${intake.last_received_at}::timestamptz))
        select (select coalesce(jsonb_object_agg(r.reason, r.total), '{}'::jsonb)
                  from (select reason, sum(count)::int as total from since_verified group by reason) r)
                 as since_verified,
               (select count(distinct minute)::int from since_verified) as minutes`;
      // Read in the same transaction, under the same bound, when the view exists.
      const health = intake.forwarding_installed
        ? await tx<Row[]>`select * from ${tx("public." + view)}`
        : null;
      const [settings] = intake.forwarding_installed
        ? await tx<
          {
            agent_sdk_url_override: string | null;
            forward_events: (string | null)[];
            request_timeout_ms: number;
          }[]
        >`
          select agent_sdk_url_override, forward_events, request_timeout_ms from public.relay_settings where id`
        : [];
      return {
        intake,
        lost,
        mismatchesSinceVerified: mismatch.since_verified,
        mismatchMinutes: mismatch.minutes,
        health,
        override: settings?.agent_sdk_url_override ?? null,
        forwardEvents: settings?.forward_events ?? null,
        requestTimeoutMs: settings?.request_timeout_ms ?? null,
      };
    });
    const { intake, lost, mismatchesSinceVerified, mismatchMinutes, health, override, forwardEvents } = read;
    const { requestTimeoutMs } = read;

    const lastVerified = iso(intake.last_received_at);
    const data: Record<string, unknown> = {
      last_verified_webhook_at: lastVerified,
      events_24h: Number(intake.events_24h),
      rejections_24h: intake.rejections_24h,
      forwarding_installed: intake.forwarding_installed,
      lost_24h: lost ? lost.count : null,
      lost_24h_missing: lost ? lost.missing : null,
      lost_24h_acknowledged: lost ? lost.acknowledged : null,
      lost_24h_missing_by_code: lost
        ? Object.fromEntries(Object.entries(lost.missing_by_code ?? {}).map(([code, m]) => [code, m.missing]))
        : null,
      secret_mismatches_since_verified: MISMATCH_REASONS.reduce(
        (n, r) => n + (mismatchesSinceVerified[r] ?? 0),
        0,
      ),
      secret_mismatch_minutes_since_verified: mismatchMinutes,
      delivery: null,
    };
    // Every event a webhook stored passed the signature (or URL token) and the payload schema, so one having
    // arrived proves the endpoint is configured in Chatwoot and its payloads validate.
    const proves = lastVerified ? ["task-9", "inbox-4", "validation-3"] : [];
    const warnings: string[] = [];
    const failures: string[] = [];
    const parts = [
      lastVerified ? `last verified webhook ${lastVerified}` : "no verified webhook received yet",
      `${data.events_24h} event${data.events_24h === 1 ? "" : "s"} in 24 h`,
    ];
    if (!lastVerified) warnings.push("no verified webhook received yet");
    // Knobs of the webhook function refused and replaced by their default: webhooks are taken, but the typo
    // keeps `ready` false until it is fixed (setting and default named, never the value).
    warnings.push(...webhookConfigFromEnv(deps.env).warnings);
    const rejected = Object.values(intake.rejections_24h).reduce((a, b) => a + b, 0);
    if (rejected > 0) parts.push(`${rejected} rejected in 24 h`);
    // A refused signature or token is nobody's event (anyone can send one), but after the last verified
    // webhook it may be Chatwoot's: a secret rotated on one side only, and every event since lost. One probe
    // (a stranger's curl with a bogus signature or ?token=) must not page the uptime monitor until the next
    // verified webhook, hours on a quiet night: a real rotation refuses every event Chatwoot sends, which soon
    // fills a second minute (webhook_rejections counts per minute), so it warns from two minutes on, and says
    // fewer as text. With verified webhooks after them, the secret is right: a scanner or a second sender.
    const mismatchText = (counts: Record<string, number>) =>
      MISMATCH_REASONS.filter((r) => counts[r]).map((r) => `${r}: ${counts[r]}`).join(", ");
    const mismatchesSince = data.secret_mismatches_since_verified as number;
    const mismatches24h = MISMATCH_REASONS.reduce((n, r) => n + (intake.rejections_24h[r] ?? 0), 0);
    const minutes = plural(mismatchMinutes, "minute", "s");
    if (mismatchesSince > 0 && mismatchMinutes >= MISMATCH_MINUTES_TO_WARN) {
      warnings.push(
        `${plural(mismatchesSince, "secret or token mismatch", "es")} since the last verified webhook ` +
          `(${lastVerified ?? "none yet"}), in ${minutes} (${mismatchText(mismatchesSinceVerified)}): ` +
          "Chatwoot may sign with a secret, or call a ?token=, the relay does not hold, and every event it " +
          "sends is refused and lost; check CHATWOOT_WEBHOOK_SECRET (the webhook's secret in Chatwoot) and " +
          "CHATWOOT_WEBHOOK_URL_TOKEN (the ?token= of its URL); to rotate, list both, comma-separated, " +
          "old,new, then the new alone once Chatwoot uses it (README, Operations); what was lost " +
          "meanwhile: deno task recover --since <then> --store",
      );
    } else if (mismatchesSince > 0) {
      parts.push(
        `${plural(mismatchesSince, "secret or token refusal", "s")} since the last verified webhook, in ` +
          `${minutes} (${
            mismatchText(mismatchesSinceVerified)
          }; a warning from ${MISMATCH_MINUTES_TO_WARN} ` +
          "minutes on: a probe, or a rotation's first refusals)",
      );
    } else if (mismatches24h > 0) {
      parts.push(
        `${plural(mismatches24h, "secret or token refusal", "s")} in 24 h, none since the last verified ` +
          "webhook (scanners, or a second sender)",
      );
    }
    // Chatwoot does not send an account webhook again: each lost event is missing until it is recovered, and
    // only then: a warning that outlived the recovery kept the probe at 503 for the rest of the 24 h.
    if (lost && lost.count > 0) {
      const plural = (n: number) => `${n} event${n === 1 ? "" : "s"}`;
      // Missing ones recorded before acknowledge_lost_events() were looked at and let be: said, no warning.
      const madeGood = lost.count - lost.missing - lost.acknowledged;
      const since = [
        ...(madeGood > 0 ? [`${madeGood} stored since`] : []),
        ...(lost.acknowledged > 0 ? [`${lost.acknowledged} acknowledged`] : []),
      ];
      parts.push(`${plural(lost.count)} lost in 24 h` + (since.length > 0 ? ` (${since.join(", ")})` : ""));
      // What is left when nothing can fetch a loss back (migration 010000): or it warns for its 24 h.
      const acknowledge = intake.lost_ack_installed
        ? "; once looked at, and if nothing more can be done, acknowledge them: select " +
          "public.acknowledge_lost_events(); (README, Acknowledge lost events)"
        : "";
      // Per cause: what the database made us lose, and what we refused of Chatwoot's (what to do differs).
      const byCode = Object.entries(lost.missing_by_code ?? {});
      const refused = byCode.filter(([code]) => isRefusalCode(code));
      const latest = (rows: typeof byCode) =>
        rows.flatMap(([, m]) => m.last ? [new Date(m.last).toISOString()] : []).sort().at(-1) ??
          iso(lost.last_lost_at);
      // The recover_command of a cause's latest missing loss that has one: the overall latest
      // (lost.recover_command) may be another cause's, a refusal's window under the database's warning.
      const latestCommand = (rows: typeof byCode) =>
        rows.filter(([, m]) => m.recover_command && m.recover_lost_at)
          .sort(([, a], [, b]) => Date.parse(a.recover_lost_at!) - Date.parse(b.recover_lost_at!))
          .at(-1)?.[1].recover_command ?? null;
      const databaseMissing = lost.missing - refused.reduce((n, [, m]) => n + m.missing, 0);
      if (databaseMissing > 0) {
        const ours = byCode.filter(([code]) => !isRefusalCode(code));
        const last = latest(ours);
        const command = latestCommand(ours);
        warnings.push(
          `${
            plural(databaseMissing)
          } lost in 24 h (last ${last}): not stored, the database did not answer; ` +
            "recover them from Chatwoot's API with each row's recover_command in public.webhook_lost_events" +
            (command ? ` (latest: ${command})` : "") + acknowledge,
        );
      }
      // Timestamps (a clock) and bodies (a payload to report): a warning each, its codes counted.
      for (const kind of [isClockRefusal, (code: string) => !isClockRefusal(code)]) {
        const rows = REFUSAL_CODES.filter(kind).flatMap((code) => refused.filter(([c]) => c === code));
        const n = rows.reduce((sum, [, m]) => sum + m.missing, 0);
        if (n === 0) continue;
        const codes = rows.map(([code, m]) => `${code}: ${m.missing}`).join(", ");
        const command = latestCommand(rows);
        // Only a message_created carries a command: without one, nothing here can be fetched back, and the
        // warning stays for its 24 h (said, rather than sending the operator to recover for nothing).
        const recover = !command
          ? "none of them is a message_created with its message's id (deno task recover fetches no other " +
            "event): they stay " +
            "missing for 24 h unless stored again (a message_updated, by a later edit of its message)"
          : "recover the message_created among them with each row's recover_command in " +
            `public.webhook_lost_events (latest: ${command})`;
        warnings.push(
          `${plural(n)} refused and lost in 24 h (${codes}) (last ${latest(rows)}): ` +
            `${refusalAdvice(rows[0][0] as RefusalCode)}; ${recover}${acknowledge}`,
        );
      }
    }

    if (!intake.forwarding_installed) {
      warnings.push(`forwarding not installed (public.${view} is missing)`);
    } else {
      // This function has the forwarders' settings (a project's secrets are every function's): one no request
      // can use is named at once, not 5 minutes later as a stall. Without any target, events are kept unsent.
      const problem = sendingProblem(forwarderConfigFromEnv(deps.env), override);
      if (problem === NO_TARGET) warnings.push(`forwarding has ${problem}; events are stored, not sent`);
      else if (problem) failures.push(`forwarding cannot send: ${problem}`);
      if (forwardEvents) warnings.push(...forwardEventsWarnings(forwardEvents));
      if (requestTimeoutMs !== null && requestTimeoutMs > MAX_EDGE_REQUEST_TIMEOUT_MS) {
        warnings.push(
          `public.relay_settings.request_timeout_ms is over ${MAX_EDGE_REQUEST_TIMEOUT_MS}: a delivery and its ` +
            "write-back cannot fit in an Edge Function's worker (150 s, less a margin), so forward-events and " +
            "the webhook's immediate delivery claim nothing; only deno task forward sends",
        );
      }
      const rows = health!;
      const missing = DELIVERY_HEALTH_COLUMNS.filter((c) => !rows.columns.some((col) => col.name === c));
      if (missing.length > 0) {
        failures.push(`${view} lacks columns ${missing.join(", ")}`);
      } else if (rows.length !== 1) {
        failures.push(`${view} returned ${rows.length} rows, expected 1`);
      } else {
        const h = rows[0];
        const delivery = {
          backlog: num(h.backlog),
          oldest_pending_at: iso(h.oldest_pending_at),
          oldest_pending_age_seconds: num(h.oldest_pending_age_seconds),
          dead_count: num(h.dead_count),
          last_success_at: iso(h.last_success_at),
          last_failure_at: iso(h.last_failure_at),
          failing_since: iso(h.failing_since),
          escalate: Boolean(h.escalate),
          paused: Boolean(h.paused),
          stalled_since: iso(h.stalled_since),
          dead_unacknowledged: num(h.dead_unacknowledged),
        };
        data.delivery = delivery;
        const dead = delivery.dead_count ?? 0;
        const unacknowledged = delivery.dead_unacknowledged ?? dead;
        parts.push(
          `backlog ${delivery.backlog}`,
          `dead ${dead}${dead > 0 && unacknowledged === 0 ? " (acknowledged)" : ""}`,
        );
        // escalate is failing for 5 minutes, or stalled: events a claim would take, and no forwarder at work. A
        // 410 is no failure there (the Agent SDK refusing an event: it is dead, and warns below).
        if (delivery.escalate && delivery.stalled_since) {
          failures.push(
            `forwarding stalled since ${delivery.stalled_since}: events are due and no forwarder has claimed ` +
              "one for 5 minutes (is the forwarder scheduled, its FORWARDER_TOKEN right, and AGENT_SDK_URL and " +
              "AGENT_SDK_TOKEN usable? its log says; escalate per runbook)",
          );
        } else if (delivery.escalate) {
          failures.push(
            `Agent SDK deliveries failing since ${delivery.failing_since} (escalate per runbook)`,
          );
        }
        if (delivery.paused) warnings.push("forwarding is paused");
        // Dead events the operator has let be (relay_settings.dead_acknowledged_at) no longer hold `ready` back:
        // else one event the Agent SDK refused for good (410) kept the probe at 503 forever.
        if (unacknowledged > 0) warnings.push(`${unacknowledged} dead events (replay, or acknowledge them)`);
      }
    }
    const status: CheckStatus = failures.length > 0 ? "fail" : warnings.length > 0 ? "warn" : "pass";
    const detail = [...failures, ...warnings.filter((w) => !parts.includes(w)), ...parts].join("; ");
    return { status, detail, proves, data };
  });
}

// ---------------------------------------------------------------------------------------------------------
// Running them
// ---------------------------------------------------------------------------------------------------------

/** The checks that read the database or call Chatwoot, in order: none needs anything from the checklist. */
const IO_CHECKS = [checkDatabase, checkChatwootHealth, checkChatwootApi, checkWebhookPipeline];

/** The five checks in their order on the page: the credentials check (no I/O) third. */
async function withCredentialsCheck(
  io: Promise<CheckResult[]>,
  credentials: Promise<CheckResult>,
): Promise<CheckResult[]> {
  const [[database, health, api, pipeline], present] = await Promise.all([io, credentials]);
  return [database, health, present, api, pipeline];
}

/**
 * One run of the checks per `config.cacheMs` (by the injected clock), shared by concurrent callers. Calling
 * it starts the checks that do I/O at once (or joins the cached run), before the checklist is read: a GET
 * runs them beside its read, so it answers within the longer of the two bounds, not their sum, and each check
 * has its whole bound whatever the read takes (a slow read does not cache a check cut short). The function it
 * returns adds the credentials check for the checklist's names once they are read, kept while the names stay
 * the same. Not the first names of the cache period: a credential row added, renamed or removed since (a
 * migration, the SQL editor) was answered for by the old names, "all 4 present" beside a fifth row unset.
 *
 * A database check that got no connection within its bound (NOT_CACHED) is not kept: the next call runs
 * it again, the others staying cached. On a pool of one, the checks of a new cache period queue behind what
 * holds the connection (the shared read, a PATCH, waiting on a lock), and such a timeout was kept for the
 * period as the database not answering.
 */
export function cachedChecks(deps: CheckDeps): () => (credentialNames: string[]) => Promise<CheckResult[]> {
  type All = { names: string; io: Promise<CheckResult[]>; checks: Promise<CheckResult[]> };
  /** One check's run; `again` once it ended with a result not to keep. */
  type Run = { result: Promise<CheckResult>; again: boolean };
  type Entry = { at: number; runs: Run[]; io: Promise<CheckResult[]>; all: All | null };
  let cached: Entry | null = null;
  const start = (entry: Entry, index: number): Run => {
    const run: Run = { result: IO_CHECKS[index](deps), again: false };
    run.result.then((result) => {
      if (NOT_CACHED.has(result)) run.again = true;
    }, () => {
      // A run that throws (it should not: each check catches) must not stay cached.
      if (cached === entry) cached = null;
    });
    return run;
  };
  const join = (entry: Entry) => {
    entry.io = Promise.all(entry.runs.map((run) => run.result));
    // Its failure is its callers' (a GET whose read failed first never asks for it): never unhandled.
    entry.io.catch(() => {});
  };
  return () => {
    const now = deps.now().getTime();
    // A run stamped in the future (the clock stepped back since) is stale, not fresh until the clock catches up.
    const age = cached ? now - cached.at : -1;
    let entry = cached;
    if (!entry || age < 0 || age >= deps.config.cacheMs) {
      const fresh: Entry = { at: now, runs: [], io: Promise.resolve([]), all: null };
      fresh.runs = IO_CHECKS.map((_, index) => start(fresh, index));
      join(fresh);
      cached = entry = fresh;
    } else if (entry.runs.some((run) => run.again)) {
      const current = entry;
      current.runs = current.runs.map((run, index) => run.again ? start(current, index) : run);
      join(current);
    }
    const current = entry;
    const io = current.io;
    return (credentialNames) => {
      // The check is the environment's answer for these names, no I/O: made again when they differ.
      const names = JSON.stringify(credentialNames);
      if (current.all?.names !== names || current.all.io !== io) {
        const checks = withCredentialsCheck(io, checkCredentials(deps, credentialNames));
        current.all = { names, io, checks };
      }
      return current.all.checks;
    };
  };
}
