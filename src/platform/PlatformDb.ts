import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer } from "effect"
import { databaseOf, withDatabase } from "../db/DatabaseUrl.js"
import { fromFolder, platformMigrations, runMigrations } from "../db/Migrations.js"
import { DUPLICATE_DATABASE, INVALID_CATALOG_NAME, sqlState } from "../db/SqlErrors.js"
import { PlatformConfig } from "./PlatformConfig.js"

/**
 * The platform (control) database. A tag of its own rather than the global
 * `SqlClient`, so that tenant code can never pick up the platform connection by
 * accident, and platform code never a tenant's.
 */
export class PlatformDb extends Context.Tag("tenant-engine/PlatformDb")<PlatformDb, PgClient.PgClient>() {
  /** Opens the pool (creating the database if it is missing) and runs the platform migrations. */
  static readonly layer = Layer.scoped(
    PlatformDb,
    Effect.gen(function*() {
      const config = yield* PlatformConfig
      const open = PgClient.make({
        url: config.url,
        maxConnections: config.maxConnections,
        applicationName: "tenant-engine/platform"
      })
      const sql = yield* open.pipe(
        Effect.catchIf((error) => sqlState(error) === INVALID_CATALOG_NAME, () =>
          Effect.zipRight(createDatabase(config.url), open))
      )
      yield* runMigrations(fromFolder(platformMigrations)).pipe(Effect.provideService(SqlClient.SqlClient, sql))
      return sql
    })
  ).pipe(Layer.provide(Reactivity.layer))
}

/** Creates the database a URL names, through the server's `postgres` database. */
const createDatabase = (url: PlatformConfig["Type"]["url"]) =>
  Effect.gen(function*() {
    const name = databaseOf(url)
    yield* Effect.logInfo(`creating the platform database ${name}`)
    const admin = yield* PgClient.make({ url: withDatabase(url, "postgres"), maxConnections: 1 })
    yield* admin`CREATE DATABASE ${admin(name)}`.pipe(
      Effect.catchIf((error) => sqlState(error) === DUPLICATE_DATABASE, () => Effect.void)
    )
  }).pipe(Effect.scoped)
