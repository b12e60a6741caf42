import * as Reactivity from "@effect/experimental/Reactivity"
import { Clock, Context, Deferred, Duration, Effect, Exit, Fiber, Layer, Runtime, Schedule, Scope } from "effect"
import { contextsClosed, contextsEvicted, contextsOpened, dbBudgetWaits } from "../observability/Metrics.js"
import { nameServer } from "../observability/Pools.js"
import type { PlatformDb } from "../platform/PlatformDb.js"
import { PlatformNotifications } from "../platform/PlatformNotifications.js"
import { ConnectionShares, type ServerShare } from "../servers/ConnectionShares.js"
import { makeSharedPools, SharedPools } from "./SharedPools.js"
import { TenancyConfig } from "./TenancyConfig.js"
import { type TenantNotFound, type TenantSuspended, TenantUnavailable } from "./TenancyErrors.js"
import type { TenantStrategy } from "./Tenant.js"
import { TenantDatabases } from "./TenantDatabases.js"
import { type TenantServices, TenantServicesLive } from "./TenantServices.js"
import { TenantSession } from "./TenantSession.js"

export type TenantContextError = TenantNotFound | TenantSuspended | TenantUnavailable

export interface TenantContextStats {
  /** Contexts open now (a database tenant's holds its pool; a schema tenant's runs on the shared pool). */
  readonly open: number
  /** Of those, schema tenants' contexts (bounded by count, not by connections). */
  readonly schemaOpen: number
  /** Connections taken from the servers' shares: database tenants' pools and the shared pools. */
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
 * Room is permits, taken when a context opens and given back by its scope
 * once its pool has closed, so pools never hold more than their room: a
 * database tenant's context takes `maxConnectionsPerTenant` permits of its
 * server's share (ConnectionShares: this process's part of the server's
 * allowance); a server's shared pool takes `sharedPoolConnections` of them
 * when the first schema context there opens, and keeps them; a schema
 * tenant's context takes one place of `maxContexts`.
 * Without room, the least recently used idle context holding that kind of
 * room is closed, or the caller waits (an idle one closes at once while
 * someone waits for its room) until `acquireTimeout`, then gets 503.
 *
 * A change of a tenant announced on the platform's notifications (another
 * process, the CLI, SQL) drops its context at once: the next caller builds a
 * new one, or is refused; the old one closes when its last holder is done.
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
  /** With this process's shares of the servers' connection allowances. */
  static readonly layer: Layer.Layer<
    TenantContexts | ConnectionShares,
    never,
    TenancyConfig | TenantDatabases | PlatformNotifications | PlatformDb
  > = Layer.scoped(TenantContexts, Effect.suspend(() => make)).pipe(
    Layer.provideMerge(ConnectionShares.layer),
    Layer.provide(Reactivity.layer)
  )
}

/** Runs an effect inside a tenant's context, holding a reference only while it runs. */
export const withTenant = (tenantId: string) =>
<A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | TenantContextError, Exclude<R, TenantServices> | TenantContexts> =>
  Effect.flatMap(TenantContexts, (contexts) => contexts.use(tenantId, (context) => Effect.provide(effect, context)))

/**
 * Where an entry is in its life:
 * - `opening`: its placement, room and layers are being built (callers await `built`);
 * - `open`: cached and built, handed out by the fast path;
 * - `retired`: out of the cache (invalidated, evicted, idle, failed), closes when its last reference goes;
 * - `closing`: its scope is closing: the pool ends, then its room is given back, then `closed` completes.
 */
type Phase = "opening" | "open" | "retired" | "closing"

/** Permits of a fixed number, counting what is held. */
const countedPermits = (capacity: number) =>
  Effect.map(Effect.makeSemaphore(capacity), (semaphore): Room["permits"] => {
    let held = 0
    return {
      free: () => capacity - held,
      held: () => held,
      take: (n) =>
        Effect.zipRight(
          semaphore.take(n),
          Effect.sync(() => {
            held += n
          })
        ),
      release: (n) =>
        Effect.suspend(() => {
          held -= n
          return semaphore.release(n)
        })
    }
  })

