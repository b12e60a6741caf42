import { expect, layer } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import Pg from "pg"
import { databaseOf, login } from "../../src/db/DatabaseUrl.js"
import { NoteService } from "../../src/notes/NoteService.js"
import { PlatformConfig } from "../../src/platform/PlatformConfig.js"
import { TenancyConfig } from "../../src/tenancy/TenancyConfig.js"
import type { TenantStrategy } from "../../src/tenancy/Tenant.js"
import { TenantContexts, withTenant } from "../../src/tenancy/TenantContexts.js"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { rolePassword } from "../../src/tenancy/TenantPlacement.js"
import { TestTenancy, TestUser } from "../../src/testing/index.js"
import { STRATEGIES } from "../strategies.js"
import { adminQuery, adminUrl } from "./support.js"

const ident = Pg.escapeIdentifier

/**
 * Connects with the URL and runs the statements in order, stopping at the
 * first refusal: its SQLSTATE, message and which step it was (-1: the
 * connection itself, else the statement's index).
 */
const runAs = (url: string, statements: ReadonlyArray<string>) =>
  Effect.promise(async () => {
    const client = new Pg.Client({ connectionString: url })
    client.on("error", () => {})
    let at = -1
    try {
      await client.connect()
      const results: Array<ReadonlyArray<Record<string, unknown>>> = []
      for (const statement of statements) {
        at++
        results.push((await client.query(statement)).rows)
      }
      return { ok: true as const, results }
    } catch (error) {
      const code = error instanceof Error && "code" in error ? String(error.code) : undefined
      return { ok: false as const, at, code, message: error instanceof Error ? error.message : String(error) }
    } finally {
      await client.end().catch(() => {})
    }
  })

/** Connects as a tenant's login role (database tenants) to a database. */
const asRole = (
  placement: { readonly host: string; readonly role: string; readonly login: { readonly password: Redacted.Redacted<string> } },
  database: string,
  statements: ReadonlyArray<string>
) =>
  runAs(
    Redacted.value(login(placement.host, { database, user: placement.role, password: Redacted.value(placement.login.password) })),
    statements
  )

/** The test server's superuser on another database. */
const adminOn = (database: string) => {
  const url = new URL(adminUrl)
  url.pathname = "/" + encodeURIComponent(database)
  return url.toString()
}

const platformDatabase = Effect.map(PlatformConfig, (config) => databaseOf(config.url))

/** Database tenants: PostgreSQL refuses a tenant's login role in any other tenant's database. */
const databaseRoles = Effect.gen(function*() {
  const databases = yield* TenantDatabases
  yield* databases.provision("dbiso-a", "A")
  yield* databases.provision("dbiso-b", "B")
  const a = yield* databases.placement("dbiso-a")
  const b = yield* databases.placement("dbiso-b")
  expect([a.strategy, b.strategy]).toEqual(["database", "database"])
  expect(a.database).not.toBe(b.database)
  expect(a.role).not.toBe(b.role)

  // A's role into B's database: PostgreSQL itself refuses.
  const intoB = yield* asRole(a, b.database, ["SELECT 1"])
  expect(intoB.ok).toBe(false)
  if (!intoB.ok) {
    expect(intoB.code).toBe("42501")
    expect(intoB.message).toMatch(/permission denied for database/)
  }
  const intoA = yield* asRole(b, a.database, ["SELECT 1"])
  expect(intoA.ok).toBe(false)
  if (!intoA.ok) expect(intoA.code).toBe("42501")

  // Nor can it reach the platform's tenant registry.
  const registry = yield* asRole(a, yield* platformDatabase, ["SELECT db_role FROM tenants"])
  expect(registry.ok).toBe(false)
  if (!registry.ok) expect(registry.code).toBe("42501")

  // Its own database: read and write its notes table.
  const own = yield* asRole(a, a.database, [
    "INSERT INTO notes (title, body, created_by) VALUES ('direct', 'by role', gen_random_uuid()) RETURNING id",
    "SELECT title, body FROM notes",
    "UPDATE notes SET body = 'changed' RETURNING body",
    "DELETE FROM notes RETURNING id",
    "SELECT count(*)::int AS n FROM notes"
  ])
  expect(own.ok).toBe(true)
  if (own.ok) {
    expect(own.results[1]).toEqual([{ title: "direct", body: "by role" }])
    expect(own.results[2]).toEqual([{ body: "changed" }])
    expect(own.results[3]).toHaveLength(1)
    expect(own.results[4]).toEqual([{ n: 0 }])
  }
})

