import { expect, layer } from "@effect/vitest"
import { Cause, Context, Effect, Exit, Fiber, Option, Runtime, Scope } from "effect"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import { NoteService } from "../../src/notes/NoteService.js"
import { TenancyConfig } from "../../src/tenancy/TenancyConfig.js"
import { TenantContexts, withTenant } from "../../src/tenancy/TenantContexts.js"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { TenantSession } from "../../src/tenancy/TenantSession.js"
import { TestTenancy } from "../../src/testing/index.js"
import { sqlState } from "../../src/db/SqlErrors.js"
import { SqlError } from "@effect/sql/SqlError"
import { adminQuery, adminUrl, eventually, sampleTenantConnections } from "./support.js"

const ACQUIRE_TIMEOUT_MS = 500

const ensureTenants = (...ids: ReadonlyArray<string>) =>
  Effect.flatMap(TenantDatabases, (databases) =>
    Effect.forEach(ids, (id) => databases.find(id).pipe(Effect.catchTag("TenantNotFound", () => databases.provision(id, id)))))

const stats = Effect.flatMap(TenantContexts, (c) => c.stats)
const listIn = (tenantId: string) => Effect.flatMap(NoteService, (s) => s.list({ limit: 1 })).pipe(withTenant(tenantId))

/** Connections open on each tenant database now (a pool keeps its idle connections while it is open). */
const connectionsByTenant = Effect.gen(function*() {
  const databases = yield* TenantDatabases
  const { databasePrefix } = yield* TenancyConfig
  const rows = yield* adminQuery<{ datname: string; n: number }>(
    `SELECT datname, count(*)::int AS n FROM pg_stat_activity
     WHERE backend_type = 'client backend' AND starts_with(datname, $1) GROUP BY datname`,
    [databasePrefix]
  )
  return (tenantId: string) => rows.find((r) => r.datname === databases.databaseName(tenantId))?.n ?? 0
})

/** Takes a reference to the tenant's context in a scope that stays open until closed by the test. */
const hold = (tenantId: string) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    yield* Effect.flatMap(TenantContexts, (c) => c.get(tenantId)).pipe(Scope.extend(scope))
    return scope
  })

// A full collection on demand: WeakRefs then say what is still reachable.
setFlagsFromString("--expose-gc")
const collectGarbage = runInNewContext("gc") as () => void

/** Something of one request's own, as the HTTP request and response are in a request fiber's Context. */
class RequestMark extends Context.Tag("test/RequestMark")<RequestMark, { readonly n: number }>() {}

/**
 * Runs `listIn(tenantId)` as the HTTP server runs a request: in a fiber of its
 * own, started from the runtime, with its request in its Context. Returns a
 * WeakRef to that request's object.
 */
const asRequest = (runtime: Runtime.Runtime<TenantContexts>, tenantId: string, n: number) =>
  Effect.promise(async () => {
    const mark = { n }
    await Runtime.runPromise(runtime)(Effect.provideService(listIn(tenantId), RequestMark, mark))
    return new WeakRef(mark)
  })

const failureOf = <A, E>(exit: Exit.Exit<A, E>) =>
  Exit.isFailure(exit) ? Cause.failureOption(exit.cause).pipe(Option.getOrUndefined) : undefined

