import type { SqlError } from "@effect/sql/SqlError"
import type { PgClient } from "@effect/sql-pg"
import { Cause, Clock, Deferred, Duration, Effect, Schedule, type Scope, Stream } from "effect"
import { randomUUID } from "node:crypto"

/** The channel every account directory listens on (also named in migration 0002's triggers). */
export const INVALIDATION_CHANNEL = "tenant_engine_accounts"

/**
 * How account directories (one per process) tell each other that cached
 * accounts, clients or tenants changed, over PostgreSQL LISTEN/NOTIFY on the
 * platform database.
 *
 * A notification is `<sender>.<n> <kind>:<value>`. Every directory pings on
 * the channel, so each knows the others that are alive. One that receives
 * another's invalidation applies it, then acknowledges it (`ack:<nonce>`);
 * the sender's `change` returns once its own listener has the message and
 * every live directory has acknowledged it. So when a change returns (a CLI
 * command ends), every server has dropped the entry: the next request
 * anywhere sees the change. Triggers on the platform tables (sender `db`)
 * announce changes made any other way; those are applied, not acknowledged.
 *
 * A directory uses its cache only while `listening()`: while its LISTEN
 * connection is proven, by echoes of its own pings on every heartbeat, to
 * deliver. A lost connection turns it off and everything cached is dropped;
 * a new one is proven before it turns on again.
 */
export interface AccountInvalidations {
  readonly listening: () => boolean
  /**
   * Runs the change in a platform transaction that also announces
   * `message(result)` (`<kind>:<value>`), applies it here at once, and
   * returns when the live directories have applied it too (at most a second
   * later, should one of them have died without a word). Statement failures
   * are defects: the platform's own statements are correct or it is a bug.
   */
  readonly change: <A, E>(
    message: (a: A) => string,
    effect: Effect.Effect<A, E>
  ) => Effect.Effect<A, Exclude<E, SqlError>>
}

export interface AccountInvalidationsOptions {
  readonly platform: PgClient.PgClient
  readonly heartbeat: Duration.Duration
  /** Drops what a message names from the local cache. */
  readonly invalidate: (kind: string, value: string) => void
  /** Drops everything (messages may have been missed). */
  readonly invalidateAll: () => void
}

const isSqlError = <E>(error: E): error is Extract<E, SqlError> =>
  typeof error === "object" && error !== null && "_tag" in error && error._tag === "SqlError"

const orDie = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.catchIf(effect, isSqlError, Effect.die)

/**
 * Heartbeats and timeouts are about the real world: they run on the live
 * clock even where a test clock is installed.
 */
const realTime = Effect.withClock(Clock.make())

interface Waiter {
  echoed: boolean
  readonly pending: Set<string>
  readonly done: Deferred.Deferred<void>
}

