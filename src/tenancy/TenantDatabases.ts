import * as Reactivity from "@effect/experimental/Reactivity"
import type { SqlError } from "@effect/sql/SqlError"
import type { MigrationError } from "@effect/sql/Migrator"
import { Cause, Context, Deferred, Effect, FiberId, Layer, Option, Redacted, Runtime, Schema, Scope } from "effect"
import { createHash, randomBytes } from "node:crypto"
import { serverOf, withDatabase } from "../db/DatabaseUrl.js"
import { latestVersion } from "../db/Migrations.js"
import { orDie } from "../db/SqlErrors.js"
import { PlatformDb } from "../platform/PlatformDb.js"
import type { ServerNotFound } from "../servers/ServerErrors.js"
import { ServerRegistry } from "../servers/ServerRegistry.js"
import { makeServerAdmin, type MigrationTarget, type ServerAdmin, serverObjectNames } from "./ServerAdmin.js"
import { copyTables, type TableCopied } from "./TableCopy.js"
import { TenancyConfig } from "./TenancyConfig.js"
import {
  InvalidTenant,
  MoveFailed,
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
import type { TenantPlacement } from "./TenantPlacement.js"

export interface ProvisionOptions {
  /** Default: the configured default strategy. */
  readonly strategy?: TenantStrategy | undefined
  /** A registered, active server's name. Default: the active server with the fewest tenants per unit of weight. */
  readonly server?: string | undefined
}

export interface MoveOptions {
  /** Default: the active server with the fewest tenants per unit of weight, other than the tenant's (unless only `strategy` is given: then the tenant's). */
  readonly to?: string | undefined
  /** Default: the tenant's. */
  readonly strategy?: TenantStrategy | undefined
}

/** What a move is doing, for a terminal to show. */
export type MoveProgress =
  | { readonly step: "draining" }
  | { readonly step: "creating"; readonly server: string; readonly strategy: TenantStrategy }
  | { readonly step: "copied"; readonly table: string; readonly rows: number }
  | { readonly step: "switched"; readonly unavailableMillis: number }

export interface MoveSummary {
  readonly tenantId: string
  /** False when the tenant was where it was asked to go already. */
  readonly moved: boolean
  readonly from: { readonly server: string; readonly strategy: TenantStrategy }
  readonly to: { readonly server: string; readonly strategy: TenantStrategy }
  readonly tables: ReadonlyArray<TableCopied>
  /** From the claim (its requests refused) to the switch (served from the new place). */
  readonly unavailableMillis: number
}

/**
 * The tenants and where their data lives: placement on the registered
 * servers, provisioning, status, migrations, moves and removal, on both
 * strategies.
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
  readonly migrate: (target: MigrationTarget & { readonly server: string }) => Effect.Effect<number, SqlError | MigrationError>
  /**
   * Deletes a tenant: marks it deleting (its requests are refused from now on),
   * runs `drain` (the caller closes what it holds of the tenant), drops its
   * database or schema and its role, and removes its row with its accounts,
   * clients and domains. A delete that was cut off half-way is finished by the
   * next one.
   */
  readonly remove: (id: string, drain: Effect.Effect<void>) => Effect.Effect<void, TenantNotFound>
  /**
   * Moves a tenant to another server or strategy: claims it (its requests get
   * 503 everywhere), runs `drain` (the caller closes what it holds of the
   * tenant), creates its new place at the latest schema version, copies every
   * table there and checks the row counts, switches its placement, and drops
   * the old copy. Whatever stops it before the switch leaves the tenant whole
   * where it was; running it again finishes or restarts an interrupted move.
   */
  readonly move: (
    id: string,
    options: MoveOptions,
    drain: Effect.Effect<void>,
    onProgress: (progress: MoveProgress) => Effect.Effect<void>
  ) => Effect.Effect<MoveSummary, TenantNotFound | TenantUnavailable | InvalidTenant | ProvisioningFailed | MoveFailed>
}>() {
  /** With the server registry it places tenants on. */
  static readonly layer = Layer.scoped(TenantDatabases, Effect.suspend(() => make)).pipe(
    Layer.provideMerge(ServerRegistry.layer),
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
      server: row.db_server,
      strategy: row.db_strategy,
      database: row.db_name,
      schema: row.db_schema,
      role: row.db_role
    }, true)
  }, true)

