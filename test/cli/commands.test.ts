import { Command } from "@effect/cli"
import { inject } from "vitest"
import { NodeContext } from "@effect/platform-node"
import { expect, layer } from "@effect/vitest"
import { Cause, ConfigProvider, Effect, Exit, Layer, Logger, LogLevel, Option, Redacted } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { CliPlatform } from "../../src/cli/CliPlatform.js"
import { clients } from "../../src/cli/clients.js"
import { domains } from "../../src/cli/domains.js"
import { migrate } from "../../src/cli/migrate.js"
import { servers } from "../../src/cli/servers.js"
import { messageOf } from "../../src/ErrorText.js"
import { tenants } from "../../src/cli/tenants.js"
import { token } from "../../src/cli/token.js"
import { PlatformDb } from "../../src/platform/PlatformDb.js"
import { TenantAdmin } from "../../src/platform/TenantAdmin.js"
import { withTenant } from "../../src/tenancy/TenantContexts.js"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { TenantSession } from "../../src/tenancy/TenantSession.js"
import { TenantMigrations } from "../../src/tenancy/TenantMigrations.js"
import { dropNamespace, makeNamespace, testConfig } from "../../src/testing/TestDatabases.js"
import { TestIssuer } from "../../src/testing/TestIssuer.js"
import { platformWith } from "../../src/PlatformLive.js"
import { adminQuery, adminUrl, type Captured, captureConsole, decodeJwt } from "./support.js"

/**
 * The CLI's commands in-process: the same command definitions main.ts runs,
 * with the platform's services from this process, stdout and stderr captured.
 * What a child process adds (exit codes, the environment, the error line
 * main.ts prints, the effect on a running server) is in cli.test.ts; here is
 * the rest: help of every command, every output form, and the failure paths,
 * each with what it must not have done.
 */

const namespace = makeNamespace()
const secondUrl = inject("secondDatabaseUrl")
const dataDir = mkdtempSync(join(tmpdir(), "tenant-engine-commands-"))

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

// main.ts's tree, but for serve and the CliPlatform (the services come from TestLayer).
const root = Command.make("tenant-engine").pipe(Command.withSubcommands([migrate, tenants, servers, clients, domains, token]))
const runRoot = Command.run(root, { name: "tenant-engine", version: "0.1.0" })

/** The environment the commands read their settings from (only `token` reads any here). */
const environment = (extra: Record<string, string> = {}) =>
  ConfigProvider.fromMap(new Map(Object.entries({ DATA_DIR: dataDir, ...extra })))

const run = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  captureConsole(runRoot(["node", "tenant-engine", ...args])).pipe(
    Effect.provide(NodeContext.layer),
    Effect.withConfigProvider(environment(env))
  )

const ok = (result: Captured<void, unknown>) => {
  if (Exit.isFailure(result.exit)) throw new Error(`the command failed: ${Cause.pretty(result.exit.cause)}\n${result.stderr}`)
  return result.stdout
}

/** The line main.ts would print on stderr: the typed failure's message, or what the CLI itself printed. */
const failure = (result: Captured<void, unknown>) => {
  if (Exit.isSuccess(result.exit)) throw new Error(`expected a failure; printed:\n${result.stdout}`)
  const error = Cause.failureOption(result.exit.cause)
  if (Option.isNone(error)) throw new Error(`expected a typed failure, got ${Cause.pretty(result.exit.cause)}`)
  const cliPrinted = result.stderr.trim()
  return error.value !== null && typeof error.value === "object" && "_tag" in error.value &&
      String(error.value._tag).endsWith("ValidationError") || cliPrinted !== ""
    ? cliPrinted
    : `error: ${messageOf(error.value)}`
}

const rowsOf = (query: string) =>
  Effect.flatMap(PlatformDb, (sql) => sql.unsafe<Record<string, unknown>>(query).pipe(Effect.orDie))

