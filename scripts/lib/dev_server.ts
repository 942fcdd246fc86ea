// `deno task dev`: every function at http://127.0.0.1:54321/functions/v1/<name>, the URL layout of
// `supabase functions serve`, on an embedded PGlite (or DATABASE_URL / SUPABASE_DB_URL when set).
import { connect, databaseUrlFromEnv } from "../../supabase/functions/_shared/db.ts";
import { jsonLogger, type Logger } from "../../supabase/functions/_shared/log.ts";
import type { Runtime } from "../../supabase/functions/_shared/runtime.ts";
import { startEmbeddedDb } from "./embedded_db.ts";
import { FUNCTIONS } from "./function_registry.ts";
import { applyMigrations } from "./migrations.ts";
import { redact } from "./cli.ts";
import { dataDir, ensureDevSecret } from "./dev_secret.ts";
import {
  deliveryUrl,
  forwarderConfigFromEnv,
  forwardEventsAuthFromEnv,
} from "../../supabase/functions/_shared/forwarder_config.ts";
import { ConfigError, type Env } from "../../supabase/functions/_shared/env.ts";
import { readinessConfigFromEnv } from "../../supabase/functions/_shared/readiness_checks.ts";
import {
  webhookConfigFromEnv,
  type WebhookConfigResult,
} from "../../supabase/functions/_shared/webhook_config.ts";
import { poolSizeFromEnv } from "../../supabase/functions/_shared/runtime.ts";
import {
  DUE_CHANNEL,
  type ForwarderLoop,
  postgresSubscribe,
  startForwarderLoop,
  type Subscribe,
} from "./forwarder_loop.ts";

export interface DevServerOptions {
  port: number;
  dbPort: number;
  host?: string;
  log?: Logger;
  print?: (line: string) => void;
  /** Run the forwarder loop (default true). */
  forwarder?: boolean;
  /** Sweep interval of the forwarder loop. Default 1000 ms. */
  forwarderSweepMs?: number;
}

export interface DevServer {
  url: string;
  databaseUrl: string;
  runtime: Runtime;
  forwarder: ForwarderLoop | null;
  stop(): Promise<void>;
}

const FUNCTIONS_PREFIX = "/functions/v1/";

/**
 * What each function refuses in `env`, as its 503 not_configured says it (setting names, never values), and
 * which of its requests are answered so.
 */
function settingProblems(env: Env, webhook: WebhookConfigResult): [string, string, string][] {
  const problems: [string, string, string][] = [];
  if (!webhook.ok) {
    problems.push(["chatwoot-webhook", webhook.message, "every webhook (lost: Chatwoot never re-sends it)"]);
  }
  try {
    const readiness = readinessConfigFromEnv(env);
    if (readiness.adminTokenProblem) problems.push(["readiness", readiness.adminTokenProblem, "every PATCH"]);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    problems.push(["readiness", error.message, "every request"]);
  }
  const auth = forwardEventsAuthFromEnv(env);
  if (auth.problem) problems.push(["forward-events", auth.problem, "every call"]);
  return problems;
}

/**
 * Settings refused and replaced by their default, as the functions log them at start (setting and default,
 * never the value), and the readiness page shows them: [function, warning, where it applies].
 */
function settingDefaults(env: Env, webhook: WebhookConfigResult): [string, string, string][] {
  const pool = poolSizeFromEnv(env).warning;
  return [
    ...webhook.warnings.map((w): [string, string, string] => ["chatwoot-webhook", w, ""]),
    // This server shares one pool of its own across the functions; the deployed ones each read the setting.
    ...(pool
      ? [["functions", pool, " (deployed; deno task dev shares one pool)"] as [string, string, string]]
      : []),
  ];
}

/**
 * Work the functions hand to `EdgeRuntime.waitUntil` (the delivery started after a store, a late store after
 * a 503), kept as the edge runtime keeps it, so that stop() lets it finish: a delivery cut off left its events
 * leased, and they went out again once the lease expired, the next time the dev server ran.
 */
const background = new Set<Promise<unknown>>();
const edge = globalThis as { EdgeRuntime?: { waitUntil?: (promise: Promise<unknown>) => void } };
edge.EdgeRuntime ??= {
  waitUntil(promise) {
    background.add(promise);
    promise.finally(() => background.delete(promise)).catch(() => {});
  },
};

