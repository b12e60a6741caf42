import { Duration, Effect, Layer, Logger, LogLevel } from "effect"
import { readSettings } from "../AppConfig.js"
import { PlatformConfig } from "../platform/PlatformConfig.js"
import type { TenantAdmin } from "../platform/TenantAdmin.js"

/**
 * A command's notifications heartbeat. A server pings every 250 ms so that its
 * caches notice a lost connection at once; a command lives a second and
 * caches nothing worth it. What matters to it is the first proof of its
 * connection, which may take only max(heartbeat, 1 s): on a loaded machine
 * (a dozen commands at once, say) 1 s was too short and the command went on
 * without a listener, warning. Its layer waits at most 5 s for the proof anyway.
 */
const COMMAND_NOTIFICATION_HEARTBEAT = Duration.seconds(5)

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
    const config = Layer.effect(
      PlatformConfig,
      Effect.map(PlatformConfig, (config) => ({ ...config, notificationHeartbeat: COMMAND_NOTIFICATION_HEARTBEAT }))
    )
    // provideMerge: this PlatformConfig replaces the environment's.
    return PlatformLive.pipe(Layer.provide(Layer.provideMerge(config, env.layer)))
  })
).pipe(
  // Warnings only, and on stderr: stdout is the command's output, which
  // scripts parse (--json); a warning there (notifications not received on a
  // loaded machine, say) would break them.
  Layer.provide(Layer.merge(
    Logger.minimumLogLevel(LogLevel.Warning),
    Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.logfmtLogger))
  ))
)

/** The operator's operations (what CliPlatform provides), without importing their module up front. */
export const tenantAdmin: Effect.Effect<TenantAdmin["Type"], never, TenantAdmin> = Effect.flatMap(
  Effect.promise(() => import("../platform/TenantAdmin.js")),
  ({ TenantAdmin }) => TenantAdmin
)
