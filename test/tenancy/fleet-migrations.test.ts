import { Bodies, bodyOf, errorOf } from "../bodies.js"
import { expect, layer } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import * as Migrator from "@effect/sql/Migrator"
import { Cause, Context, Duration, Effect, Exit, Fiber, Layer, Logger, LogLevel, Option, Scope } from "effect"
import notesMigration from "../../migrations/tenant/0001_notes.js"
import { AccountDirectory } from "../../src/auth/AccountDirectory.js"
import { PlatformDb } from "../../src/platform/PlatformDb.js"
import { TenantAdmin } from "../../src/platform/TenantAdmin.js"
import { TenancyConfig } from "../../src/tenancy/TenancyConfig.js"
import { TenantContexts, withTenant } from "../../src/tenancy/TenantContexts.js"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { TenantMigrations } from "../../src/tenancy/TenantMigrations.js"
import { type FleetMigration, TenantMigrator } from "../../src/tenancy/TenantMigrator.js"
import { TenantSession } from "../../src/tenancy/TenantSession.js"
import { makeNamespace, testConfig } from "../../src/testing/TestDatabases.js"
import { TestIssuer } from "../../src/testing/TestIssuer.js"
import { platformWith } from "../../src/PlatformLive.js"
import {
  adminQuery,
  adminUrl,
  captureConsole,
  databaseExists,
  namesOf,
  request,
  roleExists,
  serverOn
} from "../cli/support.js"

/**
 * Fleet migrations and tenant deletion, against a real server: the platform
 * in-process (HTTP included) with a tenant migration loader this file
 * extends as it goes (the real 0001 plus migrations defined here), so that
 * nothing is written into migrations/.
 */

// --- the migrations: the real first one, then what each test adds ---

const extra: Record<string, Effect.Effect<void, unknown, SqlClient.SqlClient>> = {}
const loader: Migrator.Loader = Effect.suspend(() => Migrator.fromRecord({ "0001_notes": notesMigration, ...extra }))
const Migrations = Layer.succeed(TenantMigrations, loader)

/** Databases in which migration 3 ran its body (each entry one run). */
const migration3Runs: Array<string> = []