/** One tenant's context: built once, shared by every request of the tenant while it is cached. */
interface Entry {
  readonly tenantId: string
  phase: Phase
  /** Known once its placement is: the kind of room it holds. */
  strategy: TenantStrategy | undefined
  /** Known once its placement is: the room it holds. */
  room: Room | undefined
  /** Set once built: what the fast path hands out. */
  context: Context.Context<TenantServices> | undefined
  references: number
  lastUsed: number
  /** Owns the build, the room and the layers; closing it closes them in reverse order. */
  readonly scope: Scope.CloseableScope
  readonly built: Deferred.Deferred<Context.Context<TenantServices>, TenantContextError>
  readonly closed: Deferred.Deferred<void>
}

/** A kind of room: permits, freed by closing the contexts that hold them. */
interface Room {
  readonly permits: Pick<ServerShare, "free" | "take" | "release" | "held">
  /** Callers waiting for permits now: an idle context holding this room closes at once while there are any. */
  waiting: number
  /** The server whose connections these are (none: schema tenants' places). */
  readonly server?: string
}

const make = Effect.gen(function*() {
  const config = yield* TenancyConfig
  const databases = yield* TenantDatabases
  const reactivity = yield* Effect.context<Reactivity.Reactivity>()
  const acquireTimeout = Duration.toMillis(config.acquireTimeout)
  const idleMillis = Duration.toMillis(config.idleTimeout)
  /**
   * Contexts outlive the requests that open and close them, so their builds
   * and closes run in fibers of this service, never in a request's. A fiber
   * starts with its parent's FiberRefs (a request's: its Context holds the
   * request and response), and a finalizer runs with the FiberRefs its
   * resource was acquired with, which stay in the fiber that ran it. Built in
   * a request fiber, a context kept that request for its whole life; and a
   * build that first closed an idle context took on that context's FiberRefs,
   * so each context kept the requests of every build before it: the soak's
   * RSS grew without end (bench/RESULTS.md, "Soak").
   */
  const detached = Runtime.runFork(yield* Effect.runtime<never>())

  const shares = yield* ConnectionShares
  /** Each server's connections: this process's share of its allowance. */
  const serverRooms = new Map<string, Room>()
  const connectionsOn = (server: string) =>
    Effect.suspend(() => {
      const known = serverRooms.get(server)
      if (known !== undefined) return Effect.succeed(known)
      return Effect.map(shares.of(server), (share) => {
        const room = serverRooms.get(server) ?? { permits: share, waiting: 0, server }
        serverRooms.set(server, room)
        return room
      })
    })
  const schemaPlaces: Room = { permits: yield* countedPermits(config.maxContexts), waiting: 0 }
  /** The cached entry of each tenant. */
  const cache = new Map<string, Entry>()
  /** Every entry not yet closed, cached or retired: for drain, eviction, stats and shutdown. */
  const live = new Set<Entry>()
  let opened = 0
  let closed = 0

  // --- the entry's transitions ---

  const take = (entry: Entry) => {
    entry.references++
    entry.lastUsed = Date.now()
  }

  /** Given back; the last reference of a retired entry closes it, of an idle one someone waits for room of too. */
  const release = (entry: Entry): Effect.Effect<void> =>
    Effect.suspend(() => {
      entry.references--
      entry.lastUsed = Date.now()
      if (entry.references > 0) return Effect.void
      if (entry.phase === "retired") return close(entry)
      if (entry.phase !== "open" || (entry.room?.waiting ?? 0) === 0) return Effect.void
      contextsEvicted.increment()
      return retire(entry)
    })

  /** opening → open, unless it was retired meanwhile. */
  const built = (entry: Entry, context: Context.Context<TenantServices>) => {
    entry.context = context
    if (entry.phase === "opening") entry.phase = "open"
  }

  /** opening | open → retired: out of the cache; closed now if nobody holds it. */
  const retire = (entry: Entry): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (entry.phase === "retired" || entry.phase === "closing") return Effect.void
      entry.phase = "retired"
      if (cache.get(entry.tenantId) === entry) cache.delete(entry.tenantId)
      return entry.references === 0 ? close(entry) : Effect.void
    })

  /** retired → closing: returns once the pool has ended and the room is back. */
  const close = (entry: Entry): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (entry.phase !== "closing") {
        entry.phase = "closing"
        detached(Scope.close(entry.scope, Exit.void))
      }
      return Deferred.await(entry.closed)
    })

  // --- room ---

  /** The least recently used idle (built, unreferenced) context that holds a room. */
  const leastRecentlyUsedIdle = (room: Room) => {
    let idle: Entry | undefined
    for (const entry of live) {
      if (
        entry.phase === "open" && entry.room === room && entry.references === 0 &&
        (idle === undefined || entry.lastUsed < idle.lastUsed)
      ) idle = entry
    }
    return idle
  }

  const unavailable = () =>
    new TenantUnavailable({ message: "every tenant connection is in use; try again shortly", retryAfterSeconds: 1 })

  /**
   * Takes permits of a room: at once if they are free; otherwise after
   * closing idle contexts that hold this room, least recently used first;
   * otherwise by waiting for them until the deadline.
   */
  const reserve = (room: Room, permits: number, deadline: number): Effect.Effect<void, TenantUnavailable> =>
    Effect.gen(function*() {
      while (room.permits.free() < permits) {
        const idle = leastRecentlyUsedIdle(room)
        if (idle === undefined) break
        contextsEvicted.increment()
        yield* retire(idle)
      }
      if (room.server !== undefined && room.permits.free() < permits) dbBudgetWaits({ server: room.server }).increment()
      room.waiting++
      yield* room.permits.take(permits).pipe(
        Effect.timeoutFail({ duration: Math.max(0, deadline - Date.now()), onTimeout: unavailable }),
        Effect.ensuring(Effect.sync(() => room.waiting--))
      )
    })

  /** Permits of a room held by the scope: given back when it closes, after what was opened after them. */
  const reserveInScope = (room: Room, permits: number) =>
    Effect.uninterruptibleMask((restore) =>
      Effect.zipRight(
        restore(reserve(room, permits, Date.now() + acquireTimeout)),
        Effect.addFinalizer(() => room.permits.release(permits))
      )
    )

  const sharedPools = yield* makeSharedPools({
    connections: config.sharedPoolConnections,
    acquireTimeout: config.acquireTimeout,
    beforeOpen: (placement) =>
      Effect.flatMap(
        connectionsOn(placement.server),
        (room) => reserve(room, config.sharedPoolConnections, Date.now() + acquireTimeout)
      ),
    afterClose: (placement) =>
      Effect.flatMap(connectionsOn(placement.server), (room) => room.permits.release(config.sharedPoolConnections))
  })

  // --- building ---

  /** The entry's placement, room and layers, all owned by its scope. */
  const build = (entry: Entry) =>
    Effect.gen(function*() {
      const placement = yield* databases.placement(entry.tenantId)
      entry.strategy = placement.strategy
      entry.room = placement.strategy === "database" ? yield* connectionsOn(placement.server) : schemaPlaces
      yield* reserveInScope(entry.room, placement.strategy === "database" ? config.maxConnectionsPerTenant : 1)
      opened++
      contextsOpened.increment()
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          closed++
          contextsClosed.increment()
        })
      )
      // The metrics name the server of the pool this session opens (src/observability/Pools.ts).
      nameServer(placement.host, placement.server)
      // Two builds rather than one of `provideMerge`d layers: every node of a
      // layer graph keeps its bookkeeping (a scope, refs, closures) for as long
      // as the context is open, about 5 KB each, and 10,000 contexts stay open.
      const session = yield* Layer.buildWithScope(
        TenantSession.layer(placement, {
          maxConnections: config.maxConnectionsPerTenant,
          acquireTimeout: config.acquireTimeout
        }),
        entry.scope
      ).pipe(Effect.provide(reactivity), Effect.provideService(SharedPools, sharedPools))
      const services = yield* Layer.buildWithScope(TenantServicesLive, entry.scope).pipe(Effect.provide(session))
      return Context.merge(session, services)
    }).pipe(Scope.extend(entry.scope))

  /** A new entry, cached, with its build running in its own scope (a waiter that gives up does not stop it). */
  const create = (tenantId: string) =>
    Effect.gen(function*() {
      const entry: Entry = {
        tenantId,
        phase: "opening",
        strategy: undefined,
        room: undefined,
        context: undefined,
        references: 0,
        lastUsed: Date.now(),
        scope: yield* Scope.make(),
        built: yield* Deferred.make<Context.Context<TenantServices>, TenantContextError>(),
        closed: yield* Deferred.make<void>()
      }
      cache.set(tenantId, entry)
      live.add(entry)
      // The last finalizer to run: the context is gone and its room is back.
      yield* Scope.addFinalizer(
        entry.scope,
        Effect.zipRight(Effect.sync(() => live.delete(entry)), Deferred.succeed(entry.closed, undefined))
      )
      const building = build(entry).pipe(
        Effect.tap((context) => built(entry, context)),
        // A failure is not cached: the next caller tries again. (Retired from
        // another fiber: closing the scope interrupts and awaits this one.)
        Effect.tapError(() => Effect.forkDaemon(retire(entry))),
        Effect.exit,
        Effect.flatMap((exit) => Deferred.done(entry.built, exit)),
        // Closed while building (shutdown, or invalidated with nobody waiting):
        // anyone who still waits is interrupted rather than left waiting.
        Effect.onInterrupt(() => Deferred.interrupt(entry.built)),
        // Callers take references uninterruptibly; the build itself must stay
        // interruptible (its waits time out, and closing the scope stops it).
        Effect.interruptible
      )
      // Closing the scope interrupts the build (at once, if it has closed
      // already); started after this, as `forkIn` would, so that its own
      // finalizers run before that one.
      const fiber = detached(building, { immediate: false })
      yield* Scope.addFinalizer(entry.scope, Fiber.interrupt(fiber))
      return entry
    })

  /** A reference to the tenant's entry (the cached one, or a new one), taken uninterruptibly. */
  const acquire = (tenantId: string): Effect.Effect<Entry> =>
    Effect.suspend(() => {
      const cached = cache.get(tenantId)
      return Effect.map(cached !== undefined ? Effect.succeed(cached) : create(tenantId), (entry) => {
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
          Effect.addFinalizer(() => release(entry)),
          restore(Deferred.await(entry.built))
        ))
    )

  const invalidate = (tenantId: string) =>
    Effect.suspend(() => {
      const cached = cache.get(tenantId)
      return cached === undefined ? Effect.void : retire(cached)
    })

  const drain = (tenantId: string, timeout: Duration.DurationInput) =>
    Effect.zipRight(
      invalidate(tenantId),
      Effect.suspend(() =>
        Effect.forEach(
          [...live].filter((entry) => entry.tenantId === tenantId),
          (entry) => Deferred.await(entry.closed),
          { concurrency: "unbounded", discard: true }
        )
      ).pipe(Effect.timeout(timeout), Effect.ignore)
    )

  // Idle contexts close after the idle time (checked a few times per idle period).
  const closeIdle = Effect.suspend(() => {
    const now = Date.now()
    const idle = [...cache.values()].filter((entry) =>
      entry.phase === "open" && entry.references === 0 && now - entry.lastUsed >= idleMillis
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
      if (entry.phase === "closing") return Deferred.await(entry.closed)
      entry.phase = "closing"
      return Scope.close(entry.scope, Exit.void)
    }, { concurrency: "unbounded", discard: true })
  )

  // A tenant changed anywhere: its context here is dropped. Notifications
  // may have been missed (no connection listened): every context is dropped.
  const notifications = yield* PlatformNotifications
  yield* notifications.subscribe({
    changed: (change) => change.kind === "tenant" ? invalidate(change.id) : Effect.void,
    reset: Effect.suspend(() => Effect.forEach([...cache.values()], retire, { discard: true }))
  })

  return TenantContexts.of({
    use,
    get,
    invalidate,
    drain,
    stats: Effect.sync(() => {
      const open = [...live].filter((entry) => entry.context !== undefined && entry.phase !== "closing")
      const schemaOpen = open.filter((entry) => entry.strategy === "schema").length
      return {
        open: open.length,
        schemaOpen,
        connections: [...serverRooms.values()].reduce((sum, room) => sum + room.permits.held(), 0),
        references: [...live].reduce((sum, entry) => sum + entry.references, 0),
        opened,
        closed
      }
    })
  })
})
