import { Args, Command, Options } from "@effect/cli"
import { Console, Effect, Option } from "effect"
import type { MoveProgress } from "../tenancy/TenantDatabases.js"
import { tenantAdmin } from "./CliPlatform.js"
import { printRecord } from "./output.js"

/** One line per step: on stderr, so that stdout keeps the summary. */
const describe = (progress: MoveProgress) => {
  switch (progress.step) {
    case "draining":
      return "claimed: its requests get 503 until the switch; waiting for work in flight"
    case "creating":
      return `creating its ${progress.strategy} on ${progress.server}`
    case "copied":
      return `copied ${progress.table}: ${progress.rows} rows`
    case "switched":
      return `switched after ${progress.unavailableMillis} ms; dropping the old copy`
  }
}

export const move = Command.make(
  "move",
  {
    id: Args.text({ name: "ID" }).pipe(Args.withDescription("the tenant id")),
    to: Options.text("to").pipe(
      Options.withDescription("the server to move it to (default: the active server with the fewest tenants per weight)"),
      Options.optional
    ),
    strategy: Options.choice("strategy", ["database", "schema"]).pipe(
      Options.withDescription("its strategy there (default: the one it has)"),
      Options.optional
    ),
    json: Options.boolean("json").pipe(Options.withDescription("print a JSON summary"))
  },
  ({ id, json, strategy, to }) =>
    Effect.gen(function*() {
      const admin = yield* tenantAdmin
      const summary = yield* admin.move(
        id,
        { to: Option.getOrUndefined(to), strategy: Option.getOrUndefined(strategy) },
        (progress) => json ? Effect.void : Console.error(describe(progress))
      )
      if (json) return yield* Console.log(JSON.stringify(summary, null, 2))
      yield* printRecord({
        tenant: summary.tenantId,
        moved: summary.moved,
        from: `${summary.from.server} (${summary.from.strategy})`,
        to: `${summary.to.server} (${summary.to.strategy})`,
        rows: summary.tables.reduce((sum, table) => sum + table.rows, 0),
        unavailableMs: summary.unavailableMillis
      }, false)
    })
).pipe(Command.withDescription("move a tenant's data to another server or strategy (503 for it meanwhile, nothing lost)"))
