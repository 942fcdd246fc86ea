// A TCP proxy on 127.0.0.1 in front of a real database, which a test can cut (open connections closed, new ones
// refused at once) and restore: a database restart, as its clients see it. Or it refuses only new connections:
// a database reachable only over the connections its clients already have. Or it acts when a client's bytes
// hold a text (a statement, COMMIT): cuts before they reach the server, or lets them through and holds the
// server's answers from then on, so a test knows the server has answered (committed, say) and its client not.
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
  /**
   * Once: when a client's bytes next hold `text`, "cut" closes that connection before they reach the server;
   * "hold" passes them and holds every later answer on that connection until releaseHeld(). Resolves when it
   * acted: for "hold", once the server's first answer after them is held (the server has answered).
   */
  when(text: string, action: "cut" | "hold"): Promise<void>;
  /** Passes the answers held so far, in order, and holds no more. */
  releaseHeld(): void;
  /** Back to passing connections through (listening on the same port again after takeDown). */
  restore(): void;
  close(): Promise<void>;
}

export function startDbProxy(databaseUrl: string, { cut = false } = {}): DbProxy {
  const target = new URL(databaseUrl);
  const open = new Set<Deno.Conn>();
  let refusing = cut;
  let accepted = 0;
  let trigger: { text: Uint8Array; action: "cut" | "hold"; acted: () => void } | null = null;
  /** Per connection holding its answers: what it holds, and how to pass it on. */
  const holding = new Set<Held>();
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
        const toClient = conn.writable.getWriter();
        let held = null as Held | null;
        (async () => {
          const toServer = upstream.writable.getWriter();
          for await (const chunk of conn.readable) {
            const hit = trigger && includes(chunk, trigger.text) ? trigger : null;
            if (hit) trigger = null;
            if (hit?.action === "cut") {
              end();
              hit.acted();
              return;
            }
            if (hit) {
              // Set before the bytes go: the server's answer to them must find it.
              const h: Held = {
                chunks: [],
                acted: hit.acted,
                pass: () => {
                  holding.delete(h);
                  if (held === h) held = null;
                  for (const c of h.chunks.splice(0)) toClient.write(c).catch(() => {});
                },
              };
              held = h;
              holding.add(h);
            }
            await toServer.write(chunk);
          }
        })().catch(() => {}).finally(end);
        (async () => {
          for await (const chunk of upstream.readable) {
            if (held) {
              held.chunks.push(chunk);
              held.acted?.();
              held.acted = undefined;
              continue;
            }
            await toClient.write(chunk);
          }
        })().catch(() => {}).finally(end);
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
    when(text, action) {
      return new Promise<void>((acted) => {
        trigger = { text: new TextEncoder().encode(text), action, acted };
      });
    },
    releaseHeld() {
      for (const h of [...holding]) h.pass();
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

/** A connection's answers held since a "hold": what is held, how to pass it on, whom to tell of the first. */
interface Held {
  chunks: Uint8Array[];
  pass: () => void;
  acted?: () => void;
}

function includes(haystack: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}
