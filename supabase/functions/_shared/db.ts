// One way to reach Postgres: postgres.js over a connection URL (hosted Supabase, any server, or PGlite's socket).
import { connect as tcpConnect, type Socket } from "node:net";
import postgres from "postgres";
import { hasUrlScheme } from "./env.ts";

export type Sql = postgres.Sql;

/**
 * DATABASE_URL wins when set explicitly; hosted Supabase functions receive SUPABASE_DB_URL. Locally, a URL
 * exported under either name keeps .env's out (scripts/lib/dotenv.ts), so the shell's is the one found here.
 */
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
  /** What the server says besides results (RAISE NOTICE, WARNING); dropped by default. */
  onNotice?: (notice: postgres.Notice) => void;
}

/** A database URL that cannot be used; its message never quotes the URL (it holds the password). */
export class DatabaseUrlError extends Error {}

export function connect(url: string, options: ConnectOptions = {}): Sql {
  const connectTimeout = options.connectTimeout ?? 2;
  // postgres.js takes the user, password and host from after the first "://". Without one (a typo such as
  // "postgresql:/user:pw@host/db", or no scheme) it connected to localhost, to a database named after the text.
  if (!hasUrlScheme(url)) {
    throw new DatabaseUrlError(
      "The database URL (DATABASE_URL / SUPABASE_DB_URL) is not a postgresql://user:password@host:port/database URL",
    );
  }
  if (asksForAnotherEncoding(url)) {
    throw new DatabaseUrlError(
      "The database URL (DATABASE_URL / SUPABASE_DB_URL) sets client_encoding: remove it (the relay speaks UTF-8)",
    );
  }
  try {
    return withDenseResults(postgres(url, {
      prepare: false, // Supavisor's transaction pooler cannot keep prepared statements
      max: options.max ?? 5,
      idle_timeout: 20,
      connect_timeout: connectTimeout,
      onnotice: options.onNotice ?? (() => {}),
      connection: { application_name: options.applicationName ?? "chatwoot-relay" },
      // postgres.js passes `socket` through to its connections; its type definitions leave it out.
      ...{
        socket: ({ host, port }: SocketTarget) => openNoDelaySocket(host[0], port[0]),
      },
    }));
  } catch (error) {
    // postgres.js parses the URL with `new URL()`, whose error quotes the whole URL, password included, into
    // the function's boot log or the terminal: said again without it (and without the original as cause).
    throw new DatabaseUrlError(
      `The database URL (DATABASE_URL / SUPABASE_DB_URL) cannot be parsed (${
        error instanceof Error ? error.name : "error"
      }): percent-encode special characters such as # / ? % in the password`,
    );
  }
}

/**
 * postgres.js passes a URL's query parameters to the server as settings, after its own client_encoding=UTF8.
 * Another encoding there (or in `options=-c …`) has the server read the UTF-8 that postgres.js always sends
 * as that encoding: text stored garbled, and the ingest's inline literals (sql_literal.ts) quoted for UTF-8
 * read under rules they were not quoted for.
 */
function asksForAnotherEncoding(url: string): boolean {
  let query: URLSearchParams;
  try {
    query = new URL(url.trim()).searchParams;
  } catch {
    return false; // postgres.js refuses it below, with its own message
  }
  for (const [name, value] of query) {
    if (name === "client_encoding" && !/^\s*(utf-?8|unicode)\s*$/i.test(value)) return true;
    if (name === "options" && /client_encoding/i.test(value)) return true;
  }
  return false;
}

interface SocketTarget {
  host: string[];
  port: number[];
}

