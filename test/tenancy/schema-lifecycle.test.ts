import { expect, layer } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import * as Migrator from "@effect/sql/Migrator"
import { Effect, Fiber, Layer, Option } from "effect"
import Pg from "pg"
import notesMigration from "../../migrations/tenant/0001_notes.js"
import { NoteService } from "../../src/notes/NoteService.js"
import { PlatformDb } from "../../src/platform/PlatformDb.js"
import { TenancyConfig } from "../../src/tenancy/TenancyConfig.js"
import { TenantContexts, withTenant } from "../../src/tenancy/TenantContexts.js"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { TenantMigrations } from "../../src/tenancy/TenantMigrations.js"
import { TenantMigrator } from "../../src/tenancy/TenantMigrator.js"
import { TenantSession } from "../../src/tenancy/TenantSession.js"
import { testConfig } from "../../src/testing/TestDatabases.js"
import { TestUser } from "../../src/testing/TestUser.js"
import { adminQuery, adminUrl, typedFailure } from "./support.js"
import { tenancyWith } from "../../src/PlatformLive.js"

/**
 * A schema tenant's life: provisioned in one transaction (so an interruption
 * anywhere leaves nothing), suspended and resumed, migrated with the fleet,
 * deleted with its schema and role, and provisioned again under the same id.
 */

const extra: Record<string, Effect.Effect<void, unknown, SqlClient.SqlClient>> = {}
const Migrations = Layer.succeed(
  TenantMigrations,
  Effect.suspend(() => Migrator.fromRecord({ "0001_notes": notesMigration, ...extra }))
)

const Schemas = tenancyWith(Migrations).pipe(
  Layer.provideMerge(testConfig({ adminUrl, defaultStrategy: "schema" }))
)

const shared = Effect.map(TenancyConfig, (c) => `${c.databasePrefix}_shared`)

/** What the shared database has of a tenant: its schema, its role, the gateway's membership, its tables. */
const traces = (id: string) =>
  Effect.gen(function*() {
    const name = (yield* TenantDatabases).databaseName(id)
    const database = yield* shared
    const [row] = yield* adminQuery<{ schema: boolean; role: boolean; member: boolean; tables: Array<string> }>(
      `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS schema,
              EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) AS role,
              EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid WHERE r.rolname = $1) AS member,
              coalesce((SELECT array_agg(tablename::text ORDER BY tablename) FROM pg_tables WHERE schemaname = $1), '{}') AS tables`,
      [name],
      database
    )
    return row!
  })

const NONE = { schema: false, role: false, member: false, tables: [] }

const notesOf = (id: string) => Effect.flatMap(NoteService, (s) => s.list({ limit: 100 })).pipe(withTenant(id))

