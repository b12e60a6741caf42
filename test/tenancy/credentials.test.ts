import { expect, it as plain, layer } from "@effect/vitest"
import { ConfigProvider, Context, Effect, Exit, Layer, Logger, Option, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { mkdtemp, readFile, rm, stat } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import Pg from "pg"
import { readSettings } from "../../src/AppConfig.js"
import { keptRoleSecret } from "../../src/platform/Environment.js"
import { PlatformConfig } from "../../src/platform/PlatformConfig.js"
import { PlatformDb } from "../../src/platform/PlatformDb.js"
import { TenantAdmin } from "../../src/platform/TenantAdmin.js"
import { tenancyWith } from "../../src/PlatformLive.js"
import { ServerRegistry } from "../../src/servers/ServerRegistry.js"
import { TenancyConfig } from "../../src/tenancy/TenancyConfig.js"
import { TenantContexts } from "../../src/tenancy/TenantContexts.js"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { TenantMigrations } from "../../src/tenancy/TenantMigrations.js"
import { scramVerifier } from "../../src/tenancy/ServerAdmin.js"
import { rolePassword } from "../../src/tenancy/TenantPlacement.js"
import { query, secondUrl, titles, TwoServers, writeNote } from "../servers/support.js"

/**
 * Tenant roles' passwords are derived from TENANT_ROLE_SECRET and never kept
 * in the platform database: every value a dump of it holds is tried as the
 * password of every role the engine made, and PostgreSQL refuses them all;
 * rotations give new passwords that the engine (this process and another)
 * logs in with, and the old ones stop working.
 *
 * Passwords are only checked by a server that checks them: the test server
 * may trust 127.0.0.1 (TEST_DATABASE_URL), so the tenants here live on the
 * second server, always an embedded PostgreSQL with scram-sha-256.
 */

const Tenancy = TwoServers()

/** SQLSTATE of a login as `user` with `password` on the second server ("ok" when it logs in). */
const tryLogin = (user: string, password: string, database = "postgres") =>
  Effect.promise(async () => {
    const server = new URL(secondUrl)
    const client = new Pg.Client({
      host: server.hostname,
      port: Number(server.port),
      user,
      password,
      database,
      connectionTimeoutMillis: 10_000
    })
    client.on("error", () => {})
    try {
      await client.connect()
      return "ok"
    } catch (error) {
      return error instanceof Error && "code" in error ? String(error.code) : String(error)
    } finally {
      await client.end().catch(() => {})
    }
  })

/** One statement on the second server as its superuser. */
const onSecond = <R extends Pg.QueryResultRow>(text: string, values: ReadonlyArray<unknown> = []) =>
  query<R>(secondUrl, text, values)

const noteTitles = titles

/** The password the engine logs in with for a tenant now (its role's, or its gateway's), and who as. */
const loginOf = (id: string) =>
  Effect.map(Effect.flatMap(TenantDatabases, (d) => d.placement(id)), (placement) => ({
    user: placement.login.user,
    password: Redacted.value(placement.login.password),
    version: placement.login.version
  }))

/** Every string a value holds: itself, and for JSON every string and key inside it too. */
const stringsIn = (value: unknown): Array<string> => {
  if (typeof value === "string") {
    const inner = (() => {
      try {
        const parsed: unknown = JSON.parse(value)
        return typeof parsed === "object" && parsed !== null ? stringsIn(parsed) : []
      } catch {
        return []
      }
    })()
    return [value, ...inner]
  }
  if (Array.isArray(value)) return value.flatMap(stringsIn)
  if (typeof value === "object" && value !== null) {
    return Object.entries(value).flatMap(([key, inner]) => [key, ...stringsIn(inner)])
  }
  return []
}

/** Every text, varchar, json and jsonb value of every platform table: what a dump of it holds. */
const platformDump = Effect.gen(function*() {
  const sql = yield* PlatformDb
  const columns = yield* sql<{ table_name: string; column_name: string }>`
    SELECT table_name, column_name FROM information_schema.columns
    WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'jsonb', 'json')
    ORDER BY table_name, column_name`.pipe(Effect.orDie)
  const values = new Set<string>()
  for (const { column_name, table_name } of columns) {
    const rows = yield* sql.unsafe<{ value: string }>(
      `SELECT DISTINCT ${Pg.escapeIdentifier(column_name)}::text AS value FROM ${Pg.escapeIdentifier(table_name)}
       WHERE ${Pg.escapeIdentifier(column_name)} IS NOT NULL`
    ).pipe(Effect.orDie)
    for (const { value } of rows) for (const text of stringsIn(value)) values.add(text)
  }
  return { columns, values: [...values].filter((value) => value !== "") }
})

/**
 * The same tenancy as another engine process would have: its own pools,
 * notifications and contexts; with another secret if given, its log lines
 * into `logs`.
 */
const anotherProcessWith = (options: { readonly roleSecret?: Redacted.Redacted<string>; readonly logs?: Array<string> }) =>
  Effect.gen(function*() {
    const platform = yield* PlatformConfig
    const tenancy = yield* TenancyConfig
    const logger = Logger.make(({ message }) => {
      options.logs?.push((Array.isArray(message) ? message : [message]).map(String).join(" "))
    })
    return yield* Layer.build(
      tenancyWith(TenantMigrations.layer).pipe(
        Layer.provide(Layer.succeed(PlatformConfig, { ...platform, maxConnections: 3 })),
        Layer.provide(Layer.succeed(TenancyConfig, { ...tenancy, roleSecret: options.roleSecret ?? tenancy.roleSecret })),
        Layer.provide(options.logs === undefined ? Layer.empty : Logger.replace(Logger.defaultLogger, logger))
      )
    )
  })

const anotherProcess = anotherProcessWith({})

/** Polls `check` every 20 ms for up to 5 s. */
const eventually = <E, R>(check: Effect.Effect<boolean, E, R>) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 5_000
    while (!(yield* check)) {
      if (Date.now() > deadline) return yield* Effect.dieMessage("not within 5 s")
      yield* Effect.sleep("20 millis")
    }
  })

