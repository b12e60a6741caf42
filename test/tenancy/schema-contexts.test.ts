import { expect, layer } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Option, Redacted, Schedule, Scope } from "effect"
import { cancelActiveQuery, openPool } from "../../src/db/Pool.js"
import { NoteService } from "../../src/notes/NoteService.js"
import { TenantContexts, withTenant } from "../../src/tenancy/TenantContexts.js"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { TenantSession } from "../../src/tenancy/TenantSession.js"
import { TestTenancy } from "../../src/testing/index.js"
import { adminQuery, adminUrl, eventually } from "./support.js"

/**
 * Schema tenants' contexts hold no connection (they run on the shared pool),
 * so they are bounded by count (`maxContexts`), not by the connection budget;
 * the shared pool itself is what takes connections from the budget.
 */

const MAX_CONTEXTS = 5
const SHARED = 3
const PER_TENANT = 2
/** Also how long a pool may take to connect: short to wait out, not so short that a loaded machine misses it. */
const ACQUIRE_TIMEOUT_MS = 1_000
const TENANTS = Array.from({ length: 12 }, (_, i) => `sc-${i}`)
/** A database tenant, served while every schema context is held. */
const DATABASE_TENANT = "sc-db"
const BARRIER = "sc-barrier"

const stats = Effect.flatMap(TenantContexts, (c) => c.stats)
const listIn = (tenantId: string) => Effect.flatMap(NoteService, (s) => s.list({ limit: 1 })).pipe(withTenant(tenantId))

/** Uses the tenant once; whether that opened a context for it (it had none cached). */
const opensContext = (tenantId: string) =>
  Effect.gen(function*() {
    const before = (yield* stats).opened
    yield* listIn(tenantId)
    // Apart in time, so that "least recently used" never compares equal timestamps.
    yield* Effect.sleep("3 millis")
    return (yield* stats).opened > before
  })

/** Takes a reference to the tenant's context in a scope that stays open until the test closes it. */
const hold = (tenantId: string) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    yield* Effect.flatMap(TenantContexts, (c) => c.get(tenantId)).pipe(Scope.extend(scope))
    return scope
  })

/** The highest `schemaOpen` seen, sampled every millisecond while the scope is open. */
const watchSchemaOpen = Effect.gen(function*() {
  const contexts = yield* TenantContexts
  let max = 0
  yield* contexts.stats.pipe(
    Effect.tap((s) => {
      max = Math.max(max, s.schemaOpen)
    }),
    Effect.repeat(Schedule.spaced("1 millis")),
    Effect.forkScoped
  )
  return { max: () => max }
})

const failureOf = <A, E>(exit: Exit.Exit<A, E>) =>
  Exit.isFailure(exit) ? Cause.failureOption(exit.cause).pipe(Option.getOrUndefined) : undefined

/**
 * The tenants, provisioned once for the file, with nothing open after.
 *
 * Provisioning announces each tenant's activation on the tenant-changes
 * channel, and this process drops the tenant's context when the announcement
 * arrives: one arriving late would close a context the counts below rely on.
 * Announcements arrive in commit order, so the set-up waits for one made
 * after all of them: a tenant provisioned last, its context cached, then
 * suspended, is refused only once this process has seen its activation or its
 * suspension, both later than every other tenant's activation.
 */
const setUp = Effect.gen(function*() {
  const databases = yield* TenantDatabases
  if (Option.isSome(yield* Effect.option(databases.find(BARRIER)))) return
  const tenants = yield* Effect.forEach(TENANTS, (id) => databases.provision(id, id), { concurrency: 4 })
  expect(new Set(tenants.map((t) => t.placement.strategy))).toEqual(new Set(["schema"]))
  yield* databases.provision(DATABASE_TENANT, "Database tenant", { strategy: "database" })
  yield* databases.provision(BARRIER, "Barrier", { strategy: "database" })
  yield* listIn(BARRIER)
  yield* databases.setStatus(BARRIER, "suspended")
  const refused = yield* eventually(
    Effect.map(Effect.exit(listIn(BARRIER)), failureOf),
    (failure) => failure?._tag === "TenantSuspended"
  )
  expect(refused?._tag).toBe("TenantSuspended")
  const idle = yield* eventually(stats, (s) => s.open === 0 && s.connections === 0)
  expect(idle).toMatchObject({ open: 0, connections: 0, references: 0 })
})

