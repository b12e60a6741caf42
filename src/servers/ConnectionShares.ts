import { Clock, Context, Effect, Layer, Schedule } from "effect"
import { randomUUID } from "node:crypto"
import { hostname } from "node:os"
import { orDie } from "../db/SqlErrors.js"
import { PlatformDb } from "../platform/PlatformDb.js"
import { TenancyConfig } from "../tenancy/TenancyConfig.js"

/** This process's share of one server's connection allowance. */
export interface ServerShare {
  readonly server: string
  /** Permits not held now; below zero while a share that shrank is still held beyond it. */
  readonly free: () => number
  /** Waits for `n` permits (one per connection a pool may open). */
  readonly take: (n: number) => Effect.Effect<void>
  readonly release: (n: number) => Effect.Effect<void>
  /** Permits held now. */
  readonly held: () => number
}

/**
 * Every engine process on the platform database shares each server's
 * allowance (`servers.max_connections`) with the others. Each one heartbeats
 * every second in `engine_processes` with what it claims of each server it
 * uses; a process silent for 10 seconds is counted gone and its claims free.
 *
 * A round, under one advisory lock so that rounds of all processes take turns:
 * a process's fair share of a server is the allowance divided by the live
 * processes that use it (and at most TENANT_CONNECTION_BUDGET); it grows only into what
 * the others do not claim, and only once its new claim is recorded; it
 * shrinks at once, and keeps claiming what it still holds beyond its share
 * until those connections close. So the claims of all live processes never
 * add up to more than the allowance, and neither do their connections.
 */
export class ConnectionShares extends Context.Tag("tenant-engine/ConnectionShares")<ConnectionShares, {
  /** This process's share of a server, sized by a round before it is first handed out. */
  readonly of: (server: string) => Effect.Effect<ServerShare>
  /** Engine processes alive at the last round, this one included. */
  readonly processes: () => number
  /** Each server's share as it stands (for the metrics): its size and the permits held of it. */
  readonly shares: () => ReadonlyArray<{ readonly server: string; readonly capacity: number; readonly held: number }>
}>() {
  static readonly layer = Layer.scoped(ConnectionShares, Effect.suspend(() => make))
}

/** A process that has not heartbeated for this long is counted gone. */
const SILENT_AFTER = "10 seconds"

/** A share: a semaphore whose size follows the rounds, and what is held of it. */
interface Share extends ServerShare {
  readonly resize: (capacity: number) => Effect.Effect<void>
  capacity: number
}

const makeShare = (server: string) =>
  Effect.map(Effect.makeSemaphore(0), (permits): Share => {
    let held = 0
    const share: Share = {
      server,
      capacity: 0,
      free: () => share.capacity - held,
      held: () => held,
      take: (n) =>
        Effect.zipRight(
          permits.take(n),
          Effect.sync(() => {
            held += n
          })
        ),
      release: (n) =>
        Effect.suspend(() => {
          held -= n
          return permits.release(n)
        }),
      resize: (capacity) =>
        Effect.suspend(() => {
          share.capacity = capacity
          return permits.resize(capacity)
        })
    }
    return share
  })

const make = Effect.gen(function*() {
  const platform = yield* PlatformDb
  const config = yield* TenancyConfig
  const id = randomUUID()
  const shares = new Map<string, Share>()
  let live = 1
  const oneRound = yield* Effect.makeSemaphore(1)

  const round = oneRound.withPermits(1)(
    Effect.gen(function*() {
      const grow: Array<readonly [Share, number]> = []
      yield* platform.withTransaction(Effect.gen(function*() {
        yield* platform`SELECT pg_advisory_xact_lock(hashtext('tenant-engine/connection-shares'))`
        yield* platform`
          INSERT INTO engine_processes (id, host, pid) VALUES (${id}, ${hostname()}, ${process.pid})
          ON CONFLICT (id) DO UPDATE SET seen_at = now()`
        const processes = yield* platform<{ id: string; claims: Record<string, number> }>`
          SELECT id, claims FROM engine_processes WHERE seen_at > now() - ${SILENT_AFTER}::interval`
        const servers = yield* platform<{ name: string; max_connections: number }>`
          SELECT name, max_connections FROM servers WHERE admin_url IS NOT NULL`
        live = Math.max(1, processes.length)
        const claims: Record<string, number> = {}
        for (const share of shares.values()) {
          const allowance = servers.find((server) => server.name === share.server)?.max_connections ?? 0
          // The server is shared by the processes that use it: those with a
          // claim on it (even of 0), and this one. A process that opens no
          // tenant pool there (a CLI command) takes nothing from the others.
          const others = processes.filter((p) => p.id !== id && p.claims[share.server] !== undefined)
          const claimed = others.reduce((sum, p) => sum + (p.claims[share.server] ?? 0), 0)
          const fair = Math.floor(allowance / (others.length + 1))
          const target = Math.max(0, Math.min(config.connectionBudget, fair, allowance - claimed))
          claims[share.server] = Math.max(target, share.held())
          // Shrinking is safe before the claim is recorded; growing only after.
          if (target < share.capacity) yield* share.resize(target)
          else if (target > share.capacity) grow.push([share, target])
        }
        yield* platform`UPDATE engine_processes SET claims = ${JSON.stringify(claims)}::jsonb WHERE id = ${id}`
        // Rows of processes long gone (a crash leaves one behind).
        yield* platform`DELETE FROM engine_processes WHERE seen_at < now() - interval '1 hour'`
      }))
      yield* Effect.forEach(grow, ([share, capacity]) => share.resize(capacity), { discard: true })
    })
  ).pipe(orDie)

  yield* round
  yield* round.pipe(
    Effect.catchAllCause((cause) => Effect.logWarning("the connection-share heartbeat failed; shares stay as they are", cause)),
    Effect.repeat(Schedule.spaced("1 second")),
    // Real time even where a test clock is installed.
    Effect.withClock(Clock.make()),
    Effect.forkScoped
  )
  // Gone: the claims are free for the others at once, not after 10 seconds.
  yield* Effect.addFinalizer(() => Effect.ignore(platform`DELETE FROM engine_processes WHERE id = ${id}`))

  const of = (server: string) =>
    Effect.suspend(() => {
      const known = shares.get(server)
      if (known !== undefined) return Effect.succeed<ServerShare>(known)
      return Effect.gen(function*() {
        const share = yield* makeShare(server)
        // Another fiber may have made it meanwhile.
        const existing = shares.get(server)
        if (existing !== undefined) return existing
        shares.set(server, share)
        // Without a round (the platform database does not answer) the share stays empty: callers wait, then get 503.
        yield* round.pipe(Effect.catchAllCause((cause) => Effect.logWarning(`no share of server ${server} yet`, cause)))
        return share
      })
    })

  return ConnectionShares.of({
    of,
    processes: () => live,
    shares: () => [...shares.values()].map((share) => ({ server: share.server, capacity: share.capacity, held: share.held() }))
  })
})
