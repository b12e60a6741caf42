import { NodeHttpServer } from "@effect/platform-node"
import { expect, layer } from "@effect/vitest"
import { Effect, Layer, Logger, LogLevel, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { HttpLive, withoutTracing } from "../../src/http/HttpLive.js"
import { Traffic } from "../../src/http/Traffic.js"
import { PlatformLive } from "../../src/PlatformLive.js"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { makeNamespace, testConfig } from "../../src/testing/TestDatabases.js"
import { TestIssuer } from "../../src/testing/TestIssuer.js"
import { cli, type CliResult, cliEnvironment, namesOf } from "../cli/support.js"
import {
  adminQuery,
  adminUrl,
  breakAccountsTable,
  eventually,
  get,
  post,
  READ_WRITE,
  type Reply,
  refusePlatformConnections,
  send,
  userToken
} from "./support.js"

/**
 * No secret in any output (issue 14): the platform runs with a database URL
 * that carries a password (a superuser role made for this file), every log
 * line of every level is captured (formatted as logfmt and as JSON, causes
 * included), every reply is kept whole (status, headers, body), and the CLI
 * runs with that URL (`--json` and plain, successes and failures); then
 * none of it may contain the password, the URL, a bearer token used, or a
 * tenant role's credential.
 */

const namespace = makeNamespace()
const role = `secret_owner_${randomBytes(4).toString("hex")}`
// Characters a URL must escape, so that both spellings are searched for.
const password = `pw-${randomBytes(12).toString("base64url")}+/=`
const secretUrl = (() => {
  const url = new URL(adminUrl)
  url.username = role
  url.password = password
  return url.toString()
})()

/** Everything a person or a log collector could see. */
const captured: Array<string> = []
const capture = Logger.add(Logger.make((options) => {
  captured.push(Logger.logfmtLogger.log(options))
  captured.push(Logger.jsonLogger.log(options))
}))

const keep = (reply: Reply) => {
  captured.push(`${reply.status} ${JSON.stringify(reply.rawHeaders)} ${reply.text}`)
  return reply
}
const keepCli = (result: CliResult) => {
  captured.push(`${result.args.join(" ")} => ${result.code}\n${result.stdout}\n${result.stderr}`)
  return result
}

/** The platform as TestPlatform makes it, on the password URL, logging everything. */
const SecretPlatform = Layer.unwrapScoped(Effect.gen(function*() {
  yield* Effect.acquireRelease(
    adminQuery(`CREATE ROLE ${role} LOGIN SUPERUSER PASSWORD '${password}'`),
    () => Effect.ignore(adminQuery(`DROP ROLE IF EXISTS ${role}`))
  )
  return HttpLive.pipe(
    Layer.provideMerge(NodeHttpServer.layerTest),
    Layer.provideMerge(PlatformLive),
    Layer.provideMerge(Traffic.layer),
    Layer.provideMerge(TestIssuer.authConfig()),
    Layer.provideMerge(TestIssuer.layer()),
    Layer.provideMerge(testConfig({ adminUrl: secretUrl }, namespace)),
    Layer.provide(Logger.minimumLogLevel(LogLevel.All)),
    Layer.provide(capture),
    withoutTracing
  )
}))

layer(SecretPlatform, { excludeTestServices: true, timeout: 300_000 })("secrets in output", (it) => {
  it.scoped("no password, URL, token or role credential in logs, replies or CLI output", () =>
    Effect.gen(function*() {
      // The platform really works as that role.
      const roles = yield* adminQuery<{ usename: string }>(
        "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = $1",
        [namesOf(namespace).platformDatabase]
      )
      expect(roles.map((r) => r.usename)).toContain(role)

      const issuer = yield* TestIssuer
      const admin = yield* issuer.admin()
      const tokens: Array<string> = [admin]
      for (const [id, strategy] of [["sec-db", "database"], ["sec-schema", "schema"]] as const) {
        expect(keep(yield* post("/v1/admin/tenants", admin, { id, name: id, strategy })).status).toBe(201)
        expect(keep(yield* post(`/v1/admin/tenants/${id}/clients`, admin, { clientId: `${id}-job`, displayName: "Job" })).status)
          .toBe(201)
        keep(yield* get(`/v1/admin/tenants/${id}`, admin))
        const user = yield* userToken(`${id}-user`, id)
        const machine = yield* issuer.machine(`${id}-job`, { scopes: READ_WRITE })
        tokens.push(user, machine)
        expect(keep(yield* post("/v1/notes", user, { title: "t", body: "b" })).status).toBe(201)
        keep(yield* get("/v1/notes", machine))
        keep(yield* get("/v1/me", user))
      }
      keep(yield* get("/v1/admin/tenants", admin))
      keep(yield* get("/v1/admin/servers", admin))
      // Refusals: a tampered token, an unknown client, a user with no tenant, bad input.
      const tampered = tokens[1]!.slice(0, -4) + "AAAA"
      const stranger = yield* issuer.machine("nobody-job")
      const lost = yield* issuer.user("lost-user")
      tokens.push(tampered, stranger, lost)
      keep(yield* get("/v1/me", tampered))
      keep(yield* get("/v1/me", stranger))
      keep(yield* get("/v1/me", lost))
      keep(yield* send("POST", "/v1/notes", { token: tokens[1]!, body: "{", headers: { "content-type": "application/json" } }))

      // The platform database refusing connections: warnings and 503s.
      yield* Effect.scoped(Effect.gen(function*() {
        const { accept } = yield* refusePlatformConnections
        keep(yield* get("/readyz"))
        keep(yield* get("/v1/me", yield* userToken("outage-user", "sec-db")))
        keep(yield* get("/v1/admin/tenants", admin))
        yield* Effect.sleep("1500 millis")
        keep(yield* get("/v1/notes", tokens[1]!))
        yield* accept
      }))
      yield* eventually("the platform to answer again", Effect.map(get("/readyz"), (r) => r.status === 200))
      // A defect: logged with its cause.
      yield* Effect.scoped(Effect.zipRight(breakAccountsTable, Effect.map(get("/v1/me", yield* userToken("defect-user", "sec-db")), keep)))

      // The CLI, on the same namespace, with the password URL.
      const dataDir = mkdtempSync(join(tmpdir(), "secrets-cli-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dataDir, { recursive: true, force: true })))
      const platformUrl = (() => {
        const url = new URL(secretUrl)
        url.pathname = `/${namesOf(namespace).platformDatabase}`
        return url.toString()
      })()
      const env = cliEnvironment({ namespace, dataDir }, { DATABASE_URL: platformUrl })
      const runs: ReadonlyArray<ReadonlyArray<string>> = [
        ["tenants", "list", "--json"],
        ["tenants", "list"],
        ["tenants", "show", "sec-db", "--json"],
        ["tenants", "show", "sec-schema"],
        ["tenants", "create", "sec-cli", "--name", "From the CLI", "--json"],
        ["tenants", "show", "no-such-tenant", "--json"],
        ["clients", "list", "sec-db", "--json"],
        ["migrate", "--status", "--json"]
      ]
      for (const args of runs) {
        const result = keepCli(yield* cli(args, env))
        // Each ran against the platform (the unknown tenant is refused, as it should be).
        expect(result.code, `${args.join(" ")}: ${result.stderr}`).toBe(args.includes("no-such-tenant") ? 1 : 0)
      }
      const listed = captured.find((line) => line.startsWith("tenants list --json => 0"))
      expect(listed).toContain("sec-schema")
      // Nothing answers there: the connection error must not repeat the URL.
      const unreachable = new URL(platformUrl)
      unreachable.port = "1"
      const failed = keepCli(yield* cli(["tenants", "list", "--json"], { ...env, DATABASE_URL: unreachable.toString() }))
      expect(failed.code).not.toBe(0)
      console.log(`the CLI on an unreachable database says: ${failed.stderr.trim().split("\n").slice(0, 3).join(" / ")}`)

      // The tenants' role credentials, as the engine logs in with them.
      const databases = yield* TenantDatabases
      const credentials: Array<string> = []
      for (const id of ["sec-db", "sec-schema", "sec-cli"]) {
        const placement = yield* Effect.orDie(databases.placement(id))
        credentials.push(Redacted.value(placement.login.password))
      }

      const secrets: ReadonlyArray<readonly [string, string]> = [
        ["the database password", password],
        ["the database password, URL-encoded", encodeURIComponent(password)],
        ["the database URL", secretUrl],
        ...tokens.map((token, i) => [`bearer token ${i}`, token] as const),
        ...credentials.filter((c) => c.length >= 8).map((c, i) => [`tenant role credential ${i}`, c] as const)
      ]
      const text = captured.join("\n")
      for (const [what, secret] of secrets) {
        const at = text.indexOf(secret)
        expect(at, `${what} appears in the output: ...${text.slice(Math.max(0, at - 300), at + 100)}...`).toBe(-1)
      }
      console.log(
        `secrets: ${secrets.length} searched for in ${captured.length} captured outputs ` +
          `(${text.length} characters: logs of every level, ${runs.length + 1} CLI runs, every reply)`
      )
    }))
})
