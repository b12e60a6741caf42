import { expect, layer } from "@effect/vitest"
import type { SqlClient } from "@effect/sql"
import * as Reactivity from "@effect/experimental/Reactivity"
import { Cause, Effect, Exit, Fiber, Layer, Option, Redacted } from "effect"
import Pg from "pg"
import { databaseOf, login } from "../../src/db/DatabaseUrl.js"
import { NoteService } from "../../src/notes/NoteService.js"
import { PlatformConfig } from "../../src/platform/PlatformConfig.js"
import { PlatformDb } from "../../src/platform/PlatformDb.js"
import { changesRole } from "../../src/tenancy/SchemaClient.js"
import { makeSharedPools, SharedPools } from "../../src/tenancy/SharedPools.js"
import { TenancyConfig } from "../../src/tenancy/TenancyConfig.js"
import type { ManagedTenant } from "../../src/tenancy/Tenant.js"
import { TenantContexts, withTenant } from "../../src/tenancy/TenantContexts.js"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { rolePassword } from "../../src/tenancy/TenantPlacement.js"
import { TenantSession } from "../../src/tenancy/TenantSession.js"
import { TestTenancy, TestUser } from "../../src/testing/index.js"
import { adminQuery, adminUrl } from "./support.js"

/**
 * Schema tenants share a database and a pool: what keeps them apart is
 * PostgreSQL's privileges (each tenant's role may use its own schema only),
 * the gateway login that can read nothing by itself, settings that end with
 * each unit of work, and a client that refuses statements taking another
 * role. Each attack here is refused and changes nothing.
 *
 * The shared pool has ONE connection, so every statement of both tenants
 * runs on the same PostgreSQL session: whatever a unit of work left behind
 * would be seen by the next.
 */

/** Runs `f` with a tenant's own SqlClient (its TenantSession). */
const asTenant = <A, E>(tenantId: string, f: (sql: SqlClient.SqlClient) => Effect.Effect<A, E>) =>
  Effect.flatMap(TenantSession, ({ sql }) => f(sql)).pipe(withTenant(tenantId))

/** The SQLSTATE of a failed statement (the SqlError's cause), or "ok". */
const outcome = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.exit(effect), (exit) => {
    if (Exit.isSuccess(exit)) return "ok"
    const failure = Cause.failureOption(exit.cause)
    if (Option.isNone(failure)) return `defect: ${Cause.pretty(exit.cause)}`
    const cause: unknown = typeof failure.value === "object" && failure.value !== null && "cause" in failure.value
      ? failure.value.cause
      : undefined
    const code: unknown = typeof cause === "object" && cause !== null && "code" in cause ? cause.code : undefined
    return typeof code === "string" ? code : "refused by the client"
  })

const whoAmI = (tenantId: string) =>
  asTenant(tenantId, (sql) =>
    sql<{ user: string; path: string; notes: number }>`
      SELECT current_user AS user, current_setting('search_path') AS path, (SELECT count(*)::int FROM notes) AS notes`)
    .pipe(Effect.orDie, Effect.map((rows) => rows[0]!))

const setUp = Effect.gen(function*() {
  const databases = yield* TenantDatabases
  const existing = yield* Effect.option(databases.find("victim"))
  const victim: ManagedTenant = Option.isSome(existing)
    ? existing.value
    : yield* Effect.orDie(databases.provision("victim", "Victim"))
  const attacker = Option.isSome(existing)
    ? yield* Effect.orDie(databases.find("attacker"))
    : yield* Effect.orDie(databases.provision("attacker", "Attacker"))
  if (Option.isNone(existing)) {
    yield* Effect.flatMap(NoteService, (s) => s.create({ title: "victim's secret", body: "only mine" })).pipe(
      withTenant(victim.id),
      Effect.provide(TestUser(victim)),
      Effect.orDie
    )
  }
  const { databasePrefix } = yield* TenancyConfig
  return { victim, attacker, schemaOf: databases.databaseName, shared: `${databasePrefix}_shared` }
})

