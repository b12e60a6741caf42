import type * as Reactivity from "@effect/experimental/Reactivity"
import type { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { PgClient } from "@effect/sql-pg"
import { Context, type Duration, Effect, Layer, type Scope } from "effect"
import { openPool } from "../db/Pool.js"
import { sqlState } from "../db/SqlErrors.js"
import { makeSchemaClient } from "./SchemaClient.js"
import { SharedPools } from "./SharedPools.js"
import { TenantUnavailable } from "./TenancyErrors.js"
import { type TenantPlacement, tenantUrl } from "./TenantPlacement.js"

export interface TenantSessionOptions {
  /** Connections a database tenant's own pool may open. */
  readonly maxConnections: number
  /** How long to wait for a connection (opening one, or a free one in the pool). */
  readonly acquireTimeout: Duration.DurationInput
  /** A statement running longer than this is cancelled by PostgreSQL. */
  readonly statementTimeout?: Duration.DurationInput
}

/**
 * One tenant's data: a `SqlClient` bound to that tenant alone. Repositories
 * take their client from here, never from the global `SqlClient` tag, so no
 * tenant code can reach the platform database or another tenant's data.
 *
 * A `database` tenant's client is a pool of its own, logged in as the
 * tenant's role to the tenant's database. A `schema` tenant's client runs on
 * its server's shared pool and takes the tenant's role and schema for every
 * unit of work (SchemaClient). Repositories cannot tell the two apart.
 */
export class TenantSession extends Context.Tag("tenant-engine/TenantSession")<TenantSession, {
  readonly tenantId: string
  readonly sql: SqlClient.SqlClient
}>() {
  /**
   * A database tenant's pool is opened by acquireRelease and closed when the
   * layer's scope closes; the open checks one connection, so an unreachable
   * database fails here, as TenantUnavailable, rather than on the first query.
   * A schema tenant takes the server's shared pool, which outlives it.
   */
  static readonly layer = (
    placement: TenantPlacement,
    options: TenantSessionOptions
  ): Layer.Layer<TenantSession, TenantUnavailable, Reactivity.Reactivity | SharedPools> =>
    Layer.scoped(
      TenantSession,
      Effect.map(
        placement.strategy === "database" ? ownPool(placement, options) : sharedPool(placement),
        (sql): TenantSession["Type"] => ({ tenantId: placement.tenantId, sql })
      )
    )
}

const ownPool = (
  placement: TenantPlacement,
  options: TenantSessionOptions
): Effect.Effect<SqlClient.SqlClient, TenantUnavailable, Scope.Scope | Reactivity.Reactivity | SharedPools> =>
  Effect.gen(function*() {
    const pool = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () =>
          openPool({
            url: tenantUrl(placement),
            maxConnections: options.maxConnections,
            acquireTimeout: options.acquireTimeout,
            statementTimeout: options.statementTimeout,
            applicationName: `tenant-engine/${placement.tenantId}`
          }),
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
    const sql: SqlClient.SqlClient = yield* PgClient.fromPool({
      acquire: Effect.succeed(pool),
      applicationName: `tenant-engine/${placement.tenantId}`
    }).pipe(Effect.orDie)
    return sql
  })

const sharedPool = (placement: TenantPlacement) =>
  Effect.gen(function*() {
    const pools = yield* SharedPools
    const pool = yield* pools.get(placement)
    return yield* makeSchemaClient(pool, {
      database: placement.database,
      schema: placement.schema ?? placement.role,
      role: placement.role
    })
  })

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
