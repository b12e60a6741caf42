import type * as Reactivity from "@effect/experimental/Reactivity"
import type { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { PgClient } from "@effect/sql-pg"
import { Context, Duration, Effect, Layer, Redacted } from "effect"
import Pg from "pg"
import { sqlState } from "../db/SqlErrors.js"
import { TenantUnavailable } from "./TenancyErrors.js"
import { type TenantPlacement, tenantUrl } from "./TenantDatabases.js"

export interface TenantSessionOptions {
  readonly maxConnections: number
  /** How long to wait for a connection (opening one, or a free one in the pool). */
  readonly acquireTimeout: Duration.DurationInput
  /** A statement running longer than this is cancelled by PostgreSQL. */
  readonly statementTimeout?: Duration.DurationInput
}

/**
 * One tenant's database: a `SqlClient` bound to that database alone, logged in
 * as the tenant's own role. Repositories take their client from here, never
 * from the global `SqlClient` tag, so no tenant code can reach the platform
 * database or another tenant's.
 */
export class TenantSession extends Context.Tag("tenant-engine/TenantSession")<TenantSession, {
  readonly tenantId: string
  readonly sql: SqlClient.SqlClient
}>() {
  /**
   * Opens the tenant's pool with acquireRelease and closes it when the layer's
   * scope closes. The open checks one connection, so an unreachable database
   * fails here, as TenantUnavailable, rather than on the first query.
   */
  static readonly layer = (
    placement: TenantPlacement,
    options: TenantSessionOptions
  ): Layer.Layer<TenantSession, TenantUnavailable, Reactivity.Reactivity> =>
    Layer.scoped(
      TenantSession,
      Effect.gen(function*() {
        const pool = yield* Effect.acquireRelease(
          Effect.tryPromise({
            try: () => openPool(placement, options),
            catch: (cause) => cause
          }).pipe(
            Effect.tapError((cause) => Effect.logWarning(`tenant ${placement.tenantId}: database unreachable`, cause)),
            Effect.mapError(() =>
              new TenantUnavailable({
                message: `the database of tenant ${placement.tenantId} is unavailable`,
                retryAfterSeconds: 5
              })
            )
          ),
          (pool) => Effect.promise(() => pool.end())
        )
        const sql = yield* PgClient.fromPool({
          acquire: Effect.succeed(pool),
          applicationName: `tenant-engine/${placement.tenantId}`
        }).pipe(Effect.orDie)
        return { tenantId: placement.tenantId, sql }
      })
    )
}

const openPool = async (placement: TenantPlacement, options: TenantSessionOptions): Promise<Pg.Pool> => {
  const pool = new Pg.Pool({
    connectionString: Redacted.value(tenantUrl(placement)),
    max: options.maxConnections,
    connectionTimeoutMillis: Duration.toMillis(options.acquireTimeout),
    idleTimeoutMillis: 30_000,
    statement_timeout: Duration.toMillis(options.statementTimeout ?? "30 seconds"),
    application_name: `tenant-engine/${placement.tenantId}`
  })
  // An idle connection that the server ends (restart, tenant dropped) emits
  // here; without a listener it would crash the process.
  pool.on("error", () => {})
  // Before the first connection, so that every connection is known to it.
  cancelOutOfBand(pool)
  try {
    await pool.query("SELECT 1")
    return pool
  } catch (error) {
    await pool.end()
    throw error
  }
}

const CANCEL_STATEMENT = /^SELECT pg_cancel_backend\((\d+)\)$/

/**
 * @effect/sql-pg cancels an interrupted query (a client that went away) by
 * running `pg_cancel_backend` through the same pool; when every connection is
 * busy that waits for one, gives up, and the abandoned query runs on holding
 * its connection. The pool answers that statement with PostgreSQL's own
 * out-of-band CancelRequest instead (pg's `Client#cancel`): a message on a
 * fresh socket that takes no session, no pool connection and no budget.
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
  const cancel = (pid: number) => {
    const target = byProcessId.get(pid)
    const activeQuery: unknown = target && Reflect.get(target, "activeQuery")
    // Nothing running: nothing to cancel (and no later query to hit by mistake).
    if (target === undefined || activeQuery == null) return
    const canceller = new Pg.Client(pool.options)
    canceller.on("error", () => {})
    // pg's typings omit Client#cancel; it is public API in its sources (lib/client.js).
    Reflect.apply(Reflect.get(canceller, "cancel"), canceller, [target, activeQuery])
  }
  // Only `query` is replaced, on this pool object: a Proxy would also trap
  // every other property read @effect/sql-pg makes per statement.
  const query: (...args: Array<unknown>) => unknown = Reflect.get(pool, "query")
  Reflect.set(pool, "query", (...args: Array<unknown>) => {
    const [text, callback] = args
    const match = typeof text === "string" ? CANCEL_STATEMENT.exec(text) : null
    if (match === null || typeof callback !== "function") return Reflect.apply(query, pool, args)
    cancel(Number(match[1]))
    callback()
  })
}

/**
 * SQLSTATE classes that say the database, not the statement, is the problem:
 * connection (08), resources (53), operator intervention (57), no such
 * database (3D), authorization (28: the tenant's role was refused), and
 * 55000 (the database does not allow connections).
 */
const UNAVAILABLE_STATES = /^(08|53|57|3D|28)|^55000$/

/** SqlError messages of @effect/sql-pg for a connection that could not be had. */
const NO_CONNECTION = /^(Failed to acquire connection|Connection error)/

/**
 * Maps a tenant query's SqlError: the database being unreachable, overloaded,
 * shutting down or out of free connections is TenantUnavailable (503); any
 * other failure of a statement this project wrote is a bug, so a defect.
 */
export const orUnavailable = (tenantId: string) =>
<A, R>(effect: Effect.Effect<A, SqlError, R>): Effect.Effect<A, TenantUnavailable, R> =>
  Effect.catchAll(effect, (error) => {
    const state = sqlState(error)
    const isStatementError = !NO_CONNECTION.test(error.message) && state !== undefined &&
      /^[0-9A-Z]{5}$/.test(state) && !UNAVAILABLE_STATES.test(state)
    return isStatementError
      ? Effect.die(error)
      : Effect.fail(new TenantUnavailable({ message: `the database of tenant ${tenantId} is unavailable`, retryAfterSeconds: 2 }))
  })
