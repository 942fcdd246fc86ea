// A TCP proxy on 127.0.0.1 in front of a real database, which a test can cut (open connections closed, new ones
// refused at once) and restore: a database restart, as its clients see it. Or it refuses only new connections:
// a database reachable only over the connections its clients already have.
export interface DbProxy {
  /** The database URL with the proxy's port. */
  url: string;
  /** Connections let through so far. */
  readonly accepted: number;
  /** New connections are refused; open ones go on. */
  refuseNew(): void;
  cut(): void;
  /** Open connections closed and the port closed too: new connections are refused by the system
   * (ECONNREFUSED), as when the database's host is up and its server is not. */
  takeDown(): void;
  /** Back to passing connections through (listening on the same port again after takeDown). */
  restore(): void;
  close(): Promise<void>;
}

export function startDbProxy(databaseUrl: string, { cut = false } = {}): DbProxy {
  const target = new URL(databaseUrl);
  const open = new Set<Deno.Conn>();
  let refusing = cut;
  let accepted = 0;
  const closeQuietly = (conn: Deno.Conn) => {
    open.delete(conn);
    try {
      conn.close();
    } catch { /* already closed */ }
  };
  const serve = (listener: Deno.Listener) =>
    (async () => {
      for await (const conn of listener) {
        if (refusing) {
          closeQuietly(conn);
          continue;
        }
        accepted++;
        const upstream = await Deno.connect({ hostname: target.hostname, port: Number(target.port || 5432) });
        open.add(conn);
        open.add(upstream);
        const end = () => {
          closeQuietly(conn);
          closeQuietly(upstream);
        };
        conn.readable.pipeTo(upstream.writable).catch(() => {}).finally(end);
        upstream.readable.pipeTo(conn.writable).catch(() => {}).finally(end);
      }
    })().catch(() => {});
  let listener: Deno.Listener | null = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  let accepting = serve(listener);
  const cutOpen = () => {
    for (const conn of [...open]) closeQuietly(conn);
  };
  const url = new URL(databaseUrl);
  url.hostname = "127.0.0.1";
  url.port = String(port);
  return {
    url: url.toString(),
    get accepted() {
      return accepted;
    },
    refuseNew() {
      refusing = true;
    },
    cut() {
      refusing = true;
      cutOpen();
    },
    takeDown() {
      listener?.close();
      listener = null;
      cutOpen();
    },
    restore() {
      refusing = false;
      if (!listener) {
        listener = Deno.listen({ hostname: "127.0.0.1", port });
        accepting = serve(listener);
      }
    },
    async close() {
      this.cut();
      listener?.close();
      listener = null;
      await accepting;
    },
  };
}
