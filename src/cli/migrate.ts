import { Command, Options } from "@effect/cli"
import { Effect, Option } from "effect"
import type { TenantMigrator } from "../tenancy/TenantMigrator.js"
import { printRows } from "./output.js"

/** The fleet migrator (from CliPlatform), its module imported only when the command runs. */
const tenantMigrator: Effect.Effect<TenantMigrator["Type"], never, TenantMigrator> = Effect.flatMap(
  Effect.promise(() => import("../tenancy/TenantMigrator.js")),
  ({ TenantMigrator }) => TenantMigrator
)

export const migrate = Command.make(
  "migrate",
  {
    concurrency: Options.integer("concurrency").pipe(
      Options.withDescription("tenants migrated at once (default: what the connection budget allows, at most 8)"),
      // 0 or less would not mean "none at once": Effect.forEach quietly runs one at a time.
      Options.filterMap((n) => (n >= 1 ? Option.some(n) : Option.none()), "--concurrency must be at least 1"),
      Options.optional
    ),
    status: Options.boolean("status").pipe(Options.withDescription("show each tenant's schema state; migrate nothing")),
    json: Options.boolean("json").pipe(Options.withDescription("print JSON"))
  },
  ({ concurrency, json, status }) =>
    Effect.gen(function*() {
      const migrator = yield* tenantMigrator
      if (status) {
        const report = yield* migrator.status
        return yield* printRows(report.tenants.map((t) => ({ ...t })), {
          json,
          columns: ["id", "state", "version", "error"]
        })
      }
      yield* migrator.migrateAll({ concurrency, json })
    })
).pipe(Command.withDescription("bring the platform and every tenant database up to date (or --status)"))
