import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { PgClient } from "@effect/sql-pg"
import type { MigrationError } from "@effect/sql/Migrator"
import { Cause, Clock, Context, Effect, Layer, Option, Redacted, Schedule, Schema, Scope } from "effect"
import { createHash, randomBytes } from "node:crypto"
import Pg from "pg"
import { login, serverOf, withDatabase } from "../db/DatabaseUrl.js"
import { latestVersion, runMigrations } from "../db/Migrations.js"
import { DUPLICATE_DATABASE, DUPLICATE_OBJECT, OBJECT_IN_USE, orDie, sqlState, UNIQUE_VIOLATION } from "../db/SqlErrors.js"
import { PlatformDb } from "../platform/PlatformDb.js"
import { TenancyConfig } from "./TenancyConfig.js"
import {
  InvalidTenant,
  ProvisioningFailed,
  TenantAlreadyExists,
  TenantNotFound,
  TenantSuspended,
  TenantUnavailable
} from "./TenancyErrors.js"
import {
  ManagedTenant,
  Placement,
  tenantFromRow,
  TenantId,
  TenantName,
  type TenantRowStatus,
  type TenantStatus,
  type TenantStrategy
} from "./Tenant.js"
import { TenantMigrations } from "./TenantMigrations.js"

/** Where a tenant's data lives and how its session logs in. */
export interface TenantPlacement {
  readonly tenantId: string
  /** The server's URL without credentials or database. */
  readonly server: string
  readonly strategy: TenantStrategy
  /** The tenant's own database, or the server's shared database. */
  readonly database: string
  /** A schema tenant's schema; null for a database tenant (its tables are in `public`). */
  readonly schema: string | null
  /** The tenant's own role. */
  readonly role: string
  /** Who the pool logs in as: the tenant's role (database), or the shared database's gateway role (schema). */
  readonly login: { readonly user: string; readonly password: Redacted.Redacted<string> }
}

/** The one server until servers are registered by name: what admin views call it. */
export const DEFAULT_SERVER = "default"

export interface ProvisionOptions {
  /** Default: the configured default strategy. */
  readonly strategy?: TenantStrategy | undefined
  /** A registered server's name; only `default` is registered. */
  readonly server?: string | undefined
}

/**
 * The tenants and where their data lives: placement, provisioning, status,
 * migrations and removal, on both strategies.
 *
 * `database`: a database of its own and a login role that is the only
 * non-superuser allowed to connect to it (PUBLIC's CONNECT is revoked). Table
 * privileges come from one group role per deployment, granted through default
 * privileges set in the template, so a tenant role can use its own tables and
 * cannot even connect to another tenant's database.
 *
 * `schema`: a schema of its own in the server's shared database, and a
 * NOLOGIN role that may use that schema's tables and nothing else. The shared
 * pool logs in as the gateway role, a NOINHERIT member of every tenant role:
 * by itself it reads no tenant's table; it becomes one tenant per unit of work
 * (SchemaClient). Provisioning one is a single transaction: the role, the
 * schema, its privileges and every tenant migration, or nothing.
 */
export class TenantDatabases extends Context.Tag("tenant-engine/TenantDatabases")<TenantDatabases, {
  /** Creates the tenant's database or schema at the current schema version and records it as active. */
  readonly provision: (
    id: string,
    name: string,
    options?: ProvisionOptions
  ) => Effect.Effect<ManagedTenant, InvalidTenant | TenantAlreadyExists | ProvisioningFailed>
  readonly find: (id: string) => Effect.Effect<ManagedTenant, TenantNotFound>
  readonly list: Effect.Effect<ReadonlyArray<ManagedTenant>>
  readonly setStatus: (id: string, status: TenantStatus) => Effect.Effect<ManagedTenant, TenantNotFound>
  /** Where to connect for a tenant that may serve requests now. */
  readonly placement: (
    id: string
  ) => Effect.Effect<TenantPlacement, TenantNotFound | TenantSuspended | TenantUnavailable>
  /** The name of a tenant's database (database strategy), or of its schema and role (both strategies). */
  readonly databaseName: (id: string) => string
  /** Runs every pending tenant migration on a tenant's data, as the administrator; the schema version after. */
  readonly migrate: (
    target: { readonly strategy: TenantStrategy; readonly database: string; readonly schema: string | null }
  ) => Effect.Effect<number, SqlError | MigrationError>
  /**
   * Deletes a tenant: marks it deleting (its requests are refused from now on),
   * runs `drain` (the caller closes what it holds of the tenant), drops its
   * database or schema and its role, and removes its row with its accounts,
   * clients and domains. A delete that was cut off half-way is finished by the
   * next one.
   */
  readonly remove: (id: string, drain: Effect.Effect<void>) => Effect.Effect<void, TenantNotFound>
}>() {
  static readonly layer = Layer.scoped(TenantDatabases, Effect.suspend(() => make)).pipe(
    Layer.provide(Reactivity.layer)
  )
}

