import { expect, layer } from "@effect/vitest"
import { Duration, Effect } from "effect"
import * as Http from "node:http"
import { Traffic } from "../../src/http/Traffic.js"
import { TenantContexts } from "../../src/tenancy/TenantContexts.js"
import type { TenantStrategy } from "../../src/tenancy/Tenant.js"
import { STRATEGIES, tenantData } from "../strategies.js"
import {
  adminQuery,
  allNotes,
  createNote,
  eventually,
  get,
  makeTenant,
  pgClient,
  platform,
  serverUrl,
  userToken
} from "./support.js"

/**
 * A client that hangs up mid-request: its handler is interrupted, its tenant
 * reference released, its query cancelled in PostgreSQL.
 *
 * To hold requests mid-flight deterministically, a plain pg client takes an
 * ACCESS EXCLUSIVE lock on the tenant's notes table: every notes query then
 * waits inside PostgreSQL (or for a pool connection) until the lock goes.
 * The clients hang up while the lock is still held, so a query that was not
 * cancelled would still be there, active, when the test looks.
 *
 * On both strategies: a database tenant's queries run on its own pool in its
 * own database; a schema tenant's on the shared pool in the shared database
 * (both pools of POOL_MAX connections, so the same numbers hold).
 */

const POOL_MAX = 4

/** Starts a request and returns a function that hangs it up (the response never comes while the lock holds). */
const startRequest = (base: string, method: string, path: string, token: string, json?: unknown) =>
  Effect.sync(() => {
    const body = json === undefined ? undefined : JSON.stringify(json)
    const request = Http.request(new URL(path, base), {
      method,
      agent: false,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
      }
    })
    let answered: number | undefined
    request.on("response", (response) => {
      answered = response.statusCode
      response.resume()
    })
    request.on("error", () => {})
    request.end(body)
    return { hangUp: () => request.destroy(), answered: () => answered }
  })

/** Backends on the tenant's database (not the locker) in a state: its pool's, or the shared pool's. */
const tenantBackends = (database: string, lockerPid: number, condition: string) =>
  Effect.map(
    adminQuery<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity
       WHERE datname = $1 AND pid <> $2 AND backend_type = 'client backend' AND ${condition}`,
      [database, lockerPid]
    ),
    (rows) => rows[0]!.n
  )

interface Observed {
  /** The pool's backends still busy (under the lock) once every aborted request had ended. */
  readonly busyUnderLock: number
  /** The tenant's note titles once the lock was gone and its queries done. */
  readonly titles: ReadonlyArray<string>
}

const hangUpWhileHeld = (
  strategy: TenantStrategy,
  tenant: string,
  concurrent: number,
  cancelWithin: Duration.DurationInput
) =>
  Effect.gen(function*() {
    yield* makeTenant(tenant)
    const token = yield* userToken(`user-of-${tenant}`, tenant)
    yield* createNote(token, "before")
    const { database, notes } = yield* tenantData(tenant, strategy)
    const contexts = yield* TenantContexts
    const traffic = yield* Traffic
    const base = yield* serverUrl

    const locker = yield* pgClient(database, "http-test/locker")
    const lockerPid: number = (yield* Effect.promise(() => locker.query("SELECT pg_backend_pid() AS pid"))).rows[0].pid
    yield* Effect.promise(() => locker.query(`BEGIN; LOCK TABLE ${notes} IN ACCESS EXCLUSIVE MODE`))

    const requests = []
    for (let i = 0; i < concurrent; i++) {
      requests.push(
        yield* (i % 2 === 0
          ? startRequest(base, "POST", "/v1/notes", token, { title: `aborted ${i}`, body: "" })
          : startRequest(base, "GET", "/v1/notes", token))
      )
    }
    // Every request is inside its handler, holding a tenant reference...
    yield* eventually(
      `${concurrent} requests to hold a tenant reference`,
      Effect.map(contexts.stats, (s) => s.references === concurrent)
    )
    // ...and as many as the pool allows are waiting on the lock inside PostgreSQL.
    const waiting = Math.min(concurrent, POOL_MAX)
    yield* eventually(
      `${waiting} queries to wait on the lock`,
      Effect.map(tenantBackends(database, lockerPid, "wait_event_type = 'Lock'"), (n) => n === waiting)
    )
    expect(requests.map((r) => r.answered())).toEqual(requests.map(() => undefined))

    for (const request of requests) request.hangUp()

    // Every aborted request ends, and none holds its tenant reference.
    yield* eventually("the aborted requests to end", Effect.sync(() => traffic.inFlight === 0))
    expect((yield* contexts.stats).references).toBe(0)

    // Still under the lock: a query that was cancelled leaves its backend
    // idle; one that was not waits on the lock until the statement timeout
    // (30 s), well past `cancelWithin`.
    const busy = tenantBackends(database, lockerPid, "state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')")
    const busyUnderLock = yield* settle(busy, (n) => n === 0, cancelWithin)
    yield* Effect.promise(() => locker.query("COMMIT"))
    yield* eventually("the tenant's queries to finish once the lock is gone", Effect.map(busy, (n) => n === 0))

    // The tenant serves again, and every reference is still given back.
    const after = yield* get("/v1/notes", token)
    expect(after.status).toBe(200)
    expect((yield* contexts.stats).references).toBe(0)
    const titles = (yield* allNotes(token)).map((n) => n.title)
    return { busyUnderLock, titles } satisfies Observed
  }).pipe(Effect.scoped)

/** Polls until `done`, at most `within`; gives the last value either way (for assertions that follow). */
const settle = <A, E, R>(sample: Effect.Effect<A, E, R>, done: (a: A) => boolean, within: Duration.DurationInput) =>
  Effect.gen(function*() {
    const deadline = Date.now() + Duration.toMillis(within)
    for (;;) {
      const value = yield* sample
      if (done(value) || Date.now() > deadline) return value
      yield* Effect.sleep("10 millis")
    }
  })

const expectCancelled = (observed: Observed | undefined) => {
  expect(observed, "the scenario ran").toBeDefined()
  expect(observed!.busyUnderLock, "queries still running for hung-up clients").toBe(0)
  expect(observed!.titles, "notes written by hung-up requests").toEqual(["before"])
}

for (const strategy of STRATEGIES) {
  layer(
    platform({ defaultStrategy: strategy, maxConnectionsPerTenant: POOL_MAX, sharedPoolConnections: POOL_MAX }),
    { excludeTestServices: true }
  )(`client disconnects (${strategy} tenants)`, (it) => {
    it.effect("clients that hang up while their queries wait release their references, and the queries are cancelled", () =>
      Effect.map(hangUpWhileHeld(strategy, "hangup-few", POOL_MAX - 1, "10 seconds"), expectCancelled))

    // More clients than connections: the cancels must not need a pool connection
    // (PostgreSQL's out-of-band CancelRequest), or the abandoned queries would
    // run on holding every connection.
    it.effect("more clients than pool connections hang up: every request ends, gives its reference back, and is cancelled", () =>
      Effect.map(hangUpWhileHeld(strategy, "hangup-many", 3 * POOL_MAX, "2 seconds"), expectCancelled))
  })
}
