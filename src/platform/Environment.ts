import { Effect, Layer, Option, Redacted } from "effect"
import { join } from "node:path"
import { type Settings, sharedPoolConnections, tenantAdminUrl } from "../AppConfig.js"
import { AuthConfig, makeAuthConfig } from "../auth/AuthConfig.js"
import { DevIssuer } from "../auth/DevIssuer.js"
import { withDatabase } from "../db/DatabaseUrl.js"
import { TenancyConfig } from "../tenancy/TenancyConfig.js"
import { startEmbeddedPostgres } from "./EmbeddedPostgres.js"
import { PlatformConfig } from "./PlatformConfig.js"

/**
 * Turns settings into the running environment: the platform database (an
 * embedded PostgreSQL under the data folder when DATABASE_URL is unset) and
 * the trusted issuers (the development issuer when AUTH_ISSUER is unset).
 * Provides PlatformConfig, TenancyConfig and AuthConfig, and DevIssuer when
 * it is the one trusted.
 */
export const environment = (settings: Settings, options: { readonly quiet?: boolean } = {}) =>
  Effect.gen(function*() {
    const platformUrl = yield* Option.match(settings.databaseUrl, {
      onSome: Effect.succeed,
      onNone: () =>
        Effect.gen(function*() {
          const directory = join(settings.dataDir, "postgres")
          if (options.quiet !== true) {
            yield* Effect.logInfo(`DATABASE_URL is unset: using the embedded PostgreSQL in ${directory}`)
          }
          const server = yield* startEmbeddedPostgres({ directory })
          return withDatabase(server.url, "platform")
        })
    })
    const devIssuer = settings.authIssuers.length === 0
      ? Option.some(
        yield* Effect.provide(
          DevIssuer,
          DevIssuer.layer({ directory: join(settings.dataDir, "issuer"), audience: settings.authAudience })
        )
      )
      : Option.none()
    if (Option.isSome(devIssuer) && options.quiet !== true) {
      yield* Effect.logWarning(
        "AUTH_ISSUER is unset: trusting the built-in DEVELOPMENT issuer, whose keys live under " +
          `${join(settings.dataDir, "issuer")}. Never run it like this in production.`
      )
    }
    const issuers = Option.match(devIssuer, {
      onSome: (dev) => [dev.trustedIssuer],
      onNone: () =>
        settings.authIssuers.map((issuer) => ({ issuer, jwksUrl: Option.getOrUndefined(settings.authJwksUrl) }))
    })
    const layer = Layer.mergeAll(
      Layer.succeed(PlatformConfig, { url: platformUrl, maxConnections: settings.platformPoolMax }),
      Layer.succeed(TenancyConfig, {
        adminUrl: tenantAdminUrl(settings, platformUrl),
        databasePrefix: settings.tenantDatabasePrefix,
        defaultStrategy: settings.tenantDefaultStrategy,
        maxConnectionsPerTenant: settings.tenantPoolMax,
        sharedPoolConnections: sharedPoolConnections(settings),
        connectionBudget: settings.tenantConnectionBudget,
        maxContexts: settings.tenantContextMax,
        idleTimeout: settings.tenantIdleTimeout,
        acquireTimeout: settings.tenantAcquireTimeout
      }),
      Layer.succeed(
        AuthConfig,
        makeAuthConfig({
          issuers,
          audience: settings.authAudience,
          algorithms: settings.authAlgorithms,
          clockTolerance: settings.authClockTolerance,
          tenantClaim: settings.tenantClaim
        })
      )
    )
    return { layer, devIssuer, platformUrl: Redacted.value(platformUrl) }
  })