layer(Schemas, { excludeTestServices: true, timeout: 120_000 })("schema tenants' lifecycle", (it) => {
  it.effect("provisioning makes the schema, its role, the gateway's membership and the tables, at the latest version", () =>
    Effect.gen(function*() {
      const databases = yield* TenantDatabases
      const tenant = yield* databases.provision("life", "Life")
      expect(tenant.placement.strategy).toBe("schema")
      expect(yield* traces("life")).toEqual({ schema: true, role: true, member: true, tables: ["notes", "schema_migrations"] })
      const [tenantRow] = yield* Effect.flatMap(PlatformDb, (sql) =>
        sql<{ db_password: string | null; schema_version: number }>`
          SELECT db_password, schema_version FROM tenants WHERE id = 'life'`).pipe(Effect.orDie)
      // No credential is kept for a schema tenant: its role cannot log in.
      expect(tenantRow).toEqual({ db_password: null, schema_version: 1 })
      const [login] = yield* adminQuery<{ rolcanlogin: boolean }>(
        "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
        [databases.databaseName("life")]
      )
      expect(login).toEqual({ rolcanlogin: false })
      // Another strategy can be asked for explicitly, next to it.
      const own = yield* databases.provision("life-db", "Own database", { strategy: "database" })
      expect(own.placement).toMatchObject({ strategy: "database", schema: null })
      const note = yield* Effect.flatMap(NoteService, (s) => s.create({ title: "alive", body: "" })).pipe(
        withTenant("life"),
        Effect.provide(TestUser(tenant))
      )
      expect((yield* notesOf("life")).items.map((n) => n.id)).toEqual([note.id])
      expect((yield* notesOf("life-db")).items).toEqual([])
    }))

  it.effect("an interruption anywhere in provisioning leaves no schema, role or row, and the id can be used again", () =>
    Effect.gen(function*() {
      const databases = yield* TenantDatabases
      for (const delay of [0, 1, 3, 5, 8, 12, 20, 35]) {
        const id = `cut-${delay}`
        const fiber = yield* Effect.fork(databases.provision(id, "Cut"))
        yield* Effect.sleep(`${delay} millis`)
        yield* Fiber.interrupt(fiber)
        const found = yield* Effect.option(databases.find(id))
        if (Option.isSome(found)) {
          // Interrupted after the last step: a whole tenant, usable.
          expect(yield* traces(id)).toEqual({ schema: true, role: true, member: true, tables: ["notes", "schema_migrations"] })
          expect((yield* notesOf(id)).items).toEqual([])
        } else {
          expect(yield* traces(id)).toEqual(NONE)
          const rows = yield* Effect.flatMap(PlatformDb, (sql) => sql`SELECT 1 FROM tenants WHERE id = ${id}`)
            .pipe(Effect.orDie)
          expect(rows).toEqual([])
          yield* databases.provision(id, "Again")
          expect((yield* traces(id)).tables).toEqual(["notes", "schema_migrations"])
        }
      }
    }))

  it.effect("concurrent provisionings of one id: one wins, the others get TenantAlreadyExists", () =>
    Effect.gen(function*() {
      const databases = yield* TenantDatabases
      const results = yield* Effect.all(
        Array.from({ length: 4 }, () => Effect.either(databases.provision("race", "Race"))),
        { concurrency: "unbounded" }
      )
      expect(results.filter((r) => r._tag === "Right")).toHaveLength(1)
      expect(results.flatMap((r) => (r._tag === "Left" ? [r.left._tag] : []))).toEqual(Array(3).fill("TenantAlreadyExists"))
    }))

  it.effect("suspended, it is refused; resumed, it serves its notes again", () =>
    Effect.gen(function*() {
      const databases = yield* TenantDatabases
      const tenant = yield* databases.provision("nap", "Nap")
      yield* Effect.flatMap(NoteService, (s) => s.create({ title: "before the nap", body: "" })).pipe(
        withTenant("nap"),
        Effect.provide(TestUser(tenant))
      )
      yield* databases.setStatus("nap", "suspended")
      yield* Effect.flatMap(TenantContexts, (c) => c.invalidate("nap"))
      expect((yield* typedFailure(notesOf("nap"), "suspended"))._tag).toBe("TenantSuspended")
      yield* databases.setStatus("nap", "active")
      expect((yield* notesOf("nap")).items.map((n) => n.title)).toEqual(["before the nap"])
    }))

  it.effect("a fleet migration brings every schema tenant up to date; then a run touches none", () =>
    Effect.gen(function*() {
      const databases = yield* TenantDatabases
      const migrator = yield* TenantMigrator
      const ids = ["fleet-a", "fleet-b", "fleet-c"]
      for (const id of ids) yield* databases.provision(id, id)
      extra["0002_pinned"] = Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql`ALTER TABLE notes ADD COLUMN pinned boolean NOT NULL DEFAULT false`)
      const before = yield* migrator.status
      for (const id of ids) expect(before.tenants.find((t) => t.id === id)?.state).toBe("behind")
      const run = yield* migrator.migrateAll({ progress: "none" })
      for (const id of ids) expect(run.migrated).toContain(id)
      expect(run.failed).toEqual([])
      const database = yield* shared
      for (const id of ids) {
        const columns = yield* adminQuery<{ column_name: string }>(
          "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'notes' ORDER BY 1",
          [databases.databaseName(id)],
          database
        )
        expect(columns.map((c) => c.column_name)).toContain("pinned")
        // The new column is the tenant's to use, through its own session.
        const pinned = yield* Effect.flatMap(TenantSession, ({ sql }) =>
          sql<{ n: number }>`SELECT count(*)::int AS n FROM notes WHERE NOT pinned`).pipe(withTenant(id), Effect.orDie)
        expect(pinned).toEqual([{ n: 0 }])
      }
      const again = yield* migrator.migrateAll({ progress: "none" })
      expect(again).toEqual({ latest: 2, migrated: [], failed: [], skipped: [] })
      delete extra["0002_pinned"]
    }))

  it.effect("delete drops the schema and the role (and the gateway's membership); the id can be provisioned again", () =>
    Effect.gen(function*() {
      const databases = yield* TenantDatabases
      const contexts = yield* TenantContexts
      const tenant = yield* databases.provision("bye", "Bye")
      yield* Effect.flatMap(NoteService, (s) => s.create({ title: "last words", body: "" })).pipe(
        withTenant("bye"),
        Effect.provide(TestUser(tenant))
      )
      yield* databases.remove("bye", contexts.drain("bye", "5 seconds"))
      expect(yield* traces("bye")).toEqual(NONE)
      expect((yield* typedFailure(notesOf("bye"), "deleted"))._tag).toBe("TenantNotFound")
      // The other schema tenants of the shared database are untouched.
      expect((yield* traces("life")).tables).toEqual(["notes", "schema_migrations"])
      expect((yield* notesOf("life")).items.map((n) => n.title)).toEqual(["alive"])
      const back = yield* databases.provision("bye", "Back")
      expect(back.name).toBe("Back")
      expect((yield* notesOf("bye")).items).toEqual([])
      const schema = Pg.escapeIdentifier(databases.databaseName("bye"))
      expect(yield* adminQuery(`SELECT * FROM ${schema}.notes`, [], yield* shared)).toEqual([])
    }))
})