layer(Tenancy, { excludeTestServices: true, timeout: 180_000 })("tenant role credentials", (it) => {
  it.effect("a dump of the platform database holds nothing that logs in as any tenant role or gateway", () =>
    Effect.gen(function*() {
      const admin = yield* TenantAdmin
      const registry = yield* ServerRegistry
      const { databasePrefix } = yield* TenancyConfig
      yield* registry.add("spare", secondUrl)
      yield* admin.create("dump-db", "Database tenant", { strategy: "database", server: "spare" })
      yield* admin.create("dump-sc", "Schema tenant", { strategy: "schema", server: "spare" })
      yield* admin.create("dump-sc2", "Another schema tenant", { strategy: "schema", server: "spare" })
      // Moved: from the other server to this one, and from a schema to a database of its own.
      yield* admin.create("dump-moved", "Moved", { strategy: "database", server: "default" })
      yield* admin.move("dump-moved", { to: "spare" }, () => Effect.void)
      yield* admin.move("dump-sc2", { strategy: "database" }, () => Effect.void)
      yield* admin.rotateCredentials("dump-db")
      // Each has served, so the platform holds what serving leaves (process claims and so on).
      for (const id of ["dump-db", "dump-sc", "dump-sc2", "dump-moved"]) yield* writeNote(id, `note of ${id}`)

      const roles = yield* onSecond<{ rolname: string; rolcanlogin: boolean }>(
        "SELECT rolname, rolcanlogin FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY rolname",
        [databasePrefix]
      )
      const loginRoles = roles.filter((role) => role.rolcanlogin).map((role) => role.rolname)
      // The three database tenants' roles and the gateway.
      expect(loginRoles).toHaveLength(4)

      // The checks bite: the engine's derived passwords log in, a wrong one is refused as such.
      for (const id of ["dump-db", "dump-sc", "dump-sc2", "dump-moved"]) {
        const login = yield* loginOf(id)
        expect(loginRoles).toContain(login.user)
        expect(yield* tryLogin(login.user, login.password), id).toBe("ok")
        expect(yield* tryLogin(login.user, login.password + "x"), id).toBe("28P01")
      }

      const dump = yield* platformDump
      // The dump covers the tables that name the tenants and their logins.
      const tables = new Set(dump.columns.map((column) => column.table_name))
      for (const table of ["tenants", "shared_databases", "servers", "tenant_moves", "engine_processes", "role_secret"]) {
        expect(tables, table).toContain(table)
      }
      expect(dump.values).toContain("dump-moved")
      // Every value as the password of every role the engine made there, NOLOGIN ones
      // included: a wrong password is refused (28P01) before PostgreSQL looks at whether
      // the role may log in at all (28000), so any other answer would mean a match.
      const attempts = roles.flatMap(({ rolname }) => dump.values.map((value) => ({ role: rolname, value })))
      const accepted = yield* Effect.forEach(
        attempts,
        ({ role, value }) => Effect.map(tryLogin(role, value), (code) => ({ role, value, code })),
        { concurrency: 8 }
      )
      console.log(`${dump.values.length} platform values tried against ${roles.length} roles: ${attempts.length} logins`)
      expect(accepted.filter((attempt) => attempt.code !== "28P01")).toEqual([])
    }))

  it.scoped("rotate-credentials: a new password for the role or gateway, the old one refused, every process follows", () =>
    Effect.gen(function*() {
      const admin = yield* TenantAdmin
      const registry = yield* ServerRegistry
      const platform = yield* PlatformDb
      if (!(yield* registry.list).some((server) => server.name === "spare")) yield* registry.add("spare", secondUrl)
      yield* admin.create("rot-db", "Rotated database tenant", { strategy: "database", server: "spare" })
      yield* admin.create("rot-sc", "Rotated schema tenant", { strategy: "schema", server: "spare" })
      yield* writeNote("rot-db", "before")
      yield* writeNote("rot-sc", "before")

      // Another process serves both tenants: its contexts and pools are open.
      const other = yield* anotherProcess
      const inOther = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, other)
      const otherContexts = Context.get(other, TenantContexts)
      expect(yield* inOther(noteTitles("rot-db"))).toEqual(["before"])
      expect(yield* inOther(noteTitles("rot-sc"))).toEqual(["before"])

      // A database tenant: its own role.
      const oldRole = yield* loginOf("rot-db")
      expect(oldRole.version).toBe(1)
      const openedBefore = (yield* otherContexts.stats).opened
      const rotation = yield* admin.rotateCredentials("rot-db")
      expect(rotation).toEqual({
        kind: "role",
        server: "spare",
        role: oldRole.user,
        version: 2,
        converted: false,
        tenants: 1
      })
      const newRole = yield* loginOf("rot-db")
      expect(newRole.version).toBe(2)
      expect(newRole.password).not.toBe(oldRole.password)
      expect(yield* tryLogin(oldRole.user, oldRole.password)).toBe("28P01")
      expect(yield* tryLogin(newRole.user, newRole.password)).toBe("ok")
      expect(yield* platform`SELECT db_password, credential_version FROM tenants WHERE id = 'rot-db'`).toEqual([
        { db_password: null, credential_version: 2 }
      ])
      // This process serves it on a new pool (the old password could not open one).
      yield* writeNote("rot-db", "after")
      // The other process dropped its context (the trigger told it) and opens a new one that logs in.
      yield* eventually(Effect.map(otherContexts.stats, (stats) => stats.closed > 0))
      expect(yield* inOther(noteTitles("rot-db"))).toEqual(["after", "before"])
      expect((yield* otherContexts.stats).opened).toBeGreaterThan(openedBefore)

      // A schema tenant: its sessions log in as the server's gateway, which is rotated.
      const oldGateway = yield* loginOf("rot-sc")
      const closedBefore = (yield* otherContexts.stats).closed
      const gatewayRotation = yield* admin.rotateCredentials("rot-sc")
      expect(gatewayRotation).toMatchObject({ kind: "gateway", server: "spare", role: oldGateway.user, converted: false })
      expect(gatewayRotation.tenants).toBeGreaterThanOrEqual(1)
      const newGateway = yield* loginOf("rot-sc")
      expect(newGateway.version).toBe(oldGateway.version + 1)
      expect(yield* tryLogin(oldGateway.user, oldGateway.password)).toBe("28P01")
      expect(yield* tryLogin(newGateway.user, newGateway.password)).toBe("ok")
      // Both processes' contexts of the schema tenant are dropped; their shared
      // pools stay open and take the new password for the connections they open
      // next. Their gateway connections are ended here, so that the next unit of
      // work needs a new one: it logs in only with the new password.
      yield* eventually(Effect.map(otherContexts.stats, (stats) => stats.closed > closedBefore))
      yield* onSecond(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()",
        [newGateway.user]
      )
      yield* Effect.sleep("300 millis")
      // (A connection the pool still held when it was ended fails once; the next is new.)
      const retried = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        Effect.retry(effect, { times: 2 }).pipe(Effect.catchAllDefect(() => effect))
      yield* retried(writeNote("rot-sc", "after"))
      expect(yield* retried(inOther(noteTitles("rot-sc")))).toEqual(["after", "before"])
      const gatewaySessions = yield* onSecond<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1",
        [newGateway.user]
      )
      expect(gatewaySessions[0]!.n).toBeGreaterThan(0)

      // Refusals: an unknown tenant; nothing changed.
      const unknown = yield* Effect.flip(admin.rotateCredentials("nobody"))
      expect(unknown._tag).toBe("TenantNotFound")
    }))

  it.scoped("a password stored before derived credentials serves until --all converts it, then logs in no more", () =>
    Effect.gen(function*() {
      const admin = yield* TenantAdmin
      const registry = yield* ServerRegistry
      const platform = yield* PlatformDb
      if (!(yield* registry.list).some((server) => server.name === "spare")) yield* registry.add("spare", secondUrl)
      yield* admin.create("legacy-db", "Legacy database tenant", { strategy: "database", server: "spare" })
      yield* admin.create("legacy-sc", "Legacy schema tenant", { strategy: "schema", server: "spare" })
      const role = (yield* loginOf("legacy-db")).user
      const gateway = (yield* loginOf("legacy-sc")).user
      // As a platform database migrated from before 0008 has them: random passwords, stored.
      // (Their versions are left as they are: set back, the shared pool here, which
      // only goes forward, would stay on a later version's password.)
      const stored = { role: "legacy-role-password-1234567890", gateway: "legacy-gateway-password-0987654321" }
      yield* onSecond(`ALTER ROLE ${Pg.escapeIdentifier(role)} PASSWORD '${stored.role}'`)
      yield* onSecond(`ALTER ROLE ${Pg.escapeIdentifier(gateway)} PASSWORD '${stored.gateway}'`)
      yield* platform`UPDATE tenants SET db_password = ${stored.role} WHERE id = 'legacy-db'`
      yield* platform`UPDATE shared_databases SET login_password = ${stored.gateway} WHERE server = 'spare'`
      const [gatewayBefore] = yield* platform<{ login_version: number }>`
        SELECT login_version FROM shared_databases WHERE server = 'spare'`
      expect(yield* loginOf("legacy-db")).toEqual({ user: role, password: stored.role, version: 0 })
      expect(yield* loginOf("legacy-sc")).toEqual({ user: gateway, password: stored.gateway, version: 0 })
      // Served by a process started on that platform database: its shared pool
      // opens on the stored password. (This one's went on to newer versions
      // in the test before, past the version 0 set back here.)
      const logs: Array<string> = []
      const other = yield* anotherProcessWith({ logs })
      const inOther = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, other)
      // It says at start how many there are and how to end them.
      expect(logs).toContain(
        "2 tenant login(s) still have their password stored in the platform database (made before derived " +
          "credentials): run `tenant-engine tenants rotate-credentials --all` to remove them"
      )
      yield* inOther(writeNote("legacy-db", "stored"))
      yield* inOther(writeNote("legacy-sc", "stored"))

      const { failed, rotated } = yield* admin.rotateAllCredentials
      expect(failed).toEqual([])
      expect(rotated).toContainEqual({ kind: "role", server: "spare", role, version: 2, converted: true, tenants: 1 })
      expect(rotated).toContainEqual(
        expect.objectContaining({
          kind: "gateway",
          server: "spare",
          role: gateway,
          version: gatewayBefore!.login_version + 1,
          converted: true
        })
      )
      // Every database tenant's role and every server's gateway that has one.
      const expected = yield* platform<{ n: number }>`
        SELECT (SELECT count(*) FROM tenants WHERE db_strategy = 'database' AND status IN ('active', 'suspended'))
             + (SELECT count(*) FROM shared_databases) AS n`
      expect(rotated).toHaveLength(Number(expected[0]!.n))
      expect(yield* platform`SELECT count(*)::int AS n FROM tenants WHERE db_password IS NOT NULL`).toEqual([{ n: 0 }])
      expect(yield* platform`SELECT count(*)::int AS n FROM shared_databases WHERE login_password IS NOT NULL`).toEqual([
        { n: 0 }
      ])
      expect(yield* tryLogin(role, stored.role)).toBe("28P01")
      expect(yield* tryLogin(gateway, stored.gateway)).toBe("28P01")
      const derived = yield* loginOf("legacy-db")
      expect(derived.version).toBe(2)
      expect(yield* tryLogin(role, derived.password)).toBe("ok")
      // The process follows: its contexts reopen, its shared pool's new connections use the derived password.
      yield* eventually(Effect.map(Context.get(other, TenantContexts).stats, (stats) => stats.closed >= 2))
      yield* inOther(writeNote("legacy-db", "derived"))
      expect(yield* inOther(noteTitles("legacy-db"))).toEqual(["derived", "stored"])
      yield* onSecond("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", [gateway])
      yield* Effect.sleep("300 millis")
      const write = inOther(writeNote("legacy-sc", "derived"))
      yield* Effect.retry(write, { times: 2 }).pipe(Effect.catchAllDefect(() => write))
      expect(yield* inOther(noteTitles("legacy-sc"))).toEqual(["derived", "stored"])
    }))

  it.scoped("a process with another TENANT_ROLE_SECRET says so, serves no tenant, makes no role, until --all adopts it", () =>
    Effect.gen(function*() {
      const admin = yield* TenantAdmin
      const registry = yield* ServerRegistry
      const platform = yield* PlatformDb
      if (!(yield* registry.list).some((server) => server.name === "spare")) yield* registry.add("spare", secondUrl)
      yield* admin.create("secret-db", "Secret", { strategy: "database", server: "spare" })
      yield* admin.create("secret-sc", "Secret schema", { strategy: "schema", server: "spare" })
      yield* writeNote("secret-db", "before")
      yield* writeNote("secret-sc", "before")
      const { roleSecret } = yield* TenancyConfig
      const [recorded] = yield* platform<{ fingerprint: string }>`SELECT fingerprint FROM role_secret`
      expect(recorded!.fingerprint).not.toContain(Redacted.value(roleSecret))

      const logs: Array<string> = []
      const other = yield* anotherProcessWith({ roleSecret: Redacted.make(randomBytes(32).toString("base64url")), logs })
      const inOther = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, other)
      const otherDatabases = Context.get(other, TenantDatabases)
      // It says why at start, and once more when a tenant is refused.
      expect(logs.filter((line) => line.includes("TENANT_ROLE_SECRET is not the one"))).toHaveLength(1)
      for (const id of ["secret-db", "secret-sc"]) {
        expect((yield* Effect.flip(inOther(noteTitles(id))))._tag).toBe("TenantUnavailable")
      }
      expect(logs.filter((line) => line.includes("TENANT_ROLE_SECRET is not the one"))).toHaveLength(2)
      // It makes no role nor turns one login with its secret: logins would be of two secrets.
      const provisioned = yield* Effect.flip(otherDatabases.provision("secret-new", "New", { server: "spare" }))
      expect(provisioned._tag).toBe("ProvisioningFailed")
      expect((yield* Effect.flip(otherDatabases.rotateCredentials("secret-db")))._tag).toBe("CredentialRotationFailed")
      expect(yield* platform`SELECT id FROM tenants WHERE id = 'secret-new'`).toEqual([])

      // --all turns every login with its secret, then records it.
      const adopted = yield* otherDatabases.rotateAllCredentials
      expect(adopted.failed).toEqual([])
      expect(adopted.secretAdopted).toBe(true)
      expect(yield* inOther(noteTitles("secret-db"))).toEqual(["before"])
      expect(yield* inOther(noteTitles("secret-sc"))).toEqual(["before"])
      // Now this process is the one with another secret: its contexts reopen, and are refused.
      yield* eventually(Effect.map(Effect.exit(noteTitles("secret-db")), Exit.isFailure))
      expect((yield* Effect.flip(noteTitles("secret-db")))._tag).toBe("TenantUnavailable")

      // Back to this process's secret, for what follows.
      const back = yield* admin.rotateAllCredentials
      expect(back).toMatchObject({ failed: [], secretAdopted: true })
      yield* writeNote("secret-db", "after")
      expect(yield* noteTitles("secret-db")).toEqual(["after", "before"])
    }))

  it.effect("roles are given a SCRAM verifier, stored as it is, that logs in with the password and nothing else", () =>
    Effect.gen(function*() {
      const role = `scram_${randomBytes(4).toString("hex")}`
      const password = Redacted.value(rolePassword(Redacted.make("v".repeat(32)), { server: "second", role, version: 1 }))
      const verifier = scramVerifier(password)
      expect(verifier).toMatch(/^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}$/)
      expect(verifier).not.toContain(password)
      yield* onSecond(`CREATE ROLE ${role} LOGIN PASSWORD '${verifier}'`)
      yield* Effect.gen(function*() {
        const [stored] = yield* onSecond<{ rolpassword: string }>("SELECT rolpassword FROM pg_authid WHERE rolname = $1", [role])
        expect(stored?.rolpassword).toBe(verifier)
        expect(yield* tryLogin(role, password)).toBe("ok")
        expect(yield* tryLogin(role, verifier)).toBe("28P01")
        expect(yield* tryLogin(role, password.slice(1))).toBe("28P01")
      }).pipe(Effect.ensuring(onSecond(`DROP ROLE ${role}`)))
    }))

  it.effect("the password depends on the secret, the server, the role and the version", () =>
    Effect.sync(() => {
      const secret = Redacted.make("a".repeat(32))
      const base = { server: "default", role: "tenant_acme", version: 1 }
      const of = (secretValue: Redacted.Redacted<string>, credential: typeof base) =>
        Redacted.value(rolePassword(secretValue, credential))
      const password = of(secret, base)
      expect(password).toMatch(/^[A-Za-z0-9_-]{43}$/)
      expect(of(secret, base)).toBe(password)
      for (
        const other of [
          of(Redacted.make("b".repeat(32)), base),
          of(secret, { ...base, server: "spare" }),
          of(secret, { ...base, role: "tenant_acme2" }),
          of(secret, { ...base, version: 2 })
        ]
      ) expect(other).not.toBe(password)
    }))
})

