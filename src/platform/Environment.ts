import { Data, Effect, Layer, Option, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { chmod, link, mkdir, readFile, rm, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { type Settings, sharedPoolConnections, tenantAdminUrl } from "../AppConfig.js"
import { AuthConfig, makeAuthConfig } from "../auth/AuthConfig.js"
import { DevIssuer } from "../auth/DevIssuer.js"
import { withDatabase } from "../db/DatabaseUrl.js"
import { TenancyConfig } from "../tenancy/TenancyConfig.js"
import { startEmbeddedPostgres } from "./EmbeddedPostgres.js"
import { PlatformConfig } from "./PlatformConfig.js"

/** The tenant roles' secret could not be read or kept under the data folder. */
export class RoleSecretError extends Data.TaggedError("RoleSecretError")<{ readonly message: string }> {}

/** Where the secret is kept when TENANT_ROLE_SECRET is unset. */
export const roleSecretFile = (dataDir: string) => join(dataDir, "tenant-role-secret")

/**
 * The secret kept in `file`, made on first use (32 random bytes, readable by
 * its owner only). Made once: written to a private temporary file and linked
 * into place, which fails if the file exists, so of several processes
 * starting together one secret wins and all of them read it.
 */
export const keptRoleSecret = (file: string) => {
  const attempt = <A>(what: string, run: () => Promise<A>) =>
    Effect.tryPromise({
      try: run,
      catch: (cause) =>
        new RoleSecretError({ message: `${what} ${file}: ${cause instanceof Error ? cause.message : String(cause)}` })
    })
  const read = attempt("reading", async () => {
    try {
      return (await readFile(file, "utf8")).trim()
    } catch (error) {
      if (error instanceof Error && "code" in error && error.code === "ENOENT") return undefined
      throw error
    }
  })
  return Effect.gen(function*() {
    const saved = yield* read
    if (saved !== undefined && saved !== "") return Redacted.make(saved)
    yield* attempt("creating the folder of", () => mkdir(join(file, ".."), { recursive: true, mode: 0o700 }))
    yield* attempt("writing", async () => {
      const temporary = `${file}.${randomBytes(6).toString("hex")}.tmp`
      await writeFile(temporary, randomBytes(32).toString("base64url") + "\n", { mode: 0o600, flag: "wx" })
      // writeFile's mode is filtered by the umask; make sure it is owner-only.
      await chmod(temporary, 0o600)
      try {
        await link(temporary, file)
      } catch (error) {
        if (!(error instanceof Error && "code" in error && error.code === "EEXIST")) throw error
      } finally {
        await rm(temporary, { force: true })
      }
    })
    const kept = yield* read
    if (kept === undefined || kept === "") return yield* new RoleSecretError({ message: `${file} is empty` })
    return Redacted.make(kept)
  })
}

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
    // The tenant roles' passwords derive from this secret. Unset, it is kept
    // under the data folder: right for the embedded default (one machine, one
    // folder); with DATABASE_URL every process must be given the same one, so
    // it is said loudly. A process with another secret cannot log in as any
    // tenant role (its tenants get 503), it never reaches a wrong one.
    const roleSecret = yield* Option.match(settings.tenantRoleSecret, {
      onSome: Effect.succeed,
      onNone: () =>
        Effect.tap(keptRoleSecret(roleSecretFile(settings.dataDir)), () =>
          Option.isSome(settings.databaseUrl) && options.quiet !== true
            ? Effect.logWarning(
              `TENANT_ROLE_SECRET is unset: tenant role passwords derive from the secret kept in ` +
                `${roleSecretFile(settings.dataDir)}. Every engine process and the CLI on this platform database ` +
                "must use the same secret: set TENANT_ROLE_SECRET."
            )
            : Effect.void)
    })
    const issuers = Option.match(devIssuer, {
      onSome: (dev) => [dev.trustedIssuer],
      onNone: () =>
        settings.authIssuers.map((issuer) => ({ issuer, jwksUrl: Option.getOrUndefined(settings.authJwksUrl) }))
    })
    const layer = Layer.mergeAll(
      Layer.succeed(PlatformConfig, { url: platformUrl, maxConnections: settings.platformPoolMax }),
      Layer.succeed(TenancyConfig, {
        adminUrl: tenantAdminUrl(settings, platformUrl),
        roleSecret,
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