/** PostgreSQL's limit on identifiers (NAMEDATALEN - 1); longer names are truncated. */
const MAX_IDENTIFIER_BYTES = 63

/** How long a delete or a move waits for other processes to finish their work in the tenant's database. */
const OTHERS_DRAIN_MILLIS = 10_000

/** A move's claim on its tenant lapses after this unless renewed (the mover died): the tenant serves again. */
const MOVE_LEASE = "60 seconds"
const MOVE_LEASE_RENEWAL = "10 seconds"

/** A suffixed identifier, kept within PostgreSQL's limit. */
const withSuffix = (name: string, suffix: string) =>
  name.slice(0, MAX_IDENTIFIER_BYTES - suffix.length - 1) + "_" + suffix

/** A move in progress (`copying`: the new copy is partial) or switched (`switched`: the old copy is left to drop). */
interface MoveRow {
  readonly phase: "copying" | "switched"
  readonly from_server: string
  readonly from_strategy: TenantStrategy
  readonly from_database: string
  readonly from_schema: string | null
  readonly from_role: string
  readonly to_server: string
  readonly to_strategy: TenantStrategy
  readonly to_database: string
  readonly to_schema: string | null
  readonly to_role: string
}

/**
 * Ids whose names are the engine's own (the group role and the template):
 * such a tenant would have taken them over, and its undo dropped them. Names
 * added since start with `_` after the prefix, which no tenant id gives.
 */
const RESERVED_IDS = new Set(["app", "template"])