/**
 * postgres.js writes a query's Bind/Execute (our 5-20 KB body) and its Sync as separate writes; with Nagle's
 * algorithm on, the small Sync waits for the server's delayed ACK of the body, a 40 ms stall that showed as
 * the ingest p99 (docs/benchmarks-history.md). postgres.js leaves TCP_NODELAY off, so the socket is made
 * here.
 *
 * The socket is handed over while it is still connecting (writes wait in it until it is connected), as
 * postgres.js does with its own: a failed connect then reaches postgres.js as the socket's 'error' and
 * 'close', which return the connection to its pool, and its connect_timeout applies. A factory that waits
 * for the connect and throws instead leaves the connection stuck in "connecting" for good: after as many
 * refused connects as the pool has connections, every query waited forever, also once the database was back.
 */
function openNoDelaySocket(host: string, port: number): Socket {
  return tcpConnect({ host, port, noDelay: true });
}

/**
 * Drops the statement text and parameters from a settled postgres.js query object (3.4: `strings`, `string`,
 * `statement`, which its result shares, `args` and `parameters`). Why: here (Deno 2.9, V8 15) such objects
 * outlive their query until V8's next full collection. In a standalone script, a newly made closure stored
 * into an object's property survived the young generation's collections with all it reaches, and postgres.js'
 * Query constructor stores two that reach the query through `this`. The ingest statement carries the whole
 * body as a literal (a long one as a parameter), so every webhook's body was copied into the old generation
 * (docs/benchmarks-history.md, "the body in the query object").
 * tests/query_objects.test.ts fails if a later postgres.js keeps the text elsewhere.
 */
export function releaseStatementText(query: object): void {
  const q = query as {
    strings?: unknown;
    string?: unknown;
    statement?: { string?: unknown } | null;
    args?: unknown[];
    parameters?: unknown[];
  };
  q.strings = undefined;
  q.string = undefined;
  if (q.statement) q.statement.string = undefined;
  // A statement's parameters (storeEvent sends a long body as one): its `args` and their serialised copies.
  if (Array.isArray(q.args)) q.args.length = 0;
  if (Array.isArray(q.parameters)) q.parameters.length = 0;
}

/**
 * Works around porsager/postgres#1119 and #1181 (postgres.js 3.4.9; remove once a release resets the count):
 * postgres.js counts a statement's rows per connection and resets the count only when a statement completes.
 * After one that failed having sent rows (an error in a later row, statement_timeout, its session ended by
 * pg_terminate_backend or a restart's fast shutdown), the connection's next result came back with as many
 * empty slots before its rows: `const [row] = await sql...` read undefined (a stored event answered 500 and
 * logged "Lost", a claimed batch never written back and so sent again, a readiness update answered 503).
 *
 * So every query made through the returned Sql (tagged, unsafe, file, and those of a reserved connection)
 * has its result compacted in place before it resolves: the same array (the query object keeps it, and the
 * forwarder empties it: releaseStatementText says why), with its count, command, columns and statement. Not needed in begin() and savepoint(): a transaction's first statement is BEGIN (or
 * SAVEPOINT), whose completion resets the count before any of its rows. Cursors (not used here) are not
 * covered: .cursor() replaces the query's resolve.
 */
export function withDenseResults<T extends postgres.Sql>(sql: T): T {
  return new Proxy(sql, {
    apply: (target, thisArg, args) => withDenseResult(Reflect.apply(target, thisArg, args)),
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver);
      if (typeof value !== "function") return value;
      if (key === "unsafe" || key === "file") {
        return (...args: unknown[]) => withDenseResult(value.apply(target, args));
      }
      if (key === "reserve") {
        return async (...args: unknown[]) => withDenseResults(await value.apply(target, args));
      }
      return value;
    },
  });
}

/** A query whose result, once it arrives, has its empty slots removed; helpers such as sql(identifier) as is. */
function withDenseResult<Q>(query: Q): Q {
  const q = query as { resolve?: unknown };
  if (typeof q?.resolve === "function") {
    const resolve = q.resolve;
    q.resolve = (result: unknown) => resolve(denseResult(result));
  }
  return query;
}

function denseResult(result: unknown): unknown {
  if (!Array.isArray(result)) return result; // describe()'s statement, a COPY's stream
  // Several statements in one simple query resolve as a plain array of their results.
  if (Object.getPrototypeOf(result) === Array.prototype) result.forEach(denseResult);
  else compactInPlace(result);
  return result;
}

