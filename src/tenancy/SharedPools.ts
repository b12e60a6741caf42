import { Context, Deferred, Duration, Effect, Layer, Redacted } from "effect"
import type Pg from "pg"
import { login } from "../db/DatabaseUrl.js"
import { openPool } from "../db/Pool.js"
import { TenantUnavailable } from "./TenancyErrors.js"
import type { TenantPlacement } from "./TenantPlacement.js"

export interface SharedPoolsOptions {
  /** Connections each shared pool may open. */
  readonly connections: number
  readonly acquireTimeout: Duration.DurationInput
  /** Runs before a pool opens (TenantContexts takes the pool's connections from the server's share here). */
  readonly beforeOpen?: (placement: TenantPlacement) => Effect.Effect<void, TenantUnavailable>
  /** Runs once a pool has closed, or failed to open. */
  readonly afterClose?: (placement: TenantPlacement) => Effect.Effect<void>
}

/**
 * The shared pools of schema tenants: one per shared database (one per
 * server), logged in as that database's gateway role. A pool opens when the
 * first schema tenant of its database needs it and stays open until the
 * service closes; every schema tenant's TenantSession runs on it.
 *
 * A rotated gateway password reaches an open pool through the contexts that
 * reopen after the rotation: a placement with a higher login version than the
 * pool's gives the pool its password, and the connections it opens from then
 * on log in with it. Connections already open stay as they are (PostgreSQL
 * checks a password only at login), so no work in flight is cut off.
 */
export class SharedPools extends Context.Tag("tenant-engine/SharedPools")<SharedPools, {
  /** The pool of a schema tenant's shared database. */
  readonly get: (placement: TenantPlacement) => Effect.Effect<Pg.Pool, TenantUnavailable>
}>() {
  /** Shared pools with no budget around them: for composing a TenantSession directly (tests). */
  static readonly layer = (options: SharedPoolsOptions) => Layer.scoped(SharedPools, makeSharedPools(options))
}

const loginUrl = (placement: TenantPlacement) =>
  login(placement.host, {
    database: placement.database,
    user: placement.login.user,
    password: Redacted.value(placement.login.password)
  })

export const makeSharedPools = (options: SharedPoolsOptions) =>
  Effect.gen(function*() {
    const pools = new Map<string, {
      readonly opening: Deferred.Deferred<Pg.Pool, TenantUnavailable>
      readonly placement: TenantPlacement
      /** The login version the pool's new connections use. */
      version: number
    }>()
    const afterClose = options.afterClose ?? (() => Effect.void)

    const open = (placement: TenantPlacement) =>
      Effect.zipRight(
        options.beforeOpen?.(placement) ?? Effect.void,
        Effect.tryPromise({
          try: () =>
            openPool({
              url: loginUrl(placement),
              maxConnections: options.connections,
              acquireTimeout: options.acquireTimeout,
              applicationName: "tenant-engine/shared",
              // The gateway role's own (ServerAdmin sets it): through a pooler too.
              statementTimeout: null
            }),
          catch: (cause) => cause
        }).pipe(
          Effect.tapError((cause) =>
            Effect.zipRight(
              afterClose(placement),
              Effect.logWarning(`the shared database ${placement.database} is unreachable`, cause)
            )
          ),
          Effect.mapError(() =>
            new TenantUnavailable({ message: "the tenant's database is unavailable", retryAfterSeconds: 5 })
          )
        )
      )

    const get = (placement: TenantPlacement) =>
      Effect.suspend(() => {
        const key = `${placement.host}\n${placement.database}\n${placement.login.user}`
        const existing = pools.get(key)
        if (existing !== undefined) {
          return Effect.tap(Deferred.await(existing.opening), (pool) =>
            Effect.sync(() => {
              // Only forward: a context built from a placement read before the
              // rotation must not take the pool back to the old password.
              if (placement.login.version <= existing.version) return
              existing.version = placement.login.version
              // pg makes each new connection from the pool's options, and its
              // URL's password wins over any other setting: so the URL is replaced.
              pool.options.connectionString = Redacted.value(loginUrl(placement))
            }))
        }
        return Effect.flatMap(Deferred.make<Pg.Pool, TenantUnavailable>(), (opening) => {
          pools.set(key, { opening, placement, version: placement.login.version })
          // Opened apart from the caller, so that a caller who gives up does not stop it for the others.
          return Effect.zipRight(
            open(placement).pipe(
              // A failure is not kept: the next caller tries again.
              Effect.tapError(() => Effect.sync(() => pools.delete(key))),
              Effect.exit,
              Effect.flatMap((exit) => Deferred.done(opening, exit)),
              Effect.forkDaemon
            ),
            Deferred.await(opening)
          )
        })
      })

    // At close every pool ends (one still opening is waited for); a failed one gave its room back already.
    yield* Effect.addFinalizer(() =>
      Effect.forEach([...pools.values()], ({ opening, placement }) =>
        Deferred.await(opening).pipe(
          Effect.flatMap((pool) => Effect.promise(() => pool.end())),
          Effect.zipRight(afterClose(placement)),
          Effect.ignore
        ), { discard: true })
    )

    return SharedPools.of({ get })
  })
