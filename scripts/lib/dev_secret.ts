// Local runs need a webhook secret, or the function refuses everything. When none is configured, a random
// one is generated once and kept in the git-ignored data folder, where `deno task send` finds it too.
// It is never printed.
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

/** The secret a local sender signs with: the first configured one, else the generated dev secret. */
export async function signingSecret(): Promise<string | null> {
  const configured = (Deno.env.get("CHATWOOT_WEBHOOK_SECRET") ?? "").split(",").map((s) => s.trim()).find(
    Boolean,
  );
  return configured ?? await readDevSecret();
}