function compactInPlace(result: unknown[]): void {
  let kept = 0;
  for (let i = 0; i < result.length; i++) {
    if (!(i in result)) continue;
    if (kept !== i) result[kept] = result[i];
    kept++;
  }
  result.length = kept;
}

/**
 * True for errors where the same query may succeed a moment later: connection trouble, contention, and the
 * server's own limits on waiting (lock_timeout 55P03, statement_timeout 57014, which an operator may set for
 * the database or role) or a read-only spell (25006, hosted Supabase when its disk is full). A lock wait
 * ended by a timeout is the same lock wait: a webhook's store must go on to its late store, not answer 500.
 */
export function isTransientDbError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: string }).code ?? "";
  if (/^(08|53|57P0|40001|40P01|55P03|57014|25006)/.test(code)) return true;
  return [
    "ECONNREFUSED",
    "ECONNRESET",
    "ETIMEDOUT",
    "EPIPE",
    "CONNECT_TIMEOUT",
    "CONNECTION_CLOSED",
    "CONNECTION_ENDED",
    "CONNECTION_DESTROYED",
  ].includes(code) ||
    // Supavisor (the hosted pooler) reports its own troubles as XX000: "Max client connections reached",
    // "max clients reached in session mode", "Subscribe error: {:error, :worker_not_found}" and the like.
    /connect|connection|socket|network|max clients|subscribe error/i.test(error.message);
}

/** The SQLSTATE (or postgres.js' own code, such as ECONNREFUSED) of a database error; null when none. */
export function dbErrorCode(error: unknown): string | null {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && code !== "" ? code : null;
}

/**
 * True for what the database, or the way to it, threw: the server's error (a SQLSTATE, five characters), a
 * connection's (postgres.js' own such as CONNECTION_CLOSED or CONNECT_TIMEOUT, the system's such as
 * ECONNREFUSED or EAI_AGAIN), or the server's handshake or protocol that postgres.js refuses. Not what
 * postgres.js throws for a query it was handed wrongly (UNDEFINED_VALUE, NOT_TAGGED_CALL: a bug of ours), nor
 * an error with no code, such as a TypeError of ours on an answer it gave.
 */
export function isDatabaseError(error: unknown): boolean {
  const code = dbErrorCode(error) ?? "";
  return /^[0-9A-Z]{5}$/.test(code) || /^E(AI_)?[A-Z]+$/.test(code) ||
    /^(CONNECT_TIMEOUT|CONNECTION_(CLOSED|ENDED|DESTROYED)|SASL_SIGNATURE_MISMATCH|MESSAGE_NOT_SUPPORTED)$/
      .test(code);
}

/** Per pool: its boundedTransactions that have their connection, begun, not ended. */
const connectionsInUse = new WeakMap<object, number>();

/** How many of `pool`'s connections its boundedTransactions hold now. */
export function connectionsHeld(pool: Sql): number {
  return connectionsInUse.get(pool) ?? 0;
}

/** A boundedTransaction as its caller's own bound sees it. */
export interface TransactionWait {
  /** True from the call until the transaction has its connection and has begun. */
  waiting: boolean;
  /**
   * Set by the caller once it stops waiting: the transaction, if it begins after all, rolls back at once, and
   * one whose work was under way rolls back as that work ends (no COMMIT is sent after the caller gave up).
   */
  abandoned: boolean;
  /**
   * Set once the work has ended and the COMMIT is on its way (or sent): from then on a failure, or no answer,
   * may follow a commit the server made (CommitOutcomeUnknown). Before, the transaction cannot have
   * committed: a server's error rolls it back, and a lost connection ends it without COMMIT.
   */
  committing?: boolean;
}

/** The database did not answer within the bound: the transaction, if it ever starts, rolls back. */
export class DatabaseAbandoned extends Error {
  /** It got no pooled connection: every one was held by other work the database had begun (the pool busy). */
  constructor(message: string, readonly poolBusy = false) {
    super(message);
  }
}