const make = Effect.gen(function*() {
  const platform = yield* PlatformDb
  const config = yield* TenancyConfig
  const loader = yield* TenantMigrations
  const registry = yield* ServerRegistry
  const context = yield* Effect.context<PlatformDb | TenancyConfig | TenantMigrations | Reactivity.Reactivity>()
  const layerScope = yield* Effect.scope
  const names = serverObjectNames(config.databasePrefix)
  const databaseName = (id: string) => {
    const name = config.databasePrefix + id.replaceAll("-", "_")
    if (Buffer.byteLength(name) <= MAX_IDENTIFIER_BYTES) return name
    // PostgreSQL would silently truncate a longer name, and two long ids with one
    // beginning would then name the same database and role: shorten it here and
    // keep it unique with a hash of the whole id.
    const hash = createHash("sha256").update(id).digest("hex").slice(0, 16)
    return name.slice(0, MAX_IDENTIFIER_BYTES - hash.length - 1) + "_" + hash
  }

  /** Each server's administration, opened when first needed and kept until the service closes. */
  const admins = new Map<string, Deferred.Deferred<ServerAdmin>>()
  const adminOf = (server: string): Effect.Effect<ServerAdmin, ServerNotFound | SqlError> =>
    Effect.suspend(() => {
      const known = admins.get(server)
      if (known !== undefined) return Deferred.await(known)
      const opening = Deferred.unsafeMake<ServerAdmin>(FiberId.none)
      admins.set(server, opening)
      return registry.address(server).pipe(
        Effect.flatMap((address) => makeServerAdmin(address).pipe(Effect.provide(context), Scope.extend(layerScope))),
        Effect.tap((admin) => Deferred.succeed(opening, admin)),
        // Unknown (or failed): forgotten, so that the next caller looks again.
        Effect.tapErrorCause(() => Effect.sync(() => admins.delete(server)))
      )
    })

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

  // --- placing a tenant's data on a server ---

  /** The migrator reports a failed migration as a defect: those are failures of provisioning too. */
  const provisioningFailed = (message: string) =>
    Effect.catchAllCause((cause: Cause.Cause<unknown>) =>
      Cause.isInterruptedOnly(cause) ? Effect.interrupt : Effect.zipRight(
        Effect.logError(message, cause),
        new ProvisioningFailed({ message })
      )
    )

  /** Where a tenant's data goes on a server under a strategy, its database or schema and role named `objectName`. */
  const placementOn = (
    admin: ServerAdmin,
    tenantId: string,
    strategy: TenantStrategy,
    objectName: string
  ): TenantPlacement =>
    strategy === "database"
      ? {
        tenantId,
        server: admin.name,
        host: admin.host,
        strategy,
        database: objectName,
        schema: null,
        role: objectName,
        login: { user: objectName, password: Redacted.make(randomBytes(24).toString("base64url")) }
      }
      : {
        tenantId,
        server: admin.name,
        host: admin.host,
        strategy,
        database: names.shared,
        schema: objectName,
        role: objectName,
        login: { user: names.gateway, password: Redacted.make("") }
      }

  /**
   * Prepares the server for the placement's strategy (the template, or the
   * shared database) and creates the tenant's data there at the latest
   * schema version, which it returns.
   */
  const createData = (admin: ServerAdmin, placement: TenantPlacement) =>
    Effect.gen(function*() {
      const version = yield* (placement.schema === null
        ? admin.ensureTemplate.pipe(provisioningFailed(`preparing the tenant database template on ${admin.name} failed`))
        : Effect.zipRight(admin.ensureShared, latestVersion(loader)).pipe(
          provisioningFailed(`preparing the shared tenant database on ${admin.name} failed`)
        ))
      yield* placement.schema === null
        ? admin.createDatabase(placement)
        : Effect.asVoid(admin.createSchema({ ...placement, schema: placement.schema }))
      return version
    })

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
    const server = yield* registry.choose(options.server).pipe(
      Effect.mapError((error) => new InvalidTenant({ message: error.message }))
    )
    const admin = yield* adminOf(server).pipe(
      provisioningFailed(`the administration of server ${server} could not be opened`)
    )
    const strategy = options.strategy ?? config.defaultStrategy
    const placement = placementOn(admin, tenantId, strategy, databaseName(tenantId))
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
                  ${strategy === "database" ? Redacted.value(placement.login.password) : null}, 0)
          ON CONFLICT DO NOTHING
          RETURNING id`.pipe(orDie)
        if (claimed.length === 0) {
          return yield* new TenantAlreadyExists({ message: `tenant ${tenantId} already exists` })
        }
        const rows = yield* restore(createData(admin, placement)).pipe(
          Effect.flatMap((version) =>
            platform<TenantRow>`
              UPDATE tenants SET status = 'active', schema_version = ${version}, updated_at = now()
              WHERE id = ${tenantId} RETURNING *`
          ),
          // Whatever stopped it (an error, a defect, an interruption), undo it all so
          // that nothing is left registered and the same id can be provisioned again.
          Effect.onError((cause) =>
            Effect.logError(`provisioning tenant ${tenantId} failed; undoing it`, cause).pipe(
              Effect.zipRight(admin.dropData(placement)),
              Effect.zipRight(platform`DELETE FROM tenants WHERE id = ${tenantId} AND status = 'provisioning'`),
              Effect.catchAllCause((undo) => Effect.logError(`undoing tenant ${tenantId} failed`, undo))
            )
          ),
          Effect.catchAllCause((cause) =>
            Cause.isInterruptedOnly(cause)
              ? Effect.interrupt
              : Cause.failureOption(cause).pipe(
                Option.filter((error): error is ProvisioningFailed => error instanceof ProvisioningFailed),
                Option.getOrElse(() =>
                  new ProvisioningFailed({ message: `the ${strategy} of tenant ${tenantId} could not be created` })
                )
              )
          )
        )
        return toTenant(rows[0]!)
      })
    )
  })

  const placement = (id: string) =>
    Effect.gen(function*() {
      // With the server's URL and the gateway's login of a schema tenant's shared database: one round trip.
      const rows = yield* platform<
        TenantRow & { admin_url: string | null; login_role: string | null; login_password: string | null; moving: boolean }
      >`
        SELECT t.*, v.admin_url, s.login_role, s.login_password, coalesce(t.moving_until > now(), false) AS moving
        FROM tenants t
        JOIN servers v ON v.name = t.db_server
        LEFT JOIN shared_databases s ON t.db_strategy = 'schema' AND s.server = t.db_server AND s.database = t.db_name
        WHERE t.id = ${id} AND t.status IN ('active', 'suspended')`.pipe(orDie)
      const row = rows[0]
      if (row === undefined) return yield* new TenantNotFound({ message: `no tenant ${id}` })
      if (row.status === "suspended") {
        return yield* new TenantSuspended({ message: `tenant ${id} is suspended` })
      }
      if (row.moving) {
        return yield* new TenantUnavailable({ message: `tenant ${id} is being moved`, retryAfterSeconds: 2 })
      }
      if (row.migration_state !== "current") {
        return yield* new TenantUnavailable({ message: `tenant ${id} is being migrated`, retryAfterSeconds: 5 })
      }
      const user = row.db_strategy === "database" ? row.db_role : row.login_role
      const password = row.db_strategy === "database" ? row.db_password : row.login_password
      if (user === null || password === null || row.admin_url === null) {
        return yield* Effect.dieMessage(`the login of tenant ${id} is not recorded`)
      }
      const placement: TenantPlacement = {
        tenantId: row.id,
        server: row.db_server,
        host: serverOf(Redacted.make(row.admin_url)),
        strategy: row.db_strategy,
        database: row.db_name,
        schema: row.db_schema,
        role: row.db_role,
        login: { user, password: Redacted.make(password) }
      }
      return placement
    })

  /**
   * A schema tenant's schema is dropped once the caller has drained; DROP
   * SCHEMA waits for the statements other processes still run in it (their
   * locks), and their next ones are refused, the tenant being marked deleting.
   */
  const remove = Effect.fn("TenantDatabases.remove")(function*(id: string, drain: Effect.Effect<void>) {
    const rows = yield* platform<Pick<TenantRow, "db_server" | "db_strategy" | "db_name" | "db_schema" | "db_role">>`
      UPDATE tenants SET status = 'deleting', updated_at = now()
      WHERE id = ${id} AND status IN ('active', 'suspended', 'deleting')
      RETURNING db_server, db_strategy, db_name, db_schema, db_role`.pipe(orDie)
    const row = rows[0]
    if (row === undefined) return yield* new TenantNotFound({ message: `no tenant ${id}` })
    yield* drain
    const admin = yield* Effect.orDie(adminOf(row.db_server))
    if (row.db_strategy === "database") {
      yield* admin.othersDisconnected(row.db_name, Date.now() + OTHERS_DRAIN_MILLIS)
    }
    yield* admin.dropData({ strategy: row.db_strategy, database: row.db_name, schema: row.db_schema, role: row.db_role })
      .pipe(orDie)
    // A move cut off half-way may have left a copy elsewhere.
    yield* dropUnfinishedMove(id)
    yield* platform`DELETE FROM tenants WHERE id = ${id}`.pipe(orDie)
  }, Effect.uninterruptible)

  const migrate = (target: MigrationTarget & { readonly server: string }) =>
    Effect.flatMap(Effect.orDie(adminOf(target.server)), (admin) => admin.migrate(target))

  // --- moves ---

  /** A name for the tenant's objects on a server that no database, role or tenant there has yet. */
  const freeName = (admin: ServerAdmin, base: string) =>
    Effect.gen(function*() {
      for (const candidate of [base, ...[2, 3, 4, 5, 6, 7, 8, 9].map((n) => withSuffix(base, String(n)))]) {
        const onServer = yield* admin.admin<{ n: number }>`
          SELECT (SELECT count(*) FROM pg_roles WHERE rolname = ${candidate})
               + (SELECT count(*) FROM pg_database WHERE datname = ${candidate}) AS n`
        const recorded = yield* platform`
          SELECT 1 FROM tenants
          WHERE db_server = ${admin.name} AND ${candidate} IN (db_name, db_role, coalesce(db_schema, ''))`
        if (Number(onServer[0]?.n ?? 0) === 0 && recorded.length === 0) return candidate
      }
      return yield* Effect.dieMessage(`no free name for ${base} on server ${admin.name}`)
    }).pipe(orDie)

  /**
   * What an earlier move of the tenant left: after its switch, the old copy
   * (dropped now); before it, a partial new one (dropped: the move starts over).
   */
  const dropUnfinishedMove = (id: string) =>
    Effect.gen(function*() {
      const rows = yield* platform<MoveRow>`SELECT * FROM tenant_moves WHERE tenant_id = ${id}`.pipe(orDie)
      const row = rows[0]
      if (row === undefined) return
      const leftover = row.phase === "switched"
        ? { server: row.from_server, strategy: row.from_strategy, database: row.from_database, schema: row.from_schema, role: row.from_role }
        : { server: row.to_server, strategy: row.to_strategy, database: row.to_database, schema: row.to_schema, role: row.to_role }
      const admin = yield* Effect.orDie(adminOf(leftover.server))
      if (leftover.strategy === "database") {
        yield* admin.othersDisconnected(leftover.database, Date.now() + OTHERS_DRAIN_MILLIS)
      }
      yield* orDie(admin.dropData(leftover))
      yield* platform`DELETE FROM tenant_moves WHERE tenant_id = ${id}`.pipe(orDie)
    })

  const move = Effect.fn("TenantDatabases.move")(function*(
    id: string,
    options: MoveOptions,
    drain: Effect.Effect<void>,
    onProgress: (progress: MoveProgress) => Effect.Effect<void>
  ) {
    const before = yield* findRow(id)
    // The claim: from here the tenant's requests get 503 in every process
    // (the trigger announces the change). It lapses by itself if this run dies.
    const claimed = yield* platform<TenantRow>`
      UPDATE tenants SET moving_until = now() + ${MOVE_LEASE}::interval, updated_at = now()
      WHERE id = ${id} AND status IN ('active', 'suspended') AND migration_state = 'current'
        AND (moving_until IS NULL OR moving_until < now())
      RETURNING *`.pipe(orDie)
    const row = claimed[0]
    if (row === undefined) {
      return yield* new TenantUnavailable({
        message: before.migration_state !== "current"
          ? `tenant ${id} is being migrated; move it once its migration is done`
          : `tenant ${id} is being moved by another run`,
        retryAfterSeconds: 5
      })
    }
    const startedAt = Date.now()
    const release = platform`UPDATE tenants SET moving_until = NULL, updated_at = now() WHERE id = ${id}`.pipe(orDie)
    return yield* Effect.gen(function*() {
      // A long copy keeps its claim.
      yield* platform`UPDATE tenants SET moving_until = now() + ${MOVE_LEASE}::interval WHERE id = ${id}`.pipe(
        orDie,
        Effect.delay(MOVE_LEASE_RENEWAL),
        Effect.forever,
        Effect.forkScoped
      )
      yield* dropUnfinishedMove(id)
      const strategy = options.strategy ?? row.db_strategy
      const server = options.to !== undefined || options.strategy === undefined
        ? yield* registry.choose(options.to, row.db_server).pipe(
          Effect.mapError((error) => new InvalidTenant({ message: error.message }))
        )
        : row.db_server
      const from = { server: row.db_server, strategy: row.db_strategy }
      if (server === row.db_server && strategy === row.db_strategy) {
        yield* release
        return { tenantId: id, moved: false, from, to: from, tables: [], unavailableMillis: Date.now() - startedAt }
      }
      const source = yield* adminOf(row.db_server).pipe(Effect.orDie)
      const target = yield* adminOf(server).pipe(Effect.orDie)
      const placement = placementOn(target, id, strategy, yield* freeName(target, databaseName(id)))
      yield* platform`
        INSERT INTO tenant_moves (tenant_id, phase, from_server, from_strategy, from_database, from_schema, from_role,
                                  to_server, to_strategy, to_database, to_schema, to_role)
        VALUES (${id}, 'copying', ${row.db_server}, ${row.db_strategy}, ${row.db_name}, ${row.db_schema}, ${row.db_role},
                ${server}, ${strategy}, ${placement.database}, ${placement.schema}, ${placement.role})`.pipe(orDie)

      yield* onProgress({ step: "draining" })
      yield* drain
      if (row.db_strategy === "database") yield* source.othersDisconnected(row.db_name, Date.now() + OTHERS_DRAIN_MILLIS)
      const sourcePlace = { strategy: row.db_strategy, database: row.db_name, schema: row.db_schema }
      // The copy is made at the latest schema version: the source is brought there first.
      yield* source.migrate(sourcePlace).pipe(provisioningFailed(`migrating tenant ${id} before its move failed`))
      yield* onProgress({ step: "creating", server, strategy })
      const createFailed = (error: SqlError | MigrationError) =>
        new MoveFailed({ message: `creating tenant ${id} on ${server} failed: ${error.message}` })
      yield* createData(target, placement).pipe(
        Effect.catchTags({ SqlError: createFailed, MigrationError: createFailed })
      )
      const runtime = yield* Effect.runtime<never>()
      const tables = yield* copyTables(
        { url: withDatabase(source.url, row.db_name), schema: row.db_schema ?? "public" },
        { url: withDatabase(target.url, placement.database), schema: placement.schema ?? "public" },
        // Told as each table is done, from inside the copy.
        (copied) => Runtime.runFork(runtime)(onProgress({ step: "copied", ...copied }))
      ).pipe(Effect.mapError((error) => new MoveFailed({ message: `copying tenant ${id} failed: ${error.message}` })))

      yield* platform.withTransaction(Effect.zipRight(
        platform`
          UPDATE tenants SET db_server = ${server}, db_strategy = ${strategy}, db_name = ${placement.database},
                 db_schema = ${placement.schema}, db_role = ${placement.role},
                 db_password = ${strategy === "database" ? Redacted.value(placement.login.password) : null},
                 moving_until = NULL, updated_at = now()
          WHERE id = ${id}`,
        platform`UPDATE tenant_moves SET phase = 'switched' WHERE tenant_id = ${id}`
      )).pipe(orDie)
      const unavailableMillis = Date.now() - startedAt
      yield* onProgress({ step: "switched", unavailableMillis })
      // The old copy goes once the processes still holding it are done (the switch told them).
      yield* dropUnfinishedMove(id)
      return { tenantId: id, moved: true, from, to: { server, strategy }, tables, unavailableMillis }
    }).pipe(
      // Whatever stopped it before the switch: the tenant serves from where it was.
      Effect.onError((cause) =>
        (Cause.isInterruptedOnly(cause)
          ? Effect.logInfo(`moving tenant ${id} was interrupted; it stays where it was`)
          : Effect.logError(`moving tenant ${id} failed; it stays where it was`, cause)).pipe(
          Effect.zipRight(Effect.ignore(dropUnfinishedMove(id))),
          Effect.zipRight(Effect.ignore(release))
        )
      ),
      Effect.scoped
    )
  })

  return TenantDatabases.of({
    provision,
    remove,
    migrate,
    move,
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
