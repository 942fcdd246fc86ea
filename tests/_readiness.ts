// Shared parts of the readiness tests: a Chatwoot stand-in (a real HTTP server on loopback), environments,
// and database helpers.
import type { Sql } from "../supabase/functions/_shared/db.ts";
import { DELIVERY_HEALTH_COLUMNS } from "../supabase/functions/_shared/readiness_checks.ts";

export const SEED_PATH = new URL("../docs/seeds/chatwoot_readiness.md", import.meta.url);
export const STAND_IN_TOKEN = "stand-in-token-0123456789";
export const STAND_IN_ACCOUNT = "7";
export const ADMIN_TOKEN = "admin-token-for-tests-0123456789abcdef";

export interface ChatwootStandIn {
  url: string;
  /**
   * What GET /hc answers; "slow" waits until the client gives up; "held" holds the answer (200) until
   * letGo(), whether the client has given up or not.
   */
  health: number | "slow" | "held";
  /** What GET /api/v1/accounts/<id> answers for the right token ("slow" and "held" as above). */
  api: number | "slow" | "held";
  requests: Array<{ path: string; token: string | null }>;
  /** Requests "held" now, not yet let go. */
  held: number;
  /** Lets every request held now go (each answers 200). */
  letGo(): void;
  close(): Promise<void>;
}

function waitForAbort(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    signal.addEventListener("abort", () => resolve(), { once: true });
    // Upper bound, so a client that never disconnects cannot keep the server open.
    setTimeout(resolve, 10_000);
  });
}

/** Chatwoot's health endpoint and its account API, with the real token check (401 for a wrong token). */
export function startChatwootStandIn(): ChatwootStandIn {
  let gate = Promise.withResolvers<void>();
  const standIn: Omit<ChatwootStandIn, "url" | "close"> = {
    health: 200,
    api: 200,
    requests: [],
    held: 0,
    letGo() {
      gate.resolve();
      gate = Promise.withResolvers<void>();
    },
  };
  /** Held until letGo(), or 30 s so that a failing test cannot keep the server open. */
  const hold = async () => {
    standIn.held++;
    let cap: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([gate.promise, new Promise((resolve) => (cap = setTimeout(resolve, 30_000)))]);
    } finally {
      clearTimeout(cap);
      standIn.held--;
    }
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const path = new URL(req.url).pathname;
    const token = req.headers.get("api_access_token");
    standIn.requests.push({ path, token });
    if (path === "/hc") {
      if (standIn.health === "slow") {
        await waitForAbort(req.signal);
        return new Response("late");
      }
      if (standIn.health === "held") {
        await hold();
        return new Response("woot");
      }
      return new Response(standIn.health === 200 ? "woot" : "unavailable", { status: standIn.health });
    }
    const account = /^\/api\/v1\/accounts\/(\d+)$/.exec(path);
    if (account) {
      if (token !== STAND_IN_TOKEN) {
        return Response.json({ errors: ["You need to sign in or sign up before continuing."] }, {
          status: 401,
        });
      }
      if (account[1] !== STAND_IN_ACCOUNT) {
        return Response.json({ error: "Resource could not be found" }, { status: 404 });
      }
      if (standIn.api === "slow") {
        await waitForAbort(req.signal);
        return new Response("late");
      }
      if (standIn.api === "held") {
        await hold();
        return Response.json({ id: Number(account[1]), name: "Hot Rod AN" });
      }
      return Response.json({ id: Number(account[1]), name: "Hot Rod AN" }, { status: standIn.api });
    }
    return new Response("not found", { status: 404 });
  });
  return Object.assign(standIn, {
    url: `http://127.0.0.1:${server.addr.port}`,
    close: () => server.shutdown(),
  }) as ChatwootStandIn;
}

/** Every credential and setting configured, pointing at the stand-in. */
export function fullEnv(standInUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    CHATWOOT_BASE_URL: standInUrl,
    CHATWOOT_BASE_URL_PROD: standInUrl,
    CHATWOOT_API_TOKEN: STAND_IN_TOKEN,
    CHATWOOT_ACCOUNT_ID: STAND_IN_ACCOUNT,
    CHATWOOT_WEBHOOK_SECRET: "webhook-secret-for-tests",
    READINESS_ADMIN_TOKEN: ADMIN_TOKEN,
    // Where forwarding goes (the webhook_pipeline check names a missing or unusable one); never called here.
    AGENT_SDK_URL: "http://agent-sdk.invalid",
    ...extra,
  };
}

/**
 * Makes sure public.webhook_delivery_health exists. Until the forwarding migration is merged it does not, and a
 * stand-in with exactly the contract's columns (healthy values) is created; afterwards the real view is used.
 * Either way the contract's columns must be there.
 */
export async function ensureDeliveryHealthView(sql: Sql): Promise<"real" | "stand-in"> {
  const [{ exists }] = await sql<{ exists: boolean }[]>`
    select to_regclass('public.webhook_delivery_health') is not null as exists`;
  if (!exists) await createDeliveryHealthView(sql, "webhook_delivery_health", {});
  const columns = await sql<{ column_name: string }[]>`
    select column_name from information_schema.columns
     where table_schema = 'public' and table_name = 'webhook_delivery_health'`;
  const names = new Set(columns.map((c) => c.column_name));
  const missing = DELIVERY_HEALTH_COLUMNS.filter((c) => !names.has(c));
  if (missing.length > 0) {
    throw new Error(`webhook_delivery_health breaks the contract: missing ${missing.join(", ")}`);
  }
  return exists ? "real" : "stand-in";
}

export interface DeliveryHealthValues {
  backlog?: number;
  dead_count?: number;
  /** Default: dead_count (none acknowledged). */
  dead_unacknowledged?: number;
  escalate?: boolean;
  paused?: boolean;
  failing_since?: string | null;
  stalled_since?: string | null;
}

/** A view with the contract's exact columns and types over fixed values. */
export async function createDeliveryHealthView(
  sql: Sql,
  name: string,
  v: DeliveryHealthValues,
): Promise<void> {
  const lit = (value: unknown) => value === null || value === undefined ? "null" : `'${String(value)}'`;
  await sql.unsafe(`
    create view public.${name} as select
      ${v.backlog ?? 0}::bigint as backlog,
      null::timestamptz as oldest_pending_at,
      null::numeric as oldest_pending_age_seconds,
      ${v.dead_count ?? 0}::bigint as dead_count,
      now() as last_success_at,
      null::timestamptz as last_failure_at,
      ${lit(v.failing_since)}::timestamptz as failing_since,
      ${v.escalate ?? false} as escalate,
      ${v.paused ?? false} as paused,
      ${lit(v.stalled_since)}::timestamptz as stalled_since,
      ${v.dead_unacknowledged ?? v.dead_count ?? 0}::bigint as dead_unacknowledged`);
}

/** Stores one verified webhook the way the chatwoot-webhook function does. */
export async function storeVerifiedWebhook(sql: Sql, id = 1): Promise<void> {
  const body = JSON.stringify({ event: "message_created", id, content: "hello" });
  await sql`select * from public.ingest_webhook_event(
    ${`message:${id}:message_created`}, 'message_created', ${id}, 1, 1, 1, null,
    ${body}::jsonb, ${body}, ${"a".repeat(64)}, 'signature')`;
}

/** Sets every item of every section to `status` through the function's write path. */
export async function setAllItems(sql: Sql, status: string): Promise<void> {
  await sql`select public.readiness_update_item(key, ${status}, false, null, null, 'test') from public.readiness_items`;
}