/**
 * The transaction failed, or its caller stopped waiting, after its COMMIT was on its way: the connection was
 * lost, the server answered no more, or refused the COMMIT itself. It may have committed (the server commits
 * before its answer can be lost) or not. `cause` is what was seen; its `code` is kept for the log.
 */
export class CommitOutcomeUnknown extends Error {
  readonly code: string | undefined;
  constructor(override readonly cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause));
    this.code = dbErrorCode(cause) ?? undefined;
  }
}

export interface BoundOptions {
  wait: TransactionWait;
  /** The server's bound in ms, read as the transaction begins: statement_timeout (below 1, it rolls back). */
  serverMs: () => number;
  /** lock_timeout set to the same bound too (otherwise the database's or role's own). */
  lockTimeout?: boolean;
  /** postgres.js' begin options ("read only"); none for a savepoint. */
  begin?: string;
}

/**
 * `work` in one transaction of `sql` (a savepoint when `sql` is a transaction: a test's own) that the server
 * ends at its bound: a query waiting on a lock (a migration's, an SQL editor's open transaction) holds its
 * pooled connection no longer than that. Not postgres.js' query.cancel(): that opens a connection of its own,
 * and when it cannot (the database answers only on the connections it has, its host gone) the rejection
 * escapes every handler and ends the process.
 *
 * The caller bounds its own wait and then sets `wait.abandoned`: a transaction still queued in the pool
 * (postgres.js sends it once it can connect) rolls back as it begins (DatabaseAbandoned), instead of running
 * after its request was answered. Begun, it counts as holding one of the pool's connections until it ends, so
 * that one that got no connection in time can tell a pool busy with other work (the database answered it)
 * from a database that could not be reached (connectionsHeld).
 *
 * Its connection lost while it runs (a database restart), it fails with CONNECTION_CLOSED and postgres.js
 * sends nothing more on it (beginSurvivingClose). A savepoint, in a test's own transaction, goes without.
 */
export async function boundedTransaction<T>(
  sql: Sql,
  { wait, serverMs, lockTimeout = false, begin = "" }: BoundOptions,
  work: (tx: Sql) => Promise<T>,
): Promise<T> {
  wait.waiting = true;
  const bounded = async (transaction: postgres.TransactionSql): Promise<T> => {
    wait.waiting = false;
    const ms = Math.floor(serverMs());
    if (wait.abandoned || ms < 1) {
      throw new DatabaseAbandoned("the request was answered before the transaction began");
    }
    // Dense: a connection whose last statement failed after rows could leave empty slots (withDenseResults).
    const tx = withDenseResults(transaction as unknown as Sql);
    connectionsInUse.set(sql, (connectionsInUse.get(sql) ?? 0) + 1);
    try {
      await tx`select set_config('statement_timeout', ${String(ms)}, true),
                      case when ${lockTimeout} then set_config('lock_timeout', ${String(ms)}, true) end`;
      return await work(tx);
    } finally {
      connectionsInUse.set(sql, (connectionsInUse.get(sql) ?? 1) - 1);
    }
  };
  const beforeCommit = () => {
    // The caller answered already (its bound passed while the work waited for the server's answer): rolled
    // back, not committed after an answer that said nothing was stored.
    if (wait.abandoned) {
      throw new DatabaseAbandoned("the request was answered before the transaction ended");
    }
    // postgres.js sends COMMIT once this returns (written in a later turn of the event loop): from here, a
    // failure or a bound passing may follow a commit.
    wait.committing = true;
  };
  const savepoint = (sql as Partial<postgres.TransactionSql>).savepoint;
  try {
    return savepoint
      ? await savepoint(async (tx) => {
        const result = await bounded(tx);
        beforeCommit();
        return result;
      }) as T
      : await beginSurvivingClose(sql, begin, bounded, beforeCommit);
  } catch (error) {
    throw wait.committing ? new CommitOutcomeUnknown(error) : error;
  }
}

