import { Console, Effect, Exit } from "effect"
import { readSettings } from "./AppConfig.js"
import { runServer } from "./Server.js"

/** `npm start`: the platform with the configuration in the environment (see README). */
const main = readSettings.pipe(
  Effect.tapError((error) => Console.error(`Invalid configuration:\n${error.problems.join("\n")}`)),
  Effect.flatMap(runServer)
)

Effect.runPromiseExit(main).then((exit) => process.exit(Exit.isSuccess(exit) ? 0 : 1))
