import { Command, ValidationError } from "@effect/cli"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Cause, Console, Effect, Exit, Option } from "effect"
import { readSettings } from "../AppConfig.js"
import { describeError, messageOf } from "../ErrorText.js"
import { CliPlatform } from "./CliPlatform.js"
import { clients } from "./clients.js"
import { doctor } from "./doctor.js"
import { domains } from "./domains.js"
import { migrate } from "./migrate.js"
import { servers } from "./servers.js"
import { tenants } from "./tenants.js"
import { token } from "./token.js"

// The server (HTTP, the API, authentication) is loaded only by `serve`: the
// other commands start faster without it (README, "Build and start").
const serve = Command.make("serve", {}, () =>
  Effect.flatMap(
    Effect.promise(() => import("../Server.js")),
    ({ runServer }) => Effect.flatMap(readSettings, runServer)
  )).pipe(Command.withDescription("run the platform server (what `npm start` runs)"))

// Commands that operate on the platform get its services (loaded when such a
// command runs, not for --help or a usage error); serve and token build their own.

const root = Command.make("tenant-engine").pipe(
  Command.withDescription("operate the tenant engine: tenants, servers, service clients, domains, migrations, tokens"),
  Command.withSubcommands([
    serve,
    Command.provide(migrate, CliPlatform),
    Command.provide(tenants, CliPlatform),
    Command.provide(servers, CliPlatform),
    Command.provide(clients, CliPlatform),
    Command.provide(domains, CliPlatform),
    doctor,
    token
  ])
)

const cli = Command.run(root, { name: "tenant-engine", version: "0.1.0" })

// Usage errors are printed by the CLI itself; every other failure, and every
// defect (a statement that failed, say), is one line on stderr. Either way the
// exit code is 1.
cli(process.argv).pipe(
  Effect.tapErrorCause((cause) =>
    Option.match(Cause.failureOption(cause), {
      onSome: (error) => ValidationError.isValidationError(error) ? Effect.void : Console.error(`error: ${messageOf(error)}`),
      onNone: () => Cause.isInterruptedOnly(cause) ? Effect.void : Console.error(`error: ${describeError(Cause.squash(cause))}`)
    })
  ),
  Effect.provide(NodeContext.layer),
  Effect.runPromiseExit
).then((exit) => {
  // A pipe takes writes asynchronously: exiting at once cut long output
  // (`migrate --status --json` over 10,000 tenants) short. Exit once both
  // streams have flushed what was written before.
  const code = Exit.isSuccess(exit) ? 0 : 1
  process.stdout.write("", () => process.stderr.write("", () => process.exit(code)))
})
