import { Cause, Effect, Exit, Option } from "effect"
import { Worker } from "node:worker_threads"
import Pg from "pg"
import { inject } from "vitest"

/**
 * Plain `pg` clients on the test server's superuser URL, for looking at the
 * server from outside the code under test (pg_database, pg_roles,
 * pg_stat_activity) and for changing it behind the code's back.
 */
export const adminUrl = inject("databaseUrl")

/** One statement on a fresh admin connection (optionally to another database). */
export const adminQuery = <R extends Pg.QueryResultRow = Pg.QueryResultRow>(
  text: string,
  values: ReadonlyArray<unknown> = [],
  database?: string
) =>
  Effect.promise(async () => {
    const url = new URL(adminUrl)
    if (database !== undefined) url.pathname = "/" + encodeURIComponent(database)
    const client = new Pg.Client({ connectionString: url.toString() })
    await client.connect()
    try {
      return (await client.query<R>(text, [...values])).rows
    } finally {
      await client.end()
    }
  })

/** Databases whose name starts with the prefix (tenant databases and the template). */
export const databasesWithPrefix = (prefix: string) =>
  Effect.map(
    adminQuery<{ datname: string }>(
      "SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname",
      [prefix]
    ),
    (rows) => rows.map((r) => r.datname)
  )

export const rolesWithPrefix = (prefix: string) =>
  Effect.map(
    adminQuery<{ rolname: string }>(
      "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY rolname",
      [prefix]
    ),
    (rows) => rows.map((r) => r.rolname)
  )

/**
 * Client backends on tenant databases and the shared database (the template
 * excluded), optionally only in some states. TenantDatabases' own
 * administrative pool on the shared database (provisioning, migrations) is
 * not a tenant connection and not part of the budget: left out.
 */
const connectionsQuery = `
  SELECT count(*)::int AS n FROM pg_stat_activity
  WHERE backend_type = 'client backend'
    AND starts_with(datname, $1) AND datname <> $1 || 'template'
    AND application_name <> 'tenant-engine/provisioning'
    AND ($2::text[] IS NULL OR state = ANY($2::text[]))`

export const tenantConnections = (prefix: string, states?: ReadonlyArray<string>) =>
  Effect.map(
    adminQuery<{ n: number }>(connectionsQuery, [prefix, states ?? null]),
    (rows) => rows[0]?.n ?? 0
  )

/**
 * The sampler's loop, in a worker thread of its own so that the load under test
 * (hundreds of fibers on the main thread) cannot slow the sampling down.
 */
const samplerSource = `
const { parentPort, workerData } = require("node:worker_threads")
const { Client } = require("pg")
const client = new Client({ connectionString: workerData.url, application_name: "tenancy-test/sampler" })
let max = 0, samples = 0, stopping = false
parentPort.on("message", () => { stopping = true })
const loop = async () => {
  await client.connect()
  parentPort.postMessage({ started: true })
  for (;;) {
    const result = await client.query(workerData.query, [workerData.prefix, null])
    max = Math.max(max, result.rows[0].n)
    samples++
    if (stopping) break
    await new Promise((resolve) => setTimeout(resolve, workerData.everyMillis))
  }
  await client.end()
  parentPort.postMessage({ max, samples })
}
loop().catch((error) => parentPort.postMessage({ error: String(error) }))
`

/**
 * Samples the number of connections to tenant databases every few ms, on a
 * connection of its own in a worker thread, from now until `stop`; stopped
 * anyway when the scope closes. `stop` takes one last sample and gives the
 * highest count seen and the number of samples.
 */
export const sampleTenantConnections = (prefix: string, everyMillis = 2) =>
  Effect.gen(function*() {
    const worker = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new Worker(samplerSource, { eval: true, workerData: { url: adminUrl, prefix, everyMillis, query: connectionsQuery } })
      ),
      (worker) => Effect.promise(() => worker.terminate())
    )
    const next = Effect.async<{ started?: boolean; max?: number; samples?: number; error?: string }>((resume) => {
      const onMessage = (message: { max?: number; samples?: number; error?: string }) => {
        worker.off("error", onError)
        resume(Effect.succeed(message))
      }
      const onError = (error: Error) => {
        worker.off("message", onMessage)
        resume(Effect.die(error))
      }
      worker.once("message", onMessage)
      worker.once("error", onError)
    })
    const started = yield* next
    if (started.error) return yield* Effect.die(new Error(`sampler: ${started.error}`))
    return {
      stop: Effect.suspend(() => {
        worker.postMessage("stop")
        return Effect.flatMap(next, (result) =>
          result.error !== undefined || result.max === undefined || result.samples === undefined
            ? Effect.die(new Error(`sampler: ${result.error}`))
            : Effect.succeed({ max: result.max, samples: result.samples }))
      })
    }
  })

/** Polls until the effect's value satisfies the predicate or the attempts run out; returns the last value. */
export const eventually = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  predicate: (a: A) => boolean,
  options: { readonly attempts?: number; readonly everyMillis?: number } = {}
): Effect.Effect<A, E, R> =>
  Effect.gen(function*() {
    const attempts = options.attempts ?? 100
    let value = yield* effect
    for (let i = 1; i < attempts && !predicate(value); i++) {
      yield* Effect.sleep(`${options.everyMillis ?? 20} millis`)
      value = yield* effect
    }
    return value
  })

/** The typed failure of an effect that must fail: a success or a defect fails the test, saying which. */
export const typedFailure = <A, E, R>(effect: Effect.Effect<A, E, R>, what: string) =>
  Effect.map(Effect.exit(effect), (exit) => {
    if (Exit.isSuccess(exit)) throw new Error(`${what}: expected a failure, got ${JSON.stringify(exit.value)}`)
    const failure = Cause.failureOption(exit.cause)
    if (Option.isNone(failure)) throw new Error(`${what}: expected a typed failure, got ${Cause.pretty(exit.cause)}`)
    return failure.value
  })
