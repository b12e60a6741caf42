import { SqlClient } from "@effect/sql"
import * as Migrator from "@effect/sql/Migrator"
import { Effect } from "effect"
import { readdir } from "node:fs/promises"
import { join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

/** Folders of the migration modules (`NNNN_name.ts`, default export an Effect). */
export const platformMigrations = fileURLToPath(new URL("../../migrations/platform", import.meta.url))
export const tenantMigrations = fileURLToPath(new URL("../../migrations/tenant", import.meta.url))

export const MIGRATIONS_TABLE = "schema_migrations"

const migrator = Migrator.make({})

/**
 * Runs every pending migration of a loader on the current SqlClient.
 *
 * The migrator serialises runs with a table lock, but two processes creating its
 * table at the same moment would collide; an advisory lock taken in the same
 * transaction as `CREATE TABLE IF NOT EXISTS` makes that first step safe too.
 * Tables go to the first schema of the search path: a schema tenant's when
 * its migrations run with that schema's search path.
 * Returns the schema version (the highest applied migration id).
 */
export const runMigrations = (loader: Migrator.Loader) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql.withTransaction(
      Effect.zipRight(
        // Per schema: schema tenants of one database migrate side by side.
        sql`SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.' || ${MIGRATIONS_TABLE}))`,
        sql`CREATE TABLE IF NOT EXISTS ${sql(MIGRATIONS_TABLE)} (
          migration_id integer PRIMARY KEY,
          created_at timestamptz NOT NULL DEFAULT now(),
          name text NOT NULL
        )`
      )
    )
    yield* migrator({ loader, table: MIGRATIONS_TABLE })
    return yield* schemaVersion
  })

/** The highest migration id applied to the current database (0 for none). */
export const schemaVersion = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) =>
    Effect.map(
      sql<{ version: number }>`SELECT coalesce(max(migration_id), 0)::int AS version FROM ${sql(MIGRATIONS_TABLE)}`,
      (rows) => rows[0]?.version ?? 0
    )
)

/**
 * Migrations read from a folder. The modules are imported from this file
 * (not from inside @effect/sql, as `fromFileSystem` does) so that whatever
 * loads our TypeScript (tsx, vitest) loads them too.
 */
export const fromFolder = (directory: string): Migrator.Loader =>
  Effect.flatMap(
    Effect.tryPromise({
      try: () => readdir(directory),
      catch: (cause) => new Migrator.MigrationError({ reason: "failed", message: `cannot read ${directory}: ${cause}` })
    }),
    (files) =>
      Migrator.fromGlob(Object.fromEntries(
        files
          .filter((file) => /^\d+_[^.]+\.(ts|js)$/.test(file))
          .map((file) => [file, () => import(pathToFileURL(join(directory, file)).href)])
      ))
  )

/** The highest migration id a loader knows (the version a current database has). */
export const latestVersion = (loader: Migrator.Loader) =>
  Effect.map(loader, (migrations) => migrations.reduce((max, [id]) => Math.max(max, id), 0))
