import { Bodies, bodyOf, errorOf } from "../bodies.js"
import { expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { createLocalJWKSet, jwtVerify } from "jose"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { PlatformDb } from "../../src/platform/PlatformDb.js"
import { TenantAdmin } from "../../src/platform/TenantAdmin.js"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { makeNamespace } from "../../src/testing/TestDatabases.js"
import { TestIssuer } from "../../src/testing/TestIssuer.js"
import {
  adminQuery,
  cli,
  type CliResult,
  cliEnvironment,
  databaseExists,
  decodeJwt,
  issuerDirectory,
  namesOf,
  oneLineFailure,
  request,
  roleExists,
  runCli,
  serverOn,
  stripAnsi,
  type Reply
} from "./support.js"

/**
 * The operator CLI as operators run it: the build, `node dist/src/cli/main.js ...`
 * in a child process, configured by the environment alone (DATABASE_URL on a
 * platform database of this file's namespace, TENANT_DATABASE_PREFIX, DATA_DIR;
 * no AUTH_ISSUER, so `token` mints with the development issuer of DATA_DIR).
 * A platform server runs in this process on the same databases and trusts that
 * issuer too, so what a command does is checked where it matters: on the very
 * next HTTP request. Each child costs up to seconds on a loaded machine: independent
 * commands run at once, in a few waves.
 */

const namespace = makeNamespace()
const dataDir = mkdtempSync(join(tmpdir(), "tenant-engine-cli-"))
const env = cliEnvironment({ namespace, dataDir })

const DEV_ISSUER = "urn:tenant-engine:dev-issuer"

const TestLayer = serverOn({ namespace, devIssuerDirectory: issuerDirectory(dataDir) }).pipe(
  Layer.provideMerge(Layer.scopedDiscard(Effect.addFinalizer(() =>
    Effect.sync(() => rmSync(dataDir, { recursive: true, force: true }))
  )))
)

/** Several commands at once; their results in order. */
const all = <const T extends ReadonlyArray<ReadonlyArray<string>>>(...runs: T) =>
  Effect.promise(() => Promise.all(runs.map((args) => runCli(args, env)))) as Effect.Effect<
    { -readonly [K in keyof T]: CliResult }
  >

const succeeded = (result: CliResult) => {
  expect({ code: result.code, signal: result.signal }, `${result.args.join(" ")}\n${result.stdout}\n${result.stderr}`)
    .toEqual({ code: 0, signal: null })
  return result.stdout
}

/** Non-zero, nothing on stdout, exactly one line on stderr; returns that line. */
const refused = (result: CliResult) => {
  const failure = oneLineFailure(result)
  expect(failure, `${result.args.join(" ")}\n${result.stdout}\n${result.stderr}`).toMatchObject({
    failed: true,
    stdout: "",
    lines: 1
  })
  return failure.message
}

const tenantRows = Effect.flatMap(PlatformDb, (sql) =>
  sql<{ id: string; name: string; status: string }>`SELECT id, name, status FROM tenants ORDER BY id`.pipe(Effect.orDie))

const status = (reply: Reply) => ({ status: reply.status, error: errorOf(reply) })

/** The token's signature checks against the development issuer's published keys, and its claims. */
const verifyDevToken = (token: string) =>
  Effect.promise(async () => {
    const jwks = JSON.parse(readFileSync(join(issuerDirectory(dataDir), "jwks.json"), "utf8"))
    const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(jwks), {
      issuer: DEV_ISSUER,
      audience: "platform"
    })
    return { payload, protectedHeader }
  })

const rowsOf = (ids: ReadonlyArray<string>) =>
  Effect.map(tenantRows, (rows) => rows.filter((row) => ids.includes(row.id)))

/** Concurrent tests: their children run at once (the machine's cores are the limit, not the order). */
const concurrent = { concurrent: true, timeout: 240_000 }

