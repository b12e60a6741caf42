import { Cause, Console, Context, Data, Effect, Layer, Option } from "effect"
import { latestVersion } from "../db/Migrations.js"
import { describeError } from "../ErrorText.js"
import { PlatformDb } from "../platform/PlatformDb.js"
import { TenancyConfig } from "./TenancyConfig.js"
import type { TenantStrategy } from "./Tenant.js"
import { TenantDatabases } from "./TenantDatabases.js"
import { TenantMigrations } from "./TenantMigrations.js"

export type MigrationState = "current" | "behind" | "migrating" | "failed"

export interface TenantMigrationStatus {
  readonly id: string
  readonly state: MigrationState
  readonly version: number
  readonly error: string | null
}

export interface FleetStatus {
  /** The version a current tenant database has. */
  readonly latest: number
  readonly tenants: ReadonlyArray<TenantMigrationStatus>
  readonly counts: Readonly<Record<MigrationState, number>>
}

export interface FleetMigration {
  readonly latest: number
  readonly migrated: ReadonlyArray<string>
  readonly failed: ReadonlyArray<{ readonly id: string; readonly error: string }>
  /** Claimed by another runner, or already current when reached. */
  readonly skipped: ReadonlyArray<string>
}

/** Some tenants could not be migrated; they are recorded as failed and serve 503 until a rerun fixes them. */
export class FleetMigrationFailed extends Data.TaggedError("FleetMigrationFailed")<{ readonly message: string }> {}

/**
 * Migrations across the fleet of tenant databases.
 *
 * The platform database records each tenant's schema version and migration
 * state, so the status of the whole fleet is one query, and a run touches only
 * tenants that are behind (or failed). A tenant is claimed with one atomic
 * update before it is migrated: two runners (two processes) never migrate the
 * same tenant at once, and the migrator's own table lock would serialise them
 * if they did. While a tenant is claimed or failed its requests get 503
 * (TenantDatabases.placement refuses it, and the claim is announced by a
 * trigger so that every server drops its cached context at once).
 */
export class TenantMigrator extends Context.Tag("tenant-engine/TenantMigrator")<TenantMigrator, {
  readonly status: Effect.Effect<FleetStatus>
  /** Migrates every tenant that is behind, `concurrency` at a time; fails with FleetMigrationFailed if any failed. */
  readonly migrateAll: (options?: {
    readonly concurrency?: Option.Option<number> | undefined
    /** Progress for people (a bar on a terminal, lines otherwise), or none. */
    readonly progress?: "auto" | "none" | undefined
    readonly json?: boolean | undefined
  }) => Effect.Effect<FleetMigration, FleetMigrationFailed>
}>() {
  static readonly layer = Layer.effect(TenantMigrator, Effect.suspend(() => make))
}

/** A claim older than this is taken to be from a runner that died. */
const STALE_CLAIM = "15 minutes"