layer(
  TestTenancy({
    adminUrl,
    connectionBudget: 4,
    maxConnectionsPerTenant: 2,
    acquireTimeout: `${ACQUIRE_TIMEOUT_MS} millis`,
    idleTimeout: "1 minute"
  }),
  { excludeTestServices: true, timeout: 120_000 }
)("eviction and the connection budget (budget 4, 2 per tenant: 2 contexts)", (it) => {
  it.effect("three tenants used one after another: the least recently used idle context is evicted", () =>
    Effect.gen(function*() {
      yield* ensureTenants("ev-a", "ev-b", "ev-c")
      const start = yield* stats
      yield* listIn("ev-a")
      yield* listIn("ev-b")
      yield* listIn("ev-c")
      let now = yield* stats
      expect(now.open).toBe(2)
      expect(now.closed - start.closed).toBe(1)
      let open = yield* connectionsByTenant
      expect([open("ev-a"), open("ev-b") > 0, open("ev-c") > 0]).toEqual([0, true, true])

      // b is now the least recently used: a comes back, b goes.
      yield* listIn("ev-a")
      now = yield* stats
      expect(now.open).toBe(2)
      expect(now.closed - start.closed).toBe(2)
      open = yield* connectionsByTenant
      expect([open("ev-a") > 0, open("ev-b"), open("ev-c") > 0]).toEqual([true, 0, true])

      // Using c keeps it recent: then b evicts a, not c.
      yield* listIn("ev-c")
      yield* listIn("ev-b")
      open = yield* connectionsByTenant
      expect([open("ev-a"), open("ev-b") > 0, open("ev-c") > 0]).toEqual([0, true, true])
      now = yield* stats
      expect(now.references).toBe(0)
      expect(now.opened - now.closed).toBe(now.open)
    }))

  it.effect("with both contexts held, a third tenant waits for acquireTimeout, then gets TenantUnavailable", () =>
    Effect.gen(function*() {
      yield* ensureTenants("ev-a", "ev-b", "ev-c")
      const a = yield* hold("ev-a")
      const b = yield* hold("ev-b")
      const before = yield* stats
      expect(before.references).toBe(2)
      expect(before.open).toBe(2)

      // A held tenant is still served (its context is shared), even at capacity.
      yield* listIn("ev-a")

      const started = Date.now()
      const exit = yield* Effect.exit(listIn("ev-c"))
      const waited = Date.now() - started
      expect(failureOf(exit)?._tag).toBe("TenantUnavailable")
      // It waited for room rather than failing at once (a lower bound only).
      expect(waited).toBeGreaterThanOrEqual(ACQUIRE_TIMEOUT_MS - 20)
      console.log(`a third tenant with both contexts held failed after ${waited} ms (acquireTimeout ${ACQUIRE_TIMEOUT_MS} ms)`)

      const after = yield* stats
      expect(after.references).toBe(2)
      expect(after.open).toBe(2)
      expect(after.opened).toBe(before.opened)
      yield* Scope.close(a, Exit.void)
      yield* Scope.close(b, Exit.void)
      expect((yield* stats).references).toBe(0)

      // Room again: c is served now (the failure was not kept).
      yield* listIn("ev-c")
    }))

  it.effect("a waiting tenant is served as soon as a holder releases during the wait", () =>
    Effect.gen(function*() {
      yield* ensureTenants("ev-a", "ev-b", "ev-c")
      const a = yield* hold("ev-a")
      const b = yield* hold("ev-b")
      const waiter = yield* Effect.fork(Effect.exit(listIn("ev-c")))
      yield* Effect.sleep(`${ACQUIRE_TIMEOUT_MS / 3} millis`)
      expect(yield* Fiber.poll(waiter)).toEqual(Option.none())
      yield* Scope.close(a, Exit.void)
      const exit = yield* Fiber.join(waiter)
      expect(Exit.isSuccess(exit)).toBe(true)
      const open = yield* connectionsByTenant
      expect([open("ev-a"), open("ev-b") > 0, open("ev-c") > 0]).toEqual([0, true, true])
      yield* Scope.close(b, Exit.void)
      const now = yield* stats
      expect(now.references).toBe(0)
      expect(now.open).toBe(2)
    }))

  it.effect("several waiters share the room as holders release, and none is left behind", () =>
    Effect.gen(function*() {
      yield* ensureTenants("ev-a", "ev-b", "ev-c", "ev-d")
      const a = yield* hold("ev-a")
      const b = yield* hold("ev-b")
      const waiters = yield* Effect.forEach(
        ["ev-c", "ev-d", "ev-c", "ev-d"],
        (id) => Effect.fork(Effect.exit(listIn(id)))
      )
      yield* Effect.sleep("50 millis")
      yield* Scope.close(a, Exit.void)
      yield* Scope.close(b, Exit.void)
      const exits = yield* Effect.forEach(waiters, Fiber.join)
      expect(exits.map((e) => Exit.isSuccess(e))).toEqual([true, true, true, true])
      const now = yield* stats
      expect(now.references).toBe(0)
      expect(now.open).toBeLessThanOrEqual(2)
    }))

  it.effect("a context renewed by invalidate while it was held can still be evicted once idle", () =>
    Effect.gen(function*() {
      yield* ensureTenants("rn-x", "rn-y", "rn-z")
      const contexts = yield* TenantContexts
      // x is held, invalidated (as suspending does), and used again: a second context for x opens.
      const oldX = yield* hold("rn-x")
      yield* contexts.invalidate("rn-x")
      yield* listIn("rn-x")
      expect((yield* stats).open).toBe(2)
      // The old holder leaves: the old context closes, the new one stays, idle.
      yield* Scope.close(oldX, Exit.void)
      expect((yield* stats)).toMatchObject({ open: 1, references: 0 })
      // y is held; z needs a slot: the idle context of x must make room.
      const y = yield* hold("rn-y")
      const exit = yield* Effect.exit(listIn("rn-z"))
      expect(failureOf(exit)?._tag ?? (Exit.isSuccess(exit) ? "served" : "defect")).toBe("served")
      yield* Scope.close(y, Exit.void)
      expect((yield* stats)).toMatchObject({ open: 2, references: 0 })
    }))

  it.effect("contexts keep nothing of the requests that opened, evicted, used or closed them", () =>
    Effect.gen(function*() {
      const ids = ["kr-a", "kr-b", "kr-c"]
      yield* ensureTenants(...ids)
      const runtime = yield* Effect.runtime<TenantContexts>()
      const start = yield* stats
      // Three tenants in turn on room for two: every request after the second
      // opens a context, and that build first closes the idle one used longest ago.
      const marks: Array<WeakRef<object>> = []
      for (let n = 0; n < 12; n++) marks.push(yield* asRequest(runtime, ids[n % 3]!, n))
      const now = yield* stats
      expect(now.closed - start.closed).toBeGreaterThanOrEqual(10)
      expect(now).toMatchObject({ open: 2, references: 0 })
      // Every request has ended, two of the contexts they built are still
      // open: none of the requests may still be reachable.
      yield* Effect.promise(async () => {
        for (let i = 0; i < 3; i++) {
          await new Promise((resolve) => setTimeout(resolve, 20))
          collectGarbage()
        }
      })
      expect(marks.flatMap((mark, n) => (mark.deref() === undefined ? [] : [n]))).toEqual([])
    }))

  it.effect("after a churn of waits, timeouts and interruptions, every slot can still be reclaimed", () =>
    Effect.gen(function*() {
      const ids = ["ch-a", "ch-b", "ch-c", "ch-d", "ch-e"]
      yield* ensureTenants(...ids, "ch-fresh-1", "ch-fresh-2")
      // Deterministic pseudo-random mix of tenants, durations and interruptions.
      let seed = 42
      const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
      const units = Array.from({ length: 200 }, () => {
        const id = ids[Math.floor(random() * ids.length)]!
        const sleep = Math.floor(random() * 15)
        const cut = random() < 0.3 ? Math.floor(random() * 30) : undefined
        const work = Effect.flatMap(TenantSession, ({ sql }) => sql`SELECT pg_sleep(${sleep / 1000})`).pipe(withTenant(id))
        return cut === undefined ? work : Effect.timeout(work, `${cut} millis`)
      })
      const exits = yield* Effect.forEach(units, Effect.exit, { concurrency: 8 })
      // A statement cancelled without being interrupted (57014) is @effect/sql-pg's
      // pooled pg_cancel_backend reaching the next statement on a reused connection
      // (Effect-TS/effect#8068); repositories report it as TenantUnavailable.
      const outcome = (exit: Exit.Exit<unknown, unknown>) => {
        if (Exit.isSuccess(exit)) return "ok"
        const failure = failureOf(exit)
        if (failure instanceof SqlError) return sqlState(failure) === "57014" ? "cancelled by another's cancel" : "SqlError"
        return typeof failure === "object" && failure !== null && "_tag" in failure ? String(failure._tag) : "defect"
      }
      const counts = new Map<string, number>()
      for (const exit of exits) counts.set(outcome(exit), (counts.get(outcome(exit)) ?? 0) + 1)
      console.log("churn outcomes:", Object.fromEntries(counts))
      // Busy slots may make some wait too long; nothing else may go wrong.
      expect([...counts.keys()].filter((t) =>
        !["ok", "TenantUnavailable", "TimeoutException", "cancelled by another's cancel"].includes(t)
      )).toEqual([])
      expect(exits.filter(Exit.isSuccess).length).toBeGreaterThan(0)
      const now = yield* stats
      expect(now.references).toBe(0)
      expect(now.open).toBeLessThanOrEqual(2)
      // Every open context is idle and evictable: two tenants not used yet are served at once.
      yield* listIn("ch-fresh-1")
      yield* listIn("ch-fresh-2")
      const open = yield* connectionsByTenant
      expect(ids.map(open)).toEqual([0, 0, 0, 0, 0])
      expect((yield* stats).open).toBe(2)
    }))

  it.effect("one tenant's pool never opens more than 2 connections", () =>
    Effect.gen(function*() {
      yield* ensureTenants("ev-a")
      const databases = yield* TenantDatabases
      const { max, samples } = yield* Effect.scoped(Effect.gen(function*() {
        // The database name as the prefix: this tenant's connections alone.
        const sampler = yield* sampleTenantConnections(databases.databaseName("ev-a"))
        yield* Effect.forEach(
          Array.from({ length: 12 }, () => Effect.flatMap(TenantSession, ({ sql }) => sql`SELECT pg_sleep(0.02)`)),
          (effect) => withTenant("ev-a")(effect),
          { concurrency: "unbounded", discard: true }
        )
        return yield* sampler.stop
      }))
      expect(samples).toBeGreaterThan(1)
      expect(max).toBe(2)
    }))
})

