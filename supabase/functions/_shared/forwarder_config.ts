// Settings of the forwarder that live in the environment (secrets, the default target). Everything an operator
// changes at run time (pause, target override, schedule, timeouts) lives in public.relay_settings instead.
import {
  credentialParameters,
  type Env,
  headerTokenProblem,
  httpUrlProblem,
  listFromEnv,
  safeDecode,
  stringFromEnv,
  withoutSurroundingSpace,
} from "./env.ts";

export interface ForwarderConfig {
  /** Base URL of the Agent SDK; events go to `${url}/webhooks/chatwoot`. relay_settings may override it. */
  agentSdkUrl: string | null;
  /** When set, every delivery carries a fresh Chatwoot-scheme signature made with it. */
  agentSdkSecret: string | null;
  /** When set, sent as `Authorization: Bearer <token>`. */
  agentSdkToken: string | null;
}

export interface ForwardEventsAuthConfig {
  /**
   * Bearer tokens the forward-events function accepts (pg_cron sends one, read from Vault). Several,
   * comma-separated, during a rotation: the function's secret and the Vault secret cannot change at once.
   */
  forwarderTokens: string[];
  /** The project's service-role key, also accepted. */
  serviceRoleKey: string | null;
  /** Set when a FORWARDER_TOKEN value is too short to be secret: forward-events then accepts nothing. */
  problem?: string | null;
}

/** As for CHATWOOT_WEBHOOK_URL_TOKEN and READINESS_ADMIN_TOKEN: a token anyone may guess guards nothing. */
export const MIN_FORWARDER_TOKEN_LENGTH = 24;

export const NO_TARGET =
  "no Agent SDK URL: set AGENT_SDK_URL or public.relay_settings.agent_sdk_url_override";

/**
 * Why no event can be posted to the target (relay_settings' override, else AGENT_SDK_URL), or null. The URL
 * checked is the one deliveries go to, so that nothing passes here that every delivery would then fail on.
 */
export function targetProblem(
  override: string | null | undefined,
  agentSdkUrl: string | null,
): string | null {
  // The base too: "https://" has no host, yet its delivery URL "https:/webhooks/chatwoot" reads as host "webhooks".
  const problem = (name: string, base: string) =>
    httpUrlProblem(name, withoutSurroundingSpace(base)) ?? httpUrlProblem(name, deliveryUrl(base));
  if (override) return problem("public.relay_settings.agent_sdk_url_override", override);
  return agentSdkUrl ? problem("AGENT_SDK_URL", agentSdkUrl) : NO_TARGET;
}

/**
 * Where deliveries go: the URL, the credentials it carried as a Basic authorization, and `secrets`, what of
 * the URL and that authorization an answer must not be stored or logged with (an error page that quotes the
 * request): the password, the Basic value, credential query parameters, each as sent and decoded.
 */
export interface DeliveryTarget {
  url: string;
  basic: string | null;
  secrets: string[];
}

/** Where deliveries go (DeliveryTarget), or why none can: see targetProblem. */
export function deliveryTarget(
  override: string | null | undefined,
  agentSdkUrl: string | null,
): DeliveryTarget | { problem: string } {
  const problem = targetProblem(override, agentSdkUrl);
  if (problem) return { problem };
  const { url, basic, password } = splitCredentials(deliveryUrl(override || agentSdkUrl!));
  // A query is read as a form too ("+" a space), and a gateway may quote a key the way it read it.
  const query = credentialParameters(url).map((p) => p.value);
  const sent = [password ?? "", ...query, ...query.map((v) => v.replaceAll("+", " "))];
  const secrets = [...sent.flatMap((s) => [s, safeDecode(s)]), basic?.replace(/^Basic /, "") ?? ""];
  return { url, basic, secrets: [...new Set(secrets)].filter((s) => s.length >= 8) };
}

/**
 * Why no event can be sent at all, whatever it holds: a token no request can carry, or no usable target (see
 * targetProblem). Null when deliveries can go out. The text names the setting, never its value.
 */
export function sendingProblem(config: ForwarderConfig, override: string | null | undefined): string | null {
  return headerTokenProblem("AGENT_SDK_TOKEN", config.agentSdkToken) ??
    targetProblem(override, config.agentSdkUrl);
}

export function forwarderConfigFromEnv(env: Env = Deno.env.toObject()): ForwarderConfig {
  return {
    agentSdkUrl: stringFromEnv(env, "AGENT_SDK_URL"),
    agentSdkSecret: stringFromEnv(env, "AGENT_SDK_SECRET"),
    agentSdkToken: stringFromEnv(env, "AGENT_SDK_TOKEN"),
  };
}

export function forwardEventsAuthFromEnv(env: Env = Deno.env.toObject()): ForwardEventsAuthConfig {
  const forwarderTokens = listFromEnv(env, "FORWARDER_TOKEN");
  return {
    forwarderTokens,
    serviceRoleKey: stringFromEnv(env, "SUPABASE_SERVICE_ROLE_KEY"),
    problem: forwarderTokens.some((t) => t.length < MIN_FORWARDER_TOKEN_LENGTH)
      ? `FORWARDER_TOKEN must be at least ${MIN_FORWARDER_TOKEN_LENGTH} characters (each value, when several)`
      // One that no caller can present (an invisible character pasted with it): every call was a 401 that
      // blamed the caller, and the backlog stalled with FORWARDER_TOKEN looking set.
      : forwarderTokens.map((t) => headerTokenProblem("FORWARDER_TOKEN", t)).find(Boolean) ?? null,
  };
}

/**
 * `${base}/webhooks/chatwoot`, tolerant of a trailing slash on the base; a query (or fragment) the base carries,
 * such as a key some gateways want, stays after the path. Spaces around the base are dropped first, as
 * `new URL()` drops them: the override's check (^https?://) lets "https://agent.example " through, and kept,
 * the space landed before the path (an invalid host: every attempt failed).
 */
export function deliveryUrl(rawBase: string): string {
  const base = withoutSurroundingSpace(rawBase);
  const cut = base.search(/[?#]/);
  const [path, rest] = cut < 0 ? [base, ""] : [base.slice(0, cut), base.slice(cut)];
  return `${path.replace(/\/+$/, "")}/webhooks/chatwoot${rest}`;
}

/**
 * The delivery URL without the credentials it may carry (https://user:password@host), and those as a Basic
 * Authorization value. fetch turned them into such a header and undici dropped them, so a target that needs
 * them worked from the Edge Functions and not from `deno task forward`; and with AGENT_SDK_TOKEN set, fetch
 * joined both in one header ("Basic …, Bearer …"). Now they are sent alike, and the token's Bearer wins.
 */
export function splitCredentials(
  url: string,
): { url: string; basic: string | null; password: string | null } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // the transport says what is wrong with it, as for any unreachable target
    return { url, basic: null, password: null };
  }
  if (!parsed.username && !parsed.password) return { url, basic: null, password: null };
  const { password } = parsed;
  const pair = `${safeDecode(parsed.username)}:${safeDecode(password)}`;
  parsed.username = "";
  parsed.password = "";
  return {
    url: parsed.toString(),
    basic: `Basic ${btoa(String.fromCharCode(...new TextEncoder().encode(pair)))}`,
    password: password || null,
  };
}