layer(TestLayer, { excludeTestServices: true, timeout: 120_000 })("operator CLI (in-process)", (it) => {
  it.effect("--help on every command: exit 0, naming its subcommands and options", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, ReadonlyArray<string>]> = [
        [["migrate"], ["--concurrency integer", "--status", "--json"]],
        [["tenants"], [
          "create --name text [--strategy database | schema] [--server text] [--json] <ID>",
          "show [--json] <ID>",
          "list [--json]",
          "suspend <ID>",
          "resume <ID>",
          "delete [--yes] <ID>"
        ]],
        [["tenants", "create"], ["--name text", "--strategy database | schema", "--server text", "--json", "<ID>"]],
        [["tenants", "show"], ["--json", "<ID>"]],
        [["tenants", "list"], ["--json"]],
        [["tenants", "suspend"], ["<ID>"]],
        [["tenants", "resume"], ["<ID>"]],
        [["tenants", "delete"], ["--yes", "<ID>"]],
        [["clients"], ["add --name text [--json] <TENANT> <CLIENT_ID>", "list [--json] <TENANT>", "disable <TENANT> <CLIENT_ID>"]],
        [["clients", "add"], ["--name text", "--json", "<TENANT>", "<CLIENT_ID>"]],
        [["clients", "list"], ["--json", "<TENANT>"]],
        [["clients", "disable"], ["<TENANT>", "<CLIENT_ID>"]],
        [["domains"], ["add [--json] <TENANT> <DOMAIN>", "list [--json] <TENANT>"]],
        [["domains", "add"], ["--json", "<TENANT>", "<DOMAIN>"]],
        [["domains", "list"], ["--json", "<TENANT>"]],
        [["token"], ["user --tenant text", "machine --client text", "admin [--sub text]"]],
        [["token", "user"], ["--tenant text", "--sub text", "--scope text", "--email text", "--lifetime text"]],
        [["token", "machine"], ["--client text", "--scope text", "--lifetime text"]],
        [["token", "admin"], ["--sub text", "--lifetime text"]]
      ]
      for (const [command, mentions] of cases) {
        const help = ok(yield* run([...command, "--help"]))
        expect(help, command.join(" ")).toContain("USAGE")
        for (const mention of mentions) expect(help, `${command.join(" ")} --help`).toContain(mention)
      }
      // A bare group prints its help too and does nothing else.
      expect(ok(yield* run(["tenants"]))).toContain("create --name text [--strategy database | schema]")
    }))

  it.effect("tenants: create --json, list as a table, and refusals that change nothing", () =>
    Effect.gen(function*() {
      const created = JSON.parse(ok(yield* run(["tenants", "create", "t-one", "--name", "Tenant One", "--json"])))
      expect(created).toEqual({
        id: "t-one",
        name: "Tenant One",
        status: "active",
        createdAt: expect.any(String),
        placement: {
          server: "default",
          strategy: "database",
          database: expect.stringMatching(/_t_one$/),
          schema: null,
          role: expect.stringMatching(/_t_one$/)
        }
      })
      ok(yield* run(["tenants", "create", "t-two", "--name", "Tenant Two", "--strategy", "schema"]))
      // tenants show: the admin view, as JSON (as the admin API has it) or as lines.
      const shown = JSON.parse(ok(yield* run(["tenants", "show", "t-two", "--json"])))
      expect(shown.placement).toEqual({
        server: "default",
        strategy: "schema",
        database: expect.stringMatching(/__shared$/),
        schema: expect.stringMatching(/_t_two$/),
        role: expect.stringMatching(/_t_two$/)
      })
      const lines = ok(yield* run(["tenants", "show", "t-one"])).split("\n")
      expect(lines.map((line) => line.split(": ")[0])).toEqual([
        "id", "name", "status", "createdAt", "server", "strategy", "database", "schema", "role"
      ])
      expect(lines).toContain("strategy: database")
      expect(lines).toContain("schema: -")
      expect(failure(yield* run(["tenants", "show", "nobody"]))).toBe("error: no tenant nobody")
      expect(failure(yield* run(["tenants", "create", "t-four", "--name", "Four", "--strategy", "rows"])))
        .toContain("Expected one of the following cases: database, schema")
      expect(failure(yield* run(["tenants", "create", "t-four", "--name", "Four", "--server", "elsewhere"])))
        .toBe(`error: no server named "elsewhere"`)
      ok(yield* run(["tenants", "suspend", "t-two"]))

      const table = ok(yield* run(["tenants", "list"])).split("\n")
      expect(table[0]).toMatch(/^id\s+name\s+status\s+strategy\s+createdAt$/)
      expect(table.slice(1).map((line) => line.split(/\s{2,}/).slice(0, 4))).toEqual([
        ["t-one", "Tenant One", "active", "database"],
        ["t-two", "Tenant Two", "suspended", "schema"]
      ])

      // A duplicate keeps the first; an unknown tenant cannot be suspended, resumed or deleted.
      expect(failure(yield* run(["tenants", "create", "t-one", "--name", "Impostor"]))).toBe(
        "error: tenant t-one already exists"
      )
      expect(failure(yield* run(["tenants", "create", "x", "--name", "Too short"]))).toBe(`error: invalid tenant id "x"`)
      expect(failure(yield* run(["tenants", "create", "t-three", "--name", ""]))).toBe(
        "error: a tenant name is 1 to 200 characters"
      )
      for (const verb of ["suspend", "resume"]) {
        expect(failure(yield* run(["tenants", verb, "nobody"]))).toBe("error: no tenant nobody")
      }
      expect(failure(yield* run(["tenants", "delete", "nobody", "--yes"]))).toBe("error: no tenant nobody")
      expect(yield* rowsOf("SELECT id, name FROM tenants ORDER BY id")).toEqual([
        { id: "t-one", name: "Tenant One" },
        { id: "t-two", name: "Tenant Two" }
      ])
      // An empty list is said so.
      ok(yield* run(["tenants", "delete", "t-two", "--yes"]))
      ok(yield* run(["tenants", "delete", "t-one", "--yes"]))
      expect(ok(yield* run(["tenants", "list"]))).toBe("(none)")
      expect(JSON.parse(ok(yield* run(["tenants", "list", "--json"])))).toEqual([])
    }))

  it.effect("clients: add --json, list as a table and JSON, disable; refusals leave nothing behind", () =>
    Effect.gen(function*() {
      ok(yield* run(["tenants", "create", "c-one", "--name", "Clients One"]))
      ok(yield* run(["tenants", "create", "c-two", "--name", "Clients Two"]))
      const added = JSON.parse(ok(yield* run(["clients", "add", "c-one", "svc-a", "--name", "Service A", "--json"])))
      expect(added).toEqual({
        clientId: "svc-a",
        tenantId: "c-one",
        displayName: "Service A",
        accountId: expect.stringMatching(/^[0-9a-f-]{36}$/),
        disabled: false,
        createdAt: expect.any(String)
      })
      ok(yield* run(["clients", "add", "c-one", "svc-b", "--name", "Service B"]))
      expect(ok(yield* run(["clients", "disable", "c-one", "svc-b"]))).toBe("client svc-b of tenant c-one is disabled")

      const table = ok(yield* run(["clients", "list", "c-one"])).split("\n")
      expect(table[0]).toMatch(/^clientId\s+displayName\s+accountId\s+disabled\s+createdAt$/)
      expect(table.slice(1).map((line) => line.split(/\s{2,}/))).toEqual([
        ["svc-a", "Service A", added.accountId, "false", expect.any(String)],
        ["svc-b", "Service B", expect.any(String), "true", expect.any(String)]
      ])
      const json = JSON.parse(ok(yield* run(["clients", "list", "c-one", "--json"]))) as Array<{ clientId: string; disabled: boolean }>
      expect(json.map((c) => [c.clientId, c.disabled])).toEqual([
        ["svc-a", false],
        ["svc-b", true]
      ])
      expect(ok(yield* run(["clients", "list", "c-two"]))).toBe("(none)")

      const accountsBefore = yield* rowsOf("SELECT count(*)::int AS n FROM accounts")
      // Unknown tenant; duplicate client id (in this tenant or another); bad ids; a missing --name.
      expect(failure(yield* run(["clients", "add", "nobody", "svc-x", "--name", "X"]))).toBe("error: no tenant nobody")
      expect(failure(yield* run(["clients", "add", "c-one", "svc-a", "--name", "Again"]))).toBe(
        "error: a service client svc-a is already registered"
      )
      expect(failure(yield* run(["clients", "add", "c-two", "svc-a", "--name", "Elsewhere"]))).toBe(
        "error: a service client svc-a is already registered"
      )
      expect(failure(yield* run(["clients", "add", "c-one", "", "--name", "Empty"]))).toBe(
        "error: a client id must be 1 to 200 characters of text"
      )
      expect(failure(yield* run(["clients", "add", "c-one", "svc-c", "--name", ""]))).toBe(
        "error: a display name must be 1 to 200 characters of text"
      )
      expect(failure(yield* run(["clients", "add", "c-one", "svc-c"]))).toBe("Expected to find option: '--name'")
      expect(failure(yield* run(["clients", "list", "nobody"]))).toBe("error: no tenant nobody")
      expect(failure(yield* run(["clients", "disable", "c-two", "svc-a"]))).toBe(
        "error: no service client svc-a in tenant c-two"
      )
      expect(failure(yield* run(["clients", "disable", "nobody", "svc-a"]))).toBe("error: no tenant nobody")
      expect(yield* rowsOf("SELECT count(*)::int AS n FROM accounts")).toEqual(accountsBefore)
      expect(yield* rowsOf("SELECT client_id, tenant_id, display_name FROM service_clients ORDER BY client_id")).toEqual([
        { client_id: "svc-a", tenant_id: "c-one", display_name: "Service A" },
        { client_id: "svc-b", tenant_id: "c-one", display_name: "Service B" }
      ])
    }))

  it.effect("domains: add --json, list as a table and JSON; bad, taken and unknown refused", () =>
    Effect.gen(function*() {
      ok(yield* run(["tenants", "create", "d-one", "--name", "Domains One"]))
      ok(yield* run(["tenants", "create", "d-two", "--name", "Domains Two"]))
      const added = JSON.parse(ok(yield* run(["domains", "add", "d-one", " Example.COM ", "--json"])))
      expect(added).toEqual({ domain: "example.com", tenantId: "d-one", createdAt: expect.any(String) })
      ok(yield* run(["domains", "add", "d-one", "bücher.example"]))
      const table = ok(yield* run(["domains", "list", "d-one"])).split("\n")
      expect(table[0]).toMatch(/^domain\s+createdAt$/)
      expect(table.slice(1).map((line) => line.split(/\s{2,}/)[0])).toEqual(["example.com", "xn--bcher-kva.example"])
      expect(JSON.parse(ok(yield* run(["domains", "list", "d-one", "--json"]))).map((d: { domain: string }) => d.domain))
        .toEqual(["example.com", "xn--bcher-kva.example"])
      expect(ok(yield* run(["domains", "list", "d-two"]))).toBe("(none)")

      for (const bad of ["not a domain", "localhost", "a..b", "-x.example", "example.123", ""]) {
        expect(failure(yield* run(["domains", "add", "d-two", bad])), bad).toBe(
          `error: ${JSON.stringify(bad)} is not a domain name`
        )
      }
      expect(failure(yield* run(["domains", "add", "d-two", "EXAMPLE.com"]))).toBe(
        "error: the domain example.com is already registered"
      )
      expect(failure(yield* run(["domains", "add", "nobody", "nobody.example"]))).toBe("error: no tenant nobody")
      expect(failure(yield* run(["domains", "list", "nobody"]))).toBe("error: no tenant nobody")
      expect(yield* rowsOf("SELECT domain, tenant_id FROM tenant_domains ORDER BY domain")).toEqual([
        { domain: "example.com", tenant_id: "d-one" },
        { domain: "xn--bcher-kva.example", tenant_id: "d-one" }
      ])
    }))

  it.effect("migrate: no-op, --status as a table, --concurrency must be at least 1, a failure then a rerun (--json)", () =>
    Effect.gen(function*() {
      const databases = yield* TenantDatabases
      ok(yield* run(["tenants", "create", "m-one", "--name", "Migrate One"]))
      ok(yield* run(["tenants", "create", "m-two", "--name", "Migrate Two"]))
      expect(ok(yield* run(["migrate"]))).toBe("every tenant is at schema version 1")
      expect(ok(yield* run(["migrate", "--concurrency", "3"]))).toBe("every tenant is at schema version 1")

      // m-two "lost" its record of 0001 while keeping its table: its migration fails.
      const database = databases.databaseName("m-two")
      yield* adminQuery("DELETE FROM schema_migrations", [], database)
      yield* Effect.flatMap(PlatformDb, (sql) => Effect.orDie(sql`UPDATE tenants SET schema_version = 0 WHERE id = 'm-two'`))
      // (Tenants of the other tests are listed too: only this test's are looked at.)
      const mine = (text: string) =>
        text.split("\n").slice(1).map((line) => line.split(/\s{2,}/)).filter((cells) => cells[0]!.startsWith("m-"))
      const before = ok(yield* run(["migrate", "--status"]))
      expect(before.split("\n")[0]).toMatch(/^id\s+state\s+version\s+error$/)
      expect(mine(before)).toEqual([
        ["m-one", "current", "1"],
        ["m-two", "behind", "0"]
      ])

      // 0 or less is refused before anything runs.
      for (const n of ["0", "-1"]) {
        expect(failure(yield* run(["migrate", "--concurrency", n]))).toBe("--concurrency must be at least 1")
      }
      expect(failure(yield* run(["migrate", "--concurrency", "many"]))).toBe("'many' is not a integer")
      expect((yield* rowsOf("SELECT migration_state FROM tenants WHERE id = 'm-two'"))[0]).toEqual({
        migration_state: "current"
      })

      const failed = yield* run(["migrate", "--concurrency", "1"])
      expect(failure(failed)).toBe("error: 1 of 1 tenants failed to migrate; rerun after fixing")
      expect(failed.stdout).toMatch(
        /^schema version 1: 0 migrated, 1 failed, 0 skipped\n {2}failed: m-two: Migration "1_notes" failed: .*relation "notes" already exists$/
      )
      const status = mine(ok(yield* run(["migrate", "--status"])))
      expect(status[1]).toEqual(["m-two", "failed", "0", expect.stringMatching(/relation "notes" already exists/)])

      // Fixed, then a rerun migrates it alone.
      yield* adminQuery("DROP TABLE notes", [], database)
      const summary = JSON.parse(ok(yield* run(["migrate", "--json"])))
      expect(summary).toEqual({ latest: 1, migrated: ["m-two"], failed: [], skipped: [] })
      const rows = JSON.parse(ok(yield* run(["migrate", "--status", "--json"]))) as Array<{ id: string }>
      expect(rows.filter((r) => r.id.startsWith("m-"))).toEqual([
        { id: "m-one", state: "current", version: 1, error: null },
        { id: "m-two", state: "current", version: 1, error: null }
      ])
    }))

  it.effect("a bad setting in the environment: refused on one line naming the variable, before anything runs", () =>
    Effect.gen(function*() {
      const bad = { DATABASE_URL: "mysql://somewhere/db", TENANT_DATABASE_PREFIX: "Bad-Prefix", DATA_DIR: dataDir }
      // The commands on the platform (their services come from CliPlatform, as main.ts gives them)...
      const platform = yield* Effect.exit(
        Effect.provide(TenantAdmin, CliPlatform).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(bad)))))
      )
      const line = `error: ${messageOf(Exit.isFailure(platform) ? Cause.squash(platform.cause) : undefined)}`
      expect(line).toBe(
        "error: invalid configuration: DATABASE_URL: must be a postgres:// or postgresql:// URL; " +
          "TENANT_DATABASE_PREFIX: must be lowercase letters, digits and '_', starting with a letter"
      )
      // ...and token, which reads the settings itself.
      expect(failure(yield* run(["token", "admin"], { AUTH_ALGORITHMS: "HS256" }))).toMatch(
        /^error: invalid configuration: AUTH_ALGORITHMS: must be a comma-separated list of [^\n]+$/
      )
    }))

  it.effect("token: claims from the options; refused with a real issuer configured or a bad lifetime", () =>
    Effect.gen(function*() {
      const user = decodeJwt(ok(yield* run([
        "token",
        "user",
        "--tenant",
        "acme",
        "--email",
        "ann@acme.example",
        "--scope",
        "notes:read,notes:write",
        "--lifetime",
        "5 minutes"
      ])))
      expect(user.payload).toMatchObject({
        iss: "urn:tenant-engine:dev-issuer",
        aud: "platform",
        sub: "dev-user",
        tenant: "acme",
        email: "ann@acme.example",
        email_verified: true,
        scope: "notes:read notes:write"
      })
      expect(Number(user.payload["exp"]) - Number(user.payload["iat"])).toBe(300)
      const machine = decodeJwt(ok(yield* run(["token", "machine", "--client", "svc-z", "--scope", "notes:read"])))
      expect(machine.payload).toMatchObject({ sub: "svc-z", client_id: "svc-z", scope: "notes:read" })
      const operator = decodeJwt(ok(yield* run(["token", "admin", "--sub", "root"])))
      expect(operator.payload).toMatchObject({ sub: "root", scope: "platform:admin" })
      // One key: all three are signed with the data folder's key.
      expect(new Set([user.header["kid"], machine.header["kid"], operator.header["kid"]]).size).toBe(1)

      expect(failure(yield* run(["token", "admin"], { AUTH_ISSUER: "https://login.example.com/" }))).toBe(
        "error: AUTH_ISSUER is set: tokens come from that issuer; this command mints development tokens only"
      )
      expect(failure(yield* run(["token", "admin", "--lifetime", "forever"]))).toBe(
        "error: --lifetime: not a duration: forever"
      )
      expect(failure(yield* run(["token", "user"]))).toBe("Expected to find option: '--tenant'")
      expect(failure(yield* run(["token", "machine"]))).toBe("Expected to find option: '--client'")
    }))

  it.effect("servers: add, list as a table and JSON (no URL), drain, remove; tenants move --json, and refusals", () =>
    Effect.gen(function*() {
      const password = new URL(secondUrl).password
      expect(ok(yield* run(["servers", "add", "spare", secondUrl, "--weight", "2", "--max-connections", "12"]))).toBe("server spare added")
      const table = ok(yield* run(["servers", "list"]))
      expect(table).toMatch(/^name +status +weight +maxConnections +tenants\ndefault +active +1 +20 +\d+\nspare +active +2 +12 +0$/)
      const listed = JSON.parse(ok(yield* run(["servers", "list", "--json"])))
      expect(listed).toContainEqual({ name: "spare", status: "active", weight: 2, maxConnections: 12, tenants: 0 })
      // The URL (and its password, when it has one) is never printed again.
      if (password !== "") expect(JSON.stringify(listed) + table).not.toContain(password)
      expect(JSON.stringify(listed) + table).not.toContain(new URL(secondUrl).host)
      expect(failure(yield* run(["servers", "add", "spare", secondUrl]))).toBe("error: a server named spare is registered")

      ok(yield* run(["tenants", "create", "wanderer", "--name", "W", "--server", "default"]))
      const moved = JSON.parse(ok(yield* run(["tenants", "move", "wanderer", "--to", "spare", "--strategy", "schema", "--json"])))
      expect(moved).toMatchObject({
        tenantId: "wanderer",
        moved: true,
        from: { server: "default", strategy: "database" },
        to: { server: "spare", strategy: "schema" },
        tables: [{ table: "notes", rows: 0 }]
      })
      expect(moved.unavailableMillis).toBeGreaterThan(0)
      const shown = JSON.parse(ok(yield* run(["tenants", "show", "wanderer", "--json"])))
      expect(shown.placement).toMatchObject({ server: "spare", strategy: "schema" })
      // On a terminal: the steps on stderr, a summary on stdout.
      const back = yield* run(["tenants", "move", "wanderer", "--to", "default"])
      expect(ok(back)).toMatch(/^tenant: wanderer\nmoved: true\nfrom: spare \(schema\)\nto: default \(schema\)\nrows: 0\nunavailableMs: \d+$/)
      expect(back.stderr).toContain("copied notes: 0 rows")
      expect(failure(yield* run(["tenants", "move", "nobody", "--to", "spare"]))).toBe("error: no tenant nobody")
      expect(failure(yield* run(["tenants", "move", "wanderer", "--to", "nowhere"]))).toBe("error: no server named \"nowhere\"")

      ok(yield* run(["tenants", "move", "wanderer", "--to", "spare"]))
      expect(failure(yield* run(["servers", "remove", "spare"]))).toBe(
        "error: server spare holds tenants: move them to another server first"
      )
      expect(ok(yield* run(["servers", "drain", "spare"]))).toContain("server spare is draining")
      expect(failure(yield* run(["tenants", "create", "late", "--name", "L", "--server", "spare"]))).toBe(
        "error: server spare is draining: it takes no new tenants"
      )
      ok(yield* run(["tenants", "move", "wanderer", "--to", "default"]))
      expect(ok(yield* run(["servers", "remove", "spare"]))).toBe("server spare removed")
      expect(failure(yield* run(["servers", "remove", "spare"]))).toBe("error: no server named \"spare\"")
    }))

  it.effect("tenants rotate-credentials: one tenant's role or gateway, --all, --json; never a password; refusals", () =>
    Effect.gen(function*() {
      const help = ok(yield* run(["tenants", "rotate-credentials", "--help"]))
      for (const mention of ["--all", "--json", "<ID>"]) expect(help).toContain(mention)
      ok(yield* run(["tenants", "create", "r-one", "--name", "R one"]))
      ok(yield* run(["tenants", "create", "r-two", "--name", "R two", "--strategy", "schema"]))
      const platform = yield* PlatformDb
      const databases = yield* TenantDatabases
      const passwords: Array<string> = []
      const remember = (id: string) =>
        Effect.map(databases.placement(id), (placement) => passwords.push(Redacted.value(placement.login.password)))
      yield* remember("r-one")
      yield* remember("r-two")

      const role = yield* platform<{ db_role: string }>`SELECT db_role FROM tenants WHERE id = 'r-one'`
      const one = yield* run(["tenants", "rotate-credentials", "r-one"])
      expect(ok(one)).toBe(`tenant r-one: role ${role[0]!.db_role} on default: credential version 2`)
      // A schema tenant logs in through its server's gateway: that is what turns.
      const two = JSON.parse(ok(yield* run(["tenants", "rotate-credentials", "r-two", "--json"])))
      expect(two).toEqual({
        tenantId: "r-two",
        kind: "gateway",
        server: "default",
        role: expect.stringMatching(/__gateway$/),
        version: 2,
        converted: false,
        tenants: expect.any(Number)
      })
      yield* remember("r-one")
      yield* remember("r-two")
      const all = yield* run(["tenants", "rotate-credentials", "--all", "--json"])
      const report = JSON.parse(ok(all))
      expect(report.failed).toEqual([])
      expect(report.rotated).toContainEqual(
        { kind: "role", server: "default", role: role[0]!.db_role, version: 3, converted: false, tenants: 1 }
      )
      expect(report.rotated).toContainEqual(expect.objectContaining({ kind: "gateway", server: "default", version: 3 }))
      const plain = ok(yield* run(["tenants", "rotate-credentials", "--all"]))
      expect(plain).toMatch(/^role .+ on default: credential version 4$/m)
      expect(plain).toMatch(/^\d+ login\(s\) rotated, 0 failed$/m)
      yield* remember("r-one")
      yield* remember("r-two")
      // What the engine logs in with now was never printed, nor any before it.
      for (const password of passwords) expect(one.stdout + JSON.stringify(two) + all.stdout + plain).not.toContain(password)
      expect(new Set(passwords).size).toBe(passwords.length)
      // Both still serve, on the new passwords.
      const admin = yield* TenantAdmin
      for (const id of ["r-one", "r-two"]) {
        expect((yield* admin.find(id)).status).toBe("active")
        expect(yield* Effect.flatMap(TenantSession, ({ sql }) => sql<{ one: number }>`SELECT 1 AS one`).pipe(withTenant(id)))
          .toEqual([{ one: 1 }])
      }

      expect(failure(yield* run(["tenants", "rotate-credentials"]))).toBe("error: name one tenant ID, or --all")
      expect(failure(yield* run(["tenants", "rotate-credentials", "r-one", "--all"]))).toBe(
        "error: name one tenant ID, or --all"
      )
      expect(failure(yield* run(["tenants", "rotate-credentials", "nobody"]))).toBe("error: no tenant nobody")
      expect(yield* platform`SELECT credential_version FROM tenants WHERE id = 'r-one'`).toEqual([{ credential_version: 4 }])
    }))
})
