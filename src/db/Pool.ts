import { Duration, Redacted } from "effect"
import Pg from "pg"
import { watchPool } from "../observability/Pools.js"

/** How long a tenant's statement may run. */
export const STATEMENT_TIMEOUT = "30 seconds"

export interface PoolOptions {
  readonly url: Redacted.Redacted<string>
  readonly maxConnections: number
  /** How long to wait for a connection (opening one, or a free one in the pool). */
  readonly acquireTimeout: Duration.DurationInput
  /**
   * A statement running longer than this is cancelled by PostgreSQL (default
   * 30 seconds). `null`: the login role's own setting, and no start-up
   * parameter (a transaction-mode pooler refuses those it does not know).
   */
  readonly statementTimeout?: Duration.DurationInput | null | undefined
  readonly applicationName: string
}

/**
 * Opens a `pg` pool for tenant data and checks one connection, so that an
 * unreachable server fails here rather than on the first query.
 */
export const openPool = async (options: PoolOptions): Promise<Pg.Pool> => {
  const pool = new Pg.Pool({
    connectionString: Redacted.value(options.url),
    max: options.maxConnections,
    connectionTimeoutMillis: Duration.toMillis(options.acquireTimeout),
    idleTimeoutMillis: 30_000,
    ...(options.statementTimeout === null
      ? {}
      : { statement_timeout: Duration.toMillis(options.statementTimeout ?? STATEMENT_TIMEOUT) }),
    application_name: options.applicationName
  })
  // An idle connection that the server ends (restart, tenant dropped) emits
  // here; without a listener it would crash the process.
  pool.on("error", () => {})
  // Before the first connection, so that every connection is known to it.
  cancelOutOfBand(pool)
  // Its connections and waits, for the metrics.
  watchPool(pool, Redacted.value(options.url), options.applicationName)
  try {
    await pool.query("SELECT 1")
    return pool
  } catch (error) {
    await pool.end()
    throw error
  }
}

/** Why a connection a cancel was sent for leaves the pool rather than going back to it. */
export const CANCEL_SENT = new Error("a cancel was sent on this connection: it may still arrive")

/**
 * Cancels what a pooled client is running with PostgreSQL's own out-of-band
 * CancelRequest (pg's `Client#cancel`): a message on a fresh socket that takes
 * no session, no pool connection and no budget. Nothing running: nothing to
 * cancel (and no later query to hit by mistake); the answer says whether a
 * cancel went out.
 *
 * The cancel arrives when it arrives: if the query ends first, it hits
 * whatever the backend runs next, on a shared pool another tenant's
 * statement. So a connection a cancel was sent for is never reused: its next
 * release through `client.release` (how @effect/sql-pg gives it back) ends it;
 * a caller holding pg's release callback passes CANCEL_SENT itself.
 */
export const cancelActiveQuery = (pool: Pg.Pool, target: Pg.ClientBase): boolean => {
  const activeQuery: unknown = Reflect.get(target, "activeQuery")
  if (activeQuery == null) return false
  const canceller = new Pg.Client(pool.options)
  canceller.on("error", () => {})
  // pg's typings omit Client#cancel; it is public API in its sources (lib/client.js).
  Reflect.apply(Reflect.get(canceller, "cancel"), canceller, [target, activeQuery])
  // pg-pool sets `release` anew each time it hands the client out: this one checkout only.
  const release: unknown = Reflect.get(target, "release")
  if (typeof release === "function") {
    Reflect.set(target, "release", () => Reflect.apply(release, target, [CANCEL_SENT]))
  }
  return true
}

const CANCEL_STATEMENT = /^SELECT pg_cancel_backend\((\d+)\)$/

/**
 * @effect/sql-pg cancels an interrupted query (a client that went away) by
 * running `pg_cancel_backend` through the same pool; when every connection is
 * busy that waits for one, gives up, and the abandoned query runs on holding
 * its connection. The pool answers that statement out of band instead.
 */
const cancelOutOfBand = (pool: Pg.Pool): void => {
  const byProcessId = new Map<number, Pg.PoolClient>()
  const processIdOf = (client: Pg.PoolClient): unknown => Reflect.get(client, "processID")
  pool.on("connect", (client) => {
    const pid = processIdOf(client)
    if (typeof pid === "number") byProcessId.set(pid, client)
  })
  pool.on("remove", (client) => {
    const pid = processIdOf(client)
    if (typeof pid === "number") byProcessId.delete(pid)
  })
  // Only `query` is replaced, on this pool object: a Proxy would also trap
  // every other property read @effect/sql-pg makes per statement.
  const query: (...args: Array<unknown>) => unknown = Reflect.get(pool, "query")
  Reflect.set(pool, "query", (...args: Array<unknown>) => {
    const [text, callback] = args
    const match = typeof text === "string" ? CANCEL_STATEMENT.exec(text) : null
    if (match === null || typeof callback !== "function") return Reflect.apply(query, pool, args)
    const target = byProcessId.get(Number(match[1]))
    if (target !== undefined) cancelActiveQuery(pool, target)
    callback()
  })
}