layer(
  TestTenancy({
    adminUrl,
    defaultStrategy: "schema",
    maxContexts: MAX_CONTEXTS,
    sharedPoolConnections: SHARED,
    maxConnectionsPerTenant: PER_TENANT,
    connectionBudget: 20,
    acquireTimeout: `${ACQUIRE_TIMEOUT_MS} millis`,
    idleTimeout: "1 minute"
  }),
  { excludeTestServices: true, timeout: 120_000 }
)(`schema tenants' contexts (maxContexts ${MAX_CONTEXTS}, shared pool ${SHARED})`, (it) => {
  it.effect("12 tenants used one after another: at most 5 contexts, the least recently used idle one closes", () =>
    Effect.gen(function*() {
      yield* setUp
      const watch = yield* watchSchemaOpen

      // No schema tenant used yet: no context, no connection taken. The first
      // context opens the shared pool, whose connections are taken from the
      // budget once, however many schema tenants it serves.
      const start = yield* stats
      expect(start).toMatchObject({ open: 0, schemaOpen: 0, connections: 0 })
      expect(yield* opensContext("sc-0")).toBe(true)
      expect(yield* stats).toMatchObject({ open: 1, schemaOpen: 1, connections: SHARED, opened: start.opened + 1 })

      const counts: Array<number> = [1]
      for (const id of TENANTS.slice(1)) {
        expect(yield* opensContext(id), id).toBe(true)
        const now = yield* stats
        counts.push(now.schemaOpen)
        expect(now.connections, `connections after ${id}`).toBe(SHARED)
      }
      expect(counts).toEqual([1, 2, 3, 4, 5, 5, 5, 5, 5, 5, 5, 5])
      expect(yield* stats).toMatchObject({
        open: 5,
        schemaOpen: 5,
        opened: start.opened + 12,
        closed: start.closed + 7,
        references: 0
      })

      // Cached now: sc-7 .. sc-11, sc-7 the least recently used. Which tenant's
      // next use opens a context says which one was closed.
      const steps: ReadonlyArray<readonly [string, boolean]> = [
        ["sc-7", false], // cached; now sc-8 is the least recently used
        ["sc-0", true], // closes sc-8
        ["sc-9", false],
        ["sc-10", false],
        ["sc-11", false],
        ["sc-7", false],
        ["sc-0", false], // sc-9 is now the least recently used
        ["sc-8", true], // closes sc-9
        ["sc-10", false],
        ["sc-11", false],
        ["sc-7", false],
        ["sc-0", false],
        ["sc-8", false],
        ["sc-9", true] // closes sc-10
      ]
      const observed: Array<readonly [string, boolean]> = []
      for (const [id] of steps) observed.push([id, yield* opensContext(id)])
      expect(observed).toEqual(steps)
      expect(yield* opensContext("sc-10")).toBe(true)

      const after = yield* stats
      expect(after).toMatchObject({ open: 5, schemaOpen: 5, connections: SHARED, references: 0 })
      expect(after.opened - after.closed).toBe(after.open)
      expect(watch.max()).toBe(MAX_CONTEXTS)
    }).pipe(Effect.scoped))

  it.effect("with 5 contexts held, a 6th tenant waits acquireTimeout for TenantUnavailable, and is served once one is released", () =>
    Effect.gen(function*() {
      yield* setUp
      const watch = yield* watchSchemaOpen
      const held = new Map<string, Scope.CloseableScope>()
      for (const id of TENANTS.slice(0, MAX_CONTEXTS)) held.set(id, yield* hold(id))
      const before = yield* stats
      expect(before).toMatchObject({ open: MAX_CONTEXTS, schemaOpen: MAX_CONTEXTS, references: MAX_CONTEXTS })

      // A held tenant is still served (its context is shared), even at the bound.
      yield* listIn("sc-0")

      const started = Date.now()
      const exit = yield* Effect.exit(listIn("sc-5"))
      const waited = Date.now() - started
      expect(failureOf(exit)?._tag).toBe("TenantUnavailable")
      // It waited for room rather than failing at once (a lower bound only).
      expect(waited).toBeGreaterThanOrEqual(ACQUIRE_TIMEOUT_MS - 20)
      console.log(`a 6th schema tenant with 5 contexts held failed after ${waited} ms (acquireTimeout ${ACQUIRE_TIMEOUT_MS} ms)`)
      expect(yield* stats).toMatchObject({ schemaOpen: MAX_CONTEXTS, references: MAX_CONTEXTS, opened: before.opened })

      // The bound is on schema contexts, not connections: a database tenant
      // (its own pool, from the budget) is served while all 5 are held.
      yield* listIn(DATABASE_TENANT)
      expect(yield* stats).toMatchObject({ schemaOpen: MAX_CONTEXTS, open: MAX_CONTEXTS + 1, connections: SHARED + PER_TENANT })

      // A 6th tenant waiting is served as soon as one of the 5 is released.
      const waiter = yield* Effect.fork(Effect.exit(listIn("sc-5")))
      yield* Effect.sleep(`${ACQUIRE_TIMEOUT_MS / 3} millis`)
      expect(yield* Fiber.poll(waiter)).toEqual(Option.none())
      yield* Scope.close(held.get("sc-2")!, Exit.void)
      held.delete("sc-2")
      const served = yield* Fiber.join(waiter)
      expect(Exit.isSuccess(served)).toBe(true)
      // The released one was the one closed: the others are still cached (and held).
      const now = yield* stats
      expect(now).toMatchObject({ schemaOpen: MAX_CONTEXTS, references: MAX_CONTEXTS - 1, opened: before.opened + 2 })
      for (const id of ["sc-0", "sc-1", "sc-3", "sc-4", "sc-5"]) expect(yield* opensContext(id), id).toBe(false)
      expect(yield* opensContext("sc-2")).toBe(true)

      for (const scope of held.values()) yield* Scope.close(scope, Exit.void)
      expect(yield* stats).toMatchObject({ schemaOpen: MAX_CONTEXTS, references: 0 })
      expect(watch.max()).toBe(MAX_CONTEXTS)
    }).pipe(Effect.scoped))

  it.effect("an interrupted statement's connection leaves the shared pool: the cancel sent for it cannot hit another tenant's next statement", () =>
    Effect.gen(function*() {
      const [a] = TENANTS
      yield* listIn(a!)
      const sleeping = yield* Effect.fork(
        Effect.flatMap(TenantSession, ({ sql }) => sql`SELECT pg_sleep(5)`).pipe(withTenant(a!))
      )
      const pid = yield* eventually(
        Effect.map(
          adminQuery<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(5)'"),
          (rows) => rows[0]?.pid
        ),
        (found) => found !== undefined
      )
      yield* Fiber.interrupt(sleeping)
      // Ended, not given back to the pool: its backend goes away.
      yield* eventually(
        adminQuery("SELECT 1 FROM pg_stat_activity WHERE pid = $1", [pid]),
        (rows) => rows.length === 0
      )
      // And the pool serves on.
      expect((yield* listIn(TENANTS[1]!)).items).toEqual([])
    }))

  it.effect("a pooled connection a cancel was sent for is ended at its release, even when its query finished first", () =>
    Effect.gen(function*() {
      const pool = yield* Effect.acquireRelease(
        Effect.promise(() =>
          openPool({ url: Redacted.make(adminUrl), maxConnections: 1, acquireTimeout: "5 seconds", applicationName: "cancel-test" })
        ),
        (pool) => Effect.promise(() => pool.end())
      )
      const client = yield* Effect.promise(() => pool.connect())
      // A query that ends at once; the cancel races it and may well arrive after it.
      const done = client.query("SELECT 1")
      expect(cancelActiveQuery(pool, client)).toBe(true)
      yield* Effect.promise(() => done.catch(() => undefined))
      client.release()
      expect(pool.totalCount).toBe(0)
    }).pipe(Effect.scoped))
})
