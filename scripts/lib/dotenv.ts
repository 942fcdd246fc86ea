// Minimal .env reader for local runs (KEY=value lines, # comments, optional quotes). Values already in the
// environment win, so a shell export always overrides the file.
import { CREDENTIAL_ALIASES } from "../../supabase/functions/_shared/readiness_checks.ts";

/**
 * Two names for one setting, the database (databaseUrlFromEnv takes DATABASE_URL first). A database URL
 * exported under either name keeps both out of the file: otherwise the file's DATABASE_URL beat an exported
 * SUPABASE_DB_URL, and a run meant for the exported database went to the .env one, saying nothing.
 */
export const DATABASE_URL_NAMES: readonly string[] = ["DATABASE_URL", "SUPABASE_DB_URL"];

/**
 * Names that are one setting, the first set winning (stringFromEnv, databaseUrlFromEnv): one of them exported,
 * even empty, keeps all of them out of the file. The Chatwoot credentials go by the readiness document's
 * _PROD names too, and the generic name is read first: the file's CHATWOOT_API_TOKEN beat an exported
 * CHATWOOT_TOKEN_PROD.
 */
export const SAME_SETTING: readonly (readonly string[])[] = [
  DATABASE_URL_NAMES,
  ...Object.entries(CREDENTIAL_ALIASES).filter(([, generic]) => generic.length > 0)
    .map(([documentName, generic]) => [...generic, documentName]),
];

export async function loadDotenv(path: string): Promise<string[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
  // Read whole first: a key written twice takes its last value, as every common dotenv reader does (set as
  // it was read, the first one made the second look like a shell export).
  const fileValues = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const match = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(line);
    if (!match || line.trimStart().startsWith("#")) continue;
    const [, key, rawValue] = match;
    // A quoted value is taken as written (a # inside it included); a comment may follow either kind.
    const quoted = /^(["'])(.*?)\1(?:\s+#.*)?$/.exec(rawValue);
    fileValues.set(key, quoted ? quoted[2] : rawValue.replace(/\s+#.*$/, ""));
  }
  // What the shell set, taken before the file sets anything (the file's DATABASE_URL is no shell export).
  const shell = new Set(Object.keys(Deno.env.toObject()));
  const fromShell = (key: string) =>
    (SAME_SETTING.find((names) => names.includes(key)) ?? [key]).some((name) => shell.has(name));
  const loaded: string[] = [];
  for (const [key, value] of fileValues) {
    if (fromShell(key)) continue;
    Deno.env.set(key, value);
    loaded.push(key);
  }
  return loaded;
}