/**
 * sql.begin(options, work), except that a transaction whose connection closed while it ran (a database
 * restart, its backend terminated, the network) ends with postgres.js' CONNECTION_CLOSED and nothing more
 * sent. Works around porsager/postgres#1066, #1154 and #1208 (3.4.9; unmerged fixes #1168, #1176, #1209,
 * #1215): once a connection closes, postgres.js rejects the statement in flight and nulls the socket; begin()
 * then sends ROLLBACK (COMMIT, had the work caught that error) on the same connection, written from a timer,
 * whose TypeError ("Cannot read properties of null (reading 'write')") no caller can catch: it ended the
 * process, in `deno task dev` every function with it (tests/connection_lost.test.ts).
 *
 * begin() also rejects, with CONNECTION_CLOSED, the moment its connection closes (a race with the work), in
 * the same synchronous call that rejects the statement. So, once the work has ended, a turn of the event loop
 * later (every promise reaction from that call has run by then) a closed connection is known: the work then
 * never settles, so that begin() sends nothing on it, and begin()'s own rejection is the answer. The pending
 * work holds nothing: the pool has moved the connection to its closed ones and connects it again when needed.
 * `beforeCommit` runs after that check, when the work succeeded: it may throw, to roll back instead.
 *
 * Not covered: a work that awaits something else between its statements (a fetch) and finds the connection
 * closed when it sends the next one. Each statement of ours follows the previous one's answer at once.
 */
export async function beginSurvivingClose<T>(
  sql: Sql,
  options: string,
  work: (tx: postgres.TransactionSql) => Promise<T>,
  beforeCommit: () => void = () => {},
): Promise<T> {
  let connectionClosed = false;
  const transaction = sql.begin(options, async (tx) => {
    const ended = await work(tx).then(
      (value) => ({ ok: true as const, value }),
      (error: unknown) => ({ ok: false as const, error }),
    );
    await new Promise((resolve) => setTimeout(resolve, 0));
    if (connectionClosed) return await new Promise<never>(() => {});
    if (!ended.ok) throw ended.error;
    beforeCommit();
    return ended.value;
  });
  // Before the work ends, begin() settles only as its connection closes.
  transaction.catch(() => connectionClosed = true);
  return await transaction as T;
}

/** Why the database failed, as one fixed word an answer may carry (never the message: it may quote data). */
export type DbFailureReason = "read_only" | "full" | "unreachable" | "busy" | "error";

export function dbFailureReason(error: unknown): DbFailureReason {
  const code = dbErrorCode(error) ?? "";
  if (code === "25006") return "read_only";
  // disk_full, out_of_memory, too_many_connections, configuration_limit_exceeded
  if (/^53/.test(code)) return "full";
  if (/^(08|57P0)/.test(code)) return "unreachable";
  if (/^(40001|40P01|55P03|57014)$/.test(code)) return "busy";
  return isTransientDbError(error) ? "unreachable" : "error";
}

/**
 * Why the database cannot store anything although it answers, or null: a read-only database (default_transaction_
 * read_only, as hosted Supabase sets when its disk is full) or a hot standby. Read in a transaction of its
 * own (or the caller's), so it is what a new transaction of this role and database gets.
 */
export async function readOnlyProblem(sql: postgres.Sql | postgres.TransactionSql): Promise<string | null> {
  const [row] = await sql<{ read_only: string; standby: boolean; by_default: string }[]>`
    select current_setting('transaction_read_only') as read_only, pg_is_in_recovery() as standby,
           current_setting('default_transaction_read_only') as by_default`;
  if (row?.read_only !== "on") return null;
  if (row.standby) return "database is read-only: a hot standby (recovery), every write fails";
  return `database is read-only (default_transaction_read_only${
    row.by_default === "on" ? " = on" : ""
  }; hosted Supabase sets it when the disk is full): every webhook fails to store`;
}