const make = Effect.gen(function*() {
  const platform = yield* PlatformDb
  const config = yield* TenancyConfig
  const loader = yield* TenantMigrations
  const databases = yield* TenantDatabases

  const status = Effect.gen(function*() {
    const latest = yield* Effect.orDie(latestVersion(loader))
    const rows = yield* platform<{
      id: string
      schema_version: number
      migration_state: "current" | "migrating" | "failed"
      migration_error: string | null
    }>`SELECT id, schema_version, migration_state, migration_error FROM tenants
       WHERE status IN ('active', 'suspended') ORDER BY id`.pipe(Effect.orDie)
    const counts: Record<MigrationState, number> = { current: 0, behind: 0, migrating: 0, failed: 0 }
    const tenants = rows.map((row): TenantMigrationStatus => {
      const state: MigrationState = row.migration_state !== "current"
        ? row.migration_state
        : row.schema_version < latest
        ? "behind"
        : "current"
      counts[state]++
      return { id: row.id, state, version: row.schema_version, error: row.migration_error }
    })
    return { latest, tenants, counts }
  })

  /** Claims, migrates and records one tenant; the outcome is recorded whatever happens (a failure: what went wrong). */
  const migrateOne = (id: string, latest: number) =>
    Effect.gen(function*() {
      const claimed = yield* platform<{
        db_server: string
        db_strategy: TenantStrategy
        db_name: string
        db_schema: string | null
      }>`
        UPDATE tenants SET migration_state = 'migrating', migration_error = NULL, updated_at = now()
        WHERE id = ${id} AND status IN ('active', 'suspended')
          AND (schema_version < ${latest} OR migration_state <> 'current')
          AND (migration_state <> 'migrating' OR updated_at < now() - ${STALE_CLAIM}::interval)
          AND (moving_until IS NULL OR moving_until < now())
        RETURNING db_server, db_strategy, db_name, db_schema`.pipe(Effect.orDie)
      const target = claimed[0]
      if (target === undefined) return "skipped" as const
      const run = databases.migrate({
        server: target.db_server,
        strategy: target.db_strategy,
        database: target.db_name,
        schema: target.db_schema
      })
      const outcome = yield* Effect.exit(run)
      if (outcome._tag === "Success") {
        yield* platform`UPDATE tenants SET schema_version = ${outcome.value}, migration_state = 'current',
                        migration_error = NULL, updated_at = now() WHERE id = ${id}`.pipe(Effect.orDie)
        return "migrated" as const
      }
      const error = describeError(Cause.squash(outcome.cause)).slice(0, 500)
      yield* platform`UPDATE tenants SET migration_state = 'failed', migration_error = ${error}, updated_at = now()
                      WHERE id = ${id}`.pipe(Effect.orDie)
      return { failed: error }
    }).pipe(Effect.uninterruptible)

  const migrateAll = Effect.fn("TenantMigrator.migrateAll")(function*(
    options: Parameters<TenantMigrator["Type"]["migrateAll"]>[0] = {}
  ) {
    const latest = yield* Effect.orDie(latestVersion(loader))
    const pending = yield* platform<{ id: string }>`
      SELECT id FROM tenants
      WHERE status IN ('active', 'suspended')
        AND (schema_version < ${latest} OR migration_state = 'failed'
             OR (migration_state = 'migrating' AND updated_at < now() - ${STALE_CLAIM}::interval))
      ORDER BY id`.pipe(Effect.orDie)
    const concurrency = Option.getOrElse(Option.fromNullable(options.concurrency).pipe(Option.flatten), () =>
      Math.max(1, Math.min(8, Math.floor(config.connectionBudget / config.maxConnectionsPerTenant))))
    const progress = makeProgress(pending.length, options.progress === "none" || options.json === true)
    const migrated: Array<string> = []
    const skipped: Array<string> = []
    const failed: Array<{ id: string; error: string }> = []
    yield* Effect.forEach(pending, ({ id }) =>
      migrateOne(id, latest).pipe(
        Effect.tap((outcome) => {
          if (outcome === "migrated") migrated.push(id)
          else if (outcome === "skipped") skipped.push(id)
          else failed.push({ id, error: outcome.failed })
          return progress.step(id, typeof outcome === "object" ? "failed" : "ok")
        })
      ), { concurrency, discard: true })
    const summary: FleetMigration = { latest, migrated, failed, skipped }
    yield* progress.finish(summary, options.json === true)
    if (failed.length > 0) {
      return yield* Effect.fail(
        new FleetMigrationFailed({
          message: `${failed.length} of ${pending.length} tenants failed to migrate; rerun after fixing`
        })
      )
    }
    return summary
  })

  return TenantMigrator.of({
    status,
    migrateAll
  })
})

/** A progress bar on a terminal, a line per tenant otherwise (or nothing). */
const makeProgress = (total: number, quiet: boolean) => {
  const tty = process.stderr.isTTY === true
  let done = 0
  let failures = 0
  return {
    step: (id: string, outcome: "ok" | "failed") =>
      Effect.sync(() => {
        done++
        if (outcome === "failed") failures++
        if (quiet) return
        if (tty) {
          const width = 30
          const filled = total === 0 ? width : Math.round((done / total) * width)
          process.stderr.write(
            `\r[${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${total}  failed ${failures}  `
          )
        } else {
          process.stderr.write(`${outcome === "ok" ? "migrated" : "FAILED  "} ${id} (${done}/${total})\n`)
        }
      }),
    finish: (summary: FleetMigration, json: boolean) =>
      Effect.suspend(() => {
        if (tty && !quiet && total > 0) process.stderr.write("\n")
        if (json) return Console.log(JSON.stringify(summary, null, 2))
        const lines = [
          `schema version ${summary.latest}: ${summary.migrated.length} migrated, ${summary.failed.length} failed, ${summary.skipped.length} skipped`,
          ...summary.failed.map((f) => `  failed: ${f.id}: ${f.error}`)
        ]
        return Console.log(total === 0 ? `every tenant is at schema version ${summary.latest}` : lines.join("\n"))
      })
  }
}
