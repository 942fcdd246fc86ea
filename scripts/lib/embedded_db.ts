// The embedded default database: PGlite (Postgres compiled to WebAssembly) behind a TCP server speaking the
// wire protocol, so every client (postgres.js, psql, the Supabase CLI) talks to it like to a real server.
import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketHandler } from "@electric-sql/pglite-socket";
import { createServer, type Server, type Socket } from "node:net";

export interface EmbeddedDb {
  url: string;
  pglite: PGlite;
  /**
   * LISTEN in-process: `onNotify` gets every NOTIFY on `channel`, whichever client caused it. (PGlite's own
   * listen() only sees notifications of its in-process queries, never those of socket clients.)
   */
  listen(channel: string, onNotify: (payload: string) => void): Promise<() => Promise<void>>;
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
  readonly listeners = new Map<string, Set<(payload: string) => void>>();

  constructor(private readonly pglite: PGlite) {}

  async enqueue(handlerId: number, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number> {
    await this.#acquire(handlerId);
    let bytes = 0;
    const scanner = this.listeners.size > 0 ? new NotificationScanner(this.listeners) : null;
    try {
      await this.pglite.execProtocolRawStream(message, {
        onRawData: (data: Uint8Array) => {
          bytes += data.length;
          scanner?.feed(data);
          onData(data);
        },
      });
    } finally {
      if (endsCycle(message) && !this.pglite.isInTransaction()) this.#release(handlerId);
    }
    return bytes;
  }

  /** Runs `fn` on the session between two clients' cycles (never inside one). */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    await this.#acquire(IN_PROCESS);
    try {
      return await fn();
    } finally {
      this.#release(IN_PROCESS);
    }
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

const IN_PROCESS = -1; // the owner id of exclusive() turns; socket handlers count from 0

/**
 * Picks NotificationResponse messages ('A': pid, channel, payload) out of a cycle's output stream, whose
 * chunks need not align with message boundaries, and hands them to the in-process listeners.
 */
class NotificationScanner {
  #header = new Uint8Array(5);
  #headerFill = 0;
  #remaining = 0;
  #body: Uint8Array | null = null;
  #bodyFill = 0;

  constructor(private readonly listeners: Map<string, Set<(payload: string) => void>>) {}

  feed(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.#headerFill < 5) {
        this.#header[this.#headerFill++] = chunk[i++];
        if (this.#headerFill < 5) continue;
        this.#remaining = new DataView(this.#header.buffer).getInt32(1) - 4;
        this.#body = this.#header[0] === NOTIFICATION ? new Uint8Array(this.#remaining) : null;
        this.#bodyFill = 0;
      } else {
        const take = Math.min(this.#remaining, chunk.length - i);
        this.#body?.set(chunk.subarray(i, i + take), this.#bodyFill);
        this.#bodyFill += take;
        this.#remaining -= take;
        i += take;
      }
      if (this.#headerFill === 5 && this.#remaining === 0) {
        if (this.#body) this.#dispatch(this.#body);
        this.#headerFill = 0;
      }
    }
  }

  #dispatch(body: Uint8Array): void {
    const channelEnd = body.indexOf(0, 4);
    const channel = decoder.decode(body.subarray(4, channelEnd));
    const payload = decoder.decode(body.subarray(channelEnd + 1, body.length - 1));
    // Outside the cycle: a listener may query the database, which must wait for this cycle to end.
    for (const onNotify of this.listeners.get(channel) ?? []) setTimeout(() => onNotify(payload), 0);
  }
}

const decoder = new TextDecoder();
const NOTIFICATION = 0x41; // 'A'
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

/**
 * `dataDir` persists the database; omit it for an in-memory one. Port 0 picks a free port, which `onListen`
 * is told once it is bound. `open` creates the PGlite instance once the port is bound (tests pass one that
 * waits, to hold clients in the opening window).
 */
export async function startEmbeddedDb(
  { dataDir, port = 0, host = "127.0.0.1", open = (options) => PGlite.create(options), onListen }: {
    dataDir?: string;
    port?: number;
    host?: string;
    open?: (options?: { dataDir: string }) => Promise<PGlite>;
    onListen?: (port: number) => void;
  } = {},
): Promise<EmbeddedDb> {
  // The port first: taken, it most likely means another dev server on the same data directory. A client that
  // connects meanwhile (one that polls the port to see the server up) waits for the database: its socket is
  // attached once it is open.
  const ready = Promise.withResolvers<CycleQueue>();
  ready.promise.catch(() => {}); // a failed start is thrown below; here it only closes waiting sockets
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    ready.promise.then((queue) => {
      // The handler's declared type names pglite-socket's own queue class; ours has the same methods.
      const handler = new PGLiteSocketHandler({
        queryQueue: queue as unknown as ConstructorParameters<typeof PGLiteSocketHandler>[0]["queryQueue"],
        closeOnDetach: true,
      });
      return handler.attach(socket);
    }).catch(() => socket.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  const boundPort = typeof address === "object" && address ? address.port : port;
  onListen?.(boundPort);
  let pglite: PGlite;
  let lock: Deno.FsFile | null = null;
  try {
    if (dataDir) {
      await Deno.mkdir(dataDir, { recursive: true });
      lock = await lockDataDir(dataDir);
    }
    pglite = await open(dataDir ? { dataDir } : undefined);
  } catch (error) {
    lock?.close();
    ready.reject(error);
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    throw error;
  }
  const queue = new CycleQueue(pglite);
  ready.resolve(queue);
  return {
    url: `postgresql://postgres:postgres@${host}:${boundPort}/postgres`,
    pglite,
    async listen(channel, onNotify) {
      const quoted = `"${channel.replaceAll('"', '""')}"`;
      let set = queue.listeners.get(channel);
      if (!set) {
        set = new Set();
        queue.listeners.set(channel, set);
        await queue.exclusive(() => pglite.exec(`LISTEN ${quoted}`));
      }
      set.add(onNotify);
      return async () => {
        set.delete(onNotify);
        if (set.size === 0 && queue.listeners.get(channel) === set) {
          queue.listeners.delete(channel);
          await queue.exclusive(() => pglite.exec(`UNLISTEN ${quoted}`)).catch(() => {});
        }
      };
    },
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await pglite.close();
      lock?.close(); // closing the file releases its lock
    },
  };
}

/** Raised when another process has the data directory open. */
export class DataDirInUse extends Error {
  constructor(readonly dataDir: string) {
    super(`${dataDir} is in use by another process`);
  }
}

/**
 * An exclusive lock on `<dataDir>.lock`, held while the database is open. PGlite keeps no lock of its own, and
 * two processes writing one data directory corrupt it; the port check above does not cover two servers on
 * different ports (DB_PORT=0 twice). The system drops the lock when the process ends, however it ends.
 */
async function lockDataDir(dataDir: string): Promise<Deno.FsFile> {
  const file = await Deno.open(`${dataDir}.lock`, { create: true, write: true });
  if (await file.tryLock(true)) return file;
  file.close();
  throw new DataDirInUse(dataDir);
}