plain.effect("TENANT_ROLE_SECRET: too short is refused naming the variable; unset, the kept one is made once", () =>
  Effect.gen(function*() {
    const settings = (env: Record<string, string>) =>
      readSettings.pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))))
    const refused = yield* Effect.flip(settings({ TENANT_ROLE_SECRET: "short" }))
    expect(refused.problems).toEqual(["TENANT_ROLE_SECRET: must be at least 32 characters (e.g. openssl rand -base64 32)"])
    const given = yield* settings({ TENANT_ROLE_SECRET: `  ${"s".repeat(40)}\n` })
    expect(Option.map(given.tenantRoleSecret, Redacted.value)).toEqual(Option.some("s".repeat(40)))

    const directory = yield* Effect.promise(() => mkdtemp(join(tmpdir(), "tenant-engine-secret-")))
    const file = join(directory, "data", "tenant-role-secret")
    // Several processes starting at once agree on one secret.
    const secrets = yield* Effect.forEach([1, 2, 3, 4], () => keptRoleSecret(file), { concurrency: "unbounded" })
    const values = new Set(secrets.map(Redacted.value))
    expect(values.size).toBe(1)
    const [secret] = [...values]
    expect(secret!.length).toBeGreaterThanOrEqual(32)
    expect((yield* Effect.promise(() => readFile(file, "utf8"))).trim()).toBe(secret)
    expect((yield* Effect.promise(() => stat(file))).mode & 0o777).toBe(0o600)
    expect(Redacted.value(yield* keptRoleSecret(file))).toBe(secret)
    yield* Effect.promise(() => rm(directory, { recursive: true, force: true }))
  }))
