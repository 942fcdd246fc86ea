// Settings of the chatwoot-webhook function, read once at start.
import { type Env, intFromEnvOrDefault, listFromEnv } from "./env.ts";

export interface WebhookConfig {
  /** Any of these verifies a signature: during a rotation both the old and the new secret are listed. */
  secrets: string[];
  /**
   * For Chatwoot versions that cannot sign: long random tokens, any one accepted as ?token=. Several during a
   * rotation (Chatwoot's URL and this setting cannot change at once), as for the secrets; none: [].
   */
  urlTokens: string[];
  /** Accepted clock difference between X-Chatwoot-Timestamp and now, both directions. */
  toleranceSeconds: number;
  maxBodyBytes: number;
  /** How long a request may take to send its whole body: one that stalls would hold it (and its bytes) forever. */
  bodyDeadlineMs: number;
  /** Budget for storing, retries included; the whole answer must stay under 3 s. */
  storeBudgetMs: number;
  /** After a 503, how long the instance keeps trying to store the event in the background; 0: not at all. */
  lateStoreMs: number;
  /** Memory an instance holds for such late stores at most (late_store.ts counts it; 256 MB hosted in all). */
  lateStoreMaxBytes: number;
}

/**
 * `warnings`: knobs whose value was refused, each naming the setting and the default used instead (never the
 * value). On both variants, so that a secret missing too does not hide them; the app logs them at start.
 */
export type WebhookConfigResult =
  & { warnings: string[] }
  & ({ ok: true; config: WebhookConfig } | { ok: false; message: string });

const MIN_URL_TOKEN_LENGTH = 24;
/** Upper bounds of the knobs (README, the webhook's settings table). */
export const MAX_TOLERANCE_SECONDS = 86_400;
export const MAX_BODY_BYTES = 64 * 1024 * 1024;

export function webhookConfigFromEnv(env: Env = Deno.env.toObject()): WebhookConfigResult {
  // Tuning knobs with safe defaults: a typo in one answered every webhook 503 not_configured, and Chatwoot
  // never re-sends it. The default is used instead, and the mistake said (log, deno task dev, readiness).
  const knobs = {
    // At most a day: Chatwoot signs with its send time, so the window only has to cover clock difference and
    // transit. Wider, a signed body captured once (a log, a proxy) could be posted again a year later.
    toleranceSeconds: intFromEnvOrDefault(
      env,
      "CHATWOOT_WEBHOOK_TOLERANCE_SECONDS",
      300,
      1,
      MAX_TOLERANCE_SECONDS,
    ),
    // A body refused here is lost (Chatwoot never re-sends it). An email's is the largest: its content is cut
    // at 150 000 characters, but its HTML and text are sent uncut, twice, with <, > and & as \u003c, so a few
    // hundred KB of HTML pass 4 MiB. 6 MiB: two such bodies at once beside normal traffic peaked at 150 MB
    // (RSS, a deployed function's heap), 181 MB (up to 219) with the Agent SDK sent to at once; 8 MiB reached
    // 252 of the 256 MB a hosted function has (README, "Body size").
    // At most 64 MiB: a body is held about 8 times over while checked and stored (24 MiB alone peaked at
    // 251 MB), and past 512 Mi characters V8 cannot even make it a string (every such webhook a 500, lost).
    maxBodyBytes: intFromEnvOrDefault(
      env,
      "CHATWOOT_WEBHOOK_MAX_BODY_BYTES",
      6 * 1024 * 1024,
      1,
      MAX_BODY_BYTES,
    ),
    // 120 s: inside a hosted worker's wall-clock limit (150 s on the free plan), past most restarts.
    lateStoreSeconds: intFromEnvOrDefault(env, "CHATWOOT_WEBHOOK_LATE_STORE_SECONDS", 120, 0),
  };
  const warnings = Object.values(knobs).flatMap((knob) => knob.warning ?? []);
  const config: WebhookConfig = {
    secrets: listFromEnv(env, "CHATWOOT_WEBHOOK_SECRET"),
    urlTokens: listFromEnv(env, "CHATWOOT_WEBHOOK_URL_TOKEN"),
    toleranceSeconds: knobs.toleranceSeconds.value,
    maxBodyBytes: knobs.maxBodyBytes.value,
    // 60 s: a 6 MiB body at 1 Mbit/s takes about 50 s; Chatwoot itself gives up on an answer after 5 s.
    bodyDeadlineMs: 60_000,
    storeBudgetMs: 2500,
    lateStoreMs: knobs.lateStoreSeconds.value * 1000,
    lateStoreMaxBytes: 64 * 1024 * 1024, // as lateStoreBytes counts it: about 16 MB of body text
  };
  // Each value: a short one beside a long one would still be a token anyone may guess.
  if (config.urlTokens.some((token) => token.length < MIN_URL_TOKEN_LENGTH)) {
    return {
      ok: false,
      message:
        `CHATWOOT_WEBHOOK_URL_TOKEN must be at least ${MIN_URL_TOKEN_LENGTH} characters (each value, ` +
        "when several; use a long random value)",
      warnings,
    };
  }
  if (config.secrets.length === 0 && config.urlTokens.length === 0) {
    return {
      ok: false,
      message:
        "set CHATWOOT_WEBHOOK_SECRET (or CHATWOOT_WEBHOOK_URL_TOKEN for Chatwoot versions that cannot sign)",
      warnings,
    };
  }
  return { ok: true, config, warnings };
}
