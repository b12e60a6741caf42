import * as Reactivity from "@effect/experimental/Reactivity"
import type { PgClient } from "@effect/sql-pg"
import { Clock, Context, Deferred, Duration, Effect, Layer, RcMap, Redacted, Schedule, Scope, Stream } from "effect"
import Pg from "pg"
import { PlatformDb } from "../platform/PlatformDb.js"
import { TenancyConfig } from "./TenancyConfig.js"
import { type TenantNotFound, type TenantSuspended, TenantUnavailable } from "./TenancyErrors.js"
import { TenantDatabases } from "./TenantDatabases.js"
import { type TenantServices, TenantServicesLive } from "./TenantServices.js"
import { TenantSession } from "./TenantSession.js"

/**
 * The channel on which a tenant's change of status, migration state or
 * existence is announced (by a trigger on `tenants`, migration 0003).
 */
export const TENANT_CHANGES = "tenant_engine_tenants"

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
  /** Invalidates, then waits (at most `timeout`) until the tenant's contexts have closed. */
  readonly drain: (tenantId: string, timeout: Duration.DurationInput) => Effect.Effect<void>
  readonly stats: Effect.Effect<TenantContextStats>
}>() {
  static readonly layer = Layer.scoped(TenantContexts, Effect.suspend(() => make)).pipe(
    Layer.provide(Reactivity.layer)
  )
}

