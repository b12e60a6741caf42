import { Command } from "@effect/cli"
import { NodeContext } from "@effect/platform-node"
import { expect, layer } from "@effect/vitest"
import { Cause, ConfigProvider, Effect, Exit, Layer, Logger, LogLevel } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:http"
import { createServer as createNetServer, type Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import Pg from "pg"
import { inject } from "vitest"
import { doctor } from "../../src/cli/doctor.js"
import { messageOf } from "../../src/ErrorText.js"
import { freePort } from "../../src/platform/EmbeddedPostgres.js"
import { PlatformDb } from "../../src/platform/PlatformDb.js"
import { platformWith } from "../../src/PlatformLive.js"
import { TenantAdmin } from "../../src/platform/TenantAdmin.js"
import { TenantMigrations } from "../../src/tenancy/TenantMigrations.js"
import { dropNamespace, makeNamespace, testConfig, testRoleSecret } from "../../src/testing/TestDatabases.js"
import { TestIssuer } from "../../src/testing/TestIssuer.js"
import { adminQuery, adminUrl, type Captured, captureConsole, cliEnvironment, namesOf, runCli, stripAnsi, urlOf } from "./support.js"

/**
 * `tenant-engine doctor`: in-process (the command main.ts runs, with its
 * environment from a ConfigProvider) and as a child process of the build (the
 * exit codes). A platform runs in this process on the namespace's databases,
 * as an engine would beside the operator; each test breaks one thing (a
 * server, a tenant's migration, the issuer, the configuration), sees the
 * doctor name it while still reporting the rest, and mends it.
 */

const namespace = makeNamespace()
const secondUrl = inject("secondDatabaseUrl")
const dataDir = mkdtempSync(join(tmpdir(), "tenant-engine-doctor-"))
const names = namesOf(namespace)

const TestLayer = platformWith(TenantMigrations.layer).pipe(
  Layer.provideMerge(TestIssuer.authConfig()),
  Layer.provideMerge(TestIssuer.layer()),
  Layer.provideMerge(testConfig({ adminUrl }, namespace)),
  Layer.provideMerge(Layer.scopedDiscard(Effect.addFinalizer(() => dropNamespace(secondUrl, namespace)))),
  Layer.provideMerge(Layer.scopedDiscard(Effect.addFinalizer(() =>
    Effect.sync(() => rmSync(dataDir, { recursive: true, force: true }))
  ))),
  Layer.provide(Logger.minimumLogLevel(LogLevel.Warning))
)

/** A password no output may show: the one of a server registered at a closed port. */
const GONE_PASSWORD = "doctorGoneSecret-7f3a"

/** A TENANT_ROLE_SECRET other than the one the namespace's tenant roles were made with. */
const WRONG_SECRET = "not-the-secret-the-roles-were-made-with-0123456789"

/** Every password and URL the doctor handles in these tests. */
const secrets = () => {
  const found = [GONE_PASSWORD, adminUrl, secondUrl, urlOf(names.platformDatabase), testRoleSecret(namespace), WRONG_SECRET]
  for (const url of [adminUrl, secondUrl]) {
    const password = new URL(url).password
    if (password !== "") found.push(password, decodeURIComponent(password))
  }
  return found
}

const expectNoSecret = (output: string) => {
  for (const secret of secrets()) expect(output.includes(secret), `a secret in:\n${output}`).toBe(false)
}

/** What an operator beside this platform would set (the test server's URLs, this namespace, the TestIssuer). */
const doctorEnvironment = (issuer: string | undefined, extra: Record<string, string> = {}) => ({
  DATABASE_URL: urlOf(names.platformDatabase),
  TENANT_DATABASE_URL: adminUrl,
  TENANT_DATABASE_PREFIX: names.tenantPrefix,
  TENANT_CONNECTION_BUDGET: "20",
  TENANT_POOL_MAX: "2",
  TENANT_ROLE_SECRET: testRoleSecret(namespace),
  DATA_DIR: dataDir,
  ...(issuer === undefined ? {} : { AUTH_ISSUER: issuer }),
  ...extra
})

const root = Command.make("tenant-engine").pipe(Command.withSubcommands([doctor]))
const runRoot = Command.run(root, { name: "tenant-engine", version: "0.1.0" })

/**
 * The doctor in-process. The timeout is generous: a loaded 2-core machine
 * running other suites must not turn a healthy check into a failed one.
 */
const runDoctor = (args: ReadonlyArray<string>, env: Record<string, string>, timeoutSeconds = 60) =>
  captureConsole(runRoot(["node", "tenant-engine", "doctor", "--timeout", String(timeoutSeconds), ...args])).pipe(
    Effect.provide(NodeContext.layer),
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))
  )