interface TenantRow {
  readonly id: string
  readonly name: string
  readonly status: TenantRowStatus
  readonly created_at: Date
  readonly db_server: string
  readonly db_strategy: TenantStrategy
  readonly db_name: string
  readonly db_schema: string | null
  readonly db_role: string
  readonly db_password: string | null
  readonly migration_state: "current" | "migrating" | "failed"
}

const toTenant = (row: TenantRow) =>
  new ManagedTenant({
    ...tenantFromRow(row),
    placement: new Placement({
      server: DEFAULT_SERVER,
      strategy: row.db_strategy,
      database: row.db_name,
      schema: row.db_schema,
      role: row.db_role
    }, true)
  }, true)

/** PostgreSQL's limit on identifiers (NAMEDATALEN - 1); longer names are truncated. */
const MAX_IDENTIFIER_BYTES = 63

/** How long a delete waits for other processes to finish their work in the tenant's database. */
const OTHERS_DRAIN_MILLIS = 10_000

/**
 * Ids whose names are the engine's own (the group role and the template):
 * such a tenant would have taken them over, and its undo dropped them. Names
 * added since start with `_` after the prefix, which no tenant id gives.
 */
const RESERVED_IDS = new Set(["app", "template"])


const ident = Pg.escapeIdentifier

const make = Effect.gen(function*() {
  const platform = yield* PlatformDb
  const config = yield* TenancyConfig
  const loader = yield* TenantMigrations
  const admin = yield* PgClient.make({
    url: config.adminUrl,
    maxConnections: 2,
    applicationName: "tenant-engine/provisioning"
  })
  const reactivity = yield* Effect.context<Reactivity.Reactivity>()
  const layerScope = yield* Effect.scope
  const server = serverOf(config.adminUrl)
  const templateName = `${config.databasePrefix}template`
  const appRole = `${config.databasePrefix}app`
  const sharedName = `${config.databasePrefix}_shared`
  const gatewayRole = `${config.databasePrefix}_gateway`
  const databaseName = (id: string) => {
    const name = config.databasePrefix + id.replaceAll("-", "_")
    if (Buffer.byteLength(name) <= MAX_IDENTIFIER_BYTES) return name
    // PostgreSQL would silently truncate a longer name, and two long ids with one
    // beginning would then name the same database and role: shorten it here and
    // keep it unique with a hash of the whole id.
    const hash = createHash("sha256").update(id).digest("hex").slice(0, 16)
    return name.slice(0, MAX_IDENTIFIER_BYTES - hash.length - 1) + "_" + hash
  }

  const findRow = (id: string) =>
    platform<TenantRow>`SELECT * FROM tenants WHERE id = ${id} AND status IN ('active', 'suspended')`.pipe(
      orDie,
      Effect.flatMap((rows) =>
        Option.match(Option.fromNullable(rows[0]), {
          onNone: () => Effect.fail(new TenantNotFound({ message: `no tenant ${id}` })),
          onSome: Effect.succeed
        })
      )
    )

  /** Under an advisory lock on the server, so that several processes prepare a thing one at a time. */
  const exclusively = (name: string) =>
    Effect.flatMap(admin.reserve, (connection) =>
      Effect.acquireRelease(
        connection.executeRaw("SELECT pg_advisory_lock(hashtext($1))", [name]),
        () => Effect.ignore(connection.executeRaw("SELECT pg_advisory_unlock(hashtext($1))", [name]))
      ))

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
        url: withDatabase(config.adminUrl, templateName),
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
   * gateway's login in the platform database, and opens this process's
   * administrative pool on it. Tenant roles there may not call `set_config`
   * nor run PL/pgSQL: with either they could issue a `SET ROLE` that
   * SchemaClient does not see.
   */
  const prepareShared = Effect.gen(function*() {
    yield* exclusively(sharedName)
    const recorded = yield* platform`SELECT 1 FROM shared_databases WHERE server = ${server} AND database = ${sharedName}`
    if (recorded.length === 0) {
      const password = randomBytes(24).toString("base64url")
      // The password is base64url: safe inside a literal, and DDL takes no parameters.
      const withPassword = admin.literal(`'${password}'`)
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
          url: withDatabase(config.adminUrl, sharedName),
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
      yield* platform`INSERT INTO shared_databases (server, database, login_role, login_password)
                      VALUES (${server}, ${sharedName}, ${gatewayRole}, ${password})`
    }
    const sql = yield* PgClient.make({
      url: withDatabase(config.adminUrl, sharedName),
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
      // The password is base64url: safe inside a literal, and DDL takes no parameters.
      yield* Effect.uninterruptible(
        admin`CREATE ROLE ${role} LOGIN PASSWORD ${admin.literal(`'${Redacted.value(placement.login.password)}'`)} IN ROLE ${
          admin(appRole)
        }`
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

  const provision = Effect.fn("TenantDatabases.provision")(function*(
    id: string,
    name: string,
    options: ProvisionOptions = {}
  ) {
    const tenantId = yield* Schema.decodeUnknown(TenantId)(id).pipe(
      Effect.filterOrFail((id) => !RESERVED_IDS.has(id), () => "reserved"),
      Effect.mapError(() => new InvalidTenant({ message: `invalid tenant id ${JSON.stringify(id)}` }))
    )
    yield* Schema.decodeUnknown(TenantName)(name).pipe(
      Effect.mapError(() => new InvalidTenant({ message: "a tenant name is 1 to 200 characters" }))
    )
    if (options.server !== undefined && options.server !== DEFAULT_SERVER) {
      return yield* new InvalidTenant({ message: `no server named ${JSON.stringify(options.server)}` })
    }
    const strategy = options.strategy ?? config.defaultStrategy
    // The migrator reports a failed migration as a defect: catch those too.
    const prepared = (what: string) =>
      Effect.catchAllCause((cause: Cause.Cause<unknown>) =>
        Cause.isInterruptedOnly(cause) ? Effect.interrupt : Effect.zipRight(
          Effect.logError(`preparing the ${what} failed`, cause),
          new ProvisioningFailed({ message: `the ${what} could not be prepared` })
        )
      )
    const version = yield* (strategy === "database"
      ? ensureTemplate.pipe(prepared("tenant database template"))
      : Effect.zipRight(ensureShared, latestVersion(loader)).pipe(prepared("shared tenant database")))
    const objectName = databaseName(tenantId)
    const placement: TenantPlacement = strategy === "database"
      ? {
        tenantId,
        server,
        strategy,
        database: objectName,
        schema: null,
        role: objectName,
        login: { user: objectName, password: Redacted.make(randomBytes(24).toString("base64url")) }
      }
      : {
        tenantId,
        server,
        strategy,
        database: sharedName,
        schema: objectName,
        role: objectName,
        login: { user: gatewayRole, password: Redacted.make("") }
      }
    const create = placement.schema === null
      ? createDatabase(placement)
      : Effect.asVoid(createSchema({ ...placement, schema: placement.schema }))
    // Claiming the id first makes concurrent provisioning of one id safe:
    // exactly one insert wins, the others see the row and stop. The claim and
    // the step that completes it are uninterruptible, so an interruption is
    // seen only in between, where the undo below covers it: a claim is never
    // left behind, nor a tenant made active whose data the undo dropped.
    return yield* Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        const claimed = yield* platform`
          INSERT INTO tenants (id, name, status, db_server, db_strategy, db_name, db_schema, db_role, db_password,
                               schema_version)
          VALUES (${tenantId}, ${name}, 'provisioning', ${placement.server}, ${strategy}, ${placement.database},
                  ${placement.schema}, ${placement.role},
                  ${strategy === "database" ? Redacted.value(placement.login.password) : null}, ${version})
          ON CONFLICT DO NOTHING
          RETURNING id`.pipe(orDie)
        if (claimed.length === 0) {
          return yield* new TenantAlreadyExists({ message: `tenant ${tenantId} already exists` })
        }
        const rows = yield* Effect.zipRight(
          restore(create),
          platform<TenantRow>`UPDATE tenants SET status = 'active', updated_at = now() WHERE id = ${tenantId} RETURNING *`
        ).pipe(
          // Whatever stopped it (an error, a defect, an interruption), undo it all so
          // that nothing is left registered and the same id can be provisioned again.
          Effect.onError((cause) =>
            Effect.logError(`provisioning tenant ${tenantId} failed; undoing it`, cause).pipe(
              Effect.zipRight(dropData(placement)),
              Effect.zipRight(platform`DELETE FROM tenants WHERE id = ${tenantId} AND status = 'provisioning'`),
              Effect.catchAllCause((undo) => Effect.logError(`undoing tenant ${tenantId} failed`, undo))
            )
          ),
          Effect.catchAllCause((cause) =>
            Cause.isInterruptedOnly(cause)
              ? Effect.interrupt
              : new ProvisioningFailed({ message: `the ${strategy} of tenant ${tenantId} could not be created` })
          )
        )
        return toTenant(rows[0]!)
      })
    )
  })

  const placement = (id: string) =>
    Effect.gen(function*() {
      // With the gateway's login of a schema tenant's shared database: one round trip.
      const rows = yield* platform<TenantRow & { login_role: string | null; login_password: string | null }>`
        SELECT t.*, s.login_role, s.login_password FROM tenants t
        LEFT JOIN shared_databases s ON t.db_strategy = 'schema' AND s.server = t.db_server AND s.database = t.db_name
        WHERE t.id = ${id} AND t.status IN ('active', 'suspended')`.pipe(orDie)
      const row = rows[0]
      if (row === undefined) return yield* new TenantNotFound({ message: `no tenant ${id}` })
      if (row.status === "suspended") {
        return yield* new TenantSuspended({ message: `tenant ${id} is suspended` })
      }
      if (row.migration_state !== "current") {
        return yield* new TenantUnavailable({ message: `tenant ${id} is being migrated`, retryAfterSeconds: 5 })
      }
      const user = row.db_strategy === "database" ? row.db_role : row.login_role
      const password = row.db_strategy === "database" ? row.db_password : row.login_password
      if (user === null || password === null) {
        return yield* Effect.dieMessage(`the login of tenant ${id} is not recorded`)
      }
      const placement: TenantPlacement = {
        tenantId: row.id,
        server: row.db_server,
        strategy: row.db_strategy,
        database: row.db_name,
        schema: row.db_schema,
        role: row.db_role,
        login: { user, password: Redacted.make(password) }
      }
      return placement
    })

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

  /**
   * A schema tenant's schema is dropped once the caller has drained; DROP
   * SCHEMA waits for the statements other processes still run in it (their
   * locks), and their next ones are refused, the tenant being marked deleting.
   */
  const remove = Effect.fn("TenantDatabases.remove")(function*(id: string, drain: Effect.Effect<void>) {
    const rows = yield* platform<Pick<TenantRow, "db_strategy" | "db_name" | "db_schema" | "db_role">>`
      UPDATE tenants SET status = 'deleting', updated_at = now()
      WHERE id = ${id} AND status IN ('active', 'suspended', 'deleting')
      RETURNING db_strategy, db_name, db_schema, db_role`.pipe(orDie)
    const row = rows[0]
    if (row === undefined) return yield* new TenantNotFound({ message: `no tenant ${id}` })
    yield* drain
    if (row.db_strategy === "database") {
      yield* othersDisconnected(row.db_name, Date.now() + OTHERS_DRAIN_MILLIS)
    }
    yield* dropData({ strategy: row.db_strategy, database: row.db_name, schema: row.db_schema, role: row.db_role })
      .pipe(orDie)
    yield* platform`DELETE FROM tenants WHERE id = ${id}`.pipe(orDie)
  }, Effect.uninterruptible)

  const migrate = (
    target: { readonly strategy: TenantStrategy; readonly database: string; readonly schema: string | null }
  ) =>
    target.strategy === "schema" && target.schema !== null
      ? inSchema(target.schema, runMigrations(loader))
      : Effect.gen(function*() {
        const sql = yield* PgClient.make({
          url: withDatabase(config.adminUrl, target.database),
          maxConnections: 1,
          applicationName: "tenant-engine/migrate"
        })
        return yield* runMigrations(loader).pipe(Effect.provideService(SqlClient.SqlClient, sql))
      }).pipe(Effect.scoped, Effect.provide(reactivity))

  return TenantDatabases.of({
    provision,
    remove,
    migrate,
    find: (id) => Effect.map(findRow(id), toTenant),
    list: platform<TenantRow>`SELECT * FROM tenants WHERE status IN ('active', 'suspended') ORDER BY id`.pipe(
      orDie,
      Effect.map((rows) => rows.map(toTenant))
    ),
    setStatus: (id, status) =>
      platform<TenantRow>`
        UPDATE tenants SET status = ${status}, updated_at = now()
        WHERE id = ${id} AND status IN ('active', 'suspended') RETURNING *`.pipe(
        orDie,
        Effect.flatMap((rows) =>
          rows[0] ? Effect.succeed(toTenant(rows[0])) : Effect.fail(new TenantNotFound({ message: `no tenant ${id}` }))
        )
      ),
    placement,
    databaseName
  })
})

/** The URL a tenant's own pool (database strategy) connects with. */
export const tenantUrl = (placement: TenantPlacement) =>
  login(placement.server, {
    database: placement.database,
    user: placement.login.user,
    password: Redacted.value(placement.login.password)
  })
