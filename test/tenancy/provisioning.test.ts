import { expect, layer } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import * as Migrator from "@effect/sql/Migrator"
import { Effect, Either, Exit, Fiber, Layer, Redacted } from "effect"
import Pg from "pg"
import notesMigration from "../../migrations/tenant/0001_notes.js"
import { NoteService } from "../../src/notes/NoteService.js"
import { PlatformDb } from "../../src/platform/PlatformDb.js"
import { TenancyConfig } from "../../src/tenancy/TenancyConfig.js"
import { withTenant } from "../../src/tenancy/TenantContexts.js"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { tenantUrl } from "../../src/tenancy/TenantPlacement.js"
import { TenantMigrations } from "../../src/tenancy/TenantMigrations.js"
import { TestTenancy, testConfig, TestUser } from "../../src/testing/index.js"
import { adminQuery, adminUrl, databasesWithPrefix, rolesWithPrefix, typedFailure } from "./support.js"

/** What exists on the server and in the registry under this namespace. */
const snapshot = Effect.gen(function*() {
  const { databasePrefix } = yield* TenancyConfig
  const platform = yield* PlatformDb
  return {
    databases: yield* databasesWithPrefix(databasePrefix),
    roles: yield* rolesWithPrefix(databasePrefix),
    rows: yield* platform<{ id: string; status: string; db_password: string; created_at: Date }>`
      SELECT id, status, db_password, created_at FROM tenants ORDER BY id`.pipe(Effect.orDie)
  }
})

const median = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

