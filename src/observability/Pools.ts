import type Pg from "pg"
import { dbConnectionWaits } from "./Metrics.js"

/**
 * The tenant pools of this process, for the connection gauges: pg keeps its
 * counts (total, idle, waiting) on each pool, read when /metrics is scraped.
 * Pools are found by `openPool` (src/db/Pool.ts), which knows the URL but not
 * the registered server's name: TenantContexts names the server of each host
 * before it opens a tenant's session there.
 */

export type PoolKind = "tenant" | "shared"

export interface WatchedPool {
  readonly pool: Pg.Pool
  readonly server: string
  readonly kind: PoolKind
}

const watched = new Set<WatchedPool>()
const serverOfHost = new Map<string, string>()

/** `host:port` of a postgres URL (the key the two sides agree on); the URL itself when it does not parse. */
const hostKey = (url: string) => {
  try {
    const parsed = new URL(url)
    return `${parsed.hostname}:${parsed.port === "" ? "5432" : parsed.port}`
  } catch {
    return url
  }
}

/** The registered server that lives at a host (a placement's `host`). */
export const nameServer = (host: string, server: string) => {
  serverOfHost.set(hostKey(host), server)
}

/**
 * Keeps the pool for the gauges until it ends, and counts the statements that
 * find all its connections in use (pg queues them): `connect` is replaced on
 * this pool object only, with a check of two counts before pg's own.
 */
export const watchPool = (pool: Pg.Pool, url: string, applicationName: string) => {
  const kind: PoolKind = applicationName === "tenant-engine/shared" ? "shared" : "tenant"
  const host = hostKey(url)
  const server = serverOfHost.get(host) ?? host
  watched.add({ pool, server, kind })
  const waits = dbConnectionWaits({ server, pool: kind })
  const max = pool.options.max ?? 10
  const connect: (...args: Array<unknown>) => unknown = Reflect.get(pool, "connect")
  Reflect.set(pool, "connect", (...args: Array<unknown>) => {
    if (pool.idleCount === 0 && pool.totalCount >= max) waits.increment()
    return Reflect.apply(connect, pool, args)
  })
}

/** The pools open now (ended ones are forgotten here). */
export const watchedPools = (): ReadonlyArray<WatchedPool> => {
  for (const entry of watched) {
    if (entry.pool.ended) watched.delete(entry)
  }
  return [...watched]
}
