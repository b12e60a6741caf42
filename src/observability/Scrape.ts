import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import { AccountDirectory } from "../auth/AccountDirectory.js"
import { ConnectionShares } from "../servers/ConnectionShares.js"
import { TenantContexts } from "../tenancy/TenantContexts.js"
import { TenantMigrator } from "../tenancy/TenantMigrator.js"
import {
  accountCacheEntries,
  contextReferences,
  contextsOpen,
  dbBudgetWaits,
  dbConnections,
  dbConnectionsIdle,
  dbConnectionsWaiting,
  dbConnectionWaits,
  dbShare,
  dbShareReserved,
  schemaContextsOpen,
  tenantsByMigrationState
} from "./Metrics.js"
import { type PoolKind, watchedPools } from "./Pools.js"

/** The Prometheus text format, version 0.0.4. */
const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

/** A scrape does not wait longer than this for the platform database (the tenants by migration state). */
const FLEET_TIMEOUT = "2 seconds"

type Labels = Readonly<Record<string, string>>

/**
 * Sets a labelled gauge for every label set given, and to 0 for those set
 * last time and not given now (a pool that closed), so that no series is
 * left at a value that is no longer true.
 */
const levels = (family: (labels: Labels) => { readonly set: (value: number) => void }) => {
  let previous = new Map<string, Labels>()
  return (values: ReadonlyArray<readonly [Labels, number]>) => {
    const now = new Map<string, Labels>()
    for (const [labels, value] of values) {
      family(labels).set(value)
      now.set(JSON.stringify(labels), labels)
    }
    for (const [key, labels] of previous) {
      if (!now.has(key)) family(labels).set(0)
    }
    previous = now
  }
}

/**
 * GET /metrics (docs/API.md "Operations"): the gauges are read from the
 * services when scraped, then the registry is written out. No token: it says
 * how busy the process is, never who its tenants are (unless
 * METRICS_TENANT_LABEL is on).
 */
export const MetricsRoute = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function*() {
    const contexts = yield* TenantContexts
    const shares = yield* ConnectionShares
    const directory = yield* AccountDirectory
    const migrator = yield* TenantMigrator

    const connections = levels(dbConnections)
    const idle = levels(dbConnectionsIdle)
    const waiting = levels(dbConnectionsWaiting)
    const reserved = levels(dbShareReserved)
    const allowance = levels(dbShare)

    const readServices = Effect.gen(function*() {
      const stats = yield* contexts.stats
      contextsOpen.set(stats.open)
      schemaContextsOpen.set(stats.schemaOpen)
      contextReferences.set(stats.references)
      accountCacheEntries.set((yield* directory.stats).size)

      const known = shares.shares()
      reserved(known.map((share) => [{ server: share.server }, share.held]))
      allowance(known.map((share) => [{ server: share.server }, share.capacity]))
      // Every server with a share has both pools' series, at 0 until a pool opens there.
      const totals = new Map<string, { labels: Labels; total: number; idle: number; waiting: number }>()
      const total = (server: string, pool: PoolKind) => {
        const key = `${server}\u0000${pool}`
        let entry = totals.get(key)
        if (entry === undefined) {
          entry = { labels: { server, pool }, total: 0, idle: 0, waiting: 0 }
          totals.set(key, entry)
          dbConnectionWaits({ server, pool })
        }
        return entry
      }
      for (const share of known) {
        total(share.server, "tenant")
        total(share.server, "shared")
        dbBudgetWaits({ server: share.server })
      }
      for (const { kind, pool, server } of watchedPools()) {
        const entry = total(server, kind)
        entry.total += pool.totalCount
        entry.idle += pool.idleCount
        entry.waiting += pool.waitingCount
      }
      connections([...totals.values()].map((entry) => [entry.labels, entry.total]))
      idle([...totals.values()].map((entry) => [entry.labels, entry.idle]))
      waiting([...totals.values()].map((entry) => [entry.labels, entry.waiting]))
    })

    // One query of the platform database; when it does not answer, the last
    // known counts stay and the scrape still answers (with a warning logged).
    const readFleet = migrator.status.pipe(
      Effect.timeout(FLEET_TIMEOUT),
      Effect.map(({ counts }) => {
        for (const [state, count] of Object.entries(counts)) tenantsByMigrationState({ migration_state: state }).set(count)
      }),
      Effect.catchAllCause((cause) => Effect.logWarning("metrics: the tenants' migration states could not be read", cause))
    )

    // The exposition's packages are loaded on the first scrape, then kept.
    let render: Effect.Effect<string> | undefined
    const exposition = Effect.suspend(() => {
      if (render !== undefined) return render
      return Effect.promise(() => import("./Exposition.js")).pipe(
        Effect.flatMap(({ makeExposition }) => makeExposition),
        Effect.tap((made) => Effect.sync(() => (render = made))),
        Effect.flatten
      )
    })

    yield* router.get(
      "/metrics",
      Effect.gen(function*() {
        yield* readServices
        yield* readFleet
        return HttpServerResponse.text(yield* exposition, { contentType: CONTENT_TYPE })
      })
    )
  })
)