layer(TestTenancy({ adminUrl }), { excludeTestServices: true, timeout: 120_000 })("provisioning", (it) => {
  it.effect("invalid ids and names are refused with InvalidTenant and nothing is created", () =>
    Effect.gen(function*() {
      const databases = yield* TenantDatabases
      // Prepare the template first, so that the comparison below is about the tenant alone.
      yield* databases.provision("valid-one", "Valid")
      const before = yield* snapshot
      const badIds = [
        "",
        "a",
        "A",
        "Acme",
        "1abc",
        "-abc",
        "a_b",
        "a b",
        "a.b",
        " ab",
        "ab ",
        "ab\n",
        "ab\u0000",
        "tenant-ü",
        "ab'c",
        "ab\"; DROP DATABASE postgres; --",
        "x".repeat(64)
      ]
      for (const id of badIds) {
        const error = yield* typedFailure(databases.provision(id, "Name"), `id ${JSON.stringify(id)}`)
        expect(error._tag, JSON.stringify(id)).toBe("InvalidTenant")
      }
      for (const name of ["", "n".repeat(201), "nul\u0000"]) {
        const error = yield* typedFailure(databases.provision("good-id", name), `name ${JSON.stringify(name)}`)
        expect(error._tag).toBe("InvalidTenant")
      }
      expect(yield* snapshot).toEqual(before)
      expect(Either.isLeft(yield* Effect.either(databases.find("good-id")))).toBe(true)
    }))

  it.effect("ids of up to 63 characters work, even when their database names would collide once truncated", () =>
    Effect.gen(function*() {
      const databases = yield* TenantDatabases
      // 63 characters: the longest id the contract allows; the two differ only at the end.
      const first = "l" + "x".repeat(61) + "1"
      const second = "l" + "x".repeat(61) + "2"
      const a = yield* databases.provision(first, "First")
      const b = yield* databases.provision(second, "Second")
      const note = yield* Effect.flatMap(NoteService, (s) => s.create({ title: "in first", body: "" })).pipe(
        withTenant(a.id),
        Effect.provide(TestUser(a))
      )
      const inSecond = yield* Effect.flatMap(NoteService, (s) => s.list()).pipe(withTenant(b.id))
      expect(inSecond.items).toEqual([])
      const inFirst = yield* Effect.flatMap(NoteService, (s) => s.get(note.id)).pipe(withTenant(a.id))
      expect(inFirst.title).toBe("in first")
      const pa = yield* databases.placement(first)
      const pb = yield* databases.placement(second)
      expect(pa.database).not.toBe(pb.database)
      expect(pa.role).not.toBe(pb.role)
      // The names recorded are the names PostgreSQL has.
      const { databasePrefix } = yield* TenancyConfig
      const names = yield* databasesWithPrefix(databasePrefix)
      expect(names).toContain(pa.database)
      expect(names).toContain(pb.database)
    }))

  it.effect("a duplicate id is TenantAlreadyExists and changes nothing", () =>
    Effect.gen(function*() {
      const databases = yield* TenantDatabases
      const tenant = yield* databases.provision("dup", "Original")
      const note = yield* Effect.flatMap(NoteService, (s) => s.create({ title: "kept", body: "" })).pipe(
        withTenant("dup"),
        Effect.provide(TestUser(tenant))
      )
      const placement = yield* databases.placement("dup")
      const before = yield* snapshot
      for (const name of ["Original", "Another name"]) {
        const error = yield* typedFailure(databases.provision("dup", name), name)
        expect(error._tag).toBe("TenantAlreadyExists")
      }
      expect(yield* snapshot).toEqual(before)
      expect(yield* databases.find("dup")).toEqual(tenant)
      const after = yield* databases.placement("dup")
      expect(Redacted.value(after.login.password)).toBe(Redacted.value(placement.login.password))
      const still = yield* Effect.flatMap(NoteService, (s) => s.get(note.id)).pipe(withTenant("dup"))
      expect(still).toEqual(note)
    }))

  it.effect("five concurrent provisionings of one id: one succeeds, four get TenantAlreadyExists", () =>
    Effect.gen(function*() {
      const databases = yield* TenantDatabases
      const results = yield* Effect.all(
        Array.from({ length: 5 }, () => Effect.either(databases.provision("race", "Race"))),
        { concurrency: "unbounded" }
      )
      expect(results.filter(Either.isRight)).toHaveLength(1)
      const failures = results.filter(Either.isLeft).map((e) => e.left._tag)
      expect(failures).toEqual(Array(4).fill("TenantAlreadyExists"))
      const { databasePrefix } = yield* TenancyConfig
      const placement = yield* databases.placement("race")
      const dbs = (yield* databasesWithPrefix(databasePrefix)).filter((d) => d === placement.database)
      expect(dbs).toHaveLength(1)
      const rows = (yield* snapshot).rows.filter((r) => r.id === "race")
      expect(rows.map((r) => r.status)).toEqual(["active"])
      // And it works.
      const page = yield* Effect.flatMap(NoteService, (s) => s.list()).pipe(withTenant("race"))
      expect(page.items).toEqual([])
    }))

  it.effect("an interrupted provisioning leaves nothing behind and the id can be provisioned again", () =>
    Effect.gen(function*() {
      const databases = yield* TenantDatabases
      const { databasePrefix } = yield* TenancyConfig
      for (const [i, delay] of [0, 3, 10, 25, 60].entries()) {
        const id = `interrupted-${i}`
        const fiber = yield* Effect.fork(databases.provision(id, "Interrupted"))
        yield* Effect.sleep(`${delay} millis`)
        const exit = yield* Fiber.interrupt(fiber)
        const dbName = databases.databaseName(id)
        const state = yield* snapshot
        // It finished before the interruption arrived, or the interruption
        // landed only after its last, uninterruptible step (the fiber then still
        // exits interrupted): either way the tenant must be whole.
        if (Exit.isSuccess(exit) || state.rows.some((r) => r.id === id)) {
          expect(state.rows.find((r) => r.id === id)?.status).toBe("active")
          expect(state.databases).toContain(dbName)
          continue
        }
        expect(state.rows.find((r) => r.id === id), `after ${delay} ms`).toBeUndefined()
        expect(state.databases, `after ${delay} ms`).not.toContain(dbName)
        expect(state.roles, `after ${delay} ms`).not.toContain(dbName)
        const tenant = yield* databases.provision(id, "Again")
        expect(tenant.id).toBe(id)
        expect(yield* databasesWithPrefix(databasePrefix)).toContain(dbName)
      }
    }))

  it.effect("provisioning time of one tenant (median of 10)", () =>
    Effect.gen(function*() {
      const databases = yield* TenantDatabases
      const times: Array<number> = []
      for (let i = 0; i < 10; i++) {
        const start = performance.now()
        yield* databases.provision(`timed-${i}`, `Timed ${i}`)
        times.push(performance.now() - start)
      }
      const m = median(times)
      console.log(
        `provisioning one tenant: median ${m.toFixed(1)} ms over 10 (${times.map((t) => t.toFixed(0)).join(", ")} ms)`
      )
      expect(times).toHaveLength(10)
    }))
})

// --- migrations that fail: TenantDatabases composed by hand with a loader of our own ---

const brokenMigration = Effect.flatMap(SqlClient.SqlClient, (sql) => sql`ALTER TABLE no_such_table ADD COLUMN x int`)
const goodLoader = Migrator.fromRecord({ "0001_notes": notesMigration })
/** Fails on a fresh template. */
const failingFromScratch = Migrator.fromRecord({ "0001_notes": notesMigration, "0002_broken": brokenMigration })
/** Fails after a good template exists: the second migration is the broken one. */
const failingUpgrade = Migrator.fromRecord({
  "0001_notes": notesMigration,
  "0002_tags": Effect.flatMap(SqlClient.SqlClient, (sql) => sql`ALTER TABLE notes ADD COLUMN tags text[]`),
  "0003_broken": brokenMigration
})

