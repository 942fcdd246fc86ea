// The embedded default database: PGlite (Postgres compiled to WebAssembly) behind pglite-socket, so every
// client (postgres.js, psql, the Supabase CLI) talks to it over the ordinary wire protocol.
import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";

export interface EmbeddedDb {
  url: string;
  pglite: PGlite;
  stop(): Promise<void>;
}

/** `dataDir` persists the database; omit it for an in-memory one. Port 0 picks a free port. */
export async function startEmbeddedDb(
  { dataDir, port = 0, host = "127.0.0.1" }: { dataDir?: string; port?: number; host?: string } = {},
): Promise<EmbeddedDb> {
  if (dataDir) await Deno.mkdir(dataDir, { recursive: true });
  const pglite = await PGlite.create(dataDir ? { dataDir } : undefined);
  // PGlite is one session; the socket server multiplexes client connections onto it, a transaction at a time.
  const server = new PGLiteSocketServer({ db: pglite, port, host, maxConnections: 200 });
  await server.start();
  const [boundHost, boundPort] = splitHostPort(server.getServerConn());
  return {
    url: `postgresql://postgres:postgres@${boundHost}:${boundPort}/postgres`,
    pglite,
    async stop() {
      await server.stop();
      await pglite.close();
    },
  };
}

function splitHostPort(conn: string): [string, string] {
  const i = conn.lastIndexOf(":");
  return [conn.slice(0, i), conn.slice(i + 1)];
}