const migration2 = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE tags (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      note_id uuid NOT NULL REFERENCES notes (id) ON DELETE CASCADE,
      label text NOT NULL
    )`
})

// Slow on purpose, so that two runners overlap; it leaves a trace in the
// tenant database and in this process for every time its body runs.
const migration3 = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql<{ db: string }>`SELECT current_database() AS db`
  migration3Runs.push(row!.db)
  yield* sql`SELECT pg_sleep(0.15)`
  yield* sql`CREATE TABLE migration_log (migration integer NOT NULL, at timestamptz NOT NULL DEFAULT now())`
  yield* sql`INSERT INTO migration_log (migration) VALUES (3)`
})

const namespace = makeNamespace()
const { tenantPrefix } = namesOf(namespace)

// --- helpers ---

const admin = TenantAdmin
const migrator = TenantMigrator

const dbOf = (id: string) => Effect.map(TenantDatabases, (d) => d.databaseName(id))

const create = (id: string) => Effect.flatMap(admin, (a) => Effect.orDie(a.create(id, `Tenant ${id}`)))

const userToken = (tenant: string, subject = `user-of-${tenant}`) =>
  Effect.flatMap(TestIssuer, (issuer) => issuer.user(subject, { tenant, scopes: ["notes:read", "notes:write"] }))

const writeNote = (token: string, title: string) =>
  Effect.map(request("POST", "/v1/notes", { token, json: { title, body: "kept across migrations" } }), (reply) => {
    expect(reply.status, reply.text).toBe(201)
    return bodyOf(reply, Bodies.note)
  })

const noteTitles = (token: string) =>
  Effect.map(request("GET", "/v1/notes?limit=100", { token }), (reply) => {
    expect(reply.status, reply.text).toBe(200)
    return bodyOf(reply, Bodies.notes).items.map((n) => n.title)
  })

const versionsIn = (database: string) =>
  Effect.map(
    adminQuery<{ migration_id: number }>("SELECT migration_id FROM schema_migrations ORDER BY migration_id", [], database),
    (rows) => rows.map((r) => r.migration_id)
  )

const platformRow = (id: string) =>
  Effect.flatMap(PlatformDb, (sql) =>
    sql<{ schema_version: number; migration_state: string; migration_error: string | null }>`
      SELECT schema_version, migration_state, migration_error FROM tenants WHERE id = ${id}`.pipe(
      Effect.orDie,
      Effect.map((rows) => rows[0])
    ))

const statusOf = (id: string) =>
  Effect.flatMap(migrator, (m) => Effect.map(m.status, (s) => s.tenants.find((t) => t.id === id)))

/** migrateAll without a progress display; its summary line(s) captured. */
const migrateAll = (m: TenantMigrator["Type"], concurrency?: number) =>
  captureConsole(m.migrateAll({ progress: "none", concurrency: Option.fromNullable(concurrency) }))

const summaryOf = (run: { readonly exit: Exit.Exit<FleetMigration, unknown>; readonly stdout: string }) => {
  if (Exit.isSuccess(run.exit)) return run.exit.value
  throw new Error(`migrateAll failed: ${Cause.pretty(run.exit.cause)}\n${run.stdout}`)
}

/** A second, independent migrator: its own platform pool, as another process would have. */
const SecondMigrator = TenantMigrator.layer.pipe(
  Layer.provide(TenantDatabases.layer),
  Layer.provide(PlatformDb.layer),
  Layer.provide(Migrations)
)

// The notification connection proves it delivers every second (not 10): a test that
// cuts the platform's connections waits for them to notice.
layer(serverOn({
  namespace,
  migrations: Migrations,
  connectionBudget: 20,
  maxConnectionsPerTenant: 2,
  notificationHeartbeat: Duration.seconds(1)
}), {
  excludeTestServices: true,
  timeout: 120_000
})("fleet migrations", (it) => {
  it.effect("one tenant's migration fails: the others migrate, it is reported, serves 503, and a rerun after the fix completes it", () =>
    Effect.gen(function*() {
      const ids = ["fa", "fb", "fc", "fd"]
      yield* Effect.forEach(ids, create, { concurrency: 2, discard: true })
      const tokens = Object.fromEntries(yield* Effect.forEach(ids, (id) => Effect.map(userToken(id), (t) => [id, t] as const)))
      for (const id of ids) yield* writeNote(tokens[id]!, `note of ${id}`)

      // fc's database already has a table the new migration creates: it fails there only.
      const fcDatabase = yield* dbOf("fc")
      yield* adminQuery("CREATE TABLE tags (id integer)", [], fcDatabase)
      extra["0002_tags"] = migration2

      const m = yield* migrator
      const before = yield* m.status
      expect(before.latest).toBe(2)
      expect(before.counts).toEqual({ current: 0, behind: 4, migrating: 0, failed: 0 })

      const run = yield* migrateAll(m)
      expect(Exit.isFailure(run.exit)).toBe(true)
      const failure = Exit.isFailure(run.exit) ? Cause.failureOption(run.exit.cause) : Option.none()
      expect(Option.map(failure, (e) => e._tag)).toEqual(Option.some("FleetMigrationFailed"))
      expect(Option.getOrThrow(failure).message).toBe("1 of 4 tenants failed to migrate; rerun after fixing")
      expect(run.stdout).toContain("schema version 2: 3 migrated, 1 failed, 0 skipped")
      expect(run.stdout).toMatch(/failed: fc: .*"tags" already exists/)

      const after = yield* m.status
      expect(after.counts).toEqual({ current: 3, behind: 0, migrating: 0, failed: 1 })
      const fc = after.tenants.find((t) => t.id === "fc")!
      expect(fc.state).toBe("failed")
      expect(fc.version).toBe(1)
      // The error says what went wrong in PostgreSQL's words, on one line.
      expect(fc.error).toMatch(/relation "tags" already exists/)
      expect(fc.error).not.toContain("\n")
      for (const id of ["fa", "fb", "fd"]) {
        expect(after.tenants.find((t) => t.id === id)).toEqual({ id, state: "current", version: 2, error: null })
        expect(yield* versionsIn(yield* dbOf(id))).toEqual([1, 2])
      }
      // Nothing of the failed run stayed behind in fc (one transaction).
      expect(yield* versionsIn(fcDatabase)).toEqual([1])

      // The failed tenant is refused with 503 (in-process and over HTTP); the others serve, data intact.
      const refused = yield* Effect.flip(Effect.flatMap(TenantSession, (s) => s.sql`SELECT 1`).pipe(withTenant("fc")))
      expect(refused._tag).toBe("TenantUnavailable")
      const reply = yield* request("GET", "/v1/notes", { token: tokens["fc"]! })
      expect(reply.status, reply.text).toBe(503)
      expect(errorOf(reply)).toBe("tenant_unavailable")
      expect(reply.headers["retry-after"]).toMatch(/^\d+$/)
      for (const id of ["fa", "fb", "fd"]) {
        expect(yield* noteTitles(tokens[id]!)).toEqual([`note of ${id}`])
        // The new table is usable by the tenant's own role (privileges come with the template).
        const tags = yield* Effect.flatMap(TenantSession, (s) => s.sql<{ n: number }>`SELECT count(*)::int AS n FROM tags`).pipe(
          withTenant(id),
          Effect.orDie
        )
        expect(tags[0]!.n).toBe(0)
      }

      // The fix, then a rerun: only fc is touched, and it serves again with its data.
      yield* adminQuery("DROP TABLE tags", [], fcDatabase)
      const rerun = yield* migrateAll(m)
      expect(summaryOf(rerun)).toEqual({ latest: 2, migrated: ["fc"], failed: [], skipped: [] })
      expect((yield* m.status).counts).toEqual({ current: 4, behind: 0, migrating: 0, failed: 0 })
      expect(yield* platformRow("fc")).toEqual({ schema_version: 2, migration_state: "current", migration_error: null })
      expect(yield* noteTitles(tokens["fc"]!)).toEqual(["note of fc"])
    }))

  it.effect("a tenant provisioned after a new migration is at the new version (the template is refreshed)", () =>
    Effect.gen(function*() {
      // Provisioned with 0002 known: its database comes from a template at version 2.
      // (ca..cc too: the next test needs more tenants at 2.)
      yield* Effect.forEach(["na", "ca", "cb", "cc"], create, { concurrency: 2, discard: true })
      expect(yield* versionsIn(yield* dbOf("na"))).toEqual([1, 2])
      expect(yield* platformRow("na")).toEqual({ schema_version: 2, migration_state: "current", migration_error: null })

      // A new migration appears while this process runs: the next tenant is at 3 at once, the others are behind.
      extra["0003_log"] = migration3
      yield* create("nb")
      expect(yield* versionsIn(yield* dbOf("nb"))).toEqual([1, 2, 3])
      expect(yield* versionsIn(`${tenantPrefix}template`)).toEqual([1, 2, 3])
      expect(yield* statusOf("nb")).toEqual({ id: "nb", state: "current", version: 3, error: null })
      expect(yield* statusOf("na")).toEqual({ id: "na", state: "behind", version: 2, error: null })
      // Its table works for the tenant's role.
      const log = yield* Effect.flatMap(
        TenantSession,
        (s) => s.sql<{ migration: number }>`SELECT migration FROM migration_log`
      ).pipe(withTenant("nb"), Effect.orDie)
      expect(log.map((r) => r.migration)).toEqual([3])
    }))

  it.effect("two migrators running at once: every tenant is migrated exactly once, none fails", () =>
    Effect.gen(function*() {
      // Every tenant of the tests above but nb is at 2, behind 0003.
      const behind = (yield* Effect.flatMap(migrator, (m) => m.status)).tenants.filter((t) => t.state === "behind")
      const expected = behind.map((t) => t.id).sort()
      expect(expected).toEqual(["ca", "cb", "cc", "fa", "fb", "fc", "fd", "na"])
      migration3Runs.length = 0

      const first = yield* migrator
      // The second is built before either starts, so that both find the same tenants behind.
      const [one, two] = yield* Effect.scoped(Effect.gen(function*() {
        const second = Context.get(yield* Layer.build(SecondMigrator), TenantMigrator)
        return yield* Effect.all([migrateAll(first, 2), migrateAll(second, 2)], { concurrency: 2 })
      }))
      const a = summaryOf(one)
      const b = summaryOf(two)
      expect(a.failed).toEqual([])
      expect(b.failed).toEqual([])
      // Each tenant was migrated by exactly one of them; the other skipped it.
      expect([...a.migrated, ...b.migrated].sort()).toEqual(expected)
      expect([...a.skipped, ...b.skipped].sort()).toEqual(expected)
      // And the migration's body ran exactly once per tenant database.
      const databases = yield* Effect.forEach(expected, dbOf)
      expect([...migration3Runs].sort()).toEqual([...databases].sort())
      for (const db of databases) {
        expect(yield* versionsIn(db)).toEqual([1, 2, 3])
        expect(yield* adminQuery<{ n: number }>("SELECT count(*)::int AS n FROM migration_log", [], db)).toEqual([{ n: 1 }])
      }
      const status = yield* first.status
      expect(status.counts).toEqual({ current: expected.length + 1, behind: 0, migrating: 0, failed: 0 })
    }))

  it.effect("a run over a current fleet touches no tenant database", () =>
    Effect.gen(function*() {
      const m = yield* migrator
      const contexts = yield* TenantContexts
      const status = yield* m.status
      expect(status.counts.current).toBe(status.tenants.length)
      const databases = yield* Effect.forEach(status.tenants, (t) => dbOf(t.id))
      // Close this process's tenant pools, and wait for the server's statistics to settle.
      yield* Effect.forEach(status.tenants, (t) => contexts.drain(t.id, "5 seconds"), { discard: true })
      const stats = Effect.flatMap(
        adminQuery("SELECT pg_stat_clear_snapshot()"),
        () =>
          adminQuery<{ datname: string; sessions: string; xacts: string }>(
            `SELECT datname, sessions::text, (xact_commit + xact_rollback)::text AS xacts
             FROM pg_stat_database WHERE datname = ANY($1) ORDER BY datname`,
            [databases]
          )
      )
      let before = yield* stats
      for (let i = 0; i < 50; i++) {
        yield* Effect.sleep("300 millis")
        const again = yield* stats
        if (JSON.stringify(again) === JSON.stringify(before)) break
        before = again
      }
      expect(before.length).toBe(databases.length)

      // Every tenant database refuses connections meanwhile: touching one would fail the run.
      for (const db of databases) yield* adminQuery(`ALTER DATABASE "${db}" ALLOW_CONNECTIONS false`)
      const run = yield* migrateAll(m).pipe(
        Effect.ensuring(
          Effect.forEach(databases, (db) => adminQuery(`ALTER DATABASE "${db}" ALLOW_CONNECTIONS true`), { discard: true })
        )
      )
      expect(summaryOf(run)).toEqual({ latest: 3, migrated: [], failed: [], skipped: [] })
      expect(run.stdout).toBe("every tenant is at schema version 3")
      yield* Effect.sleep("1 second")
      expect(yield* stats).toEqual(before)
    }))

  it.effect("a claim left by a runner that died is taken over after 15 minutes; a live claim is left alone", () =>
    Effect.gen(function*() {
      const m = yield* migrator
      const sql = yield* PlatformDb
      yield* Effect.forEach(["sa", "sb", "sc"], create, { concurrency: 3, discard: true })
      // sa: a runner claimed it, migrated its database, and died before recording the new version.
      // sb: a runner is at work on it right now.
      // sc: a runner died holding it at the latest version (a failed tenant, retried after the failing
      //     migration was withdrawn): nothing is left to run, but the claim must still be released.
      yield* sql`UPDATE tenants SET migration_state = 'migrating', schema_version = 2,
                 updated_at = now() - interval '20 minutes' WHERE id = 'sa'`.pipe(Effect.orDie)
      yield* sql`UPDATE tenants SET migration_state = 'migrating', schema_version = 2 WHERE id = 'sb'`.pipe(Effect.orDie)
      yield* sql`UPDATE tenants SET migration_state = 'migrating', updated_at = now() - interval '20 minutes'
                 WHERE id = 'sc'`.pipe(Effect.orDie)
      expect((yield* m.status).tenants.filter((t) => t.id.startsWith("s")).map((t) => [t.id, t.state])).toEqual([
        ["sa", "migrating"],
        ["sb", "migrating"],
        ["sc", "migrating"]
      ])

      const run = yield* migrateAll(m)
      // sb is behind too, but claimed by a live runner: skipped.
      const summary = summaryOf(run)
      expect({ ...summary, migrated: [...summary.migrated].sort() }).toEqual({
        latest: 3,
        migrated: ["sa", "sc"],
        failed: [],
        skipped: ["sb"]
      })
      const after = (yield* m.status).tenants.filter((t) => t.id.startsWith("s"))
      expect(after).toEqual([
        { id: "sa", state: "current", version: 3, error: null },
        { id: "sb", state: "migrating", version: 2, error: null },
        { id: "sc", state: "current", version: 3, error: null }
      ])
      // The live claim keeps its tenant out of service until its runner is done.
      const refused = yield* Effect.flip(Effect.flatMap(TenantSession, (s) => s.sql`SELECT 1`).pipe(withTenant("sb")))
      expect(refused._tag).toBe("TenantUnavailable")
      // (Its runner finishes.)
      yield* sql`UPDATE tenants SET migration_state = 'current', schema_version = 3 WHERE id = 'sb'`.pipe(Effect.orDie)
    }))

  it.effect("after the platform connections are lost, a server still drops a tenant's context when the tenant changes", () =>
    Effect.gen(function*() {
      yield* create("relisten")
      const token = yield* userToken("relisten")
      expect(yield* noteTitles(token)).toEqual([])
      // The tenant's context is cached. Then every connection to the platform database is cut
      // (a PostgreSQL restart, a proxy's idle timeout), the listening ones included.
      const { platformDatabase } = namesOf(namespace)
      const cut = yield* adminQuery<{ n: number }>(
        `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
         WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'`,
        [platformDatabase]
      )
      expect(cut[0]!.n).toBeGreaterThan(0)
      // The account directory notices (it then stops using its cache), and listens again.
      const directory = yield* AccountDirectory
      const listening = Effect.map(directory.stats, (stats) => stats.listening)
      for (let i = 0; i < 100 && (yield* listening); i++) yield* Effect.sleep("50 millis")
      expect(yield* listening).toBe(false)
      for (let i = 0; i < 200 && !(yield* listening); i++) yield* Effect.sleep("50 millis")
      expect(yield* listening).toBe(true)

      // A migration runner elsewhere claims the tenant (the trigger announces it): its requests get 503...
      const sql = yield* PlatformDb
      yield* sql`UPDATE tenants SET migration_state = 'migrating', updated_at = now() WHERE id = 'relisten'`.pipe(
        Effect.orDie
      )
      const statusNow = Effect.map(request("GET", "/v1/notes", { token }), (reply) => reply.status)
      let seen = yield* statusNow
      for (let i = 0; i < 50 && seen !== 503; i++) {
        yield* Effect.sleep("100 millis")
        seen = yield* statusNow
      }
      expect(seen).toBe(503)
      // ...and serve again once it is done.
      yield* sql`UPDATE tenants SET migration_state = 'current', updated_at = now() WHERE id = 'relisten'`.pipe(
        Effect.orDie
      )
      expect(yield* statusNow).toBe(200)
    }))

  it.effect("delete: database, role and rows gone; its tokens get 403; other tenants unaffected; unknown → 404", () =>
    Effect.gen(function*() {
      const tenantAdmin = yield* admin
      const issuer = yield* TestIssuer
      const adminToken = yield* issuer.admin()
      yield* create("doomed")
      yield* create("survivor")
      yield* tenantAdmin.registerClient("doomed", "doomed-svc", "Doomed service").pipe(Effect.orDie)
      yield* tenantAdmin.addDomain("doomed", "doomed.example").pipe(Effect.orDie)
      const user = yield* userToken("doomed")
      const machine = yield* issuer.machine("doomed-svc", { scopes: ["notes:read", "notes:write"] })
      const other = yield* userToken("survivor")
      yield* writeNote(user, "doomed note")
      yield* writeNote(machine, "doomed machine note")
      yield* writeNote(other, "survivor note")
      // Both principals are now cached by the directory and the tenant's pool is open.
      expect((yield* request("GET", "/v1/me", { token: machine })).status).toBe(200)
      const database = yield* dbOf("doomed")
      expect(yield* databaseExists(database)).toBe(true)

      const deleted = yield* request("DELETE", "/v1/admin/tenants/doomed", { token: adminToken })
      expect(deleted.status, deleted.text).toBe(204)

      expect(yield* databaseExists(database)).toBe(false)
      expect(yield* roleExists(database)).toBe(false)
      const rows = yield* Effect.flatMap(PlatformDb, (sql) =>
        sql<{ tenants: number; accounts: number; clients: number; domains: number }>`
          SELECT (SELECT count(*)::int FROM tenants WHERE id = 'doomed') AS tenants,
                 (SELECT count(*)::int FROM accounts WHERE tenant_id = 'doomed') AS accounts,
                 (SELECT count(*)::int FROM service_clients WHERE tenant_id = 'doomed') AS clients,
                 (SELECT count(*)::int FROM tenant_domains WHERE tenant_id = 'doomed') AS domains`.pipe(Effect.orDie))
      expect(rows[0]).toEqual({ tenants: 0, accounts: 0, clients: 0, domains: 0 })

      // Its tokens now get the contract's 403s, on the very next request.
      const asUser = yield* request("GET", "/v1/notes", { token: user })
      expect({ status: asUser.status, error: errorOf(asUser) }).toEqual({ status: 403, error: "no_tenant" })
      const asMachine = yield* request("GET", "/v1/notes", { token: machine })
      expect({ status: asMachine.status, error: errorOf(asMachine) }).toEqual({ status: 403, error: "unknown_client" })
      // A new user with the deleted tenant's email domain is not placed there either.
      const byDomain = yield* issuer.user("newcomer", { email: "newcomer@doomed.example", scopes: ["notes:read"] })
      const newcomer = yield* request("GET", "/v1/me", { token: byDomain })
      expect({ status: newcomer.status, error: errorOf(newcomer) }).toEqual({ status: 403, error: "no_tenant" })

      // The other tenant is untouched.
      expect(yield* noteTitles(other)).toEqual(["survivor note"])
      const listed = yield* request("GET", "/v1/admin/tenants", { token: adminToken })
      expect(bodyOf(listed, Bodies.tenants).items.map((t) => t.id)).not.toContain("doomed")
      expect(bodyOf(listed, Bodies.tenants).items.map((t) => t.id)).toContain("survivor")

      // Deleting it again, or a tenant that never was: 404.
      for (const id of ["doomed", "never-was"]) {
        const again = yield* request("DELETE", `/v1/admin/tenants/${id}`, { token: adminToken })
        expect({ status: again.status, error: errorOf(again) }, again.text).toEqual({ status: 404, error: "not_found" })
      }
      expect((yield* Effect.flip(tenantAdmin.remove("never-was")))._tag).toBe("TenantNotFound")
      // Without the admin scope: refused, nothing deleted.
      const notAdmin = yield* request("DELETE", "/v1/admin/tenants/survivor", { token: other })
      expect(notAdmin.status).toBe(403)
      expect(yield* databaseExists(yield* dbOf("survivor"))).toBe(true)

      // The id can be used again, for a new and empty tenant.
      yield* create("doomed")
      const fresh = yield* userToken("doomed", "someone-else")
      expect(yield* noteTitles(fresh)).toEqual([])
    }))

  it.effect("delete waits for work in flight in this process, refusing new requests meanwhile", () =>
    Effect.gen(function*() {
      const tenantAdmin = yield* admin
      const contexts = yield* TenantContexts
      yield* create("busy")
      const token = yield* userToken("busy")
      yield* writeNote(token, "busy note")
      const database = yield* dbOf("busy")

      // A unit of work holding the tenant's context, as a request in flight does.
      const held = yield* Scope.make()
      yield* contexts.get("busy").pipe(Scope.extend(held), Effect.orDie)
      const removal = yield* Effect.fork(tenantAdmin.remove("busy"))
      yield* Effect.sleep("500 millis")
      expect(removal.unsafePoll()).toBeNull()
      expect(yield* databaseExists(database)).toBe(true)
      const meanwhile = yield* request("GET", "/v1/notes", { token })
      expect({ status: meanwhile.status, error: errorOf(meanwhile) }).toEqual({
        status: 403,
        error: "tenant_suspended"
      })

      yield* Scope.close(held, Exit.void)
      yield* Fiber.join(removal)
      expect(yield* databaseExists(database)).toBe(false)
      expect((yield* contexts.stats).references).toBe(0)
    }))

  it.effect("a delete made by another process waits for this process's work in flight, then drops", () =>
    Effect.gen(function*() {
      const contexts = yield* TenantContexts
      yield* create("shared")
      yield* writeNote(yield* userToken("shared"), "shared note")
      const database = yield* dbOf("shared")
      const deleting = Effect.map(platformRow("shared"), (row) => row === undefined ? "gone" : "there")

      // Work in flight here: it holds the tenant's context (and its pool).
      const held = yield* Scope.make()
      const context = yield* contexts.get("shared").pipe(Scope.extend(held), Effect.orDie)
      const countNotes = Effect.flatMap(TenantSession, (s) => s.sql<{ n: number }>`SELECT count(*)::int AS n FROM notes`).pipe(
        Effect.provide(context),
        Effect.orDie,
        Effect.map((rows) => rows[0]!.n)
      )
      // Another process (its own platform services) deletes the tenant.
      const otherProcess = platformWith(Migrations)
      const removal = yield* Effect.fork(
        Effect.flatMap(TenantAdmin, (other) => Effect.orDie(other.remove("shared"))).pipe(Effect.provide(otherProcess))
      )
      const status = Effect.flatMap(PlatformDb, (sql) =>
        sql<{ status: string }>`SELECT status FROM tenants WHERE id = 'shared'`.pipe(
          Effect.orDie,
          Effect.map((rows) => rows[0]?.status ?? "gone")
        ))
      for (let i = 0; i < 300 && (yield* status) === "active"; i++) yield* Effect.sleep("50 millis")
      expect(yield* status).toBe("deleting")
      yield* Effect.sleep("1 second")
      // It waits: the work in flight still reaches its database.
      expect(removal.unsafePoll()).toBeNull()
      expect(yield* countNotes).toBe(1)

      // Done here: the other process goes on and drops it.
      yield* Scope.close(held, Exit.void)
      yield* Fiber.join(removal)
      expect(yield* databaseExists(database)).toBe(false)
      expect(yield* roleExists(database)).toBe(false)
      expect(yield* deleting).toBe("gone")
    }))
})

