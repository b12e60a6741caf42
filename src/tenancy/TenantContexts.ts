import * as Reactivity from "@effect/experimental/Reactivity"
import type { PgClient } from "@effect/sql-pg"
import { Clock, Context, Deferred, Duration, Effect, Exit, Layer, Redacted, Schedule, Scope, Stream } from "effect"
import Pg from "pg"
import { PlatformDb } from "../platform/PlatformDb.js"
import { TenancyConfig } from "./TenancyConfig.js"
import { type TenantNotFound, type TenantSuspended, TenantUnavailable } from "./TenancyErrors.js"
import { TenantDatabases } from "./TenantDatabases.js"
import { type TenantServices, TenantServicesLive } from "./TenantServices.js"
import { makeSharedPools, SharedPools } from "./SharedPools.js"
import type { TenantStrategy } from "./Tenant.js"
import { TenantSession } from "./TenantSession.js"

/**
 * The channel on which a tenant's change of status, migration state or
 * existence is announced (by a trigger on `tenants`, migration 0003).
 */
export const TENANT_CHANGES = "tenant_engine_tenants"

export type TenantContextError = TenantNotFound | TenantSuspended | TenantUnavailable

export interface TenantContextStats {
  /** Contexts open now (a database tenant's holds its pool; a schema tenant's runs on the shared pool). */
  readonly open: number
  /** Of those, schema tenants' contexts (bounded by count, not by connections). */
  readonly schemaOpen: number
  /** Connections taken from the budget: database tenants' pools and the shared pools. */
  readonly connections: number
  /** References held by callers now. */
  readonly references: number
  /** Contexts opened and closed since start. */
  readonly opened: number
  readonly closed: number
}

/**
 * The per-tenant context cache. A tenant's layers (TenantSession, repositories,
 * services) are built once and handed out by reference: taking a built
 * context is a map lookup and a counter, nothing per request. A reference is
 * given back however the work that held it ends. An unreferenced context
 * closes after the idle time, or earlier when its room is needed.
 *
 * Bounds: connections are counted from when a pool starts opening to when it
 * has closed, so pools never hold more than the budget. A database tenant's
 * context takes `maxConnectionsPerTenant` of it. The first schema tenant's
 * context takes `sharedPoolConnections` for the shared pool, which then stays
 * open; schema tenants' contexts hold no connection and are bounded by count
 * (`maxContexts`). When a bound is reached the least recently used idle
 * context of the kind that frees room is closed, or the caller waits. An
 * invalidated context leaves the cache at once (the next caller builds a new
 * one) and closes when its last holder is done.
 */