layer(
  TestTenancy({ adminUrl, connectionBudget: 4, maxConnectionsPerTenant: 2, idleTimeout: "200 millis" }),
  { excludeTestServices: true, timeout: 120_000 }
)("idle contexts (idleTimeout 200 ms)", (it) => {
  it.effect("an unused context closes after the idle time; a held one does not", () =>
    Effect.gen(function*() {
      yield* ensureTenants("idle-a", "idle-b")
      yield* listIn("idle-a")
      const held = yield* hold("idle-b")
      expect((yield* stats).open).toBe(2)
      const closed = yield* eventually(stats, (s) => s.open === 1, { attempts: 250, everyMillis: 20 })
      expect(closed.open).toBe(1)
      expect(closed.closed).toBe(1)
      const open = yield* eventually(connectionsByTenant, (byTenant) => byTenant("idle-a") === 0)
      expect(open("idle-a")).toBe(0)
      expect(open("idle-b")).toBeGreaterThan(0)

      // Held well past the idle time, b is still open; released, it closes too.
      yield* Effect.sleep("400 millis")
      expect((yield* stats).open).toBe(1)
      yield* Scope.close(held, Exit.void)
      const none = yield* eventually(stats, (s) => s.open === 0, { attempts: 250, everyMillis: 20 })
      expect(none).toMatchObject({ open: 0, references: 0, closed: 2 })
      expect((yield* connectionsByTenant)("idle-b")).toBe(0)

      // And it opens again on the next use.
      yield* listIn("idle-a")
      expect((yield* stats).open).toBe(1)
    }))
})