/**
 * Schema tenants: in the shared database a tenant's role (what SchemaClient
 * takes per unit of work, taken here by the administrator with SET ROLE) can
 * use its own schema's notes and nothing of another tenant's; the gateway
 * role the shared pool logs in as reads no tenant's notes by itself, and
 * cannot get into the platform database where its own password is kept.
 */
const schemaRoles = Effect.gen(function*() {
  const databases = yield* TenantDatabases
  const { databasePrefix } = yield* TenancyConfig
  const shared = `${databasePrefix}_shared`
  yield* databases.provision("sciso-a", "A")
  yield* databases.provision("sciso-b", "B")
  const a = yield* databases.placement("sciso-a")
  const b = yield* databases.placement("sciso-b")
  expect([a.strategy, b.strategy]).toEqual(["schema", "schema"])
  expect([a.database, b.database]).toEqual([shared, shared])
  expect([a.schema, a.role]).toEqual([databases.databaseName("sciso-a"), databases.databaseName("sciso-a")])
  expect([b.schema, b.role]).toEqual([databases.databaseName("sciso-b"), databases.databaseName("sciso-b")])
  const notesOfA = `${ident(databases.databaseName("sciso-a"))}.notes`
  const notesOfB = `${ident(databases.databaseName("sciso-b"))}.notes`

  /** The statements as the tenant's role, in the shared database; step 0 is the SET ROLE. */
  const asTenantRole = (role: string, statements: ReadonlyArray<string>) =>
    runAs(adminOn(shared), [`SET ROLE ${ident(role)}`, ...statements])

  // Its own schema: read and write its notes table.
  const own = yield* asTenantRole(a.role, [
    `INSERT INTO ${notesOfA} (title, body, created_by) VALUES ('direct', 'by role', gen_random_uuid()) RETURNING id`,
    `SELECT title, body FROM ${notesOfA}`,
    `UPDATE ${notesOfA} SET body = 'changed' RETURNING body`,
    `DELETE FROM ${notesOfA} RETURNING id`,
    `SELECT count(*)::int AS n FROM ${notesOfA}`
  ])
  expect(own).toMatchObject({ ok: true })
  if (own.ok) {
    expect(own.results[2]).toEqual([{ title: "direct", body: "by role" }])
    expect(own.results[3]).toEqual([{ body: "changed" }])
    expect(own.results[4]).toHaveLength(1)
    expect(own.results[5]).toEqual([{ n: 0 }])
  }

  // The other tenant's schema, either way round: refused by PostgreSQL.
  const refusals: ReadonlyArray<readonly [string, string]> = [
    [a.role, `SELECT count(*) FROM ${notesOfB}`],
    [a.role, `INSERT INTO ${notesOfB} (title, body, created_by) VALUES ('planted', '', gen_random_uuid())`],
    [a.role, `DELETE FROM ${notesOfB}`],
    [b.role, `SELECT count(*) FROM ${notesOfA}`],
    [b.role, `UPDATE ${notesOfA} SET title = 'hijacked'`]
  ]
  for (const [role, statement] of refusals) {
    expect(yield* asTenantRole(role, [statement]), `${role}: ${statement}`).toMatchObject({ ok: false, at: 1, code: "42501" })
  }
  const bySearchPath = yield* asTenantRole(a.role, [
    `SET search_path TO ${ident(databases.databaseName("sciso-b"))}`,
    "SELECT count(*) FROM notes"
  ])
  // Through the search path it is not even seen: a schema without USAGE is skipped.
  expect(bySearchPath).toMatchObject({ ok: false, at: 2, code: "42P01" })

  // Nor the ways to change settings that SchemaClient could not see: set_config and PL/pgSQL.
  for (const statement of ["SELECT set_config('search_path', 'public', true)", "DO $$ BEGIN NULL; END $$"]) {
    expect(yield* asTenantRole(a.role, [statement]), statement).toMatchObject({ ok: false, at: 1, code: "42501" })
  }
  // B's notes are as they were: nothing planted, nothing deleted.
  expect(yield* adminQuery(`SELECT title FROM ${notesOfB}`, [], shared)).toEqual([])

  // The gateway role, with the login recorded for the shared pool.
  const platform = yield* platformDatabase
  const gateways = yield* adminQuery<{ server: string; login_role: string; login_version: number }>(
    "SELECT server, login_role, login_version FROM shared_databases WHERE database = $1",
    [shared],
    platform
  )
  expect(gateways).toHaveLength(1)
  const gateway = gateways[0]!
  const { roleSecret } = yield* TenancyConfig
  const gatewayPassword = rolePassword(roleSecret, {
    server: gateway.server,
    role: gateway.login_role,
    version: gateway.login_version
  })
  const asGateway = (database: string, statements: ReadonlyArray<string>) =>
    runAs(
      Redacted.value(login(a.host, { database, user: gateway.login_role, password: Redacted.value(gatewayPassword) })),
      statements
    )
  // It logs in to the shared database, but by itself (NOINHERIT) reads no tenant's notes.
  expect(yield* asGateway(shared, ["SELECT 1 AS one"])).toEqual({ ok: true, results: [[{ one: 1 }]] })
  expect(yield* asGateway(shared, [`SELECT count(*) FROM ${notesOfA}`])).toMatchObject({ ok: false, at: 0, code: "42501" })
  // The platform database (every tenant, every gateway password): not even a connection.
  const intoPlatform = yield* asGateway(platform, ["SELECT login_version FROM shared_databases"])
  expect(intoPlatform).toMatchObject({ ok: false, at: -1, code: "42501" })
})

