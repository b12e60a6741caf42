import { NodeHttpServer } from "@effect/platform-node"
import { Cause, Console, Data, Deferred, Duration, Effect, Exit, Layer, Logger, Option, Scope } from "effect"
import { createServer } from "node:http"
import type { Settings } from "./AppConfig.js"
import type { DevIssuer } from "./auth/DevIssuer.js"
import { HttpLive, withTracing } from "./http/HttpLive.js"
import { drain, Traffic } from "./http/Traffic.js"
import { Observability } from "./observability/Observability.js"
import { environment } from "./platform/Environment.js"
import { TenantAdmin } from "./platform/TenantAdmin.js"
import { PlatformLive } from "./PlatformLive.js"

const DEMO_TENANT = "acme"
const DEMO_CLIENT = "acme-service"

/**
 * Starts the platform: environment, services, HTTP server, in the caller's
 * scope (closing it shuts down in reverse: server first, then tenant pools,
 * the platform pool, and the embedded PostgreSQL if this process started it).
 * With the development issuer it also makes the demo tenant and prints tokens.
 */
export const startServer = (settings: Settings) =>
  Effect.gen(function*() {
    const env = yield* environment(settings)
    const server = createServer()
    const app = HttpLive.pipe(
      Layer.provide(NodeHttpServer.layer(() => server, { port: settings.port, host: settings.host })),
      Layer.provideMerge(PlatformLive),
      Layer.provideMerge(Traffic.layer),
      Layer.provide(env.layer),
      Layer.provide(Observability.fromSettings(settings)),
      withTracing(settings.otlpTracesEndpoint)
    )
    const context = yield* Layer.build(app)
    const baseUrl = `http://${settings.host.includes(":") ? `[${settings.host}]` : settings.host}:${settings.port}`
    if (Option.isSome(env.devIssuer)) {
      yield* seedDemo.pipe(Effect.provide(context))
      yield* Console.log(yield* demoInstructions(env.devIssuer.value, baseUrl))
    }
    yield* Effect.logInfo(`listening on ${baseUrl}`)
    if (Option.isSome(settings.otlpTracesEndpoint)) {
      // The origin only: a URL may carry credentials.
      yield* Effect.logInfo(`tracing: spans go to ${new URL(settings.otlpTracesEndpoint.value).origin} (OTLP/HTTP)`)
    }
    return { server, context }
  })

/** The demo tenant and its service client, made once and kept. */
const seedDemo = Effect.gen(function*() {
  const admin = yield* TenantAdmin
  yield* admin.create(DEMO_TENANT, "Acme Corporation").pipe(
    Effect.catchTag("TenantAlreadyExists", () => Effect.void)
  )
  yield* admin.registerClient(DEMO_TENANT, DEMO_CLIENT, "Acme backend service").pipe(
    Effect.catchTag("ClientAlreadyExists", () => Effect.void)
  )
})

const demoInstructions = (issuer: DevIssuer["Type"], baseUrl: string) =>
  Effect.gen(function*() {
    const lifetime = Duration.days(1)
    const scopes = ["notes:read", "notes:write"]
    const user = yield* issuer.user("alice", {
      tenant: DEMO_TENANT,
      email: "alice@acme.example",
      name: "Alice",
      scopes,
      lifetime
    })
    const machine = yield* issuer.machine(DEMO_CLIENT, { scopes, lifetime })
    const admin = yield* issuer.admin("operator", { lifetime })
    return [
      "",
      "Tenant engine is running with the DEVELOPMENT issuer (tokens valid for 24 hours).",
      "",
      "# who am I (a user of tenant acme)",
      `curl -s ${baseUrl}/v1/me -H 'Authorization: Bearer ${user}'`,
      "",
      "# write a note as the acme-service client, then list notes as the user",
      `curl -s -X POST ${baseUrl}/v1/notes -H 'Authorization: Bearer ${machine}' -H 'Content-Type: application/json' -d '{"title":"Hello","body":"from the acme service"}'`,
      `curl -s ${baseUrl}/v1/notes -H 'Authorization: Bearer ${user}'`,
      "",
      "# list tenants as an operator",
      `curl -s ${baseUrl}/v1/admin/tenants -H 'Authorization: Bearer ${admin}'`,
      "",
      `API documentation: ${baseUrl}/docs   More tokens: npm run token -- --help`,
      ""
    ].join("\n")
  })

/** Start-up failed (its cause is printed on stderr first). */
export class StartFailed extends Data.TaggedError("StartFailed")<{ readonly message: string }> {}

/** How long in-flight requests may take to finish on SIGTERM/SIGINT. */
const DRAIN_TIMEOUT_MS = 10_000

export const loggerFor = (settings: Settings) =>
  Layer.merge(settings.logFormat === "json" ? Logger.json : Logger.pretty, Logger.minimumLogLevel(settings.logLevel))

/**
 * Serve until SIGTERM or SIGINT, then stop accepting, let in-flight requests
 * finish, close every pool (and the embedded PostgreSQL) and exit 0.
 */
export const runServer = (settings: Settings) =>
  Effect.gen(function*() {
    const stop = yield* Deferred.make<string>()
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      process.once(signal, () => Deferred.unsafeDone(stop, Exit.succeed(signal)))
    }
    const scope = yield* Scope.make()
    const exit = yield* Effect.exit(Effect.gen(function*() {
      const { context, server } = yield* startServer(settings).pipe(Scope.extend(scope))
      const signal = yield* Deferred.await(stop)
      yield* Effect.logInfo(`${signal}: draining in-flight requests, then shutting down`)
      yield* drain(server, DRAIN_TIMEOUT_MS).pipe(Effect.provide(context))
    }))
    yield* Scope.close(scope, Exit.void)
    if (Exit.isFailure(exit)) {
      yield* Console.error(`The tenant engine could not start:\n${Cause.pretty(exit.cause)}`)
      return yield* new StartFailed({ message: "the tenant engine could not start" })
    }
    yield* Effect.logInfo("stopped")
  }).pipe(Effect.provide(loggerFor(settings)))

