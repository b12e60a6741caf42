import { SqlClient } from "@effect/sql"
import * as Migrator from "@effect/sql/Migrator"
import { Effect } from "effect"
import { readdir } from "node:fs/promises"
import { basename, dirname, join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

/**
 * The `migrations` folder beside the `src` folder this code was loaded from:
 * the sources' (`src/db/Migrations.ts`, run by vitest or tsx) or the build's
 * (`dist/src/chunks/...js`, next to `dist/migrations` with the compiled
 * migrations). Found by name rather than by a fixed number of `..`, because
 * the build puts this code in a shared chunk, not at its source path.
 */
const migrationsRoot = (() => {
  const here = fileURLToPath(import.meta.url)
  for (let folder = dirname(here); folder !== dirname(folder); folder = dirname(folder)) {
    if (basename(folder) === "src") return join(dirname(folder), "migrations")
  }
  throw new Error(`no src folder above ${here}: cannot find the migrations`)
})()

/** Folders of the migration modules (`NNNN_name.ts`, or `.js` when built; default export an Effect). */
export const platformMigrations = join(migrationsRoot, "platform")
export const tenantMigrations = join(migrationsRoot, "tenant")

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
