import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { PgClient } from "@effect/sql-pg"
import { Cause, Clock, Context, Effect, Layer, Option, Redacted, Schedule, Schema } from "effect"
import { createHash, randomBytes } from "node:crypto"
import { login, serverOf, withDatabase } from "../db/DatabaseUrl.js"
import { latestVersion, runMigrations } from "../db/Migrations.js"
import { DUPLICATE_OBJECT, OBJECT_IN_USE, sqlState, UNIQUE_VIOLATION } from "../db/SqlErrors.js"
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
import { Tenant, TenantId, TenantName, type TenantStatus } from "./Tenant.js"
import { TenantMigrations } from "./TenantMigrations.js"

/** Where a tenant's database lives and the role its pool logs in as. */
export interface TenantPlacement {
  readonly tenantId: string
  readonly server: string
  readonly database: string
  readonly role: string
  readonly password: Redacted.Redacted<string>
}

/**
 * The tenants and their databases: placement, provisioning, status.
 *
 * Each tenant has a database of its own and a login role that is the only
 * non-superuser allowed to connect to it (PUBLIC's CONNECT is revoked). Table
 * privileges come from one group role per deployment, granted through default
 * privileges set in the template, so a tenant role can use its own tables and
 * cannot even connect to another tenant's database.
 */
export class TenantDatabases extends Context.Tag("tenant-engine/TenantDatabases")<TenantDatabases, {
  /** Creates the tenant's database at the current schema version and records it as active. */
  readonly provision: (
    id: string,
    name: string
  ) => Effect.Effect<Tenant, InvalidTenant | TenantAlreadyExists | ProvisioningFailed>
  readonly find: (id: string) => Effect.Effect<Tenant, TenantNotFound>
  readonly list: Effect.Effect<ReadonlyArray<Tenant>>
  readonly setStatus: (id: string, status: TenantStatus) => Effect.Effect<Tenant, TenantNotFound>
  /** Where to connect for a tenant that may serve requests now. */
  readonly placement: (
    id: string
  ) => Effect.Effect<TenantPlacement, TenantNotFound | TenantSuspended | TenantUnavailable>
  /** The database name a tenant id maps to. */
  readonly databaseName: (id: string) => string
  /**
   * Deletes a tenant: marks it deleting (its requests are refused from now on),
   * runs `drain` (the caller closes what it holds of the tenant), drops its
   * database and role, and removes its row with its accounts, clients and
   * domains. A delete that was cut off half-way is finished by the next one.
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
  readonly status: "provisioning" | "active" | "suspended" | "deleting"
  readonly created_at: Date
  readonly db_server: string
  readonly db_name: string
  readonly db_role: string
  readonly db_password: string
  readonly migration_state: "current" | "migrating" | "failed"
}

const toTenant = (row: TenantRow) =>
  new Tenant({
    id: row.id,
    name: row.name,
    status: row.status === "suspended" ? "suspended" : "active",
    createdAt: row.created_at
  }, true)

/** PostgreSQL's limit on identifiers (NAMEDATALEN - 1); longer names are truncated. */
const MAX_IDENTIFIER_BYTES = 63

/** How long a delete waits for other processes to finish their work in the tenant's database. */
const OTHERS_DRAIN_MILLIS = 10_000

/** Statements the platform's own code writes are correct or it is a bug: a failure is a defect. */
const orDie = <A, E extends SqlError, R>(effect: Effect.Effect<A, E, R>) => Effect.orDie(effect)

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
  const server = serverOf(config.adminUrl)
  const templateName = `${config.databasePrefix}template`
  const appRole = `${config.databasePrefix}app`
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

  // --- the template: a migrated database that new tenants are copied from ---

  const templateLock = yield* Effect.makeSemaphore(1)
  let templateVersion = -1

