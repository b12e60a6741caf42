/**
 * What authentication costs per request: token verification per algorithm
 * (through TokenVerifier, keys already fetched), and the whole cached path
 * (Authentication.authenticate of a known caller with a warm account cache)
 * against a real PostgreSQL.
 *
 *   npx tsx bench/verify.ts
 *
 * Uses TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres, in
 * a namespace of its own that is dropped at the end.
 */
import { Context, Effect, Layer, Logger, LogLevel } from "effect"
import { AccountDirectory } from "../src/auth/AccountDirectory.js"
import { AuthConfig } from "../src/auth/AuthConfig.js"
import { Authentication } from "../src/auth/Authentication.js"
import type { SigningAlgorithm } from "../src/auth/TokenMinter.js"
import { TokenVerifier } from "../src/auth/TokenVerifier.js"
import { TenantDatabases } from "../src/tenancy/TenantDatabases.js"
import { TestTenancy } from "../src/testing/TestDatabases.js"
import { TestIssuer } from "../src/testing/TestIssuer.js"

const ITERATIONS = 5_000
const WARMUP = 500

/** Mean µs per run of `effect`, after a warm-up. */
const measure = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    for (let i = 0; i < WARMUP; i++) yield* effect
    const start = performance.now()
    for (let i = 0; i < ITERATIONS; i++) yield* effect
    return ((performance.now() - start) * 1000) / ITERATIONS
  })

const report = (label: string, micros: number) => Effect.sync(() => console.log(`${label.padEnd(44)} ${micros.toFixed(1).padStart(8)} µs`))

const verification = (alg: SigningAlgorithm) =>
  Effect.gen(function*() {
    const issuer = yield* TestIssuer.make({ alg })
    const context = yield* Layer.build(
      TokenVerifier.layer.pipe(Layer.provide(Layer.succeed(AuthConfig, issuer.authConfig())))
    )
    const verifier = Context.get(context, TokenVerifier)
    const token = yield* issuer.user("bench-user", { tenant: "bench", scopes: ["notes:read"] })
    yield* report(`TokenVerifier.verify ${alg}`, yield* measure(verifier.verify(token)))
  }).pipe(Effect.scoped)

const cachedAuthentication = Effect.gen(function*() {
  const issuer = yield* TestIssuer
  yield* Effect.flatMap(TenantDatabases, (databases) => databases.provision("bench", "Bench"))
  const authentication = yield* Authentication
  const directory = yield* AccountDirectory
  yield* directory.registerClient("bench", "bench-job", "Bench job")
  const header = [`Bearer ${yield* issuer.user("bench-user", { tenant: "bench", scopes: ["notes:read"] })}`]
  const machine = [`Bearer ${yield* issuer.machine("bench-job", { scopes: ["notes:read"] })}`]
  yield* report("Authentication.authenticate user, cached", yield* measure(authentication.authenticate(header)))
  yield* report("Authentication.authenticate machine, cached", yield* measure(authentication.authenticate(machine)))
  const stats = yield* directory.stats
  yield* Effect.sync(() => console.log(`  (account cache: ${stats.hits} hits, ${stats.misses} misses)`))
})

const adminUrl = process.env["TEST_DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres"

const AuthOnDatabase = Authentication.layerWithDependencies.pipe(
  Layer.provideMerge(TestIssuer.authConfig()),
  Layer.provideMerge(TestIssuer.layer({ alg: "RS256" })),
  Layer.provideMerge(TestTenancy({ adminUrl }))
)

const program = Effect.gen(function*() {
  yield* Effect.sync(() => console.log(`${ITERATIONS} runs each, after ${WARMUP} warm-up runs; node ${process.version}`))
  for (const alg of ["RS256", "ES256", "EdDSA"] as const) yield* verification(alg)
  yield* cachedAuthentication.pipe(Effect.provide(AuthOnDatabase))
})

Effect.runPromise(program.pipe(Logger.withMinimumLogLevel(LogLevel.Warning))).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
