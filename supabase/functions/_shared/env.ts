// Reading settings from the environment, with clear errors for values that do not parse.
export type Env = Record<string, string | undefined>;

export class ConfigError extends Error {}

export function intFromEnv(env: Env, name: string, fallback: number, min = 1): number {
  const raw = env[name]?.trim();
  if (!raw) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) {
    throw new ConfigError(`${name} must be an integer >= ${min}`);
  }
  return value;
}

/** Comma-separated list; blanks dropped. */
export function listFromEnv(env: Env, name: string): string[] {
  return (env[name] ?? "").split(",").map((part) => part.trim()).filter((part) => part.length > 0);
}

/** The first of `names` set to something other than blanks, trimmed; null when none is. */
export function stringFromEnv(env: Env, ...names: string[]): string | null {
  for (const name of names) {
    const value = env[name]?.trim();
    if (value) return value;
  }
  return null;
}
