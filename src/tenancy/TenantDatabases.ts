import * as Reactivity from "@effect/experimental/Reactivity"
import type { SqlError } from "@effect/sql/SqlError"
import type { MigrationError } from "@effect/sql/Migrator"
import type { Connection } from "@effect/sql/SqlConnection"
import { Cause, Context, Deferred, Effect, FiberId, Layer, Option, Redacted, Runtime, Schema, Scope } from "effect"
import { createHash } from "node:crypto"
import { ApiError } from "../ApiError.js"
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
import { rolePassword, secretFingerprint, type TenantPlacement } from "./TenantPlacement.js"

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

/** A login role whose password was rotated. */
export interface CredentialRotation {
  /** `role`: a database tenant's own role; `gateway`: a shared database's, which every schema tenant there logs in as. */
  readonly kind: "role" | "gateway"
  readonly server: string
  readonly role: string
  /** The new version of its password (the platform database keeps this, not the password). */
  readonly version: number
  /** It had a password stored in the platform database (made before migration 0008), removed now. */
  readonly converted: boolean
  /** The schema tenants that log in as it (a gateway), or the tenant (a role). */
  readonly tenants: number
}

/** What `rotateAllCredentials` did: each role rotated, and each that could not be, with why. */
export interface CredentialRotations {
  readonly rotated: ReadonlyArray<CredentialRotation>
  readonly failed: ReadonlyArray<{ readonly target: string; readonly message: string }>
  /** This process's TENANT_ROLE_SECRET was not the recorded one, and is now (every login was rotated with it). */
  readonly secretAdopted: boolean
}

/**
 * A role's password could not be changed on its server (unreachable, or the
 * role is gone). The platform database still names the version before: the
 * role accepts the old password or, if the change went through before the
 * failure was seen, the new one; running the rotation again sets the new one
 * and records it.
 */
export class CredentialRotationFailed extends ApiError<CredentialRotationFailed>()("CredentialRotationFailed", {
  code: "rotation_failed",
  status: 500
}) {}

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
  /**
   * Gives the login a tenant's sessions use a new password: a database
   * tenant's own role, or (a schema tenant) its shared database's gateway,
   * which every schema tenant there shares. The role is altered on its server
   * first, then the new version recorded (the tenant's row locked meanwhile):
   * every process then reopens the contexts concerned, which log in with the
   * new password. A rotation cut off in between leaves the role on the new
   * password and the row on the old version: new connections are refused until
   * it is run again, which re-derives the same password and records it.
   */
  readonly rotateCredentials: (
    id: string
  ) => Effect.Effect<CredentialRotation, TenantNotFound | TenantUnavailable | CredentialRotationFailed>
  /** Rotates every database tenant's role and every shared database's gateway; goes on past failures and reports them. */
  readonly rotateAllCredentials: Effect.Effect<CredentialRotations>
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
  /** Only in rows made before migration 0008: the role's password as it was stored then. */
  readonly db_password: string | null
  readonly credential_version: number
  readonly migration_state: "current" | "migrating" | "failed"
}

interface SharedLoginRow {
  readonly server: string
  readonly database: string
  readonly login_role: string
  readonly login_password: string | null
  readonly login_version: number
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

  // The secret this process derives passwords with, against the one recorded
  // (the first process on a platform database records its own). With another
  // one it can log in as no tenant role: it says so here, refuses to make
  // roles, and its tenants' contexts do not open.
  const fingerprint = secretFingerprint(config.roleSecret)
  const secretDiffers = "this process's TENANT_ROLE_SECRET is not the one the tenant roles' passwords derive from, " +
    "so it cannot log in as them: give every engine process and the CLI the same secret, or adopt this one " +
    "with `tenant-engine tenants rotate-credentials --all`"
  const recordedSecret = platform<{ fingerprint: string }>`SELECT fingerprint FROM role_secret`.pipe(
    orDie,
    Effect.map((rows) => rows[0]?.fingerprint)
  )
  yield* platform`INSERT INTO role_secret (fingerprint) VALUES (${fingerprint}) ON CONFLICT DO NOTHING`.pipe(orDie)
  if ((yield* recordedSecret) !== fingerprint) yield* Effect.logError(secretDiffers)
  // Logins made before migration 0008 still log in with a password stored here: say how to end that.
  const storedPasswords = yield* platform<{ n: number }>`
    SELECT (SELECT count(*) FROM tenants WHERE db_password IS NOT NULL)::int
         + (SELECT count(*) FROM shared_databases WHERE login_password IS NOT NULL)::int AS n`.pipe(orDie)
  if ((storedPasswords[0]?.n ?? 0) > 0) {
    yield* Effect.logWarning(
      `${storedPasswords[0]?.n} tenant login(s) still have their password stored in the platform database ` +
        "(made before derived credentials): run `tenant-engine tenants rotate-credentials --all` to remove them"
    )
  }
  /** Said once per process, not once per request refused. */
  let secretDiffersLogged = false
  const sameSecret = <E>(onDiffers: (message: string) => E) =>
    Effect.flatMap(recordedSecret, (recorded) => recorded === fingerprint ? Effect.void : Effect.fail(onDiffers(secretDiffers)))

