import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Clock, Duration, Effect, Redacted, Schedule, Scope } from "effect"
import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto"
import Pg from "pg"
import { serverOf, withDatabase } from "../db/DatabaseUrl.js"
import { latestVersion, runMigrations } from "../db/Migrations.js"
import { STATEMENT_TIMEOUT } from "../db/Pool.js"
import { DUPLICATE_DATABASE, DUPLICATE_OBJECT, OBJECT_IN_USE, orDie, sqlState, UNIQUE_VIOLATION } from "../db/SqlErrors.js"
import { PlatformDb } from "../platform/PlatformDb.js"
import type { ServerAddress } from "../servers/ServerRegistry.js"
import { TenancyConfig } from "./TenancyConfig.js"
import type { TenantStrategy } from "./Tenant.js"
import { rolePassword, type TenantPlacement } from "./TenantPlacement.js"
import { TenantMigrations } from "./TenantMigrations.js"

const ident = Pg.escapeIdentifier

/** PostgreSQL's own iteration count for SCRAM-SHA-256 verifiers (scram_iterations). */
const SCRAM_ITERATIONS = 4096

/**
 * The SCRAM-SHA-256 verifier of a password, as PostgreSQL stores it
 * (RFC 5802 and 7677; what libpq's PQencryptPasswordConn makes for psql's
 * \password). Given in CREATE/ALTER ROLE ... PASSWORD, it is stored as it
 * is. The password is ASCII, which SASLprep leaves as it is.
 */
export const scramVerifier = (password: string) => {
  const salt = randomBytes(16)
  const salted = pbkdf2Sync(password, salt, SCRAM_ITERATIONS, 32, "sha256")
  const hmac = (text: string) => createHmac("sha256", salted).update(text).digest()
  const storedKey = createHash("sha256").update(hmac("Client Key")).digest("base64")
  const serverKey = hmac("Server Key").toString("base64")
  return `SCRAM-SHA-256$${SCRAM_ITERATIONS}:${salt.toString("base64")}$${storedKey}:${serverKey}`
}

/** A tenant's data on a server, as migrations reach it. */
export interface MigrationTarget {
  readonly strategy: TenantStrategy
  readonly database: string
  readonly schema: string | null
}

/** The names the engine gives its own objects on every server, from the configured prefix. */
export const serverObjectNames = (prefix: string) => ({
  /** The migrated database new database tenants are copied from. */
  template: `${prefix}template`,
  /** The group role through which database tenants' roles use their tables. */
  appRole: `${prefix}app`,
  /** The database holding schema tenants. */
  shared: `${prefix}_shared`,
  /** The shared pool's login: a NOINHERIT member of every schema tenant's role. */
  gateway: `${prefix}_gateway`
})

/**
 * What the engine does on one tenant server as its administrator: the
 * template and the shared database (each prepared once, under an advisory
 * lock, as several processes may try at once), and creating, migrating and
 * dropping a tenant's database or schema. One per registered server, opened
 * when first needed (TenantDatabases).
 */
export type ServerAdmin = Effect.Effect.Success<ReturnType<typeof makeServerAdmin>>

