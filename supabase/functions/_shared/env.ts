// Reading settings from the environment, with clear errors for values that do not parse.
export type Env = Record<string, string | undefined>;

export class ConfigError extends Error {}

/** An integer setting: `fallback` when unset, else its value; refused (ConfigError, naming it) when not one. */
export function intFromEnv(env: Env, name: string, fallback: number, min = 1, max?: number): number {
  const { value, problem } = readInt(env, name, fallback, min, max);
  if (problem) throw new ConfigError(problem);
  return value;
}

/**
 * A setting with a safe default. `warning` is set when its value was refused and `value` is the default: to be
 * said, never silent (WebhookConfigResult.warnings, which the webhook app logs; runtimeFromEnv's log line).
 */
export interface Defaulted<T> {
  value: T;
  warning: string | null;
}

/**
 * An integer tuning knob (a tolerance, a size): a refused value falls back to `fallback` with a warning naming
 * the setting and the default, never the value. For a knob only: a lost webhook's 503 costs more than a
 * default. The rule that refuses it is intFromEnv's.
 */
export function intFromEnvOrDefault(
  env: Env,
  name: string,
  fallback: number,
  min = 1,
  max?: number,
): Defaulted<number> {
  const { value, problem } = readInt(env, name, fallback, min, max);
  return problem
    ? { value: fallback, warning: `${problem}; using the default ${fallback}` }
    : { value, warning: null };
}

/** The one rule for an integer setting: its value (`fallback` when unset), or why it is refused. */
function readInt(
  env: Env,
  name: string,
  fallback: number,
  min: number,
  max?: number,
): { value: number; problem: string | null } {
  const raw = env[name]?.trim();
  if (!raw) return { value: fallback, problem: null };
  // Digits only: Number() also reads "0x10" (16), "1e3" and "4194304.0", none of which an operator means.
  const value = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(value) || value < min || (max !== undefined && value > max)) {
    const range = max === undefined ? `>= ${min}` : `from ${min} to ${max}`;
    return { value: fallback, problem: `${name} must be an integer ${range}` };
  }
  return { value, problem: null };
}

/** Comma-separated list; blanks dropped. */
export function listFromEnv(env: Env, name: string): string[] {
  return (env[name] ?? "").split(",").map((part) => part.trim()).filter((part) => part.length > 0);
}

/** The first of `names` set to something other than blanks, trimmed; null when none is. */
export function stringFromEnv(env: Env, ...names: string[]): string | null {
  return namedStringFromEnv(env, ...names)?.value ?? null;
}

/** stringFromEnv with the name it was read from: a problem with the value names the setting that holds it. */
export function namedStringFromEnv(env: Env, ...names: string[]): { name: string; value: string } | null {
  for (const name of names) {
    const value = env[name]?.trim();
    if (value) return { name, value };
  }
  return null;
}

/** Values of configured secrets: evidence, notes and error texts must never contain one. */
export function secretValues(env: Env): string[] {
  return [
    "CHATWOOT_API_TOKEN",
    "CHATWOOT_TOKEN_PROD",
    "CHATWOOT_WEBHOOK_SECRET",
    "CHATWOOT_WEBHOOK_URL_TOKEN",
    "READINESS_ADMIN_TOKEN",
    "AGENT_SDK_SECRET",
    "AGENT_SDK_TOKEN",
    "FORWARDER_TOKEN",
    "SUPABASE_SERVICE_ROLE_KEY",
  ].flatMap((name) => (env[name] ?? "").split(","))
    .concat(["SUPABASE_DB_URL", "DATABASE_URL"].map((name) => databasePassword(env[name])))
    // Basic credentials in front of the Agent SDK or of Chatwoot ride in these URLs as user:password@.
    .concat(URLS_WITH_PASSWORDS.flatMap((name) => urlPassword(env[name])))
    .concat(
      ["SUPABASE_DB_URL", "DATABASE_URL", ...URLS_WITH_PASSWORDS].flatMap((name) =>
        queryCredentials(env[name])
      ),
    )
    .map((v) => v.trim()).filter((v) => v.length >= 8);
}

const URLS_WITH_PASSWORDS = ["AGENT_SDK_URL", "CHATWOOT_BASE_URL", "CHATWOOT_BASE_URL_PROD"];