layer(TestLayer, { excludeTestServices: true, timeout: 120_000 })("operator CLI (child processes)", (it) => {
  it.effect("tenants create|list|delete: output, exit codes, one-line refusals, nothing half-done", () =>
    Effect.gen(function*() {
      const admin = yield* TenantAdmin
      const databases = yield* TenantDatabases
      const issuer = yield* TestIssuer
      const mine = ["acme", "gone", "keep", "stuck"]
      for (const id of ["gone", "keep", "stuck"]) yield* Effect.orDie(admin.create(id, `Tenant ${id}`))
      // stuck's role holds a privilege outside its database (an operator's mistake): it cannot be dropped.
      const stuckRole = databases.databaseName("stuck")
      yield* adminQuery(`GRANT SELECT ON tenants TO "${stuckRole}"`, [], namesOf(namespace).platformDatabase)
      // A user of "gone" whose account and tenant context the server holds when the CLI deletes it.
      const goneUser = yield* issuer.user("gwen", { tenant: "gone", scopes: ["notes:read"] })
      expect((yield* request("GET", "/v1/notes", { token: goneUser })).status).toBe(200)

      const [created, badId, nameless, deleted, notDeleted, stuck] = yield* all(
        ["tenants", "create", "acme", "--name", "Acme Corp"],
        ["tenants", "create", "Bad_Id", "--name", "Bad"],
        ["tenants", "create", "nameless"],
        ["tenants", "delete", "gone", "--yes"],
        ["tenants", "delete", "keep"],
        ["tenants", "delete", "stuck", "--yes"]
      )
      // tenants create ID --name NAME
      expect(succeeded(created)).toMatch(
        /^id: acme\nname: Acme Corp\nstatus: active\ncreatedAt: \d{4}-\d\d-\d\dT[\d:.]+Z\nserver: default\nstrategy: database\ndatabase: \w+_acme\nschema: -\nrole: \w+_acme\n$/
      )
      expect(created.stderr).toBe("")
      expect(yield* databaseExists(databases.databaseName("acme"))).toBe(true)
      // An invalid id, a missing --name: one line on stderr, non-zero, nothing made.
      expect(refused(badId)).toBe(`error: invalid tenant id "Bad_Id"`)
      expect(refused(nameless)).toBe("Expected to find option: '--name'")
      expect((yield* tenantRows).map((t) => t.id)).not.toContain("nameless")
      expect(yield* databaseExists(databases.databaseName("nameless"))).toBe(false)

      // tenants delete ID --yes: gone with its database and role; its users are refused at once.
      expect(succeeded(deleted)).toBe("tenant gone deleted\n")
      expect(yield* databaseExists(databases.databaseName("gone"))).toBe(false)
      expect(yield* roleExists(databases.databaseName("gone"))).toBe(false)
      expect(status(yield* request("GET", "/v1/notes", { token: goneUser }))).toEqual({ status: 403, error: "no_tenant" })
      // Without --yes and no TTY: refused, nothing deleted.
      expect(refused(notDeleted)).toBe("error: refusing to delete tenant keep without --yes")
      expect(yield* databaseExists(databases.databaseName("keep"))).toBe(true)
      // A delete that fails half-way (a statement fails: a defect) says why, on one line. The tenant is out of
      // service (database gone, listed no more); the next delete, once the cause is fixed, finishes it.
      expect(refused(stuck)).toMatch(
        new RegExp(`^error: .*role "${stuckRole}" cannot be dropped because some objects depend on it$`)
      )
      expect(yield* databaseExists(stuckRole)).toBe(false)
      expect((yield* admin.list).map((t) => t.id)).not.toContain("stuck")
      expect(yield* rowsOf(mine)).toEqual([
        { id: "acme", name: "Acme Corp", status: "active" },
        { id: "keep", name: "Tenant keep", status: "active" },
        { id: "stuck", name: "Tenant stuck", status: "deleting" }
      ])
      yield* adminQuery(`REVOKE SELECT ON tenants FROM "${stuckRole}"`, [], namesOf(namespace).platformDatabase)
      yield* Effect.orDie(admin.remove("stuck"))
      expect(yield* roleExists(stuckRole)).toBe(false)

      const [duplicate, listed] = yield* all(
        ["tenants", "create", "acme", "--name", "Another Acme"],
        ["tenants", "list", "--json"]
      )
      // A duplicate is refused and the first one kept.
      expect(refused(duplicate)).toBe("error: tenant acme already exists")
      // tenants list --json
      const tenants = JSON.parse(succeeded(listed)) as Array<{ id: string }>
      expect(tenants.filter((t) => mine.includes(t.id))).toEqual([
        { id: "acme", name: "Acme Corp", status: "active", createdAt: expect.any(String), placement: expect.objectContaining({ strategy: "database" }) },
        { id: "keep", name: "Tenant keep", status: "active", createdAt: expect.any(String), placement: expect.objectContaining({ strategy: "database" }) }
      ])
      expect(yield* rowsOf(mine)).toEqual([
        { id: "acme", name: "Acme Corp", status: "active" },
        { id: "keep", name: "Tenant keep", status: "active" }
      ])
    }), concurrent)

  it.effect("tenants suspend|resume, clients add|disable|list, domains add: a running server sees each at once", () =>
    Effect.gen(function*() {
      const admin = yield* TenantAdmin
      const issuer = yield* TestIssuer
      yield* Effect.orDie(admin.create("beta", "Beta"))
      const user = yield* issuer.user("bob", { tenant: "beta", scopes: ["notes:read", "notes:write"] })
      const machine = yield* issuer.machine("beta-svc", { scopes: ["notes:read"] })
      const note = yield* request("POST", "/v1/notes", { token: user, json: { title: "from bob", body: "" } })
      expect(note.status, note.text).toBe(201)

      const [clientAdded, noTenant, domainAdded, badDomain] = yield* all(
        ["clients", "add", "beta", "beta-svc", "--name", "Beta Service"],
        ["clients", "add", "nobody", "nobody-svc", "--name", "Nobody"],
        ["domains", "add", "beta", "Beta.Example"],
        ["domains", "add", "beta", "not a domain"]
      )
      // clients add TENANT CLIENT_ID --name NAME: its tokens work at once.
      expect(succeeded(clientAdded)).toMatch(
        /^clientId: beta-svc\ntenantId: beta\ndisplayName: Beta Service\naccountId: [0-9a-f-]{36}\ndisabled: false\ncreatedAt: \S+\n$/
      )
      expect((yield* request("GET", "/v1/notes", { token: machine })).status).toBe(200)
      // A client of an unknown tenant: refused, no account left behind.
      expect(refused(noTenant)).toBe("error: no tenant nobody")
      const strays = yield* Effect.flatMap(PlatformDb, (sql) =>
        sql<{ n: number }>`SELECT count(*)::int AS n FROM accounts WHERE subject = 'nobody-svc'`.pipe(Effect.orDie))
      expect(strays[0]!.n).toBe(0)
      // domains add TENANT DOMAIN (stored normalised); a bad one refused, nothing stored.
      expect(succeeded(domainAdded)).toMatch(/^domain: beta\.example\ntenantId: beta\ncreatedAt: \S+\n$/)
      expect(refused(badDomain)).toBe(`error: "not a domain" is not a domain name`)
      const domains = yield* Effect.flatMap(PlatformDb, (sql) =>
        sql<{ domain: string }>`SELECT domain FROM tenant_domains WHERE tenant_id = 'beta'`.pipe(Effect.orDie))
      expect(domains).toEqual([{ domain: "beta.example" }])

      // tenants suspend ID: the very next request of its users and clients is refused, as with the admin route.
      expect(succeeded(yield* cli(["tenants", "suspend", "beta"], env))).toBe("tenant beta is suspended\n")
      expect(status(yield* request("GET", "/v1/notes", { token: user }))).toEqual({ status: 403, error: "tenant_suspended" })
      expect(status(yield* request("GET", "/v1/notes", { token: machine }))).toEqual({
        status: 403,
        error: "tenant_suspended"
      })
      // tenants resume ID: it works again at once, data intact.
      expect(succeeded(yield* cli(["tenants", "resume", "beta"], env))).toBe("tenant beta is active\n")
      const notes = yield* request("GET", "/v1/notes", { token: user })
      expect(notes.status, notes.text).toBe(200)
      expect(bodyOf(notes, Bodies.notes).items.map((n) => n.title)).toEqual(["from bob"])
      expect((yield* request("GET", "/v1/notes", { token: machine })).status).toBe(200)

      // clients disable TENANT CLIENT_ID: the client's next request is refused; the tenant's users are not.
      const disabled = yield* cli(["clients", "disable", "beta", "beta-svc"], env)
      expect(succeeded(disabled)).toBe("client beta-svc of tenant beta is disabled\n")
      expect(status(yield* request("GET", "/v1/notes", { token: machine }))).toEqual({
        status: 403,
        error: "client_disabled"
      })
      expect((yield* request("GET", "/v1/notes", { token: user })).status).toBe(200)
      // clients list TENANT --json shows it disabled.
      expect(JSON.parse(succeeded(yield* cli(["clients", "list", "beta", "--json"], env)))).toEqual([{
        clientId: "beta-svc",
        tenantId: "beta",
        displayName: "Beta Service",
        accountId: expect.stringMatching(/^[0-9a-f-]{36}$/),
        disabled: true,
        createdAt: expect.any(String)
      }])
    }), concurrent)

  it.effect("token user|machine|admin: development JWTs with the right claims, which a server trusting it takes", () =>
    Effect.gen(function*() {
      const admin = yield* TenantAdmin
      yield* Effect.orDie(admin.create("tok", "Tokens"))
      yield* Effect.orDie(admin.registerClient("tok", "tok-svc", "Token service"))
      const [userTok, machineTok, adminTok] = yield* all(
        ["token", "user", "--tenant", "tok", "--sub", "bob", "--scope", "notes:read notes:write"],
        ["token", "machine", "--client", "tok-svc"],
        ["token", "admin"]
      )
      const user = succeeded(userTok).trim()
      const machine = succeeded(machineTok).trim()
      const operator = succeeded(adminTok).trim()
      for (const token of [user, machine, operator]) {
        expect(token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/)
        const { header, payload } = decodeJwt(token)
        expect(header).toMatchObject({ alg: "ES256", typ: "at+jwt", kid: expect.any(String) })
        expect(payload).toMatchObject({ iss: DEV_ISSUER, aud: "platform", jti: expect.any(String) })
        expect(Number(payload["exp"]) - Number(payload["iat"])).toBe(3600)
        expect(Math.abs(Number(payload["iat"]) - Date.now() / 1000)).toBeLessThan(300)
        // Signed with the key in DATA_DIR: it verifies against its published key set.
        expect((yield* verifyDevToken(token)).payload.iss).toBe(DEV_ISSUER)
      }
      expect(decodeJwt(user).payload).toMatchObject({ sub: "bob", tenant: "tok", scope: "notes:read notes:write" })
      expect(decodeJwt(machine).payload).toMatchObject({
        sub: "tok-svc",
        client_id: "tok-svc",
        scope: "notes:read notes:write"
      })
      expect(decodeJwt(operator).payload).toMatchObject({ sub: "operator", scope: "platform:admin" })
      expect(decodeJwt(operator).payload).not.toHaveProperty("tenant")

      // A server trusting the development issuer takes them for what they say.
      const me = yield* request("GET", "/v1/me", { token: user })
      expect(me.status, me.text).toBe(200)
      expect(bodyOf(me, Bodies.me).principal).toMatchObject({ kind: "user", issuer: DEV_ISSUER, subject: "bob" })
      expect(bodyOf(me, Bodies.me).tenant.id).toBe("tok")
      const asMachine = yield* request("GET", "/v1/me", { token: machine })
      expect(asMachine.status, asMachine.text).toBe(200)
      expect(bodyOf(asMachine, Bodies.me).principal).toMatchObject({ kind: "machine", clientId: "tok-svc" })
      const tenants = yield* request("GET", "/v1/admin/tenants", { token: operator })
      expect(tenants.status, tenants.text).toBe(200)
      expect(bodyOf(tenants, Bodies.tenants).items.map((t) => t.id)).toContain("tok")
      // The operator's token names no tenant.
      expect(status(yield* request("GET", "/v1/notes", { token: operator }))).toEqual({ status: 403, error: "no_tenant" })
    }), concurrent)

  it.effect("migrate --concurrency N, migrate --status --json: a failure reported, and refused by a running server", () =>
    Effect.gen(function*() {
      const admin = yield* TenantAdmin
      const databases = yield* TenantDatabases
      const issuer = yield* TestIssuer
      for (const id of ["lagging", "broken"]) yield* Effect.orDie(admin.create(id, `Tenant ${id}`))
      // The server holds broken's context before the CLI's migration fails it.
      const brokenUser = yield* issuer.user("carol", { tenant: "broken", scopes: ["notes:read"] })
      expect((yield* request("GET", "/v1/notes", { token: brokenUser })).status).toBe(200)
      // lagging was provisioned "before 0001 existed"; broken's 0001 will fail (notes exists, unrecorded).
      const laggingDb = databases.databaseName("lagging")
      const brokenDb = databases.databaseName("broken")
      yield* adminQuery("DROP TABLE notes", [], laggingDb)
      yield* adminQuery("DELETE FROM schema_migrations", [], laggingDb)
      yield* adminQuery("DELETE FROM schema_migrations", [], brokenDb)
      yield* Effect.flatMap(PlatformDb, (sql) =>
        Effect.orDie(sql`UPDATE tenants SET schema_version = 0 WHERE id IN ('lagging', 'broken')`))

      // migrate --concurrency N: one migrated, one failed; reported on stdout, non-zero, the reason on stderr.
      const first = yield* cli(["migrate", "--concurrency", "2"], env)
      expect(first.code, first.stderr).toBe(1)
      expect(first.stdout).toMatch(
        /^schema version 1: 1 migrated, 1 failed, 0 skipped\n {2}failed: broken: .*relation "notes" already exists\n$/
      )
      expect(first.stderr.trim().split("\n").at(-1)).toBe("error: 1 of 2 tenants failed to migrate; rerun after fixing")
      // The running server refuses the failed tenant with 503 at once, and serves the migrated one.
      expect(status(yield* request("GET", "/v1/notes", { token: brokenUser }))).toEqual({
        status: 503,
        error: "tenant_unavailable"
      })
      const laggingUser = yield* issuer.user("dave", { tenant: "lagging", scopes: ["notes:read"] })
      expect((yield* request("GET", "/v1/notes", { token: laggingUser })).status).toBe(200)

      // migrate --status --json: the failed tenant with its error.
      const rows = JSON.parse(succeeded(yield* cli(["migrate", "--status", "--json"], env))) as Array<{ id: string }>
      expect(rows.filter((r) => r.id === "broken" || r.id === "lagging")).toEqual([
        { id: "broken", state: "failed", version: 0, error: expect.stringMatching(/relation "notes" already exists/) },
        { id: "lagging", state: "current", version: 1, error: null }
      ])
      // (The rerun after a fix: commands.test.ts and fleet-migrations.test.ts.)
    }), concurrent)

  it.effect("--help lists every command with its options; serve --help (serve is main.ts's own)", () =>
    Effect.gen(function*() {
      const [rootHelp, serveHelp] = yield* all(["--help"], ["serve", "--help"])
      expect(stripAnsi(succeeded(serveHelp))).toContain("run the platform server")
      const help = stripAnsi(succeeded(rootHelp))
      for (
        const line of [
          "serve",
          "migrate [--concurrency integer] [--status] [--json]",
          "tenants create --name text [--strategy database | schema] [--server text] [--json] <ID>",
          "tenants show [--json] <ID>",
          "tenants list [--json]",
          "tenants suspend <ID>",
          "tenants resume <ID>",
          "tenants delete [--yes] <ID>",
          "clients add --name text [--json] <TENANT> <CLIENT_ID>",
          "clients list [--json] <TENANT>",
          "clients disable <TENANT> <CLIENT_ID>",
          "domains add [--json] <TENANT> <DOMAIN>",
          "domains list [--json] <TENANT>",
          "token user --tenant text [--sub text]",
          "token machine --client text",
          "token admin"
        ]
      ) expect(help).toContain(line)
    }), concurrent)
})
