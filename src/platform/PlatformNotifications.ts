import type { SqlError } from "@effect/sql/SqlError"
import type { PgClient } from "@effect/sql-pg"
import { Cause, Clock, Context, Deferred, Duration, Effect, Either, Layer, Redacted, Schedule, Schema, type Scope, Stream } from "effect"
import Pg from "pg"
import { randomUUID } from "node:crypto"
import { orDie } from "../db/SqlErrors.js"
import { PlatformConfig } from "./PlatformConfig.js"
import { PlatformDb } from "./PlatformDb.js"

/**
 * The one channel of the platform's notifications (also named in the
 * triggers of platform migration 0005).
 */
export const CHANNEL = "tenant_engine"

/** Something cached that changed: every process drops what it holds of it. */
export const Change = Schema.Struct({
  kind: Schema.Literal("tenant", "account", "client"),
  id: Schema.String
})
export type Change = typeof Change.Type

/**
 * The protocol. Every notification on CHANNEL is one of these messages, as
 * JSON. `from` is the sending process (a random id per process), or `db` for
 * the platform tables' triggers; `seq` numbers a process's messages.
 *
 * - `change`: drop what `kind`/`id` names. A process that receives another's
 *   change applies it, then acknowledges it with `ack` (`to` the sender,
 *   `of` its seq). Changes from `db` (triggers: a tenant suspended through
 *   SQL, a fleet migration's state) are applied, not acknowledged.
 * - `ping`: a heartbeat. A process proves its own connection delivers by
 *   receiving its own pings back, and others learn that it is alive.
 * - `hello`: a process (re)started listening; the others answer with a ping,
 *   so it learns who is alive before its changes wait for acknowledgements.
 * - `bye`: a process stops; nobody waits for its acknowledgements any more.
 *
 * A message that does not decode is from another version: dropping
 * everything cached is always safe, so that is what it means.
 */
const Message = Schema.Union(
  Schema.Struct({ type: Schema.Literal("change"), from: Schema.String, seq: Schema.Number, ...Change.fields }),
  Schema.Struct({ type: Schema.Literal("ping", "hello", "bye"), from: Schema.String, seq: Schema.Number }),
  Schema.Struct({
    type: Schema.Literal("ack"),
    from: Schema.String,
    seq: Schema.Number,
    to: Schema.String,
    of: Schema.Number
  })
)
type Message = typeof Message.Type
const MessageJson = Schema.parseJson(Message)
const decodeMessage = Schema.decodeUnknownEither(MessageJson)
const encodeMessage = Schema.encodeSync(MessageJson)

/** What a cache does with the notifications. */
export interface Subscriber {
  /** Drops what the change names. */
  readonly changed: (change: Change) => Effect.Effect<void>
  /**
   * Drops everything: changes may have been missed. Called when a connection
   * is proven again after none was (not when it is lost: what is cached stays
   * as true as it was at `deliveredUpTo`, and a cache decides how long it may
   * still answer from it), and when a message was unreadable.
   */
  readonly reset: Effect.Effect<void>
}

/**
 * One LISTEN connection per process to the platform database, shared by every
 * cache of the process (accounts, tenant contexts), so that a change made in
 * any process (or by SQL) reaches every other within milliseconds.
 *
 * The connection is its own `pg` client rather than PgClient's `listen`, which
 * shares a connection and ignores its loss: here a lost connection is noticed
 * (its error or end, or pings that stop coming back), and a new one is opened
 * every heartbeat until one is proven by its pings coming back; subscribers
 * are reset then, as changes may have been missed in between.
 *
 * How current the caches are is measured, not assumed: a ping goes out every
 * heartbeat (250 ms by default), and when it comes back every change
 * committed before it was sent has been applied here, as PostgreSQL delivers
 * notifications in commit order. `deliveredUpTo` is that moment; a connection
 * that dies silently (no error, no end) stops it from advancing at once,
 * long before the loss itself is noticed. A cache bounds the staleness of
 * what it answers from memory by how old `deliveredUpTo` is (AccountDirectory).
 */
export class PlatformNotifications extends Context.Tag("tenant-engine/PlatformNotifications")<PlatformNotifications, {
  /** Whether a connection is proven to deliver now (and was not lost since): changes are being applied. */
  readonly listening: () => boolean
  /**
   * A time (`Date.now()` milliseconds) before which every change committed
   * anywhere has been applied to the subscribers (or they were reset after
   * it): the sending time of the last ping that came back. 0 before any
   * connection was proven. It stops advancing when the connection is lost.
   */
  readonly deliveredUpTo: () => number
  /** Receives every change and reset until the scope closes. */
  readonly subscribe: (subscriber: Subscriber) => Effect.Effect<void, never, Scope.Scope>
  /**
   * Runs the effect in a platform transaction that also announces
   * `announce(result)`, applies it here at once, and returns when every live
   * process has applied it too (at most a second later, should one of them
   * have died without a word). Statement failures are defects: the platform's
   * own statements are correct or it is a bug.
   */
  readonly change: <A, E>(
    announce: (a: A) => Change,
    effect: Effect.Effect<A, E>
  ) => Effect.Effect<A, Exclude<E, SqlError>>
}>() {
  /** Listens from the start (waiting at most 5 seconds for a first connection); stops with the scope. */
  static readonly layer: Layer.Layer<PlatformNotifications, never, PlatformDb | PlatformConfig> = Layer.scoped(
    PlatformNotifications,
    Effect.suspend(() => make)
  )
}

