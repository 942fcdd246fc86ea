// Local runs need a webhook secret, or the function refuses everything. When none is configured, a random
// one is generated once and kept in the git-ignored data folder, where `deno task send` finds it too.
// It is never printed.
import { listFromEnv } from "../../supabase/functions/_shared/env.ts";
import { toHex } from "../../supabase/functions/_shared/signature.ts";

export const DATA_DIR_DEFAULT = ".data";

export function dataDir(): string {
  return Deno.env.get("RELAY_DATA_DIR") || DATA_DIR_DEFAULT;
}

export function devSecretPath(): string {
  return `${dataDir()}/dev-webhook-secret`;
}

export async function readDevSecret(): Promise<string | null> {
  try {
    return (await Deno.readTextFile(devSecretPath())).trim() || null;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

export async function ensureDevSecret(): Promise<string> {
  const existing = await readDevSecret();
  if (existing) return existing;
  const secret = toHex(crypto.getRandomValues(new Uint8Array(32)));
  await Deno.mkdir(dataDir(), { recursive: true });
  await Deno.writeTextFile(devSecretPath(), secret + "\n", { mode: 0o600 });
  return secret;
}

/**
 * How a local sender authenticates, as `deno task dev` configures the function: the first configured secret;
 * else the first URL token (the dev server then generates no secret, so a dev secret left from an earlier run
 * is one it does not know); else the generated dev secret. The first of a list, whichever the rotation's
 * order: the local function accepts every listed value, and one rule for both settings is easier to predict.
 */
export async function localCredential(): Promise<{ secret: string } | { urlToken: string } | null> {
  const env = Deno.env.toObject();
  const [configured] = listFromEnv(env, "CHATWOOT_WEBHOOK_SECRET");
  if (configured) return { secret: configured };
  const [urlToken] = listFromEnv(env, "CHATWOOT_WEBHOOK_URL_TOKEN");
  if (urlToken) return { urlToken };
  const devSecret = await readDevSecret();
  return devSecret ? { secret: devSecret } : null;
}
