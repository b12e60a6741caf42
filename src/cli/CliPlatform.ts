import { Effect, Layer, Logger, LogLevel } from "effect"
import { readSettings } from "../AppConfig.js"
import type { TenantAdmin } from "../platform/TenantAdmin.js"

/**
 * The platform's services for one CLI command, from the same configuration as
 * the server. With no DATABASE_URL it uses the embedded PostgreSQL under the
 * data folder: the one `npm start` is running, or it starts it for the command.
 *
 * Their modules are imported when the layer is built, that is when a command
 * that needs them runs: `--help`, a usage error or `token` never load them.
 */
export const CliPlatform = Layer.unwrapScoped(
  Effect.gen(function*() {
    const [{ environment }, { PlatformLive }] = yield* Effect.promise(() =>
      Promise.all([import("../platform/Environment.js"), import("../PlatformLive.js")])
    )
    const settings = yield* readSettings
    const env = yield* environment(settings, { quiet: true })
    return PlatformLive.pipe(Layer.provide(env.layer))
  })
).pipe(Layer.provide(Logger.minimumLogLevel(LogLevel.Warning)))

/** The operator's operations (what CliPlatform provides), without importing their module up front. */
export const tenantAdmin: Effect.Effect<TenantAdmin["Type"], never, TenantAdmin> = Effect.flatMap(
  Effect.promise(() => import("../platform/TenantAdmin.js")),
  ({ TenantAdmin }) => TenantAdmin
)