  /** Under an advisory lock, so that several processes prepare it one at a time. */
  const prepareTemplate = Effect.gen(function*() {
    const connection = yield* admin.reserve
    yield* Effect.acquireRelease(
      connection.executeRaw("SELECT pg_advisory_lock(hashtext($1))", [templateName]),
      () => Effect.ignore(connection.executeRaw("SELECT pg_advisory_unlock(hashtext($1))", [templateName]))
    )
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
        admin`CREATE ROLE ${role} LOGIN PASSWORD ${admin.literal(`'${Redacted.value(placement.password)}'`)} IN ROLE ${
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

  const dropDatabase = (placement: { readonly database: string; readonly role: string }) =>
    Effect.zipRight(
      admin`DROP DATABASE IF EXISTS ${admin(placement.database)} WITH (FORCE)`,
      admin`DROP ROLE IF EXISTS ${admin(placement.role)}`
    )

  const provision = (id: string, name: string) =>
    Effect.gen(function*() {
      const tenantId = yield* Schema.decodeUnknown(TenantId)(id).pipe(
        Effect.mapError(() => new InvalidTenant({ message: `invalid tenant id ${JSON.stringify(id)}` }))
      )
      yield* Schema.decodeUnknown(TenantName)(name).pipe(
        Effect.mapError(() => new InvalidTenant({ message: "a tenant name is 1 to 200 characters" }))
      )
      const version = yield* ensureTemplate.pipe(
        // The migrator reports a failed migration as a defect: catch those too.
        Effect.catchAllCause((cause) =>
          Cause.isInterruptedOnly(cause) ? Effect.interrupt : Effect.zipRight(
            Effect.logError("preparing the tenant template failed", cause),
            new ProvisioningFailed({ message: "the tenant database template could not be prepared" })
          )
        )
      )
      const placement: TenantPlacement = {
        tenantId,
        server,
        database: databaseName(tenantId),
        role: databaseName(tenantId),
        password: Redacted.make(randomBytes(24).toString("base64url"))
      }
      // Claiming the id first makes concurrent provisioning of one id safe:
      // exactly one insert wins, the others see the row and stop. The claim and
      // the step that completes it are uninterruptible, so an interruption is
      // seen only in between, where the undo below covers it: a claim is never
      // left behind, nor a tenant made active whose database the undo dropped.
      return yield* Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          const claimed = yield* platform`
            INSERT INTO tenants (id, name, status, db_server, db_name, db_role, db_password, schema_version)
            VALUES (${tenantId}, ${name}, 'provisioning', ${placement.server}, ${placement.database},
                    ${placement.role}, ${Redacted.value(placement.password)}, ${version})
            ON CONFLICT DO NOTHING
            RETURNING id`.pipe(orDie)
          if (claimed.length === 0) {
            return yield* new TenantAlreadyExists({ message: `tenant ${tenantId} already exists` })
          }
          const rows = yield* Effect.zipRight(
            restore(createDatabase(placement)),
            platform<TenantRow>`UPDATE tenants SET status = 'active', updated_at = now() WHERE id = ${tenantId} RETURNING *`
          ).pipe(
            // Whatever stopped it (an error, a defect, an interruption), undo it all so
            // that nothing is left registered and the same id can be provisioned again.
            Effect.onError((cause) =>
              Effect.logError(`provisioning tenant ${tenantId} failed; undoing it`, cause).pipe(
                Effect.zipRight(dropDatabase(placement)),
                Effect.zipRight(platform`DELETE FROM tenants WHERE id = ${tenantId} AND status = 'provisioning'`),
                Effect.catchAllCause((undo) => Effect.logError(`undoing tenant ${tenantId} failed`, undo))
              )
            ),
            Effect.mapError(() =>
              new ProvisioningFailed({ message: `the database of tenant ${tenantId} could not be created` })
            )
          )
          return toTenant(rows[0]!)
        })
      )
    })

  const placement = (id: string) =>
    Effect.flatMap(findRow(id), (row): Effect.Effect<TenantPlacement, TenantSuspended | TenantUnavailable> => {
      if (row.status === "suspended") {
        return Effect.fail(new TenantSuspended({ message: `tenant ${id} is suspended` }))
      }
      if (row.migration_state !== "current") {
        return Effect.fail(
          new TenantUnavailable({ message: `tenant ${id} is being migrated`, retryAfterSeconds: 5 })
        )
      }
      return Effect.succeed({
        tenantId: row.id,
        server: row.db_server,
        database: row.db_name,
        role: row.db_role,
        password: Redacted.make(row.db_password)
      })
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

  const remove = (id: string, drain: Effect.Effect<void>) =>
    Effect.gen(function*() {
      const rows = yield* platform<{ db_name: string; db_role: string }>`
        UPDATE tenants SET status = 'deleting', updated_at = now()
        WHERE id = ${id} AND status IN ('active', 'suspended', 'deleting')
        RETURNING db_name, db_role`.pipe(orDie)
      const row = rows[0]
      if (row === undefined) return yield* new TenantNotFound({ message: `no tenant ${id}` })
      yield* drain
      yield* othersDisconnected(row.db_name, Date.now() + OTHERS_DRAIN_MILLIS)
      yield* dropDatabase({ database: row.db_name, role: row.db_role }).pipe(orDie)
      yield* platform`DELETE FROM tenants WHERE id = ${id}`.pipe(orDie)
    }).pipe(Effect.uninterruptible)

  return TenantDatabases.of({
    provision,
    remove,
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

/** The URL a tenant's pool connects with. */
export const tenantUrl = (placement: TenantPlacement) =>
  login(placement.server, {
    database: placement.database,
    user: placement.role,
    password: Redacted.value(placement.password)
  })