export async function startDevServer(options: DevServerOptions): Promise<DevServer> {
  const host = options.host ?? "127.0.0.1";
  const print = options.print ?? console.log;
  const log = options.log ?? jsonLogger;

  const external = databaseUrlFromEnv();
  const embedded = external
    ? null
    : await startEmbeddedDb({ dataDir: `${dataDir()}/pglite`, port: options.dbPort, host });
  const databaseUrl = external ?? embedded!.url;
  const sql = connect(databaseUrl, { max: 10, applicationName: "chatwoot-relay-dev" });
  try {
    // The embedded database is this checkout's own: a file from a branch merged late is applied as it comes.
    // A server's gets what `deno task migrate` does (OutOfOrderMigrations: --include-all is the operator's).
    const applied = await applyMigrations(sql, { log: (line) => print(`  ${line}`), includeAll: !external });
    if (applied.length === 0) print("  migrations up to date");
  } catch (error) {
    await sql.end({ timeout: 1 });
    await embedded?.stop();
    throw error;
  }

  if (!Deno.env.get("CHATWOOT_WEBHOOK_SECRET") && !Deno.env.get("CHATWOOT_WEBHOOK_URL_TOKEN")) {
    Deno.env.set("CHATWOOT_WEBHOOK_SECRET", await ensureDevSecret());
    print(`  CHATWOOT_WEBHOOK_SECRET not set: using the local dev secret in ${dataDir()}/dev-webhook-secret`);
  }

  // What the functions ask to finish at stop, before the pool closes (the refusal counts kept in memory).
  const stopTasks: Array<() => Promise<unknown>> = [];
  const runtime: Runtime = {
    env: Deno.env.toObject(),
    sql,
    log,
    onStop: (task) => void stopTasks.push(task),
  };
  // A setting a function refuses makes it answer 503 not_configured to every request: said here, where the
  // operator looks, rather than first in the answer to a webhook that is then lost.
  const webhook = webhookConfigFromEnv(runtime.env);
  for (const [name, problem, what] of settingProblems(runtime.env, webhook)) {
    print(`  ${name.padEnd(10)} NOT CONFIGURED: ${problem}; ${what} is answered 503 until it is fixed`);
  }
  for (const [name, warning, where] of settingDefaults(runtime.env, webhook)) {
    print(`  ${name.padEnd(10)} SETTING REFUSED: ${warning}${where} until it is fixed`);
  }
  // A Map, not an object: a name like "constructor" or "toString" must not find an Object.prototype member.
  const apps = new Map(Object.entries(FUNCTIONS).map(([name, build]) => [name, build(runtime)]));

  const server = Deno.serve({ hostname: host, port: options.port, onListen: () => {} }, (req) => {
    const url = new URL(req.url);
    if (!url.pathname.startsWith(FUNCTIONS_PREFIX)) {
      return Response.json(
        { error: "not_found", message: `Functions live under ${FUNCTIONS_PREFIX}<name>` },
        {
          status: 404,
        },
      );
    }
    // The function sees /<name>/..., exactly as behind Supabase's gateway.
    const rest = url.pathname.slice(FUNCTIONS_PREFIX.length - 1);
    const name = rest.split("/")[1];
    const app = apps.get(name);
    if (!app) {
      // Also the base `Ready:` prints, the first URL one opens: an empty name, so say what is served there.
      const served = `functions at ${FUNCTIONS_PREFIX}<name>: ${[...apps.keys()].join(", ")}`;
      const message = name ? `No function named ${name}; ${served}` : `Name a function: ${served}`;
      return Response.json({ error: "not_found", message }, { status: 404 });
    }
    url.pathname = rest;
    // Not `new Request(url, req)`: copying the request reads its signal, and Deno 2.9 then warns about that
    // signal's legacy abort behaviour on the first webhook. No function uses the signal.
    return app.fetch(new Request(url, { method: req.method, headers: req.headers, body: req.body }));
  });

  // The forwarder, woken by NOTIFY webhook_events_due (in-process on the embedded database, LISTEN on a
  // server) and by a periodic sweep for retries and expired leases.
  let forwarder: ForwarderLoop | null = null;
  if (options.forwarder ?? true) {
    const subscribe: Subscribe = embedded
      ? (onNotify) => embedded.listen(DUE_CHANNEL, onNotify)
      : postgresSubscribe(sql);
    const config = forwarderConfigFromEnv(runtime.env);
    forwarder = await startForwarderLoop({ sql, config, log, subscribe, sweepMs: options.forwarderSweepMs });
    // Where events are POSTed (README: <AGENT_SDK_URL>/webhooks/chatwoot), not the bare base.
    const target = config.agentSdkUrl ? redact(deliveryUrl(config.agentSdkUrl)) : null;
    print(`  forwarder  -> ${target ?? "(AGENT_SDK_URL not set; relay_settings override only)"}`);
  }

  const base = `http://${host}:${server.addr.port}`;
  // The embedded database's password is the fixed local "postgres"; an external URL's is never shown.
  print(
    `  database   ${
      embedded ? `${databaseUrl} (embedded PGlite in ${dataDir()}/pglite)` : redact(databaseUrl)
    }`,
  );
  for (const name of apps.keys()) print(`  function   ${base}${FUNCTIONS_PREFIX}${name}`);

  return {
    url: base,
    databaseUrl,
    runtime,
    forwarder,
    async stop() {
      await forwarder?.stop();
      await server.shutdown();
      if (background.size > 0) {
        print(
          `  finishing ${background.size} background task(s): deliveries, late stores (Ctrl-C again quits at once)`,
        );
        await Promise.allSettled([...background]);
      }
      await Promise.allSettled(stopTasks.map((task) => task()));
      await sql.end({ timeout: 2 });
      await embedded?.stop();
    },
  };
}