/** The second test of each suite: what PostgreSQL itself refuses, per strategy. */
const refusedByPostgres: Record<TenantStrategy, {
  readonly name: string
  readonly test: typeof databaseRoles | typeof schemaRoles
}> = {
  database: { name: "a tenant's role is refused by another tenant's database and can use its own", test: databaseRoles },
  schema: {
    name: "a tenant's role is refused on another tenant's schema and can use its own; the gateway cannot reach the platform",
    test: schemaRoles
  }
}

for (const strategy of STRATEGIES) {
  layer(TestTenancy({ adminUrl, defaultStrategy: strategy }), { excludeTestServices: true, timeout: 120_000 })(
    `tenant isolation (${strategy} tenants)`,
    (it) => {
      it.effect("notes written in one tenant are invisible in another, and cannot be changed from it", () =>
        Effect.gen(function*() {
          const databases = yield* TenantDatabases
          const a = yield* databases.provision("iso-a", "A")
          const b = yield* databases.provision("iso-b", "B")
          expect([a.placement.strategy, b.placement.strategy]).toEqual([strategy, strategy])
          const note = yield* Effect.flatMap(NoteService, (s) => s.create({ title: "secret", body: "of A" })).pipe(
            withTenant(a.id),
            Effect.provide(TestUser(a))
          )
          const inB = yield* Effect.gen(function*() {
            const notes = yield* NoteService
            const page = yield* notes.list()
            const get = yield* Effect.flip(notes.get(note.id))
            const update = yield* Effect.flip(notes.update(note.id, { title: "hijacked", body: "by B" }))
            const remove = yield* Effect.flip(notes.remove(note.id))
            return { page, get, update, remove }
          }).pipe(withTenant(b.id))
          expect(inB.page.items).toEqual([])
          expect(inB.page.nextCursor).toBeNull()
          expect(inB.get._tag).toBe("NoteNotFound")
          expect(inB.update._tag).toBe("NoteNotFound")
          expect(inB.remove._tag).toBe("NoteNotFound")

          // Read as A afterwards: the note is there, exactly as written.
          const inA = yield* Effect.gen(function*() {
            const notes = yield* NoteService
            return { note: yield* notes.get(note.id), page: yield* notes.list() }
          }).pipe(withTenant(a.id))
          expect(inA.note).toEqual(note)
          expect(inA.note.title).toBe("secret")
          expect(inA.note.body).toBe("of A")
          expect(inA.page.items.map((n) => n.id)).toEqual([note.id])

          // B's own note stays in B.
          const ofB = yield* Effect.flatMap(NoteService, (s) => s.create({ title: "of B", body: "" })).pipe(
            withTenant(b.id),
            Effect.provide(TestUser(b))
          )
          const seenByA = yield* Effect.flatMap(NoteService, (s) => Effect.flip(s.get(ofB.id))).pipe(withTenant(a.id))
          expect(seenByA._tag).toBe("NoteNotFound")
          const listedInA = yield* Effect.flatMap(NoteService, (s) => s.list()).pipe(withTenant(a.id))
          expect(listedInA.items.map((n) => n.id)).toEqual([note.id])

          const stats = yield* Effect.flatMap(TenantContexts, (c) => c.stats)
          expect(stats.references).toBe(0)
        }))

      it.effect(refusedByPostgres[strategy].name, () => refusedByPostgres[strategy].test)
    }
  )
}