  const databaseName = (id: string) => {
    const name = config.databasePrefix + id.replaceAll("-", "_")
    if (Buffer.byteLength(name) <= MAX_IDENTIFIER_BYTES) return name
    // PostgreSQL would silently truncate a longer name, and two long ids with one
    // beginning would then name the same database and role: shorten it here and
    // keep it unique with a hash of the whole id.
    const hash = createHash("sha256").update(id).digest("hex").slice(0, 16)
    return name.slice(0, MAX_IDENTIFIER_BYTES - hash.length - 1) + "_" + hash
  }

  /**
   * Each server's administration, opened when first needed and kept until the
   * service closes. It is opened in a fiber of this service, not the caller's:
   * what it acquires keeps the FiberRefs it was acquired with (a request's
   * would keep that request for good), and a caller who gives up does not
   * leave the others waiting.
   */
  const admins = new Map<string, Deferred.Deferred<ServerAdmin, ServerNotFound | SqlError>>()
  const detached = Runtime.runFork(yield* Effect.runtime<never>())
  const adminOf = (server: string): Effect.Effect<ServerAdmin, ServerNotFound | SqlError> =>
    Effect.suspend(() => {
      const known = admins.get(server)
      if (known !== undefined) return Deferred.await(known)
      const opening = Deferred.unsafeMake<ServerAdmin, ServerNotFound | SqlError>(FiberId.none)
      admins.set(server, opening)
      detached(registry.address(server).pipe(
        Effect.flatMap((address) => makeServerAdmin(address).pipe(Effect.provide(context), Scope.extend(layerScope))),
        // Unknown (or failed): forgotten, so that the next caller looks again.
        Effect.tapErrorCause(() => Effect.sync(() => admins.delete(server))),
        Effect.exit,
        Effect.flatMap((exit) => Deferred.done(opening, exit))
      ))
      return Deferred.await(opening)
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

  /**
   * Where a tenant's data goes on a server under a strategy, its database or
   * schema and role named `objectName`; a database tenant's role logs in
   * with the password of `version`. (A schema tenant's login is the
   * gateway's, which createData does not need.)
   */
  const placementOn = (
    admin: ServerAdmin,
    tenantId: string,
    strategy: TenantStrategy,
    objectName: string,
    version: number
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
        login: {
          user: objectName,
          password: rolePassword(config.roleSecret, { server: admin.name, role: objectName, version }),
          version
        }
      }
      : {
        tenantId,
        server: admin.name,
        host: admin.host,
        strategy,
        database: names.shared,
        schema: objectName,
        role: objectName,
        login: { user: names.gateway, password: Redacted.make(""), version: 0 }
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
    yield* sameSecret((message) => new ProvisioningFailed({ message }))
    const placement = placementOn(admin, tenantId, strategy, databaseName(tenantId), 1)
    // Claiming the id first makes concurrent provisioning of one id safe:
    // exactly one insert wins, the others see the row and stop. The claim and
    // the step that completes it are uninterruptible, so an interruption is
    // seen only in between, where the undo below covers it: a claim is never
    // left behind, nor a tenant made active whose data the undo dropped.
    return yield* Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        const claimed = yield* platform`
          INSERT INTO tenants (id, name, status, db_server, db_strategy, db_name, db_schema, db_role,
                               credential_version, schema_version)
          VALUES (${tenantId}, ${name}, 'provisioning', ${placement.server}, ${strategy}, ${placement.database},
                  ${placement.schema}, ${placement.role}, 1, 0)
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
        TenantRow & {
          admin_url: string | null
          login_role: string | null
          login_password: string | null
          login_version: number | null
          moving: boolean
          secret_fingerprint: string | null
        }
      >`
        SELECT t.*, v.admin_url, s.login_role, s.login_password, s.login_version,
               coalesce(t.moving_until > now(), false) AS moving,
               (SELECT fingerprint FROM role_secret) AS secret_fingerprint
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
      // A database tenant logs in as its own role, a schema tenant as its
      // shared database's gateway: with the password derived from the
      // recorded version, or the one stored before migration 0008 until a
      // rotation replaces it.
      const [user, stored, version] = row.db_strategy === "database"
        ? [row.db_role, row.db_password, row.credential_version]
        : [row.login_role, row.login_password, row.login_version]
      if (user === null || version === null || row.admin_url === null) {
        return yield* Effect.dieMessage(`the login of tenant ${id} is not recorded`)
      }
      if (stored === null && row.secret_fingerprint !== fingerprint) {
        if (!secretDiffersLogged) yield* Effect.logError(secretDiffers)
        secretDiffersLogged = true
        return yield* new TenantUnavailable({ message: `the database of tenant ${id} is unavailable`, retryAfterSeconds: 5 })
      }
      const password = stored !== null
        ? Redacted.make(stored)
        : rolePassword(config.roleSecret, { server: row.db_server, role: user, version })
      const placement: TenantPlacement = {
        tenantId: row.id,
        server: row.db_server,
        host: serverOf(Redacted.make(row.admin_url)),
        strategy: row.db_strategy,
        database: row.db_name,
        schema: row.db_schema,
        role: row.db_role,
        login: { user, password, version: stored !== null ? 0 : version }
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
      yield* sameSecret((message) => new MoveFailed({ message }))
      const source = yield* adminOf(row.db_server).pipe(Effect.orDie)
      const target = yield* adminOf(server).pipe(Effect.orDie)
      // A new role's password is of the next version: a move rotates it too.
      // (Counted for schema tenants as well, so that a version is never reused.)
      const version = row.credential_version + 1
      const placement = placementOn(target, id, strategy, yield* freeName(target, databaseName(id)), version)
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
                 db_password = NULL, credential_version = ${version},
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

  // --- credentials ---

  /**
   * Runs `f` in a platform transaction on a connection of its own: COMMIT
   * when it succeeds, ROLLBACK otherwise, so the rows it locks stay locked
   * while it alters a role on a server. Not `platform.withTransaction`:
   * @effect/sql keeps the open transaction in a context entry shared by every
   * client, so the server's ALTER ROLE inside it would be sent to the
   * platform database's transaction.
   */
  const inOwnTransaction = <A, E>(f: (connection: Connection) => Effect.Effect<A, E>) =>
    Effect.gen(function*() {
      const connection = yield* Effect.orDie(platform.reserve)
      let committed = false
      yield* Effect.acquireRelease(
        orDie(connection.executeRaw("BEGIN", [])),
        () => committed ? Effect.void : Effect.ignore(connection.executeRaw("ROLLBACK", []))
      )
      const result = yield* f(connection)
      yield* orDie(connection.executeRaw("COMMIT", []))
      committed = true
      return result
    }).pipe(Effect.scoped)

  const rotationFailed = (what: string, server: string) => (cause: unknown) =>
    Effect.zipRight(
      Effect.logError(`rotating the password of ${what} on server ${server} failed`, cause),
      new CredentialRotationFailed({
        message: `the password of ${what} could not be changed on server ${server}; run the rotation again`
      })
    )

  /** Sets the role's password of `version` on its server: the first step of a rotation. */
  const alterRole = (server: string, role: string, version: number, what: string) =>
    adminOf(server).pipe(
      Effect.flatMap((admin) =>
        admin.setPassword(role, rolePassword(config.roleSecret, { server, role, version }))
      ),
      Effect.catchAll(rotationFailed(what, server))
    )

  /** A database tenant's own role: altered, then its new version recorded and its stored password (if any) removed. */
  const rotateRole = (id: string) =>
    inOwnTransaction((connection) =>
      Effect.gen(function*() {
        const rows: ReadonlyArray<TenantRow & { moving: boolean }> = yield* orDie(connection.execute(
          `SELECT *, coalesce(moving_until > now(), false) AS moving FROM tenants
           WHERE id = $1 AND status IN ('active', 'suspended') FOR UPDATE`,
          [id],
          undefined
        ))
        const row = rows[0]
        if (row === undefined) return yield* new TenantNotFound({ message: `no tenant ${id}` })
        if (row.moving) {
          return yield* new TenantUnavailable({
            message: `tenant ${id} is being moved (its new role gets a new password); try again once the move is done`,
            retryAfterSeconds: 5
          })
        }
        if (row.db_strategy !== "database") {
          return { kind: "schema", server: row.db_server, database: row.db_name } as const
        }
        const version = row.credential_version + 1
        yield* alterRole(row.db_server, row.db_role, version, `tenant ${id}'s role`)
        yield* orDie(connection.execute(
          "UPDATE tenants SET credential_version = $2, db_password = NULL, updated_at = now() WHERE id = $1",
          [id, version],
          undefined
        ))
        const rotation: CredentialRotation = {
          kind: "role",
          server: row.db_server,
          role: row.db_role,
          version,
          converted: row.db_password !== null,
          tenants: 1
        }
        return { kind: "rotated", rotation } as const
      })
    )

  /** A shared database's gateway: altered, then its new version recorded (the trigger tells every process). */
  const rotateGateway = (server: string, database: string) =>
    inOwnTransaction((connection) =>
      Effect.gen(function*() {
        const rows: ReadonlyArray<SharedLoginRow> = yield* orDie(connection.execute(
          "SELECT * FROM shared_databases WHERE server = $1 AND database = $2 FOR UPDATE",
          [server, database],
          undefined
        ))
        const row = rows[0]
        if (row === undefined) {
          return yield* new CredentialRotationFailed({ message: `no shared database ${database} on server ${server}` })
        }
        const version = row.login_version + 1
        yield* alterRole(server, row.login_role, version, `the gateway of ${database}`)
        yield* orDie(connection.execute(
          "UPDATE shared_databases SET login_version = $3, login_password = NULL WHERE server = $1 AND database = $2",
          [server, database, version],
          undefined
        ))
        const counted: ReadonlyArray<{ n: number }> = yield* orDie(connection.execute(
          `SELECT count(*)::int AS n FROM tenants
           WHERE db_strategy = 'schema' AND db_server = $1 AND db_name = $2 AND status IN ('active', 'suspended')`,
          [server, database],
          undefined
        ))
        const rotation: CredentialRotation = {
          kind: "gateway",
          server,
          role: row.login_role,
          version,
          converted: row.login_password !== null,
          tenants: counted[0]?.n ?? 0
        }
        return rotation
      })
    )

  /** One tenant's login, whatever secret is recorded (`--all` adopts this process's once every login has turned). */
  const rotateLogin = (id: string) => Effect.gen(function*() {
    const outcome = yield* rotateRole(id)
    if (outcome.kind === "rotated") return outcome.rotation
    // A schema tenant's role cannot log in: its sessions log in as the gateway, which is rotated.
    return yield* rotateGateway(outcome.server, outcome.database)
  })

  /** With another secret than the recorded one, a single login is not rotated: logins would be of two secrets. */
  const rotateCredentials = Effect.fn("TenantDatabases.rotateCredentials")(function*(id: string) {
    yield* sameSecret((message) => new CredentialRotationFailed({ message }))
    return yield* rotateLogin(id)
  })

  const rotateAllCredentials = Effect.gen(function*() {
    const tenants = yield* platform<{ id: string }>`
      SELECT id FROM tenants WHERE db_strategy = 'database' AND status IN ('active', 'suspended') ORDER BY id`.pipe(orDie)
    const gateways = yield* platform<{ server: string; database: string }>`
      SELECT server, database FROM shared_databases ORDER BY server, database`.pipe(orDie)
    const outcomes = yield* Effect.forEach([
      ...tenants.map(({ id }) => ({ target: `tenant ${id}`, rotate: rotateLogin(id) })),
      ...gateways.map(({ database, server }) => ({
        target: `the gateway of ${database} on server ${server}`,
        rotate: rotateGateway(server, database)
      }))
    ], ({ rotate, target }) =>
      Effect.either(rotate).pipe(
        Effect.map((outcome) => ({ target, outcome }))
      ), { concurrency: 4 })
    const rotated: Array<CredentialRotation> = []
    const failed: Array<{ target: string; message: string }> = []
    for (const { outcome, target } of outcomes) {
      if (outcome._tag === "Right") rotated.push(outcome.right)
      // A tenant deleted since the list was read has nothing left to rotate.
      else if (outcome.left._tag !== "TenantNotFound") failed.push({ target, message: outcome.left.message })
    }
    // Every login now derives from this process's secret: it is the one recorded from here on.
    const secretAdopted = failed.length === 0 && (yield* recordedSecret) !== fingerprint
    if (secretAdopted) {
      yield* platform`
        INSERT INTO role_secret (fingerprint) VALUES (${fingerprint})
        ON CONFLICT (id) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, recorded_at = now()`.pipe(orDie)
      yield* Effect.logWarning("the tenant roles' passwords derive from this process's TENANT_ROLE_SECRET from now on")
    }
    return { rotated, failed, secretAdopted }
  })

  return TenantDatabases.of({
    provision,
    rotateCredentials,
    rotateAllCredentials,
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