/** The password of a URL's user info, as written and percent-decoded; none when it has none. */
function urlPassword(url: string | undefined): string[] {
  const password = url ? urlCredentials(url)?.password ?? "" : "";
  return [...new Set([password, safeDecode(password)])];
}

/**
 * Credentials a URL carries in its query (credentialParameters), as written and decoded: libpq's ?password=,
 * a gateway's ?key= or ?token= on AGENT_SDK_URL. A database password in the query follows databasePassword's
 * rule (a local "postgres" is no secret).
 */
function queryCredentials(url: string | undefined): string[] {
  if (!url) return [];
  return credentialParameters(url).flatMap(({ name, value }) => {
    const decoded = safeDecode(value.replaceAll("+", " "));
    return /pass|pwd/i.test(name) && decoded.length < 12 ? [] : [...new Set([value, decoded])];
  });
}

/** A query parameter that carries a credential, up to its "=" (1), and its value. */
export const CREDENTIAL_PARAMETER = /([?&;][^=&#]*(?:pass|pwd|token|secret|key|auth|sig)[^=&#]*=)[^&#]*/gi;

/** The credential query parameters in `url`: each name with its "=", and its value as written. */
export function credentialParameters(url: string): { name: string; value: string }[] {
  return [...url.matchAll(CREDENTIAL_PARAMETER)].map((m) => ({ name: m[1], value: m[0].slice(m[1].length) }));
}

/** `text` percent-decoded; as written when it is not percent-encoded after all. */
export function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** A real database's password; a local one such as "postgres" would refuse every note that names Postgres. */
function databasePassword(url: string | undefined): string {
  const decoded = safeDecode(url ? urlCredentials(url)?.password ?? "" : "");
  return decoded.length >= 12 ? decoded : "";
}

/**
 * The user info of a URL, read from the text as postgres.js reads a connection string: everything between
 * "://" and the last "@". `new URL()` ends the host at the first "#", "/" or "?", so a password holding one,
 * not percent-encoded, would land in its fragment, path or query and never be seen as a password.
 */
export function urlCredentials(
  url: string,
): { prefix: string; user: string; password: string | null; rest: string } | null {
  // Spaces and control characters around it are dropped first, as `new URL()` drops them (such a URL works).
  const match = /^([a-z][a-z0-9+.-]*:\/\/)([^]*)@([^@]*)$/i.exec(withoutSurroundingSpace(url));
  if (!match) return null;
  const [, prefix, info, rest] = match;
  const colon = info.indexOf(":");
  return colon < 0
    ? { prefix, user: info, password: null, rest }
    : { prefix, user: info.slice(0, colon), password: info.slice(colon + 1), rest };
}

/** Whether `text` starts as a URL with an authority does, `scheme://` (spaces around it ignored). */
export function hasUrlScheme(text: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(withoutSurroundingSpace(text));
}

/** `url` without the spaces and control characters (U+0000 to U+0020) `new URL()` ignores around a URL. */
export function withoutSurroundingSpace(url: string): string {
  // deno-lint-ignore no-control-regex -- control characters are exactly what is dropped
  return url.replace(/^[\x00-\x20]+|[\x00-\x20]+$/g, "");
}

/** `text` with every configured secret value (secretValues) replaced by ***. */
export function withoutSecrets(text: string, secrets: string[]): string {
  return secrets.reduce((t, secret) => t.replaceAll(secret, "***"), text)
    // fetch refuses a header value it cannot send and quotes the whole value in its message: a token with a
    // line break inside would be shown there whole, escaped, so matching it above is not enough.
    .replace(/(invalid header value)\s*:?\s*("(?:[^"\\]|\\.)*"|\S+)/gi, "$1");
}

/** Why `value` of `name` is no http(s) URL a request can go to, or null. Names the setting, never its value. */
export function httpUrlProblem(name: string, value: string): string | null {
  try {
    const { protocol } = new URL(value);
    if (protocol === "http:" || protocol === "https:") return null;
  } catch {
    // not a URL at all: the same answer
  }
  return `${name} is not an http(s) URL`;
}

/**
 * Why `value` of `name` cannot be sent as an HTTP header (a token: visible ASCII, no space), or null. fetch
 * would refuse it with a message that quotes it whole.
 */
export function headerTokenProblem(name: string, value: string | null): string | null {
  return value === null || /^[\x21-\x7e]+$/.test(value)
    ? null
    : `${name} holds characters an HTTP header cannot carry (a line break, a space, or a character past ASCII)`;
}