/** The platform database's connection settings, for a plain `pg` client. */
const listenerConfig = (config: PgClient.PgClientConfig): Pg.ClientConfig => ({
  ...(config.url !== undefined
    ? { connectionString: Redacted.value(config.url) }
    : {
      host: config.host,
      port: config.port,
      user: config.username,
      password: config.password === undefined ? undefined : Redacted.value(config.password),
      database: config.database
    }),
  ...(config.ssl !== undefined ? { ssl: config.ssl } : {}),
  application_name: "tenant-engine/tenant-changes",
  // A server that does not answer is retried rather than waited for (shutdown waits for a connect).
  connectionTimeoutMillis: 5_000,
  // A connection that went silent (no reset) is noticed too.
  keepAlive: true
})

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
  const platform = yield* PlatformDb
  const reactivity = yield* Effect.context<Reactivity.Reactivity>()
  const maxOpen = Math.max(1, Math.floor(config.connectionBudget / config.maxConnectionsPerTenant))
  const acquireTimeout = Duration.toMillis(config.acquireTimeout)

  let open = 0
  let opened = 0
  let closed = 0
  // Open contexts per tenant (old generations included), for drain.
  const openPerTenant = new Map<string, number>()
  const count = (tenantId: string, delta: number) => {
    const n = (openPerTenant.get(tenantId) ?? 0) + delta
    if (n === 0) openPerTenant.delete(tenantId)
    else openPerTenant.set(tenantId, n)
  }
  // Contexts are cached under `${generation}/${tenantId}`, and a key is never used
  // again once invalidated: RcMap (effect 3) mishandles an entry invalidated while
  // held when its key is looked up again (the old entry's release or idle timer
  // removes the new one, which then never closes: its pool and slot leak;
  // Effect-TS/effect#7515).
  const generations = new Map<string, number>()
  const keyOf = (tenantId: string) => `${generations.get(tenantId) ?? 0}/${tenantId}`
  const tenantOf = (key: string) => key.slice(key.indexOf("/") + 1)
  const retire = (key: string): Effect.Effect<void> =>
    Effect.suspend(() => {
      const tenantId = tenantOf(key)
      if (keyOf(tenantId) === key) generations.set(tenantId, (generations.get(tenantId) ?? 0) + 1)
      return RcMap.invalidate(map, key)
    })
  // References and last use per key, to find the least recently used idle context.
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
        ? Effect.zipRight(Effect.sync(() => usage.delete(idle[0])), retire(idle[0]))
        : Effect.asVoid(Effect.timeout(Deferred.await(roomChanged), wait).pipe(Effect.ignore))
      return Effect.zipRight(waitForRoom, reserveSlot(deadline))
    })

  const isCached = (key: string): Effect.Effect<boolean> => RcMap.has(map, key)

  const lookup = (key: string) =>
    Effect.gen(function*() {
      const placement = yield* databases.placement(tenantOf(key))
      yield* reserveSlot(Date.now() + acquireTimeout)
      opened++
      count(tenantOf(key), 1)
      // The slot is given back when this context's scope closes, after its pool has ended.
      // Its usage goes too, unless a new context under the same key (after an idle
      // expiry) is already in use: that one must stay evictable.
      yield* Effect.addFinalizer(() =>
        Effect.flatMap(isCached(key), (replaced) =>
          Effect.zipRight(
            Effect.sync(() => {
              open--
              closed++
              count(tenantOf(key), -1)
              if (!replaced && usage.get(key)?.references === 0) usage.delete(key)
            }),
            signalRoom
          ))
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

  const release = (key: string) =>
    Effect.suspend(() => {
      const u = usage.get(key)
      if (u) {
        u.references--
        u.lastUsed = Date.now()
      }
      return u?.references === 0 ? signalRoom : Effect.void
    })

  const get = (tenantId: string) =>
    Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        const key = keyOf(tenantId)
        const u = usage.get(key) ?? { references: 0, lastUsed: 0 }
        usage.set(key, u)
        u.references++
        u.lastUsed = Date.now()
        // Scope.addFinalizer rather than Effect.addFinalizer: the latter diffs the
        // fiber's refs on every release, a measurable cost on every request.
        yield* Scope.addFinalizer(yield* Effect.scope, release(key))
        return yield* restore(RcMap.get(map, key)).pipe(
          // RcMap keeps a failed lookup for the idle time; drop it so the next caller retries.
          Effect.tapError(() => retire(key))
        )
      })
    )

  const invalidate = (tenantId: string) => retire(keyOf(tenantId))

  const drain = (tenantId: string, timeout: Duration.DurationInput) => {
    const deadline = Date.now() + Duration.toMillis(timeout)
    const wait: Effect.Effect<void> = Effect.suspend(() => {
      const remaining = deadline - Date.now()
      if (!openPerTenant.has(tenantId) || remaining <= 0) return Effect.void
      return Effect.zipRight(Effect.ignore(Effect.timeout(Deferred.await(roomChanged), remaining)), wait)
    })
    return Effect.zipRight(invalidate(tenantId), wait)
  }

  /** Every context cached now is dropped (each request holding one keeps it until it is done). */
  const invalidateAll = Effect.flatMap(RcMap.keys(map), (keys) => Effect.forEach(keys, retire, { discard: true }))

  // Changes made anywhere (another process, the CLI, SQL) drop this process's
  // context of the tenant: its next request opens it anew, or is refused.
  //
  // On a connection of its own: PgClient's `listen` shares one connection and
  // ignores its loss, so after a restart of PostgreSQL (or a proxy's idle
  // timeout) the stream would go quiet for good and cached contexts would
  // outlive migrations. Here the stream fails with its connection and is
  // retried; each new connection starts by dropping every context, as changes
  // may have been missed while nobody listened.
  const tenantChanges = Stream.asyncPush<string, Error>((emit) =>
    Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const client = new Pg.Client(listenerConfig(platform.config))
          client.on("notification", (message) => {
            if (message.channel === TENANT_CHANGES && message.payload) emit.single(message.payload)
          })
          client.on("error", (error) => emit.fail(error))
          client.on("end", () => emit.fail(new Error("the connection listening for tenant changes ended")))
          try {
            await client.connect()
            await client.query(`LISTEN ${client.escapeIdentifier(TENANT_CHANGES)}`)
          } catch (error) {
            await client.end().catch(() => undefined)
            throw error
          }
          return client
        },
        catch: (cause) => (cause instanceof Error ? cause : new Error(String(cause)))
      }),
      (client) =>
        Effect.promise(() => {
          client.removeAllListeners()
          client.on("error", () => undefined)
          return client.end().catch(() => undefined)
        })
    ).pipe(Effect.zipLeft(invalidateAll))
  )
  yield* tenantChanges.pipe(
    Stream.runForEach(invalidate),
    Effect.tapErrorCause((cause) => Effect.logWarning("listening for tenant changes failed; retrying", cause)),
    Effect.retry(Schedule.spaced("1 second")),
    // Real time even where a test clock is installed.
    Effect.withClock(Clock.make()),
    Effect.forkScoped
  )

  return TenantContexts.of({
    get,
    invalidate,
    drain,
    stats: Effect.sync(() => ({
      open,
      references: [...usage.values()].reduce((sum, u) => sum + u.references, 0),
      opened,
      closed
    }))
  })
})
