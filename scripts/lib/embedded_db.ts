// The embedded default database: PGlite (Postgres compiled to WebAssembly) behind a TCP server speaking the
// wire protocol, so every client (postgres.js, psql, the Supabase CLI) talks to it like to a real server.
import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketHandler } from "@electric-sql/pglite-socket";
import { createServer, type Server, type Socket } from "node:net";

export interface EmbeddedDb {
  url: string;
  pglite: PGlite;
  stop(): Promise<void>;
}

/**
 * Shares PGlite's single session between client connections, one protocol *cycle* at a time.
 *
 * Why our own: pglite-socket's multiplexer (0.2.x) queues each protocol message separately, so a
 * Parse/Bind/Execute/Sync cycle of one connection can be split by another connection's Parse, which
 * replaces the unnamed statement ("bind message supplies 1 parameters, but prepared statement requires 0").
 * Here a connection owns the session from its first message until its Sync or simple Query completes, and
 * for as long as it keeps a transaction open; the others wait their turn in arrival order.
 */
class CycleQueue {
  #owner: number | null = null;
  #waiting: Array<{ handlerId: number; resume: () => void; fail: (error: Error) => void }> = [];

  constructor(private readonly pglite: PGlite) {}

  async enqueue(handlerId: number, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number> {
    await this.#acquire(handlerId);
    let bytes = 0;
    try {
      await this.pglite.execProtocolRawStream(message, {
        onRawData: (data: Uint8Array) => {
          bytes += data.length;
          onData(data);
        },
      });
    } finally {
      if (endsCycle(message) && !this.pglite.isInTransaction()) this.#release(handlerId);
    }
    return bytes;
  }

  /** A connection went away: drop what it was waiting for. */
  clearQueueForHandler(handlerId: number): void {
    this.#waiting = this.#waiting.filter((w) => {
      if (w.handlerId !== handlerId) return true;
      w.fail(new Error("connection closed"));
      return false;
    });
  }

  /** A connection went away while owning the session: roll back what it left open and pass the turn on. */
  async clearTransactionIfNeeded(handlerId: number): Promise<void> {
    if (this.#owner !== handlerId) return;
    if (this.pglite.isInTransaction()) await this.pglite.exec("ROLLBACK").catch(() => {});
    this.#release(handlerId);
  }

  #acquire(handlerId: number): Promise<void> {
    if (this.#owner === null || this.#owner === handlerId) {
      this.#owner = handlerId;
      return Promise.resolve();
    }
    return new Promise((resume, fail) => this.#waiting.push({ handlerId, resume, fail }));
  }

  #release(handlerId: number): void {
    if (this.#owner !== handlerId) return;
    const next = this.#waiting.shift();
    this.#owner = next ? next.handlerId : null;
    if (!next) return;
    // Everything else that connection already queued goes with its turn.
    next.resume();
    this.#waiting = this.#waiting.filter((w) => {
      if (w.handlerId !== next.handlerId) return true;
      w.resume();
      return false;
    });
  }
}

const SYNC = 0x53; // 'S'
const QUERY = 0x51; // 'Q'
const TERMINATE = 0x58; // 'X'

/** True for the message that ends a cycle: Sync, a simple Query, Terminate, or the untyped startup packet. */
function endsCycle(message: Uint8Array): boolean {
  const type = message[0];
  if (type === SYNC || type === QUERY || type === TERMINATE) return true;
  // The startup packet has no type byte: it starts with its own length (a small int, first byte 0).
  return type === 0;
}

/** `dataDir` persists the database; omit it for an in-memory one. Port 0 picks a free port. */
export async function startEmbeddedDb(
  { dataDir, port = 0, host = "127.0.0.1" }: { dataDir?: string; port?: number; host?: string } = {},
): Promise<EmbeddedDb> {
  if (dataDir) await Deno.mkdir(dataDir, { recursive: true });
  const pglite = await PGlite.create(dataDir ? { dataDir } : undefined);
  const queue = new CycleQueue(pglite);
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    // The handler's declared type names pglite-socket's own queue class; ours has the same methods.
    const handler = new PGLiteSocketHandler({
      queryQueue: queue as unknown as ConstructorParameters<typeof PGLiteSocketHandler>[0]["queryQueue"],
      closeOnDetach: true,
    });
    handler.attach(socket).catch(() => socket.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  const boundPort = typeof address === "object" && address ? address.port : port;
  return {
    url: `postgresql://postgres:postgres@${host}:${boundPort}/postgres`,
    pglite,
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await pglite.close();
    },
  };
}