/**
 * How often a ping proves the connection delivers. Short, because it bounds
 * how stale a cache can be before it notices (AccountDirectory's bound is 1
 * second): one `pg_notify` per process every 250 ms.
 */
const DEFAULT_HEARTBEAT = Duration.millis(250)

/** Heartbeats and timeouts are about the real world: the live clock even where a test clock is installed. */
const realTime = Effect.withClock(Clock.make())

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
  application_name: "tenant-engine/notifications",
  // A server that does not answer is retried rather than waited for (shutdown waits for a connect).
  connectionTimeoutMillis: 5_000,
  // A connection that went silent (no reset) is noticed too.
  keepAlive: true
})

/**
 * The payloads of CHANNEL on a new connection; fails when the connection
 * does. `listened` is completed once LISTEN has run.
 */
const notifications = (config: Pg.ClientConfig, listened: Deferred.Deferred<void>) =>
  Stream.asyncPush<string, Error>((emit) =>
    Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const client = new Pg.Client(config)
          client.on("notification", (message) => {
            if (message.channel === CHANNEL && message.payload !== undefined) emit.single(message.payload)
          })
          client.on("error", (error) => emit.fail(error))
          client.on("end", () => emit.fail(new Error("the connection listening for notifications ended")))
          try {
            await client.connect()
            await client.query(`LISTEN ${client.escapeIdentifier(CHANNEL)}`)
            Deferred.unsafeDone(listened, Effect.void)
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
    )
  )

interface Waiter {
  /** When the message was about to be sent (before its statement ran). */
  readonly sentAt: number
  /** This process's own listener has the message. */
  echoed: boolean
  /** Live processes that have not acknowledged it yet. */
  readonly pending: Set<string>
  readonly done: Deferred.Deferred<void>
}