interface Check {
  readonly name: string
  readonly status: "ok" | "warn" | "fail"
  readonly detail: string
  readonly fix?: string
}

interface Report {
  readonly ok: boolean
  readonly checks: ReadonlyArray<Check>
  /** The line main.ts prints on stderr for a failure (its message), or undefined. */
  readonly failure: string | undefined
  readonly output: string
}

/** `doctor --json`, parsed, and whether the command failed (exit 1 in main.ts). */
const report = (env: Record<string, string>, timeoutSeconds?: number) =>
  Effect.map(runDoctor(["--json"], env, timeoutSeconds), (result: Captured<void, unknown>): Report => {
    const parsed = JSON.parse(result.stdout) as { ok: boolean; checks: ReadonlyArray<Check> }
    let failure: string | undefined = undefined
    if (Exit.isFailure(result.exit)) {
      const error = Cause.failureOption(result.exit.cause)
      if (error._tag === "None") throw new Error(`a defect: ${Cause.pretty(result.exit.cause)}`)
      failure = messageOf(error.value)
    }
    expect(parsed.ok).toBe(failure === undefined)
    return { ...parsed, failure, output: `${result.stdout}\n${result.stderr}` }
  })

const byName = (checks: ReadonlyArray<Check>, name: string) => {
  const found = checks.find((check) => check.name === name)
  if (found === undefined) throw new Error(`no check ${name} in ${checks.map((c) => c.name).join(", ")}`)
  return found
}

const sql = (statement: string) =>
  Effect.flatMap(PlatformDb, (db) => db.unsafe<Record<string, unknown>>(statement).pipe(Effect.orDie))

/** A row in `servers` for a server that does not answer (nothing listens on its port), with a password. */
const registerGoneServer = Effect.gen(function*() {
  const port = yield* Effect.promise(freePort)
  yield* sql(
    `INSERT INTO servers (name, admin_url, status, max_connections)
     VALUES ('gone', 'postgres://postgres:${GONE_PASSWORD}@127.0.0.1:${port}/postgres', 'draining', 10)`
  )
})

const forgetGoneServer = sql(`DELETE FROM servers WHERE name = 'gone'`)

/** Whether the test server checks passwords: a login with a wrong one is refused. */
const checksPasswords = Effect.promise(async () => {
  const url = new URL(adminUrl)
  url.password = "surely-not-the-password"
  const client = new Pg.Client({ connectionString: url.toString() })
  client.on("error", () => undefined)
  try {
    await client.connect()
    return false
  } catch {
    return true
  } finally {
    await client.end().catch(() => undefined)
  }
})

/** A minimal OpenID issuer whose answers carry a Date `offsetMillis` from now: a clock that is off. */
const skewedIssuer = (offsetMillis: number) =>
  Effect.acquireRelease(
    Effect.async<{ readonly url: string; readonly close: () => void }>((resume) => {
      let base = ""
      const server = createServer((request, response) => {
        response.setHeader("Date", new Date(Date.now() + offsetMillis).toUTCString())
        response.setHeader("content-type", "application/json")
        const path = new URL(request.url ?? "/", "http://127.0.0.1").pathname
        if (path === "/.well-known/openid-configuration") {
          response.end(JSON.stringify({ issuer: base, jwks_uri: `${base}/jwks` }))
        } else {
          response.end(JSON.stringify({ keys: [{ kty: "RSA", alg: "RS256", use: "sig", kid: "k1", n: "AQAB", e: "AQAB" }] }))
        }
      })
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        base = `http://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}`
        resume(Effect.succeed({
          url: base,
          close: () => {
            server.closeAllConnections()
            server.close()
          }
        }))
      })
    }),
    (issuer) => Effect.sync(issuer.close)
  )

