import * as Reactivity from "@effect/experimental/Reactivity"
import { Context, Deferred, Duration, Effect, Layer, RcMap, type Scope } from "effect"
import { TenancyConfig } from "./TenancyConfig.js"
import { type TenantNotFound, type TenantSuspended, TenantUnavailable } from "./TenancyErrors.js"
import { TenantDatabases } from "./TenantDatabases.js"
import { type TenantServices, TenantServicesLive } from "./TenantServices.js"
import { TenantSession } from "./TenantSession.js"

export type TenantContextError = TenantNotFound | TenantSuspended | TenantUnavailable

export interface TenantContextStats {
  /** Contexts open now (each holds one tenant pool). */
  readonly open: number
  /** References held by callers now. */
  readonly references: number
  /** Contexts opened and closed since start. */
  readonly opened: number
  readonly closed: number
}

/**
 * The per-tenant context cache. A tenant's layers (TenantSession, repositories,
 * services) are built once, kept in an RcMap and handed out by reference: a
 * caller takes a reference under its own Scope, which releases it however that
 * scope ends. An unreferenced context closes after the idle time, or earlier
 * when its room is needed.
 *
 * Bounds: at most `connectionBudget / maxConnectionsPerTenant` contexts are
 * open, so pools can never hold more than the budget. RcMap's own capacity
 * refuses rather than evicts, and invalidating a held entry frees its slot
 * before its pool closes; so the open count is kept here, counted from when a
 * context starts opening to when its pool has closed.
 */
export class TenantContexts extends Context.Tag("tenant-engine/TenantContexts")<TenantContexts, {
  /** A reference to the tenant's built context, held until the caller's scope closes. */
  readonly get: (tenantId: string) => Effect.Effect<Context.Context<TenantServices>, TenantContextError, Scope.Scope>
  /** Closes the tenant's context as soon as no one holds it; the next get builds it anew. */
  readonly invalidate: (tenantId: string) => Effect.Effect<void>
  readonly stats: Effect.Effect<TenantContextStats>
}>() {
  static readonly layer = Layer.scoped(TenantContexts, Effect.suspend(() => make)).pipe(
    Layer.provide(Reactivity.layer)
  )
}

/** Runs an effect inside a tenant's context, holding a reference only while it runs. */
export const withTenant = (tenantId: string) =>
<A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | TenantContextError, Exclude<R, TenantServices> | TenantContexts> =>
  Effect.scoped(
    Effect.flatMap(TenantContexts, (contexts) =>
      Effect.flatMap(contexts.get(tenantId), (context) => Effect.provide(effect, context)))
  )

const make = Effect.gen(function*() {
  const config = yield* TenancyConfig
  const databases = yield* TenantDatabases
  const reactivity = yield* Effect.context<Reactivity.Reactivity>()
  const maxOpen = Math.max(1, Math.floor(config.connectionBudget / config.maxConnectionsPerTenant))
  const acquireTimeout = Duration.toMillis(config.acquireTimeout)

  let open = 0
  let opened = 0
  let closed = 0
  // References and last use per tenant, to find the least recently used idle context.
  const usage = new Map<string, { references: number; lastUsed: number }>()
  // Completed (and replaced) whenever a slot may have become free.
  let roomChanged = yield* Deferred.make<void>()
  const signalRoom = Effect.suspend(() => {
    const previous = roomChanged
    return Effect.flatMap(Deferred.make<void>(), (next) => {
      roomChanged = next
      return Deferred.succeed(previous, undefined)
    })
  })

  /** Reserves a slot for a new context, evicting an idle one or waiting for room. */
  const reserveSlot = (deadline: number): Effect.Effect<void, TenantUnavailable> =>
    Effect.suspend(() => {
      if (open < maxOpen) {
        open++
        return Effect.void
      }
      const idle = [...usage.entries()]
        .filter(([, u]) => u.references === 0)
        .sort(([, a], [, b]) => a.lastUsed - b.lastUsed)[0]
      const wait = deadline - Date.now()
      if (idle === undefined && wait <= 0) {
        return Effect.fail(
          new TenantUnavailable({ message: "every tenant connection is in use; try again shortly", retryAfterSeconds: 1 })
        )
      }
      const waitForRoom = idle !== undefined
        ? Effect.zipRight(Effect.sync(() => usage.delete(idle[0])), RcMap.invalidate(map, idle[0]))
        : Effect.asVoid(Effect.timeout(Deferred.await(roomChanged), wait).pipe(Effect.ignore))
      return Effect.zipRight(waitForRoom, reserveSlot(deadline))
    })

  const lookup = (tenantId: string) =>
    Effect.gen(function*() {
      const placement = yield* databases.placement(tenantId)
      yield* reserveSlot(Date.now() + acquireTimeout)
      opened++
      // The slot is given back when this context's scope closes, after its pool has ended.
      yield* Effect.addFinalizer(() =>
        Effect.zipRight(Effect.sync(() => {
          open--
          closed++
          if (usage.get(tenantId)?.references === 0) usage.delete(tenantId)
        }), signalRoom)
      )
      const scope = yield* Effect.scope
      const layer = TenantServicesLive.pipe(
        Layer.provideMerge(TenantSession.layer(placement, {
          maxConnections: config.maxConnectionsPerTenant,
          acquireTimeout: config.acquireTimeout
        }))
      )
      return yield* Layer.buildWithScope(layer, scope).pipe(Effect.provide(reactivity))
    })

  const map = yield* RcMap.make({ lookup, idleTimeToLive: config.idleTimeout })

  const release = (tenantId: string) =>
    Effect.suspend(() => {
      const u = usage.get(tenantId)
      if (u) {
        u.references--
        u.lastUsed = Date.now()
      }
      return u?.references === 0 ? signalRoom : Effect.void
    })

  const get = (tenantId: string) =>
    Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        const u = usage.get(tenantId) ?? { references: 0, lastUsed: 0 }
        usage.set(tenantId, u)
        u.references++
        u.lastUsed = Date.now()
        yield* Effect.addFinalizer(() => release(tenantId))
        return yield* restore(RcMap.get(map, tenantId)).pipe(
          // RcMap keeps a failed lookup for the idle time; drop it so the next caller retries.
          Effect.tapError(() => RcMap.invalidate(map, tenantId))
        )
      })
    )

  return TenantContexts.of({
    get,
    invalidate: (tenantId) => RcMap.invalidate(map, tenantId),
    stats: Effect.sync(() => ({
      open,
      references: [...usage.values()].reduce((sum, u) => sum + u.references, 0),
      opened,
      closed
    }))
  })
})
