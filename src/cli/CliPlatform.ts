import { Effect, Layer, Logger, LogLevel } from "effect"
import { readSettings } from "../AppConfig.js"
import { environment } from "../platform/Environment.js"
import { PlatformLive } from "../PlatformLive.js"

/**
 * The platform's services for one CLI command, from the same configuration as
 * the server. With no DATABASE_URL it uses the embedded PostgreSQL under the
 * data folder: the one `npm start` is running, or it starts it for the command.
 */
export const CliPlatform = Layer.unwrapScoped(
  Effect.gen(function*() {
    const settings = yield* readSettings
    const env = yield* environment(settings, { quiet: true })
    return PlatformLive.pipe(Layer.provide(env.layer))
  })
).pipe(Layer.provide(Logger.minimumLogLevel(LogLevel.Warning)))