layer(TestLayer, { excludeTestServices: true, timeout: 180_000 })("tenant-engine doctor", (it) => {
  it.effect("--help names its options", () =>
    Effect.gen(function*() {
      const help = yield* captureConsole(runRoot(["node", "tenant-engine", "doctor", "--help"])).pipe(
        Effect.provide(NodeContext.layer)
      )
      expect(Exit.isSuccess(help.exit)).toBe(true)
      expect(help.stdout).toContain("doctor [--json] [--timeout integer]")
      expect(help.stdout).toContain("seconds each check may take (default 5)")
    }))

  it.effect("healthy: every check ok or warn, in order, as a table and as JSON", () =>
    Effect.gen(function*() {
      const admin = yield* TenantAdmin
      const issuer = yield* TestIssuer
      yield* Effect.orDie(admin.create("doc-one", "Doctor One"))
      yield* Effect.orDie(admin.create("doc-two", "Doctor Two", { strategy: "schema" }))
      const env = doctorEnvironment(issuer.issuer)

      const json = yield* report(env)
      expect(json.failure).toBeUndefined()
      expect(json.checks.map((c) => c.name)).toEqual([
        "configuration",
        "platform database",
        "server default",
        "tenant logins",
        `issuer ${issuer.issuer}`,
        "fleet"
      ])
      for (const c of json.checks) expect(["ok", "warn"], `${c.name}: ${c.detail}`).toContain(c.status)
      expect(byName(json.checks, "configuration").status).toBe("ok")
      expect(byName(json.checks, "platform database").detail).toMatch(/answered in \d+ ms; PostgreSQL \d+/)
      expect(byName(json.checks, "platform database").detail).toMatch(/schema version (\d+) of \1/)
      expect(byName(json.checks, "server default").detail).toMatch(/connections in use .*the engine holds \d+ of its allowance 20 \(\d+ claimed by 1 live process\)/)
      expect(byName(json.checks, `issuer ${issuer.issuer}`)).toMatchObject({ status: "ok" })
      expect(byName(json.checks, `issuer ${issuer.issuer}`).detail).toContain("clocks agree")
      expect(byName(json.checks, "tenant logins")).toMatchObject({ status: "ok" })
      expect(byName(json.checks, "tenant logins").detail).toBe(
        "the secret is the recorded one; 2 derived logins of 2 tried logged in with the secret from TENANT_ROLE_SECRET"
      )
      expect(byName(json.checks, "fleet")).toMatchObject({ status: "ok" })
      expect(byName(json.checks, "fleet").detail).toMatch(/^2 tenants, schema version \d+: 2 current$/)
      expectNoSecret(json.output)

      // For people: one line per check, status first; a count at the end.
      const table = yield* runDoctor([], env)
      expect(Exit.isSuccess(table.exit)).toBe(true)
      const lines = stripAnsi(table.stdout).split("\n")
      expect(lines[0]).toMatch(/^ok {4}configuration {2,}valid: /)
      expect(lines.filter((line) => /^(ok|WARN|FAIL) /.test(line))).toHaveLength(6)
      expect(lines.at(-1)).toMatch(/^0 failed, \d+ to look at, \d+ ok$/)
      expectNoSecret(table.stdout + table.stderr)
    }))

  it.effect("a registered server that does not answer: fail and exit 1, the others still checked, no password shown", () =>
    Effect.gen(function*() {
      const admin = yield* TenantAdmin
      const issuer = yield* TestIssuer
      yield* Effect.orDie(admin.addServer("second", secondUrl, { maxConnections: 10 }))
      yield* registerGoneServer
      const result = yield* report(doctorEnvironment(issuer.issuer)).pipe(
        Effect.ensuring(forgetGoneServer)
      )
      expect(result.failure).toBe("1 check failed: server gone")
      const gone = byName(result.checks, "server gone")
      expect(gone.status).toBe("fail")
      expect(gone.detail).toMatch(/^127\.0\.0\.1:\d+ \(draining; 0 tenants\) cannot be reached as its administrator: .*ECONNREFUSED/)
      expect(gone.fix).toContain("is PostgreSQL running and reachable")
      // The others: all there, the real second server ok with its allowance and the budget above it warned of.
      expect(result.checks.map((c) => c.name)).toEqual([
        "configuration",
        "platform database",
        "server default",
        "server second",
        "server gone",
        "tenant logins",
        `issuer ${issuer.issuer}`,
        "fleet"
      ])
      expect(byName(result.checks, "server second").detail).toMatch(/of its allowance 10 \(\d+ claimed/)
      expect(["ok", "warn"]).toContain(byName(result.checks, "server second").status)
      expect(byName(result.checks, "configuration")).toMatchObject({ status: "warn" })
      expect(byName(result.checks, "configuration").detail).toContain(
        "TENANT_CONNECTION_BUDGET 20 is above server second's allowance 10"
      )
      expect(byName(result.checks, "fleet").status).toBe("ok")
      expectNoSecret(result.output)
      yield* Effect.orDie(admin.removeServer("second"))
    }))

  it.effect("a tenant whose migration failed: fail naming it and how to rerun; one behind: warn", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const env = doctorEnvironment(issuer.issuer)
      yield* sql(`UPDATE tenants SET migration_state = 'failed', migration_error = 'relation "notes" already exists'
                  WHERE id = 'doc-one'`)
      const failed = yield* report(env).pipe(
        Effect.ensuring(sql(`UPDATE tenants SET migration_state = 'current', migration_error = NULL WHERE id = 'doc-one'`))
      )
      expect(failed.failure).toBe("1 check failed: fleet")
      const fleet = byName(failed.checks, "fleet")
      expect(fleet.status).toBe("fail")
      expect(fleet.detail).toContain("1 tenant failed to migrate and answer 503: doc-one (")
      expect(fleet.detail).toContain(`relation "notes" already exists`)
      expect(fleet.fix).toContain("tenant-engine migrate")

      const version = (yield* sql(`SELECT schema_version FROM tenants WHERE id = 'doc-one'`))[0]?.["schema_version"]
      yield* sql(`UPDATE tenants SET schema_version = 0 WHERE id = 'doc-one'`)
      const behind = yield* report(env).pipe(
        Effect.ensuring(sql(`UPDATE tenants SET schema_version = ${Number(version)} WHERE id = 'doc-one'`))
      )
      expect(behind.failure).toBeUndefined()
      expect(byName(behind.checks, "fleet")).toMatchObject({ status: "warn", fix: "tenant-engine migrate" })
      expect(byName(behind.checks, "fleet").detail).toContain("1 tenant behind schema version")
    }))

  it.effect("a migration claim left by a runner that died and a move cut off: warnings saying what reruns them", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      yield* sql(`UPDATE tenants SET migration_state = 'migrating', updated_at = now() - interval '1 hour' WHERE id = 'doc-one'`)
      // What a mover killed before its switch leaves: its record, and a claim that has lapsed.
      yield* sql(`INSERT INTO tenant_moves (tenant_id, phase, from_server, from_strategy, from_database, from_schema, from_role,
                                            to_server, to_strategy, to_database, to_schema, to_role)
                  SELECT id, 'copying', db_server, db_strategy, db_name, db_schema, db_role,
                         'default', 'database', db_name || '_2', NULL, db_role || '_2'
                  FROM tenants WHERE id = 'doc-two'`)
      yield* sql(`UPDATE tenants SET moving_until = now() - interval '1 minute' WHERE id = 'doc-two'`)
      const result = yield* report(doctorEnvironment(issuer.issuer)).pipe(
        Effect.ensuring(sql(`UPDATE tenants SET migration_state = 'current', updated_at = now() WHERE id = 'doc-one'`)),
        Effect.ensuring(sql(`DELETE FROM tenant_moves WHERE tenant_id = 'doc-two'`)),
        Effect.ensuring(sql(`UPDATE tenants SET moving_until = NULL WHERE id = 'doc-two'`))
      )
      expect(result.failure).toBeUndefined()
      const fleet = byName(result.checks, "fleet")
      expect(fleet.status).toBe("warn")
      expect(fleet.detail).toContain("1 tenant claimed for migration over 15 minutes ago (a runner that died?) and answering 503: doc-one")
      expect(fleet.detail).toContain("1 move cut off, leaving a copy behind: doc-two")
      expect(fleet.fix?.split("\n")).toEqual([
        "tenant-engine migrate takes them over",
        "tenant-engine tenants move doc-two --to default --strategy database (finishes or restarts it and drops what was left)"
      ])
    }))

  it.effect("a server that takes the connection and never answers: its check fails at the timeout, the others are reported", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      // Accepts TCP connections and says nothing: what a hung server or a half-dead proxy looks like.
      const sockets: Array<Socket> = []
      const silent = createNetServer((socket) => void sockets.push(socket))
      const port = yield* Effect.acquireRelease(
        Effect.async<number>((resume) => {
          silent.listen(0, "127.0.0.1", () => {
            const address = silent.address()
            resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0))
          })
        }),
        () =>
          Effect.sync(() => {
            for (const socket of sockets) socket.destroy()
            silent.close()
          })
      )
      yield* sql(
        `INSERT INTO servers (name, admin_url, status, max_connections)
         VALUES ('silent', 'postgres://postgres:${GONE_PASSWORD}@127.0.0.1:${port}/postgres', 'draining', 10)`
      )
      // 10 s: short enough to wait for, long enough for the platform database (which lists the servers)
      // to answer on a loaded machine. Nothing else is asserted on but the silent server's check.
      const result = yield* report(doctorEnvironment(issuer.issuer), 10).pipe(
        Effect.ensuring(sql(`DELETE FROM servers WHERE name = 'silent'`))
      )
      expect(result.checks.map((c) => c.name)).toContain("fleet")
      expect(result.checks.map((c) => c.name)).toContain(`issuer ${issuer.issuer}`)
      const check = byName(result.checks, "server silent")
      expect(check.status).toBe("fail")
      expect(check.detail).toMatch(/timeout|no answer within 10 s/)
      expect(result.failure).toContain("server silent")
      expectNoSecret(result.output)
    }).pipe(Effect.scoped))

  it.effect("a TENANT_ROLE_SECRET other than the one the platform records: fail, saying what a process holding it does", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const result = yield* report(doctorEnvironment(issuer.issuer, { TENANT_ROLE_SECRET: WRONG_SECRET }))
      expect(result.failure).toBe("1 check failed: tenant logins")
      const logins = byName(result.checks, "tenant logins")
      expect(logins.detail).toBe(
        "the secret from TENANT_ROLE_SECRET is not the one the platform records: " +
          "a process holding it answers every tenant 503 and creates, moves or rotates none"
      )
      expect(logins.fix).toContain("the same TENANT_ROLE_SECRET")
      expect(logins.fix).toContain("tenant-engine tenants rotate-credentials --all")
      expectNoSecret(result.output)
    }))

  it.effect("tenant logins: a role's password changed outside the engine is refused; a stored password is a warning", () =>
    Effect.gen(function*() {
      const admin = yield* TenantAdmin
      const issuer = yield* TestIssuer
      const env = doctorEnvironment(issuer.issuer)
      const role = String((yield* sql(`SELECT db_role FROM tenants WHERE id = 'doc-one'`))[0]?.["db_role"])
      yield* adminQuery(`ALTER ROLE "${role}" PASSWORD 'changed-by-hand-0123456789'`)
      const changed = yield* report(env).pipe(
        // A rotation sets a password the engine derives again.
        Effect.ensuring(Effect.orDie(admin.rotateCredentials("doc-one")))
      )
      const logins = byName(changed.checks, "tenant logins")
      if (yield* checksPasswords) {
        expect(logins.status).toBe("fail")
        expect(logins.detail).toContain(
          "refused: tenant doc-one on default: their passwords were changed outside the engine, or the roles are gone"
        )
        expect(logins.fix).toBe("tenant-engine tenants rotate-credentials doc-one sets passwords the engine knows again")
      } else {
        // A server that trusts its local connections (pg_hba `trust`) lets any password in: the engine's too.
        expect(logins.status).toBe("ok")
      }
      expect(byName((yield* report(env)).checks, "tenant logins").status).toBe("ok")

      yield* sql(`UPDATE tenants SET db_password = 'stored-before-derived-credentials' WHERE id = 'doc-one'`)
      const stored = yield* report(env).pipe(
        Effect.ensuring(sql(`UPDATE tenants SET db_password = NULL WHERE id = 'doc-one'`))
      )
      expect(byName(stored.checks, "tenant logins")).toMatchObject({
        status: "warn",
        fix: "tenant-engine tenants rotate-credentials --all removes them"
      })
      expect(byName(stored.checks, "tenant logins").detail).toContain(
        "1 login still has its password stored in the platform database"
      )
      expectNoSecret(stored.output)
    }))

  it.effect("the issuer: unreachable is a fail; a clock far off is a fail, one near the tolerance a warn", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      yield* issuer.setAvailable(false)
      const down = yield* report(doctorEnvironment(issuer.issuer)).pipe(Effect.ensuring(issuer.setAvailable(true)))
      expect(down.failure).toBe(`1 check failed: issuer ${issuer.issuer}`)
      const check = byName(down.checks, `issuer ${issuer.issuer}`)
      expect(check.status).toBe("fail")
      expect(check.detail).toContain("answered HTTP 503")
      expect(check.fix).toContain("AUTH_ISSUER")
      expect(byName(down.checks, "platform database").status).not.toBe("fail")

      // AUTH_CLOCK_TOLERANCE is 30 s: 2 minutes off is refused tokens, 20 s is close to it.
      const farOff = yield* skewedIssuer(-120_000)
      const far = byName((yield* report(doctorEnvironment(farOff.url))).checks, `issuer ${farOff.url}`)
      expect(far.status).toBe("fail")
      expect(far.detail).toMatch(/the issuer's clock is 1[12]\d\.\d s behind this machine's/)
      expect(far.fix).toContain("synchronise this machine's clock")
      const nearOff = yield* skewedIssuer(20_000)
      const near = byName((yield* report(doctorEnvironment(nearOff.url))).checks, `issuer ${nearOff.url}`)
      expect(near.status).toBe("warn")
      expect(near.detail).toMatch(/ahead of this machine's/)
    }).pipe(Effect.scoped))

  it.effect("the platform database down: fail, and the configured server, the issuer and the fleet still reported", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const port = yield* Effect.promise(freePort)
      const result = yield* report(doctorEnvironment(issuer.issuer, {
        DATABASE_URL: `postgres://postgres:${GONE_PASSWORD}@127.0.0.1:${port}/platform`
      }))
      expect(result.checks.map((c) => [c.name, c.status])).toEqual([
        ["configuration", "ok"],
        ["platform database", "fail"],
        ["server default", expect.stringMatching(/^(ok|warn)$/)],
        [`issuer ${issuer.issuer}`, "ok"],
        ["fleet", "fail"]
      ])
      expect(byName(result.checks, "server default").detail).toContain("from the configuration")
      expect(byName(result.checks, "platform database").fix).toContain("is PostgreSQL running and reachable")
      expect(result.failure).toBe("2 checks failed: platform database, fleet")
      expectNoSecret(result.output)
    }))

  it.effect("configuration: an invalid one fails naming each variable; the development issuer is a warning", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const invalid = yield* report(doctorEnvironment(issuer.issuer, { LOG_LEVEL: "loud", TENANT_POOL_MAX: "0" }))
      expect(invalid.checks).toHaveLength(1)
      expect(invalid.checks[0]).toMatchObject({ name: "configuration", status: "fail" })
      expect(invalid.checks[0]?.detail).toContain("LOG_LEVEL")
      expect(invalid.checks[0]?.detail).toContain("; TENANT_POOL_MAX: must be a positive integer.")
      expect(invalid.failure).toBe("1 check failed: configuration")

      const development = yield* report(doctorEnvironment(undefined))
      expect(development.failure).toBeUndefined()
      const configuration = byName(development.checks, "configuration")
      expect(configuration.status).toBe("warn")
      expect(configuration.detail).toContain("AUTH_ISSUER is unset: the built-in development issuer is trusted")
      expect(configuration.fix).toContain("set AUTH_ISSUER")
      expect(byName(development.checks, "issuer (development)").status).not.toBe("fail")
    }))

  it.effect("the build: exit 0 when healthy, 1 with a server down; --json parses; no password in any output", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      // --timeout 60: the child shares a loaded machine with the other suites.
      const env = cliEnvironment({ namespace, dataDir }, doctorEnvironment(issuer.issuer))
      const [healthy, healthyJson] = yield* Effect.promise(() =>
        Promise.all([runCli(["doctor", "--timeout", "60"], env), runCli(["doctor", "--json", "--timeout", "60"], env)])
      )
      expect({ code: healthy.code, stderr: healthy.stderr }).toEqual({ code: 0, stderr: "" })
      expect(healthy.stdout).toMatch(/^ok {4}configuration/)
      expect(healthyJson.code).toBe(0)
      expect(JSON.parse(healthyJson.stdout)).toMatchObject({ ok: true })

      yield* registerGoneServer
      const [down, downJson] = yield* Effect.promise(() =>
        Promise.all([runCli(["doctor", "--timeout", "60"], env), runCli(["doctor", "--json", "--timeout", "60"], env)])
      ).pipe(Effect.ensuring(forgetGoneServer))
      expect(down.code).toBe(1)
      expect(down.stdout).toMatch(/^FAIL {2}server gone {2,}/m)
      expect(down.stdout).toMatch(/^ok {4}fleet/m)
      expect(stripAnsi(down.stderr).trim()).toBe("error: 1 check failed: server gone")
      expect(downJson.code).toBe(1)
      const parsed = JSON.parse(downJson.stdout) as { ok: boolean; checks: ReadonlyArray<Check> }
      expect(parsed.ok).toBe(false)
      expect(byName(parsed.checks, "server gone").status).toBe("fail")
      for (const run of [healthy, healthyJson, down, downJson]) expectNoSecret(run.stdout + run.stderr)
    }))
})
