import { Console, Effect, Exit } from "effect"
import { setFlagsFromString } from "node:v8"
import { readSettings } from "./AppConfig.js"
import { runServer } from "./Server.js"

/**
 * V8 sizes the JS heap after each full collection at what survived times a
 * factor it picks from its own measurements, anywhere up to 4: under steady
 * load the server's RSS then swings by a third and more as the factor moves
 * (the 10-minute soak: 307–494 MiB). A fixed factor of 1.5 keeps it where
 * the live data puts it (278–313 MiB) at the same throughput and no more
 * time in garbage collection (bench/RESULTS.md, "Soak"; README). `node
 * --heap-growing-percent=N` on the command line sets another.
 */
const HEAP_GROWING_PERCENT = 50
if (!process.execArgv.some((arg) => /^--heap[-_]growing[-_]percent\b/.test(arg))) {
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`)
}

/** `npm start`: the platform with the configuration in the environment (see README). */
const main = readSettings.pipe(
  Effect.tapError((error) => Console.error(`Invalid configuration:\n${error.problems.join("\n")}`)),
  Effect.flatMap(runServer)
)

Effect.runPromiseExit(main).then((exit) => process.exit(Exit.isSuccess(exit) ? 0 : 1))
