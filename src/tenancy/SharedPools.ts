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
 */
export class SharedPools extends Context.Tag("tenant-engine/SharedPools")<SharedPools, {
  /** The pool of a schema tenant's shared database. */
  readonly get: (placement: TenantPlacement) => Effect.Effect<Pg.Pool, TenantUnavailable>
}>() {
  /** Shared pools with no budget around them: for composing a TenantSession directly (tests). */
  static readonly layer = (options: SharedPoolsOptions) => Layer.scoped(SharedPools, makeSharedPools(options))
}

export const makeSharedPools = (options: SharedPoolsOptions) =>
  Effect.gen(function*() {
    const pools = new Map<string, { readonly opening: Deferred.Deferred<Pg.Pool, TenantUnavailable>; readonly placement: TenantPlacement }>()
    const afterClose = options.afterClose ?? (() => Effect.void)

    const open = (placement: TenantPlacement) =>
      Effect.zipRight(
        options.beforeOpen?.(placement) ?? Effect.void,
        Effect.tryPromise({
          try: () =>
            openPool({
              url: login(placement.host, {
                database: placement.database,
                user: placement.login.user,
                password: Redacted.value(placement.login.password)
              }),
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
        if (existing !== undefined) return Deferred.await(existing.opening)
        return Effect.flatMap(Deferred.make<Pg.Pool, TenantUnavailable>(), (opening) => {
          pools.set(key, { opening, placement })
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