/** The victim's notes as the administrator sees them. */
const victimNotes = (shared: string, schema: string) =>
  adminQuery<{ title: string; body: string }>(`SELECT title, body FROM ${Pg.escapeIdentifier(schema)}.notes ORDER BY title`, [], shared)

layer(
  TestTenancy({ adminUrl, defaultStrategy: "schema", sharedPoolConnections: 1, acquireTimeout: "10 seconds" }),
  { excludeTestServices: true, timeout: 120_000 }
)("schema tenants under attack", (it) => {
  it.effect("both tenants are schema tenants in one shared database, on a pool of one connection", () =>
    Effect.gen(function*() {
      const { attacker, shared, victim } = yield* setUp
      expect(victim.placement.strategy).toBe("schema")
      expect(attacker.placement.database).toBe(shared)
      expect(victim.placement.database).toBe(shared)
      expect(attacker.placement.schema).not.toBe(victim.placement.schema)
      yield* whoAmI(attacker.id)
      yield* whoAmI(victim.id)
      const stats = yield* Effect.flatMap(TenantContexts, (c) => c.stats)
      expect(stats.connections).toBe(1)
    }))

  it.effect("naming another tenant's schema is refused by PostgreSQL, for reads and every kind of write", () =>
    Effect.gen(function*() {
      const { attacker, schemaOf, shared, victim } = yield* setUp
      const before = yield* victimNotes(shared, schemaOf(victim.id))
      const other = Pg.escapeIdentifier(schemaOf(victim.id))
      const attacks = [
        `SELECT * FROM ${other}.notes`,
        `INSERT INTO ${other}.notes (title, body, created_by) VALUES ('pwned', '', gen_random_uuid())`,
        `UPDATE ${other}.notes SET body = 'pwned'`,
        `DELETE FROM ${other}.notes`,
        `SELECT * FROM ${other}.schema_migrations`,
        `CREATE TABLE ${other}.planted (x int)`
      ]
      for (const attack of attacks) {
        expect(yield* outcome(asTenant(attacker.id, (sql) => sql.unsafe(attack))), attack).toBe("42501")
      }
      // A search path that names the other schema finds nothing it may read.
      const viaPath = yield* outcome(asTenant(attacker.id, (sql) =>
        sql.withTransaction(Effect.zipRight(sql.unsafe(`SET LOCAL search_path TO ${other}`), sql`SELECT * FROM notes`))))
      // Without USAGE on the schema, the search path skips it: the table is not there for it.
      expect(viaPath).toBe("42P01")
      expect(yield* victimNotes(shared, schemaOf(victim.id))).toEqual(before)
      expect(before).toEqual([{ title: "victim's secret", body: "only mine" }])
    }))

  it.effect("no statement of a tenant can take another tenant's role", () =>
    Effect.gen(function*() {
      const { attacker, schemaOf, shared, victim } = yield* setUp
      const before = yield* victimNotes(shared, schemaOf(victim.id))
      const role = Pg.escapeIdentifier(schemaOf(victim.id))
      const literal = Pg.escapeLiteral(schemaOf(victim.id))
      const steal = `SELECT title FROM ${Pg.escapeIdentifier(schemaOf(victim.id))}.notes`
      const refusedByClient = [
        `SET ROLE ${role}`,
        `set local role ${role}`,
        `SET SESSION ROLE ${role}`,
        `/* hidden */ SET ROLE ${role}`,
        `SELECT 1; SET ROLE ${role}; ${steal}`,
        `-- a comment\nSET ROLE ${role}`,
        `RESET ROLE`,
        `SET SESSION AUTHORIZATION ${role}`
      ]
      for (const attack of refusedByClient) {
        expect(changesRole(attack), attack).toBe(true)
        expect(yield* outcome(asTenant(attacker.id, (sql) => sql.unsafe(attack))), attack).toBe("refused by the client")
        // Inside a transaction too, where statements share one connection.
        expect(yield* outcome(asTenant(attacker.id, (sql) => sql.withTransaction(sql.unsafe(attack)))), attack)
          .toBe("refused by the client")
      }
      // The other ways to issue a SET are closed by PostgreSQL in the shared database.
      const refusedByPostgres = [
        `SELECT set_config('role', ${literal}, false)`,
        `SELECT set_config('role', ${literal}, true)`,
        `DO $$ BEGIN EXECUTE 'SET ROLE ' || ${literal}; END $$`
      ]
      for (const attack of refusedByPostgres) {
        expect(yield* outcome(asTenant(attacker.id, (sql) => sql.unsafe(attack))), attack).toBe("42501")
      }
      // And no tenant role is a member of another, so a session as one could not SET ROLE to another.
      const memberships = yield* adminQuery<{ member: boolean }>(
        "SELECT pg_has_role($1, $2, 'MEMBER') AS member",
        [schemaOf(attacker.id), schemaOf(victim.id)],
        shared
      )
      expect(memberships).toEqual([{ member: false }])
      // Not a word about a column named role: an ordinary statement still runs.
      expect(changesRole("UPDATE users SET role = 'admin' WHERE id = 1")).toBe(false)
      expect(yield* victimNotes(shared, schemaOf(victim.id))).toEqual(before)
      expect((yield* whoAmI(attacker.id)).user).toBe(schemaOf(attacker.id))
    }))

  it.effect("the gateway login, with no tenant role taken, reads no tenant's table and enters no other database", () =>
    Effect.gen(function*() {
      const { schemaOf, shared, victim } = yield* setUp
      const platform = yield* PlatformDb
      const { roleSecret } = yield* TenancyConfig
      const [gateway] = yield* platform<{ server: string; login_role: string; login_version: number }>`
        SELECT server, login_role, login_version FROM shared_databases`.pipe(Effect.orDie)
      expect(gateway).toBeDefined()
      const gatewayPassword = Redacted.value(
        rolePassword(roleSecret, { server: gateway!.server, role: gateway!.login_role, version: gateway!.login_version })
      )
      const server = new URL(adminUrl)
      server.username = ""
      server.password = ""
      const connect = (database: string, statements: ReadonlyArray<string>) =>
        Effect.promise(async () => {
          const url = login(server.toString(), { database, user: gateway!.login_role, password: gatewayPassword })
          const client = new Pg.Client({ connectionString: Redacted.value(url) })
          client.on("error", () => {})
          const codes: Array<string> = []
          try {
            await client.connect()
            for (const statement of statements) {
              codes.push(await client.query(statement).then(() => "ok", (e: { code?: string }) => e.code ?? "?"))
            }
          } catch (error) {
            codes.push(typeof error === "object" && error !== null && "code" in error ? String(error.code) : "?")
          } finally {
            await client.end().catch(() => {})
          }
          return codes
        })
      const schema = Pg.escapeIdentifier(schemaOf(victim.id))
      expect(yield* connect(shared, [
        "SELECT current_user",
        `SELECT * FROM ${schema}.notes`,
        `INSERT INTO ${schema}.notes (title, body, created_by) VALUES ('x', '', gen_random_uuid())`,
        `SET search_path TO ${schema}`,
        "SELECT * FROM notes"
      ])).toEqual(["ok", "42501", "42501", "ok", "42P01"])
      // Nor can it connect to the platform database.
      const platformDatabase = databaseOf(yield* Effect.map(PlatformConfig, (c) => c.url))
      expect(yield* connect(platformDatabase, ["SELECT 1"])).toEqual(["42501"])
    }))

  it.scoped("failures, interruptions and cancelled queries leave no role or search path on the shared connection", () =>
    Effect.gen(function*() {
      const { attacker, schemaOf, shared, victim } = yield* setUp
      const databases = yield* TenantDatabases
      // The two sessions composed directly on a pool of one connection that this test holds too.
      const pools = yield* makeSharedPools({ connections: 1, acquireTimeout: "10 seconds" })
      const sessionOf = (id: string) =>
        Effect.flatMap(Effect.orDie(databases.placement(id)), (placement) =>
          Layer.build(TenantSession.layer(placement, { maxConnections: 1, acquireTimeout: "10 seconds" })).pipe(
            Effect.provideService(SharedPools, pools),
            Effect.provide(Reactivity.layer),
            Effect.orDie
          ))
      const sessions = new Map([[attacker.id, yield* sessionOf(attacker.id)], [victim.id, yield* sessionOf(victim.id)]])
      const on = <A, E>(id: string, f: (sql: SqlClient.SqlClient) => Effect.Effect<A, E>) =>
        Effect.flatMap(TenantSession, ({ sql }) => f(sql)).pipe(Effect.provide(sessions.get(id)!))
      const who = (id: string) =>
        on(id, (sql) =>
          sql<{ user: string; path: string; notes: number }>`
            SELECT current_user AS user, current_setting('search_path') AS path, (SELECT count(*)::int FROM notes) AS notes`)
          .pipe(Effect.orDie, Effect.map((rows) => ({ ...rows[0]!, path: rows[0]!.path.replaceAll("\"", "") })))
      const expected = {
        [attacker.id]: { user: schemaOf(attacker.id), path: schemaOf(attacker.id), notes: (yield* who(attacker.id)).notes },
        [victim.id]: { user: schemaOf(victim.id), path: schemaOf(victim.id), notes: (yield* who(victim.id)).notes }
      }
      /** The one connection itself, between units of work: the gateway, its own search path, no transaction. */
      const theConnection = Effect.flatMap(pools.get(yield* Effect.orDie(databases.placement(attacker.id))), (pool) =>
        Effect.promise(() =>
          pool.query<{ user: string; path: string; role: string; in_transaction: boolean }>(
            `SELECT current_user AS user, current_setting('search_path') AS path, current_setting('role') AS role,
                    now() <> statement_timestamp() AS in_transaction`
          )
        ))
      const gatewayAlone = (yield* theConnection).rows
      expect(gatewayAlone).toEqual([{ user: `${shared.slice(0, -"_shared".length)}_gateway`, path: "\"$user\", public", role: "none", in_transaction: false }])
      const bothStillThemselves = Effect.gen(function*() {
        expect(yield* who(attacker.id)).toEqual(expected[attacker.id])
        expect(yield* who(victim.id)).toEqual(expected[victim.id])
        expect((yield* theConnection).rows).toEqual(gatewayAlone)
      })
      const failures: ReadonlyArray<(sql: SqlClient.SqlClient) => Effect.Effect<unknown, unknown>> = [
        // A statement that fails.
        (sql) => sql`SELECT 1 / 0`,
        // A statement that fails inside a transaction, after a write in it (rolled back).
        (sql) =>
          sql.withTransaction(Effect.zipRight(
            sql`INSERT INTO notes (title, body, created_by) VALUES ('rolled back', '', gen_random_uuid())`,
            sql`SELECT 1 / 0`
          )),
        // A transaction that fails in the program, not in PostgreSQL.
        (sql) => sql.withTransaction(Effect.zipRight(sql`SELECT 1`, Effect.fail("changed my mind"))),
        // A query interrupted while it runs (a client that hung up): cancelled on the server.
        (sql) => Effect.timeout(sql`SELECT pg_sleep(5)`, "200 millis"),
        // The same inside a transaction.
        (sql) => Effect.timeout(sql.withTransaction(sql`SELECT pg_sleep(5)`), "200 millis"),
        // A statement refused by the client.
        (sql) => sql.unsafe("SET ROLE postgres")
      ]
      for (const fail of failures) {
        for (const id of [attacker.id, victim.id]) {
          expect(yield* outcome(on(id, fail))).not.toBe("ok")
          yield* bothStillThemselves
        }
      }
      // Interrupted from outside while queued behind the other tenant on the one connection.
      const slow = yield* Effect.fork(on(victim.id, (sql) => sql`SELECT pg_sleep(0.3)`))
      const queued = yield* Effect.fork(on(attacker.id, (sql) => sql`SELECT current_user`))
      yield* Effect.sleep("50 millis")
      yield* Fiber.interrupt(queued)
      yield* Fiber.join(slow).pipe(Effect.orDie)
      yield* bothStillThemselves
      // Nothing is left running or open in a transaction on the server.
      const left = yield* adminQuery<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity
         WHERE datname = $1 AND state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')
           AND pid <> pg_backend_pid()`,
        [shared],
        shared
      )
      expect(left).toEqual([{ n: 0 }])
    }))
})