const make = Effect.gen(function*() {
  const platform = yield* PlatformDb
  const heartbeat = (yield* PlatformConfig).notificationHeartbeat ?? DEFAULT_HEARTBEAT
  const instance = randomUUID()
  let seq = 0
  let listening = false
  let deliveredUpTo = 0
  const subscribers = new Set<Subscriber>()
  /** Other processes, by when they were last heard from. */
  const peers = new Map<string, number>()
  const peerWindowMillis = 3 * Duration.toMillis(Duration.max(heartbeat, Duration.seconds(10)))
  /** This process's messages that someone waits on, by seq. */
  const waiters = new Map<number, Waiter>()

  const changed = (change: Change) => Effect.forEach(subscribers, (s) => s.changed(change), { discard: true })
  const reset = Effect.suspend(() => Effect.forEach(subscribers, (s) => s.reset, { discard: true }))

  /** Inside a transaction PostgreSQL delivers it at commit, together with the change. */
  const notify = (message: Message) => orDie(platform`SELECT pg_notify(${CHANNEL}, ${encodeMessage(message)})`)

  const settle = (waiter: Waiter) =>
    waiter.echoed && waiter.pending.size === 0 ? Deferred.succeed(waiter.done, undefined) : Effect.void

  const received = (payload: string): Effect.Effect<void> =>
    Effect.suspend(() => {
      const decoded = decodeMessage(payload)
      if (Either.isLeft(decoded)) return reset
      const message = decoded.right
      const mine = message.from === instance
      if (message.from === "db") return message.type === "change" ? changed(message) : Effect.void
      if (!mine) peers.set(message.from, Date.now())
      const waiter = mine ? waiters.get(message.seq) : undefined
      if (waiter !== undefined) waiter.echoed = true
      switch (message.type) {
        case "change":
          return Effect.zipRight(
            mine ? Effect.void : changed(message),
            waiter !== undefined
              ? settle(waiter)
              : notify({ type: "ack", from: instance, seq: ++seq, to: message.from, of: message.seq })
          )
        case "ping":
          if (waiter === undefined) return Effect.void
          // Messages are handled in the order they arrive: everything committed
          // before this ping was sent has been applied by now.
          if (listening) deliveredUpTo = Math.max(deliveredUpTo, waiter.sentAt)
          return settle(waiter)
        case "hello":
          return mine ? Effect.void : notify({ type: "ping", from: instance, seq: ++seq })
        case "bye":
          return Effect.sync(() => peers.delete(message.from))
        case "ack": {
          const acked = message.to === instance ? waiters.get(message.of) : undefined
          if (acked === undefined) return Effect.void
          acked.pending.delete(message.from)
          return settle(acked)
        }
      }
    })

  /**
   * Runs `send` with a fresh seq; `delivered` completes when this process's
   * listener has the message and (for changes) every live process has
   * acknowledged it.
   */
  const withWaiter = <A, E>(
    isChange: boolean,
    send: (seq: number, delivered: Effect.Effect<void>) => Effect.Effect<A, E>
  ) =>
    Effect.suspend(() => {
      const mySeq = ++seq
      const now = Date.now()
      const pending = new Set<string>()
      if (isChange) {
        for (const [peer, seen] of peers) {
          if (now - seen <= peerWindowMillis) pending.add(peer)
          else peers.delete(peer)
        }
      }
      return Effect.flatMap(Deferred.make<void>(), (done) => {
        waiters.set(mySeq, { sentAt: now, echoed: false, pending, done })
        return send(mySeq, Deferred.await(done))
      }).pipe(Effect.ensuring(Effect.sync(() => waiters.delete(mySeq))))
    })

  const change = <A, E>(announce: (a: A) => Change, effect: Effect.Effect<A, E>) =>
    withWaiter(true, (mySeq, delivered) =>
      Effect.gen(function*() {
        const a = yield* orDie(platform.withTransaction(
          Effect.tap(effect, (a) => notify({ type: "change", from: instance, seq: mySeq, ...announce(a) }))
        ))
        yield* changed(announce(a))
        if (listening) {
          yield* delivered.pipe(
            Effect.timeout("1 second"),
            Effect.catchAll(() => Effect.logDebug("a change was not acknowledged by every process")),
            realTime
          )
        }
        return a
      }))

  /** A ping that comes back on this process's connection within 250 ms. */
  const echo = withWaiter(false, (mySeq, delivered) =>
    Effect.zipRight(notify({ type: "ping", from: instance, seq: mySeq }), delivered)).pipe(
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

  const ready = yield* Deferred.make<void>()
  let warned = false
  /** One connection, from its opening to its loss. */
  const session = Effect.gen(function*() {
    const listened = yield* Deferred.make<void>()
    const receive = notifications(listenerConfig(platform.config), listened).pipe(Stream.runForEach(received))
    const prove = Effect.gen(function*() {
      // A ping sent before LISTEN has run never comes back: probing only then
      // saves an echo's timeout (250 ms) on every start, the CLI's included.
      // A connection that does not get that far within the probe's time ends
      // the session, as a probe that failed did.
      yield* Deferred.await(listened).pipe(
        Effect.timeoutFail({
          duration: Duration.max(heartbeat, Duration.seconds(1)),
          onTimeout: () => new Cause.TimeoutException("LISTEN did not complete")
        })
      )
      yield* probe
      // Learn which processes are alive before changes start waiting for them.
      yield* notify({ type: "hello", from: instance, seq: ++seq })
      yield* Effect.sleep("100 millis")
      yield* reset
      // Emptied just now: what the caches hold from here on was read after
      // this, and every later change reaches this connection.
      deliveredUpTo = Date.now()
      listening = true
      warned = false
      yield* Deferred.succeed(ready, undefined)
      return yield* Effect.forever(Effect.zipRight(Effect.sleep(heartbeat), probe))
    })
    // Whichever fails first (the connection, or a heartbeat) ends the session.
    return yield* Effect.raceFirst(receive, prove)
  })

  yield* session.pipe(
    Effect.catchAllCause((cause) =>
      Effect.suspend(() => {
        // No reset: what is cached was true at `deliveredUpTo`, which stops
        // here; the caches judge how long that still serves (AccountDirectory
        // re-reads at once, and answers from memory only within its bound).
        // Tenant contexts stay open, so known callers keep being served.
        listening = false
        // Once per outage: retries that fail too are not news.
        const log = warned ? Effect.logDebug : Effect.logWarning
        warned = true
        return log("platform notifications are not received; cached accounts are re-read until they are", cause)
      })
    ),
    Effect.zipRight(Effect.sleep(Duration.min(heartbeat, Duration.seconds(1)))),
    Effect.forever,
    realTime,
    Effect.forkScoped
  )
  // Closing: say so, so that other processes stop waiting for this one.
  yield* Effect.addFinalizer(() =>
    notify({ type: "bye", from: instance, seq: ++seq }).pipe(
      Effect.timeout("1 second"),
      Effect.catchAllCause(() => Effect.void),
      realTime
    )
  )
  // Start with a listener when the database allows; without one caches work, off.
  yield* Deferred.await(ready).pipe(Effect.timeout("5 seconds"), Effect.ignore, realTime)

  return PlatformNotifications.of({
    listening: () => listening,
    deliveredUpTo: () => deliveredUpTo,
    subscribe: (subscriber) =>
      Effect.acquireRelease(
        Effect.sync(() => subscribers.add(subscriber)),
        () => Effect.sync(() => subscribers.delete(subscriber))
      ),
    change
  })
})