export const makeServerAdmin = (server: ServerAddress) => Effect.gen(function*() {
  const platform = yield* PlatformDb
  const config = yield* TenancyConfig
  const loader = yield* TenantMigrations
  const reactivity = yield* Effect.context<Reactivity.Reactivity>()
  const layerScope = yield* Effect.scope
  const admin = yield* PgClient.make({
    url: server.url,
    maxConnections: 2,
    applicationName: "tenant-engine/provisioning"
  })
  const names = serverObjectNames(config.databasePrefix)
  const templateName = names.template
  const appRole = names.appRole
  const sharedName = names.shared
  const gatewayRole = names.gateway

  /**
   * Under an advisory lock, so that several processes prepare a thing one at
   * a time. Taken in the platform database, which every process reaches
   * directly: a session lock on the server itself would not hold through a
   * transaction-mode pooler in front of it.
   */
  const exclusively = (name: string) =>
    Effect.flatMap(platform.reserve, (connection) =>
      Effect.acquireRelease(
        connection.executeRaw("SELECT pg_advisory_lock(hashtext($1))", [`${server.name}/${name}`]),
        () => Effect.ignore(connection.executeRaw("SELECT pg_advisory_unlock(hashtext($1))", [`${server.name}/${name}`]))
      ))

  /**
   * A derived password for CREATE/ALTER ROLE, as its SCRAM-SHA-256 verifier
   * in a SQL literal (DDL takes no parameters): the server stores that form
   * anyway, and the password itself never reaches it, so a server that logs
   * its DDL, or shows it in pg_stat_activity, shows nothing that logs in.
   * Derived passwords are base64url; anything else is refused, as it did not
   * come from rolePassword.
   */
  const passwordLiteral = (password: Redacted.Redacted<string>) => {
    const text = Redacted.value(password)
    if (!/^[A-Za-z0-9_-]+$/.test(text)) throw new Error("a role password must be base64url")
    return admin.literal(`'${scramVerifier(text)}'`)
  }

  /**
   * Sets a login role's password (a rotation). Uninterruptible: once sent it
   * completes on the server anyway, and the caller must know whether it did.
   */
  const setPassword = (role: string, password: Redacted.Redacted<string>) =>
    Effect.uninterruptible(
      Effect.suspend(() => admin`ALTER ROLE ${admin(role)} PASSWORD ${passwordLiteral(password)}`)
    )

  // --- the template: a migrated database that new database tenants are copied from ---

  const templateLock = yield* Effect.makeSemaphore(1)
  let templateVersion = -1

  const prepareTemplate = Effect.gen(function*() {
    yield* exclusively(templateName)
    const exists = yield* admin`SELECT 1 FROM pg_database WHERE datname = ${templateName}`
    const created = exists.length === 0
    if (created) {
      yield* admin`CREATE ROLE ${admin(appRole)} NOLOGIN`.pipe(
        Effect.catchIf((e) => [DUPLICATE_OBJECT, UNIQUE_VIOLATION].includes(sqlState(e) ?? ""), () => Effect.void)
      )
      yield* admin`CREATE DATABASE ${admin(templateName)}`
      yield* admin`REVOKE ALL ON DATABASE ${admin(templateName)} FROM PUBLIC`
    }
    const migrate = Effect.gen(function*() {
      const sql = yield* PgClient.make({
        url: withDatabase(server.url, templateName),
        maxConnections: 1,
        applicationName: "tenant-engine/template"
      })
      if (created) {
        // Tables that migrations create (as this admin role) are usable by
        // every tenant role through the group role, now and in later migrations.
        yield* sql`GRANT USAGE ON SCHEMA public TO ${sql(appRole)}`
        yield* sql`ALTER DEFAULT PRIVILEGES IN SCHEMA public
                   GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ${sql(appRole)}`
        yield* sql`ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO ${sql(appRole)}`
      }
      return yield* runMigrations(loader).pipe(Effect.provideService(SqlClient.SqlClient, sql))
    }).pipe(Effect.scoped)
    return yield* migrate.pipe(
      Effect.tapErrorCause(() =>
        created ? Effect.ignore(admin`DROP DATABASE IF EXISTS ${admin(templateName)} WITH (FORCE)`) : Effect.void
      )
    )
  }).pipe(Effect.scoped, Effect.provide(reactivity))

  /** The template at the latest version; cheap once it is known to be current. */
  const ensureTemplate = templateLock.withPermits(1)(
    Effect.gen(function*() {
      const latest = yield* latestVersion(loader)
      // Uninterruptible: a template cut off between its creation and its grants
      // would be taken as ready by the next run, and every tenant copied from
      // it could not use its own tables.
      if (templateVersion !== latest) templateVersion = yield* Effect.uninterruptible(prepareTemplate)
      return templateVersion
    })
  )

  // --- the shared database: where schema tenants live ---

  const sharedLock = yield* Effect.makeSemaphore(1)
  let shared: { readonly sql: PgClient.PgClient } | undefined

  /**
   * Creates the shared database and its gateway role once per server (under
   * an advisory lock: several processes may try at once), records the
   * gateway's login in the platform database (its role and the version of
   * its derived password, never the password), and opens this process's
   * administrative pool on it. Tenant roles there may not call `set_config`
   * nor run PL/pgSQL: with either they could issue a `SET ROLE` that
   * SchemaClient does not see.
   */
  const prepareShared = Effect.gen(function*() {
    yield* exclusively(sharedName)
    const recorded = yield* platform`SELECT 1 FROM shared_databases WHERE server = ${server.name} AND database = ${sharedName}`
    if (recorded.length === 0) {
      const version = 1
      const withPassword = passwordLiteral(rolePassword(config.roleSecret, { server: server.name, role: gatewayRole, version }))
      // A run cut off before it recorded the login may have made the role: take it over.
      yield* admin`CREATE ROLE ${admin(gatewayRole)} LOGIN NOINHERIT PASSWORD ${withPassword}`.pipe(
        Effect.catchIf(
          (e) => [DUPLICATE_OBJECT, UNIQUE_VIOLATION].includes(sqlState(e) ?? ""),
          () => admin`ALTER ROLE ${admin(gatewayRole)} LOGIN NOINHERIT PASSWORD ${withPassword}`
        )
      )
      yield* admin`CREATE DATABASE ${admin(sharedName)}`.pipe(
        Effect.catchIf((e) => sqlState(e) === DUPLICATE_DATABASE, () => Effect.void)
      )
      yield* admin`REVOKE ALL ON DATABASE ${admin(sharedName)} FROM PUBLIC`
      yield* admin`GRANT CONNECT ON DATABASE ${admin(sharedName)} TO ${admin(gatewayRole)}`
      yield* Effect.scoped(Effect.gen(function*() {
        const sql = yield* PgClient.make({
          url: withDatabase(server.url, sharedName),
          maxConnections: 1,
          applicationName: "tenant-engine/shared"
        })
        yield* sql.unsafe([
          "REVOKE ALL ON SCHEMA public FROM PUBLIC",
          "REVOKE USAGE ON LANGUAGE plpgsql FROM PUBLIC",
          "REVOKE EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) FROM PUBLIC",
          // The gateway takes a tenant's settings with it; tenant roles do not inherit it.
          `GRANT EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) TO ${ident(gatewayRole)}`
        ].join("; "))
      }))
      yield* platform`INSERT INTO shared_databases (server, database, login_role, login_version)
                      VALUES (${server.name}, ${sharedName}, ${gatewayRole}, ${version})`
    }
    // The shared pools' statement timeout is the gateway's own setting, not
    // a start-up parameter: a transaction-mode pooler in front refuses those.
    yield* admin`ALTER ROLE ${admin(gatewayRole)} SET statement_timeout = ${admin.literal(`'${Duration.toMillis(STATEMENT_TIMEOUT)}ms'`)}`
    const sql = yield* PgClient.make({
      url: withDatabase(server.url, sharedName),
      maxConnections: 2,
      applicationName: "tenant-engine/provisioning"
    }).pipe(Scope.extend(layerScope))
    return { sql }
  }).pipe(Effect.scoped, Effect.provide(reactivity))

  const ensureShared = sharedLock.withPermits(1)(
    Effect.suspend(() =>
      shared !== undefined
        ? Effect.succeed(shared)
        : Effect.tap(Effect.uninterruptible(prepareShared), (prepared) => {
          shared = prepared
        })
    )
  )

  /** Runs `effect` as the administrator with a schema tenant's search path, in one transaction. */
  const inSchema = <A, E, R>(schema: string, effect: Effect.Effect<A, E, R>) =>
    Effect.flatMap(ensureShared, ({ sql }) =>
      sql.withTransaction(
        Effect.zipRight(sql.unsafe(`SET LOCAL search_path TO ${ident(schema)}`), effect)
      ).pipe(Effect.provideService(SqlClient.SqlClient, sql)))

  // --- provisioning ---

  // Each statement runs to its end once sent: an interrupted one would be
  // cancelled, but could still complete on the server after the undo had
  // looked. So an interruption lands between statements.
  const createDatabase = (placement: TenantPlacement) =>
    Effect.gen(function*() {
      const role = admin(placement.role)
      const database = admin(placement.database)
      yield* Effect.uninterruptible(
        Effect.suspend(() =>
          admin`CREATE ROLE ${role} LOGIN PASSWORD ${passwordLiteral(placement.login.password)} IN ROLE ${admin(appRole)}`
        )
      )
      // Copying fails while anyone is connected to the template (another process
      // preparing it); that lasts milliseconds, so try again briefly.
      // Created closed to connections, opened once only the tenant's role may connect.
      yield* Effect.uninterruptible(
        admin`CREATE DATABASE ${database} TEMPLATE ${admin(templateName)} ALLOW_CONNECTIONS false`
      ).pipe(
        Effect.retry({
          while: (e) => sqlState(e) === OBJECT_IN_USE,
          schedule: Schedule.intersect(Schedule.exponential("20 millis"), Schedule.recurs(8))
        })
      )
      yield* Effect.uninterruptible(admin`REVOKE ALL ON DATABASE ${database} FROM PUBLIC`)
      yield* Effect.uninterruptible(admin`GRANT CONNECT, TEMPORARY ON DATABASE ${database} TO ${role}`)
      yield* Effect.uninterruptible(admin`ALTER DATABASE ${database} ALLOW_CONNECTIONS true`)
    })

  /**
   * The role, the schema, its privileges and the migrations in one
   * transaction: all of it or, whatever stops it, none. Tables are created by
   * the administrator; the tenant role gets their rows through default
   * privileges, not their ownership.
   */
  const createSchema = (placement: TenantPlacement & { readonly schema: string }) => {
    const role = ident(placement.role)
    const schema = ident(placement.schema)
    return inSchema(
      placement.schema,
      Effect.flatMap(SqlClient.SqlClient, (sql) =>
        Effect.zipRight(
          sql.unsafe([
            `CREATE ROLE ${role} NOLOGIN NOINHERIT`,
            `GRANT ${role} TO ${ident(gatewayRole)}`,
            `CREATE SCHEMA ${schema}`,
            `GRANT USAGE ON SCHEMA ${schema} TO ${role}`,
            `ALTER DEFAULT PRIVILEGES IN SCHEMA ${schema} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ${role}`,
            `ALTER DEFAULT PRIVILEGES IN SCHEMA ${schema} GRANT USAGE, SELECT ON SEQUENCES TO ${role}`
          ].join("; ")),
          runMigrations(loader)
        ))
    )
  }

  const dropData = (placement: Pick<TenantPlacement, "strategy" | "database" | "schema" | "role">) =>
    placement.strategy === "database" || placement.schema === null
      ? Effect.zipRight(
        admin`DROP DATABASE IF EXISTS ${admin(placement.database)} WITH (FORCE)`,
        admin`DROP ROLE IF EXISTS ${admin(placement.role)}`
      )
      : Effect.flatMap(ensureShared, ({ sql }) =>
        sql.withTransaction(
          Effect.zipRight(
            sql.unsafe(`DROP SCHEMA IF EXISTS ${ident(placement.schema!)} CASCADE`),
            // DROP OWNED revokes what the role was granted in the shared database, so it can go.
            sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_roles WHERE rolname = ${placement.role}`.pipe(
              Effect.flatMap((rows) =>
                (rows[0]?.n ?? 0) === 0
                  ? Effect.void
                  : sql.unsafe(`DROP OWNED BY ${ident(placement.role)}; DROP ROLE ${ident(placement.role)}`)
              )
            )
          )
        ))


  /**
   * Waits (up to a limit) until no session is connected to the database. The
   * caller's drain covers this process; other processes close their pools of
   * the tenant once their work in flight is done (the `tenants` trigger told
   * them it is being deleted). Only then is the database dropped, WITH (FORCE)
   * for whatever outlived the limit.
   */
  const othersDisconnected = (database: string, deadline: number): Effect.Effect<void> =>
    admin<{ n: number }>`
      SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = ${database} AND backend_type = 'client backend' AND pid <> pg_backend_pid()`.pipe(
      orDie,
      Effect.flatMap((rows) =>
        (rows[0]?.n ?? 0) === 0 || Date.now() >= deadline
          ? Effect.void
          : Effect.zipRight(Effect.sleep("50 millis"), othersDisconnected(database, deadline))
      ),
      // Real time even where a test clock is installed.
      Effect.withClock(Clock.make())
    )

  const migrate = (target: MigrationTarget) =>
    target.strategy === "schema" && target.schema !== null
      ? inSchema(target.schema, runMigrations(loader))
      : Effect.gen(function*() {
        const sql = yield* PgClient.make({
          url: withDatabase(server.url, target.database),
          maxConnections: 1,
          applicationName: "tenant-engine/migrate"
        })
        return yield* runMigrations(loader).pipe(Effect.provideService(SqlClient.SqlClient, sql))
      }).pipe(Effect.scoped, Effect.provide(reactivity))

  return {
    name: server.name,
    /** The administrative URL: for this process's own connections, never shown. */
    url: server.url,
    /** Where tenant pools connect: the server's URL without credentials or database. */
    host: serverOf(server.url),
    admin,
    ensureTemplate,
    ensureShared,
    inSchema,
    createDatabase,
    createSchema,
    setPassword,
    dropData,
    othersDisconnected,
    migrate
  }
})