const tenantDatabasesWith = (loader: Migrator.Loader) =>
  TenantDatabases.layer.pipe(Layer.provide(Layer.succeed(TenantMigrations, loader)))

layer(PlatformDb.layer.pipe(Layer.provideMerge(testConfig({ adminUrl }))), {
  excludeTestServices: true,
  timeout: 120_000
})("provisioning with failing migrations", (it) => {
  it.effect("a failing tenant migration is ProvisioningFailed and leaves nothing behind; a good one then works", () =>
    Effect.gen(function*() {
      const { databasePrefix } = yield* TenancyConfig
      const attempt = (loader: Migrator.Loader, id: string) =>
        Effect.flatMap(TenantDatabases, (databases) => databases.provision(id, "Migrating")).pipe(
          Effect.provide(tenantDatabasesWith(loader))
        )
      const tenantRole = `${databasePrefix}${"mig-a".replaceAll("-", "_")}`

      const first = yield* typedFailure(attempt(failingFromScratch, "mig-a"), "broken from scratch")
      expect(first._tag).toBe("ProvisioningFailed")
      let state = yield* snapshot
      expect(state.rows).toEqual([])
      // No tenant database (nor a half-migrated template) and no tenant role.
      expect(state.databases).toEqual([])
      expect(state.roles).not.toContain(tenantRole)

      const tenant = yield* attempt(goodLoader, "mig-a")
      expect(tenant.id).toBe("mig-a")
      state = yield* snapshot
      expect(state.rows.map((r) => [r.id, r.status])).toEqual([["mig-a", "active"]])
      expect(state.roles).toContain(tenantRole)

      // A good template exists; an upgrade that fails half-way leaves it, and everything else, as it was.
      const before = yield* snapshot
      const upgrade = yield* typedFailure(attempt(failingUpgrade, "mig-b"), "broken upgrade")
      expect(upgrade._tag).toBe("ProvisioningFailed")
      expect(yield* snapshot).toEqual(before)

      const other = yield* attempt(goodLoader, "mig-b")
      expect(other.id).toBe("mig-b")
      // The template was not left half-upgraded: the new tenant has the good schema exactly.
      const columns = yield* adminQuery<{ column_name: string }>(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'notes' ORDER BY column_name",
        [],
        `${databasePrefix}mig_b`
      )
      expect(columns.map((c) => c.column_name)).toEqual(["body", "created_at", "created_by", "id", "title", "updated_at"])
    }))

  it.effect("an interrupted first preparation of the template does not spoil the tenants made after it", () =>
    Effect.gen(function*() {
      const { databasePrefix } = yield* TenancyConfig
      const templateName = `${databasePrefix}template`
      for (const [i, delay] of [0, 10, 20, 50, 120].entries()) {
        // A fresh start: no template, and a TenantDatabases that has not seen one.
        yield* adminQuery(`DROP DATABASE IF EXISTS "${templateName}" WITH (FORCE)`)
        const fiber = yield* Effect.fork(
          Effect.flatMap(TenantDatabases, (databases) => databases.provision(`tpl-cut-${i}`, "Cut")).pipe(
            Effect.provide(tenantDatabasesWith(goodLoader))
          )
        )
        yield* Effect.sleep(`${delay} millis`)
        yield* Fiber.interrupt(fiber)
        // The next process (here: a new TenantDatabases) provisions a tenant whose role can use its notes.
        const placement = yield* Effect.flatMap(TenantDatabases, (databases) =>
          Effect.zipRight(databases.provision(`tpl-next-${i}`, "Next"), databases.placement(`tpl-next-${i}`))).pipe(
            Effect.provide(tenantDatabasesWith(goodLoader))
          )
        const result = yield* Effect.promise(async () => {
          const client = new Pg.Client({ connectionString: Redacted.value(tenantUrl(placement)) })
          await client.connect()
          try {
            await client.query("INSERT INTO notes (title, body, created_by) VALUES ('t', 'b', gen_random_uuid())")
            return { ok: true, count: (await client.query("SELECT count(*)::int AS n FROM notes")).rows[0].n }
          } catch (error) {
            return { ok: false, error: String(error) }
          } finally {
            await client.end()
          }
        })
        expect(result, `interrupted after ${delay} ms`).toEqual({ ok: true, count: 1 })
      }
    }))
})