export class TenantContexts extends Context.Tag("tenant-engine/TenantContexts")<TenantContexts, {
  /** Runs `f` with a reference to the tenant's built context, given back when it ends. */
  readonly use: <A, E, R>(
    tenantId: string,
    f: (context: Context.Context<TenantServices>) => Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | TenantContextError, R>
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
  Effect.flatMap(TenantContexts, (contexts) => contexts.use(tenantId, (context) => Effect.provide(effect, context)))

/** One tenant's context: built once, shared by every request of the tenant while it is cached. */
interface Entry {
  readonly tenantId: string
  /** Known once its placement is: what its room is counted in. */
  strategy: TenantStrategy | undefined
  /** Owns the pool and the slot; closing it closes both. */
  readonly scope: Scope.CloseableScope
  readonly built: Deferred.Deferred<Context.Context<TenantServices>, TenantContextError>
  /** Set once built: what the fast path hands out. */
  context: Context.Context<TenantServices> | undefined
  references: number
  lastUsed: number
  /** Out of the cache (invalidated, evicted, idle, failed): closes when its last reference goes. */
  retired: boolean
  closing: boolean
}

const make = Effect.gen(function*() {
  const config = yield* TenancyConfig
  const databases = yield* TenantDatabases
  const platform = yield* PlatformDb
  const reactivity = yield* Effect.context<Reactivity.Reactivity>()
  const acquireTimeout = Duration.toMillis(config.acquireTimeout)
  const idleMillis = Duration.toMillis(config.idleTimeout)

  /** Connections taken from the budget. */
  let connections = 0
  let open = 0
  let schemaOpen = 0
  let opened = 0
  let closed = 0
  /** The cached context of each tenant. */
  const cache = new Map<string, Entry>()
  /** Every context not yet closed, cached or retired: for drain, eviction and shutdown. */
  const live = new Set<Entry>()
  // Completed (and replaced) whenever a slot may have become free, if anyone waits.
  let roomChanged = yield* Deferred.make<void>()
  let waiting = 0
  const signalRoom = Effect.suspend(() => {
    if (waiting === 0) return Effect.void
    const previous = roomChanged
    return Effect.flatMap(Deferred.make<void>(), (next) => {
      roomChanged = next
      return Deferred.succeed(previous, undefined)
    })
  })
  /** Waits until a slot may have become free, or `millis` have passed. */
  const awaitRoom = (millis: number) =>
    Effect.suspend(() => {
      waiting++
      return Deferred.await(roomChanged).pipe(
        Effect.timeout(millis),
        Effect.ignore,
        Effect.ensuring(Effect.sync(() => waiting--))
      )
    })

  /** Takes the entry out of the cache; closes it now if nobody holds it. */
  const retire = (entry: Entry): Effect.Effect<void> =>
    Effect.suspend(() => {
      entry.retired = true
      if (cache.get(entry.tenantId) === entry) cache.delete(entry.tenantId)
      return entry.references === 0 ? close(entry) : Effect.void
    })

  const close = (entry: Entry): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (entry.closing) return Effect.void
      entry.closing = true
      return Scope.close(entry.scope, Exit.void)
    })

  /** Room that opening something takes: connections of the budget, or a schema tenant's place in the count. */
  type Room = { readonly connections: number } | "schema context"

  const fits = (room: Room) =>
    room === "schema context"
      ? schemaOpen < config.maxContexts
      : connections + room.connections <= config.connectionBudget

  const takeRoom = (room: Room) => {
    if (room === "schema context") schemaOpen++
    else connections += room.connections
  }

  const giveRoom = (room: Room) =>
    Effect.zipRight(
      Effect.sync(() => {
        if (room === "schema context") schemaOpen--
        else connections -= room.connections
      }),
      signalRoom
    )

  /**
   * Takes room, closing the least recently used idle context whose going
   * frees that kind of room (a database tenant's for connections, a schema
   * tenant's for the count), or waiting for room until the deadline.
   */
  const reserve = (room: Room, deadline: number): Effect.Effect<void, TenantUnavailable> =>
    Effect.suspend(() => {
      if (fits(room)) {
        takeRoom(room)
        return Effect.void
      }
      const frees = room === "schema context" ? "schema" : "database"
      // Only built contexts: one still being built may be the caller itself.
      let idle: Entry | undefined
      for (const entry of live) {
        if (
          entry.strategy === frees && entry.references === 0 && entry.context !== undefined && !entry.closing &&
          (idle === undefined || entry.lastUsed < idle.lastUsed)
        ) {
          idle = entry
        }
      }
      const wait = deadline - Date.now()
      if (idle === undefined && wait <= 0) {
        return Effect.fail(
          new TenantUnavailable({ message: "every tenant connection is in use; try again shortly", retryAfterSeconds: 1 })
        )
      }
      const waitForRoom = idle !== undefined
        ? retire(idle)
        : awaitRoom(wait)
      return Effect.zipRight(waitForRoom, reserve(room, deadline))
    })

  const sharedPoolRoom: Room = { connections: config.sharedPoolConnections }
  const sharedPools = yield* makeSharedPools({
    connections: config.sharedPoolConnections,
    acquireTimeout: config.acquireTimeout,
    beforeOpen: Effect.suspend(() => reserve(sharedPoolRoom, Date.now() + acquireTimeout)),
    afterClose: giveRoom(sharedPoolRoom)
  })

  /** Builds the entry's context in its scope: placement, room, then the layers. */
  const build = (entry: Entry) =>
    Effect.gen(function*() {
      const placement = yield* databases.placement(entry.tenantId)
      const room: Room = placement.strategy === "database"
        ? { connections: config.maxConnectionsPerTenant }
        : "schema context"
      yield* reserve(room, Date.now() + acquireTimeout)
      entry.strategy = placement.strategy
      open++
      opened++
      // The room is given back when the scope closes, after the pool has ended
      // (finalizers run in reverse order).
      yield* Scope.addFinalizer(
        entry.scope,
        Effect.suspend(() => {
          open--
          closed++
          return giveRoom(room)
        })
      )
      const layer = TenantServicesLive.pipe(
        Layer.provideMerge(TenantSession.layer(placement, {
          maxConnections: config.maxConnectionsPerTenant,
          acquireTimeout: config.acquireTimeout
        }))
      )
      return yield* Layer.buildWithScope(layer, entry.scope).pipe(
        Effect.provide(reactivity),
        Effect.provideService(SharedPools, sharedPools)
      )
    })

  /** A new entry, cached, with its build running in its own scope (a waiter that gives up does not stop it). */
  const create = (tenantId: string) =>
    Effect.gen(function*() {
      const entry: Entry = {
        tenantId,
        strategy: undefined,
        scope: yield* Scope.make(),
        built: yield* Deferred.make<Context.Context<TenantServices>, TenantContextError>(),
        context: undefined,
        references: 0,
        lastUsed: Date.now(),
        retired: false,
        closing: false
      }
      cache.set(tenantId, entry)
      live.add(entry)
      // The last finalizer to run: the context is gone, and its slot free, for
      // whoever waits for room or for a drain.
      yield* Scope.addFinalizer(entry.scope, Effect.zipRight(Effect.sync(() => live.delete(entry)), signalRoom))
      yield* build(entry).pipe(
        Effect.tap((context) => {
          entry.context = context
        }),
        // A failure is not cached: the next caller tries again. Retired from
        // another fiber: closing the scope interrupts and awaits this one.
        Effect.tapError(() => Effect.forkDaemon(retire(entry))),
        Effect.exit,
        Effect.flatMap((exit) => Deferred.done(entry.built, exit)),
        // Closed while building (shutdown, or invalidated with nobody waiting):
        // anyone who still waits is interrupted rather than left waiting.
        Effect.onInterrupt(() => Deferred.interrupt(entry.built)),
        // Callers take references uninterruptibly; the build itself must stay
        // interruptible (its waits time out, and closing the scope stops it).
        Effect.interruptible,
        Effect.forkIn(entry.scope)
      )
      return entry
    })

  const take = (entry: Entry) => {
    entry.references++
    entry.lastUsed = Date.now()
  }

  const release = (entry: Entry): Effect.Effect<void> =>
    Effect.suspend(() => {
      entry.references--
      entry.lastUsed = Date.now()
      if (entry.references > 0) return Effect.void
      return entry.retired ? close(entry) : signalRoom
    })

  /** A reference to the tenant's entry (the cached one, or a new one), taken uninterruptibly. */
  const acquire = (tenantId: string): Effect.Effect<Entry> =>
    Effect.suspend(() => {
      const cached = cache.get(tenantId)
      if (cached !== undefined) {
        take(cached)
        return Effect.succeed(cached)
      }
      return Effect.map(create(tenantId), (entry) => {
        take(entry)
        return entry
      })
    })

  const use = <A, E, R>(
    tenantId: string,
    f: (context: Context.Context<TenantServices>) => Effect.Effect<A, E, R>
  ): Effect.Effect<A, E | TenantContextError, R> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.suspend(() => {
        const cached = cache.get(tenantId)
        // The fast path: a built context, taken by reference.
        if (cached?.context !== undefined) {
          take(cached)
          return Effect.onExit(restore(f(cached.context)), () => release(cached))
        }
        return Effect.flatMap(acquire(tenantId), (entry) =>
          Effect.onExit(
            restore(Effect.flatMap(Deferred.await(entry.built), f)),
            () => release(entry)
          ))
      })
    )

