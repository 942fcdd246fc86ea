// One way to reach Postgres: postgres.js over a connection URL (hosted Supabase, any server, or PGlite's socket).
import postgres from "postgres";

export type Sql = postgres.Sql;

/** DATABASE_URL wins when set explicitly; hosted Supabase functions receive SUPABASE_DB_URL. */
export function databaseUrlFromEnv(
  env: Record<string, string | undefined> = Deno.env.toObject(),
): string | undefined {
  return env.DATABASE_URL || env.SUPABASE_DB_URL || undefined;
}

export interface ConnectOptions {
  /** Pool size; an edge function instance needs few. */
  max?: number;
  /** Seconds to wait for a connection before the query fails. */
  connectTimeout?: number;
  applicationName?: string;
}

export function connect(url: string, options: ConnectOptions = {}): Sql {
  return postgres(url, {
    prepare: false, // Supavisor's transaction pooler cannot keep prepared statements
    max: options.max ?? 5,
    idle_timeout: 20,
    connect_timeout: options.connectTimeout ?? 2,
    onnotice: () => {},
    connection: { application_name: options.applicationName ?? "chatwoot-relay" },
  });
}

/** True for errors where the same query may succeed a moment later (connection trouble, contention). */
export function isTransientDbError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: string }).code ?? "";
  if (/^(08|53|57P0|40001|40P01)/.test(code)) return true;
  return [
    "ECONNREFUSED",
    "ECONNRESET",
    "ETIMEDOUT",
    "EPIPE",
    "CONNECT_TIMEOUT",
    "CONNECTION_CLOSED",
    "CONNECTION_ENDED",
    "CONNECTION_DESTROYED",
  ].includes(code) || /connect|connection|socket|network/i.test(error.message);
}