// --- status over a large fleet: rows only, no tenant database behind them ---

/** A PlatformDb that counts the statements made through it. */
const countingPlatform = (counter: { statements: number }) =>
  Layer.effect(
    PlatformDb,
    Effect.map(PlatformDb, (sql) =>
      new Proxy(sql, {
        apply: (target, self, args) => {
          counter.statements++
          return Reflect.apply(target, self, args)
        }
      }))
  )

const statusNamespace = makeNamespace()

const StatusMigrations = Layer.succeed(
  TenantMigrations,
  Migrator.fromRecord({ "0001_notes": notesMigration, "0002_tags": migration2 })
)

layer(
  Layer.mergeAll(PlatformDb.layer, StatusMigrations).pipe(
    Layer.provideMerge(testConfig({ adminUrl }, statusNamespace)),
    Layer.provide(Logger.minimumLogLevel(LogLevel.Warning))
  ),
  { excludeTestServices: true, timeout: 120_000 }
)("fleet status", (it) => {
  it.effect("status over 2,000 tenants is one query on the platform database", () =>
    Effect.gen(function*() {
      const sql = yield* PlatformDb
      const { databasePrefix } = yield* TenancyConfig
      // 2,000 rows: most current (at 2), some behind, failed, being migrated; a few not counted at all.
      yield* sql`
        INSERT INTO tenants (id, name, status, db_server, db_name, db_role, db_password,
                             schema_version, migration_state, migration_error)
        SELECT 'fake-' || lpad(i::text, 4, '0'), 'Fake ' || i,
               CASE WHEN i % 50 = 0 THEN 'suspended' ELSE 'active' END,
               'default', ${databasePrefix} || 'fake_' || i, ${databasePrefix} || 'fake_' || i, 'x',
               CASE WHEN i % 10 = 1 THEN 1 ELSE 2 END,
               CASE WHEN i % 100 = 7 THEN 'failed' WHEN i % 100 = 8 THEN 'migrating' ELSE 'current' END,
               CASE WHEN i % 100 = 7 THEN 'relation "tags" already exists' END
        FROM generate_series(1, 2000) AS i`.pipe(Effect.orDie)
      yield* sql`
        INSERT INTO tenants (id, name, status, db_server, db_name, db_role, db_password)
        VALUES ('fake-provisioning', 'P', 'provisioning', 'default', 'p1', 'p1', 'x'),
               ('fake-deleting', 'D', 'deleting', 'default', 'd1', 'd1', 'x')`.pipe(Effect.orDie)

      const counter = { statements: 0 }
      const report = yield* Effect.flatMap(TenantMigrator, (m) =>
        Effect.gen(function*() {
          const started = performance.now()
          const status = yield* m.status
          const millis = performance.now() - started
          // Printed, not asserted: it depends on the machine.
          console.log(`fleet status of ${status.tenants.length} tenants: ${millis.toFixed(1)} ms, ${counter.statements} statement(s)`)
          return status
        })).pipe(Effect.provide(TenantMigrator.layer.pipe(
          Layer.provide(Layer.merge(countingPlatform(counter), TenantDatabases.layer))
        )))

      expect(counter.statements).toBe(1)
      expect(report.latest).toBe(2)
      expect(report.tenants.length).toBe(2000)
      // i % 100 = 7 → failed (20), = 8 → migrating (20); of the rest, i % 10 = 1 → behind (200); current otherwise.
      expect(report.counts).toEqual({ current: 1760, behind: 200, migrating: 20, failed: 20 })
      expect(report.tenants.find((t) => t.id === "fake-0007")).toEqual({
        id: "fake-0007",
        state: "failed",
        version: 2,
        error: "relation \"tags\" already exists"
      })
      expect(report.tenants.map((t) => t.id)).not.toContain("fake-provisioning")
    }))
})