  const get = (tenantId: string) =>
    Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(acquire(tenantId), (entry) =>
        Effect.zipRight(
          Effect.flatMap(Effect.scope, (scope) => Scope.addFinalizer(scope, release(entry))),
          restore(Deferred.await(entry.built))
        ))
    )

  const invalidate = (tenantId: string) =>
    Effect.suspend(() => {
      const cached = cache.get(tenantId)
      return cached === undefined ? Effect.void : retire(cached)
    })

  const drain = (tenantId: string, timeout: Duration.DurationInput) => {
    const deadline = Date.now() + Duration.toMillis(timeout)
    const isOpen = () => [...live].some((entry) => entry.tenantId === tenantId)
    const wait: Effect.Effect<void> = Effect.suspend(() => {
      const remaining = deadline - Date.now()
      if (!isOpen() || remaining <= 0) return Effect.void
      return Effect.zipRight(awaitRoom(remaining), wait)
    })
    return Effect.zipRight(invalidate(tenantId), wait)
  }

  // Idle contexts close after the idle time (checked a few times per idle period).
  const closeIdle = Effect.suspend(() => {
    const now = Date.now()
    const idle = [...cache.values()].filter((entry) =>
      entry.references === 0 && entry.context !== undefined && now - entry.lastUsed >= idleMillis
    )
    return Effect.forEach(idle, retire, { discard: true })
  })
  yield* closeIdle.pipe(
    Effect.repeat(Schedule.spaced(Duration.millis(Math.min(1_000, Math.max(10, idleMillis / 4))))),
    // Real time even where a test clock is installed.
    Effect.withClock(Clock.make()),
    Effect.forkScoped
  )

  // At shutdown every context closes, held or not (after the server has stopped serving).
  yield* Effect.addFinalizer(() =>
    Effect.forEach([...live], (entry) => {
      entry.retired = true
      return close(entry)
    }, { discard: true })
  )

  /** Every context cached now is dropped (each request holding one keeps it until it is done). */
  const invalidateAll = Effect.suspend(() => Effect.forEach([...cache.values()], retire, { discard: true }))

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
    use,
    get,
    invalidate,
    drain,
    stats: Effect.sync(() => ({
      open,
      schemaOpen,
      connections,
      references: [...live].reduce((sum, entry) => sum + entry.references, 0),
      opened,
      closed
    }))
  })
})