/** Starts listening (for at most 5 seconds before going on uncached); stops with the scope. */
export const makeAccountInvalidations = (
  options: AccountInvalidationsOptions
): Effect.Effect<AccountInvalidations, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { platform, heartbeat, invalidate, invalidateAll } = options
    const instance = randomUUID()
    let sequence = 0
    const nextNonce = () => `${instance}.${++sequence}`
    let listening = false
    /** Other directories, by when they were last heard from. */
    const peers = new Map<string, number>()
    const peerWindowMillis = 3 * Duration.toMillis(Duration.max(heartbeat, Duration.seconds(10)))
    const waiters = new Map<string, Waiter>()

    /** Inside a transaction PostgreSQL delivers it at commit, together with the change. */
    const notify = (nonce: string, message: string) =>
      orDie(platform`SELECT pg_notify(${INVALIDATION_CHANNEL}, ${`${nonce} ${message}`})`)

    const settle = (waiter: Waiter) =>
      waiter.echoed && waiter.pending.size === 0 ? Deferred.succeed(waiter.done, undefined) : Effect.void

    const echoed = (nonce: string) => {
      const waiter = waiters.get(nonce)
      if (waiter === undefined) return Effect.void
      waiter.echoed = true
      return settle(waiter)
    }

    const received = (payload: string) =>
      Effect.suspend(() => {
        const space = payload.indexOf(" ")
        const colon = payload.indexOf(":", space)
        // Not ours to read: whatever it meant, dropping everything is safe.
        if (space < 0 || colon < 0) return Effect.sync(invalidateAll)
        const nonce = payload.slice(0, space)
        const kind = payload.slice(space + 1, colon)
        const value = payload.slice(colon + 1)
        const sender = nonce.slice(0, nonce.lastIndexOf("."))
        if (sender === "db") return Effect.sync(() => invalidate(kind, value))
        const mine = sender === instance
        if (!mine) peers.set(sender, Date.now())
        switch (kind) {
          case "ping":
            return mine ? echoed(nonce) : Effect.void
          case "hello":
            // A directory just (re)started and wants to know who is there.
            return mine ? Effect.void : notify(nextNonce(), "ping:")
          case "bye":
            // A directory closed: nobody should wait for its acknowledgements.
            return Effect.sync(() => peers.delete(sender))
          case "ack": {
            const waiter = mine ? undefined : waiters.get(value)
            if (waiter === undefined) return Effect.void
            waiter.pending.delete(sender)
            return settle(waiter)
          }
          default:
            invalidate(kind, value)
            return mine ? echoed(nonce) : notify(nextNonce(), `ack:${nonce}`)
        }
      })

    /**
     * Sends with a fresh nonce; `delivered` completes when this directory's
     * listener has the message and (for invalidations) the live directories
     * have acknowledged it.
     */
    const send = <A, E>(
      invalidation: boolean,
      run: (nonce: string, delivered: Effect.Effect<void>) => Effect.Effect<A, E>
    ) =>
      Effect.suspend(() => {
        const nonce = nextNonce()
        const now = Date.now()
        const pending = new Set<string>()
        if (invalidation) {
          for (const [peer, seen] of peers) {
            if (now - seen <= peerWindowMillis) pending.add(peer)
            else peers.delete(peer)
          }
        }
        return Effect.flatMap(Deferred.make<void>(), (done) => {
          waiters.set(nonce, { echoed: false, pending, done })
          return run(nonce, Deferred.await(done))
        }).pipe(Effect.ensuring(Effect.sync(() => waiters.delete(nonce))))
      })

    const change = <A, E>(message: (a: A) => string, effect: Effect.Effect<A, E>) =>
      send(true, (nonce, delivered) =>
        Effect.gen(function*() {
          const a = yield* orDie(platform.withTransaction(Effect.tap(effect, (a) => notify(nonce, message(a)))))
          const text = message(a)
          const colon = text.indexOf(":")
          invalidate(text.slice(0, colon), text.slice(colon + 1))
          if (listening) {
            yield* delivered.pipe(
              Effect.timeout("1 second"),
              Effect.catchAll(() => Effect.logDebug("an account invalidation was not acknowledged by every directory")),
              realTime
            )
          }
          return a
        }))

    const ready = yield* Deferred.make<void>()
    let warned = false
    const session = Effect.gen(function*() {
      yield* platform.listen(INVALIDATION_CHANNEL).pipe(Stream.runForEach(received), Effect.forkScoped)
      const echo = send(false, (nonce, delivered) => Effect.zipRight(notify(nonce, "ping:"), delivered)).pipe(
        Effect.timeoutFail({ duration: "250 millis", onTimeout: () => new Cause.TimeoutException("no echo") })
      )
      // The first pings may go out before LISTEN has run: try again until one comes back.
      const probe = echo.pipe(
        Effect.retry(Schedule.spaced("50 millis")),
        Effect.timeoutFail({
          duration: Duration.max(heartbeat, Duration.seconds(1)),
          onTimeout: () => new Cause.TimeoutException("no notification came back")
        })
      )
      yield* probe
      // Learn which directories are alive before changes start waiting for them.
      yield* notify(nextNonce(), "hello:")
      yield* Effect.sleep("100 millis")
      invalidateAll()
      listening = true
      warned = false
      yield* Deferred.succeed(ready, undefined)
      yield* Effect.forever(Effect.zipRight(Effect.sleep(heartbeat), probe))
    }).pipe(Effect.scoped)

    yield* session.pipe(
      Effect.catchAllCause((cause) =>
        Effect.suspend(() => {
          listening = false
          invalidateAll()
          // Once per outage: retries that fail too are not news.
          const log = warned ? Effect.logDebug : Effect.logWarning
          warned = true
          return log("account invalidations are not received; the account cache is off until they are", cause)
        })
      ),
      Effect.zipRight(Effect.sleep(Duration.min(heartbeat, Duration.seconds(1)))),
      Effect.forever,
      realTime,
      Effect.forkScoped
    )
    // Closing: say so, so that other directories stop waiting for this one.
    yield* Effect.addFinalizer(() =>
      notify(nextNonce(), "bye:").pipe(Effect.timeout("1 second"), Effect.catchAllCause(() => Effect.void), realTime)
    )
    // Start with a listener when the database allows; without one the directory works, uncached.
    yield* Deferred.await(ready).pipe(Effect.timeout("5 seconds"), Effect.ignore, realTime)

    return { listening: () => listening, change }
  })
