import { Cause, Duration, Effect, Either, Option, Redacted } from "effect"
import Pg from "pg"
import { readFile } from "node:fs/promises"
import { join } from "node:path"
import { readSettings, type Settings, tenantAdminUrl } from "../AppConfig.js"
import { login, serverOf, withDatabase } from "../db/DatabaseUrl.js"
import { fromFolder, latestVersion, MIGRATIONS_TABLE, platformMigrations, tenantMigrations } from "../db/Migrations.js"
import { describeError } from "../ErrorText.js"
import { startEmbeddedPostgres } from "../platform/EmbeddedPostgres.js"
import { roleSecretFile } from "../platform/Environment.js"
import { rolePassword, secretFingerprint } from "../tenancy/TenantPlacement.js"

/**
 * What `tenant-engine doctor` checks, each on its own and bounded in time, so
 * that one that cannot run (the platform database is down, a server does not
 * answer) is reported as failed and the others still are. Everything is read;
 * nothing is changed (but, with no DATABASE_URL, the embedded PostgreSQL is
 * started as every command does).
 *
 * Loaded by the `doctor` command when it runs (src/cli/doctor.ts), not at start.
 */

export type Status = "ok" | "warn" | "fail"

export interface Check {
  readonly name: string
  readonly status: Status
  readonly detail: string
  /** What to do about it (lines), for a warn or a fail. */
  readonly fix?: string
}

export interface DoctorOptions {
  /** Bound on each check (connecting and every query or request in it). */
  readonly timeout: Duration.Duration
}

/** The oldest PostgreSQL the engine works on: it drops databases `WITH (FORCE)` (13). */
const MIN_SERVER_VERSION = 130000

/** TenantMigrator's STALE_CLAIM: a `migrating` claim older than this is from a runner that died. */
const STALE_MIGRATION_CLAIM = "15 minutes"

/** ConnectionShares' SILENT_AFTER: an engine process not seen for this long is gone. */
const PROCESS_SILENT_AFTER = "10 seconds"

/** A tenant still `provisioning` or `deleting` after this long was left by a run that died. */
const LEFT_BEHIND_AFTER = "10 minutes"

/** How many ids a check names before saying "and N more". */
const NAMED = 5

const check = (name: string, status: Status, detail: string, fix?: ReadonlyArray<string>): Check =>
  fix !== undefined && fix.length > 0 ? { name, status, detail, fix: fix.join("\n") } : { name, status, detail }

const worst = (statuses: ReadonlyArray<Status>): Status =>
  statuses.includes("fail") ? "fail" : statuses.includes("warn") ? "warn" : "ok"

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`

const seconds = (duration: Duration.Duration) => `${Duration.toSeconds(duration)} s`

/** `a, b, c and 2 more`. */
const someOf = (ids: ReadonlyArray<string>, total: number) =>
  ids.join(", ") + (total > ids.length ? ` and ${total - ids.length} more` : "")

/** host:port of a URL: where a server is, without its credentials or database. */
const hostOf = (url: Redacted.Redacted<string>) => {
  try {
    return new URL(Redacted.value(url)).host
  } catch {
    return "(an unreadable URL)"
  }
}

const databaseNameOf = (url: Redacted.Redacted<string>) => {
  try {
    return decodeURIComponent(new URL(Redacted.value(url)).pathname.replace(/^\//, "")) || "postgres"
  } catch {
    return "postgres"
  }
}

// --- secrets ---

/**
 * The passwords and URLs this run has seen. Nothing the doctor writes is meant
 * to contain one (pg's messages name a host and a user, not a password), but
 * every line is scrubbed of them before it is printed all the same.
 */
class Secrets {
  private readonly known = new Set<string>()

  add(url: Redacted.Redacted<string> | string) {
    const text = typeof url === "string" ? url : Redacted.value(url)
    this.known.add(text)
    try {
      const password = new URL(text).password
      if (password !== "") {
        this.known.add(password)
        this.known.add(decodeURIComponent(password))
      }
    } catch {
      // Not a URL: the text itself is the secret.
    }
  }

  scrub(text: string): string {
    let clean = text
    // Longest first, so that a URL goes before the password inside it. Very
    // short strings are left: scrubbing "a" would garble every line.
    for (const secret of [...this.known].sort((a, b) => b.length - a.length)) {
      if (secret.length >= 4) clean = clean.split(secret).join("***")
    }
    return clean
  }
}

// --- PostgreSQL ---

interface DbProblem {
  readonly code: string | undefined
  readonly message: string
}

/**
 * Connects with a client of its own, runs `use`, and closes it. The timeout
 * bounds the connection and each query (client side: a pooler in front would
 * refuse `statement_timeout` as a start-up parameter); an interruption (the
 * check's own timeout) closes the client.
 */
const withClient = <A>(
  url: Redacted.Redacted<string>,
  timeout: Duration.Duration,
  use: (client: Pg.Client) => Promise<A>
): Effect.Effect<A, DbProblem> =>
  Effect.tryPromise({
    try: async (signal) => {
      const millis = Duration.toMillis(timeout)
      const client = new Pg.Client({
        connectionString: Redacted.value(url),
        connectionTimeoutMillis: millis,
        query_timeout: millis,
        application_name: "tenant-engine/doctor"
      })
      // An error after connecting (the server went away) must not be an unhandled 'error' event.
      client.on("error", () => undefined)
      signal.addEventListener("abort", () => void client.end().catch(() => undefined))
      try {
        await client.connect()
        return await use(client)
      } finally {
        await client.end().catch(() => undefined)
      }
    },
    catch: (cause): DbProblem => ({
      code: typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string"
        ? cause.code
        : undefined,
      message: describeError(cause)
    })
  })

/** What to do when a server cannot be used, by what went wrong. */
const connectionFix = (problem: DbProblem, where: string, variable: string): ReadonlyArray<string> => {
  switch (problem.code) {
    case "ECONNREFUSED":
    case "ENOTFOUND":
    case "EAI_AGAIN":
    case "EHOSTUNREACH":
    case "ETIMEDOUT":
      return [`is PostgreSQL running and reachable at ${where}? Check the host and port in ${variable}`]
    case "28P01":
    case "28000":
      return [`the server refused the login: check the user and password in ${variable}`]
    case "3D000":
      return [`the database ${variable} names does not exist on ${where}`]
    case "57P03":
      return ["the server is starting up or shutting down: run the doctor again in a minute"]
    case "53300":
      return ["the server has no connection slot left: see what holds them (pg_stat_activity) or raise max_connections"]
    default:
      return [`check ${variable} and that the server at ${where} answers`]
  }
}

const serverVersion = async (client: Pg.Client) => {
  const { rows } = await client.query<{ version: string; num: number }>(
    "SELECT current_setting('server_version') AS version, current_setting('server_version_num')::int AS num"
  )
  const row = rows[0]
  return { version: (row?.version ?? "?").split(" ")[0] ?? "?", num: row?.num ?? 0 }
}

const tableExists = async (client: Pg.Client, table: string) => {
  const { rows } = await client.query<{ present: boolean }>("SELECT to_regclass($1) IS NOT NULL AS present", [table])
  return rows[0]?.present === true
}

// --- what the platform database says ---

interface ServerRow {
  readonly name: string
  readonly admin_url: string | null
  readonly status: string
  readonly max_connections: number
  readonly tenants: number
}

interface PlatformState {
  readonly servers: ReadonlyArray<ServerRow>
  /** Live engine processes' claims, by server. */
  readonly claims: ReadonlyArray<Readonly<Record<string, number>>>
}

// --- the checks ---

export const diagnose = (options: DoctorOptions) =>
  Effect.gen(function*() {
    const settingsRead = yield* Effect.either(readSettings)
    if (Either.isLeft(settingsRead)) {
      // Without valid settings the engine does not start, and the other checks
      // would only guess at what it would connect to: this is the one to fix.
      return [
        check(
          "configuration",
          "fail",
          // A rule's message names its variable, and so may the path before it: once is enough.
          `invalid: ${settingsRead.left.problems.map((p) => p.replace(/^(\w+): \1: /, "$1: ")).join("; ")}. ` +
            "The other checks need a valid configuration.",
          ["correct each variable named above (README, \"Configuration\")"]
        )
      ]
    }
    const settings = settingsRead.right
    const secrets = new Secrets()
    for (const url of [settings.databaseUrl, settings.tenantDatabaseUrl]) {
      if (Option.isSome(url)) secrets.add(url.value)
    }
    const roleSecret = yield* readRoleSecret(settings)
    if (Option.isSome(roleSecret)) secrets.add(roleSecret.value)
    // The issuers do not depend on the databases: checked meanwhile.
    const issuersFiber = yield* Effect.fork(
      Effect.forEach(issuerChecks(settings, options.timeout), (c) => c, { concurrency: "unbounded" })
    )

    // The platform database: where it is (starting the embedded one when that is the configuration), then a look at it.
    const platformUrl = yield* Option.match(settings.databaseUrl, {
      onSome: (url) => Effect.succeed(Either.right<Redacted.Redacted<string>>(url)),
      onNone: () =>
        startEmbeddedPostgres({ directory: join(settings.dataDir, "postgres") }).pipe(
          Effect.map((server) => {
            secrets.add(server.url)
            return Either.right<Redacted.Redacted<string>>(withDatabase(server.url, "platform"))
          }),
          Effect.catchAllCause((cause) =>
            Effect.succeed(Either.left<string>(describeError(Cause.squash(cause))))
          )
        )
    })
    const platformUnread = (detail: string, fix: ReadonlyArray<string>) => ({
      check: check("platform database", "fail", detail, fix),
      state: Option.none<PlatformState>()
    })
    const platform = Either.isRight(platformUrl)
      ? yield* platformCheck(platformUrl.right, settings, options.timeout).pipe(
        Effect.timeoutTo({
          duration: options.timeout,
          onSuccess: (done) => done,
          onTimeout: () =>
            platformUnread(`no answer within ${seconds(options.timeout)}`, [
              "is it overloaded or out of reach? (tenant-engine doctor --timeout SECONDS waits longer)"
            ])
        }),
        Effect.catchAllCause((cause) =>
          Effect.succeed(platformUnread(`the check itself failed: ${describeError(Cause.squash(cause))}`, []))
        )
      )
      : platformUnread(`the embedded PostgreSQL could not start: ${platformUrl.left}`, [
        "see why above; or set DATABASE_URL to a PostgreSQL server"
      ])
    for (const row of Option.match(platform.state, { onNone: () => [], onSome: (s) => s.servers })) {
      if (row.admin_url !== null) secrets.add(row.admin_url)
    }

    const serverChecksRun = Either.isRight(platformUrl)
      ? serverChecks(settings, platformUrl.right, platform.state, options.timeout)
      : []
    const fleet = Either.isRight(platformUrl) && Option.isSome(platform.state)
      ? [fleetCheck(platformUrl.right, platform.state.value, options.timeout)]
      : [Effect.succeed(check("fleet", "fail", "not checked: the platform database cannot be read", [
        "fix the platform database first (above)"
      ]))]
    const logins = Either.isRight(platformUrl) && Option.isSome(platform.state)
      ? [tenantLoginsCheck(settings, roleSecret, platformUrl.right, platform.state.value, secrets, options.timeout)]
      : []
    const [servers, loginChecks, fleetChecks] = yield* Effect.all([
      Effect.forEach(serverChecksRun, (c) => c, { concurrency: "unbounded" }),
      Effect.forEach(logins, (c) => c, { concurrency: "unbounded" }),
      Effect.forEach(fleet, (c) => c, { concurrency: "unbounded" })
    ], { concurrency: "unbounded" })
    const issuers = yield* issuersFiber

    const all = [
      configurationCheck(settings, platformUrl, platform.state),
      platform.check,
      ...servers,
      ...loginChecks,
      ...issuers,
      ...fleetChecks
    ]
    return all.map((c): Check => {
      const detail = secrets.scrub(c.detail)
      return c.fix !== undefined ? { ...c, detail, fix: secrets.scrub(c.fix) } : { ...c, detail }
    })
  })

/** A check bounded in time, whose defects are reported as its failure rather than stopping the doctor. */
const boundedCheck = (timeout: Duration.Duration) => (name: string, run: Effect.Effect<Check>) =>
  run.pipe(
    Effect.timeoutTo({
      duration: timeout,
      onSuccess: (done): Check => done,
      onTimeout: (): Check =>
        check(name, "fail", `no answer within ${seconds(timeout)}`, [
          "the check gave up waiting: see whether what it checks is overloaded or unreachable",
          "(tenant-engine doctor --timeout SECONDS waits longer)"
        ])
    }),
    Effect.catchAllCause((cause) =>
      Effect.succeed(check(name, "fail", `the check itself failed: ${describeError(Cause.squash(cause))}`))
    )
  )

// --- configuration ---

const configurationCheck = (
  settings: Settings,
  platformUrl: Either.Either<Redacted.Redacted<string>, string>,
  state: Option.Option<PlatformState>
): Check => {
  const warnings: Array<string> = []
  const fixes: Array<string> = []
  if (settings.authIssuers.length === 0) {
    warnings.push(`AUTH_ISSUER is unset: the built-in development issuer is trusted (keys in ${join(settings.dataDir, "issuer")})`)
    fixes.push("for production, set AUTH_ISSUER (and AUTH_AUDIENCE) to your identity provider's")
  }
  if (Option.isNone(settings.databaseUrl)) {
    warnings.push(`DATABASE_URL is unset: the embedded PostgreSQL in ${join(settings.dataDir, "postgres")} is used`)
    fixes.push("for production, set DATABASE_URL to a PostgreSQL server")
  }
  if (Option.isNone(settings.tenantRoleSecret) && Option.isSome(settings.databaseUrl)) {
    warnings.push(
      `TENANT_ROLE_SECRET is unset: tenant roles' passwords derive from the secret kept in ${roleSecretFile(settings.dataDir)}`
    )
    fixes.push("set the same TENANT_ROLE_SECRET for every engine process and the CLI on this platform database")
  }
  if (Option.isSome(settings.authJwksUrl) && settings.authIssuers.length > 1) {
    warnings.push(`AUTH_JWKS_URL is set with ${settings.authIssuers.length} issuers: every issuer's keys are read from that one URL`)
    fixes.push("unset AUTH_JWKS_URL to find each issuer's keys by discovery, or trust one issuer")
  }
  if (Option.isSome(state)) {
    for (const server of state.value.servers) {
      if (server.admin_url !== null && settings.tenantConnectionBudget > server.max_connections) {
        warnings.push(
          `TENANT_CONNECTION_BUDGET ${settings.tenantConnectionBudget} is above server ${server.name}'s allowance ` +
            `${server.max_connections}: a process opens at most ${server.max_connections} there`
        )
        fixes.push(
          `lower TENANT_CONNECTION_BUDGET to ${server.max_connections}, or raise ${server.name}'s allowance ` +
            `(servers.max_connections in the platform database)`
        )
      }
    }
    // What ServerRegistry warns about at start: the configuration names another server than `default` is on.
    const registeredDefault = state.value.servers.find((server) => server.name === "default")
    if (registeredDefault?.admin_url != null && Either.isRight(platformUrl)) {
      const configured = hostOf(tenantAdminUrl(settings, platformUrl.right))
      const registered = hostOf(Redacted.make(registeredDefault.admin_url))
      if (configured !== registered) {
        const variable = Option.isSome(settings.tenantDatabaseUrl) ? "TENANT_DATABASE_URL" : "DATABASE_URL (no TENANT_DATABASE_URL)"
        warnings.push(`${variable} names ${configured}, but server default is registered at ${registered}: its tenants stay there`)
        fixes.push("point TENANT_DATABASE_URL at the default server's host, or register the new one with tenant-engine servers add")
      }
    }
  }
  const where = Either.isRight(platformUrl)
    ? `platform database ${hostOf(platformUrl.right)}/${databaseNameOf(platformUrl.right)}`
    : "embedded platform database"
  const summary = `valid: ${where}; ` +
    `${settings.authIssuers.length === 0 ? "development issuer" : plural(settings.authIssuers.length, "issuer")}; ` +
    `budget ${settings.tenantConnectionBudget} connections per server, ${settings.tenantPoolMax} per tenant pool`
  return warnings.length === 0
    ? check("configuration", "ok", summary)
    : check("configuration", "warn", `${summary}. ${warnings.join(". ")}`, fixes)
}

// --- the platform database ---

const platformCheck = (url: Redacted.Redacted<string>, settings: Settings, timeout: Duration.Duration) =>
  Effect.gen(function*() {
    const where = `${hostOf(url)}/${databaseNameOf(url)}`
    const latest = yield* Effect.orDie(latestVersion(fromFolder(platformMigrations)))
    const started = Date.now()
    const read = yield* Effect.either(withClient(url, timeout, async (client) => {
      const answeredMillis = Date.now() - started
      const version = await serverVersion(client)
      const schema = (await tableExists(client, MIGRATIONS_TABLE))
        ? (await client.query<{ version: number }>(
          `SELECT coalesce(max(migration_id), 0)::int AS version FROM ${MIGRATIONS_TABLE}`
        )).rows[0]?.version ?? 0
        : 0
      const servers = (await tableExists(client, "servers"))
        ? (await client.query<ServerRow>(
          `SELECT s.name, s.admin_url, s.status, s.max_connections,
                  (SELECT count(*)::int FROM tenants t WHERE t.db_server = s.name) AS tenants
           FROM servers s ORDER BY s.created_at, s.name`
        )).rows
        : []
      const claims = (await tableExists(client, "engine_processes"))
        ? (await client.query<{ claims: Record<string, number> }>(
          `SELECT claims FROM engine_processes WHERE seen_at > now() - interval '${PROCESS_SILENT_AFTER}'`
        )).rows.map((row) => row.claims)
        : []
      return { answeredMillis, version, schema, state: { servers, claims } }
    }))
    if (Either.isLeft(read)) {
      const problem = read.left
      const fix = problem.code === "3D000"
        ? ["start the server once, or run tenant-engine migrate: either creates and migrates it"]
        : connectionFix(problem, hostOf(url), Option.isSome(settings.databaseUrl) ? "DATABASE_URL" : "DATA_DIR")
      // Missing or refusing this login is not an outage of the running engines (they connect as they did).
      const down = problem.code !== "3D000" && problem.code?.startsWith("28") !== true
      return {
        check: check("platform database", "fail", `${where} cannot be used: ${problem.message}`, [
          ...fix,
          ...(down ? ["while it does not answer, running engines answer 503 to whatever needs it (new callers, admin operations)"] : [])
        ]),
        state: Option.none<PlatformState>()
      }
    }
    const { answeredMillis, schema, state, version } = read.right
    const detail = `${where} answered in ${answeredMillis} ms; PostgreSQL ${version.version}; ` +
      `schema version ${schema} of ${latest}; ${plural(state.claims.length, "engine process", "engine processes")} alive`
    const problems: Array<[Status, string, string]> = []
    if (version.num < MIN_SERVER_VERSION) {
      problems.push(["fail", `PostgreSQL ${version.version} is too old`, "the engine needs PostgreSQL 13 or later: upgrade the server"])
    }
    if (schema < latest) {
      problems.push([
        "warn",
        `its schema is behind this build (${schema} < ${latest})`,
        "start the engine of this build, or run tenant-engine migrate: either migrates it"
      ])
    } else if (schema > latest) {
      problems.push([
        "warn",
        `its schema is newer than this build knows (${schema} > ${latest})`,
        "this tenant-engine is older than the one that migrated the database: run the newer build"
      ])
    }
    return {
      check: check(
        "platform database",
        worst(problems.map(([status]) => status)),
        [detail, ...problems.map(([, what]) => what)].join(". "),
        problems.map(([, , fix]) => fix)
      ),
      state: Option.some<PlatformState>(state)
    }
  })

// --- servers ---

interface ServerTarget {
  readonly name: string
  readonly url: Redacted.Redacted<string>
  readonly status: string
  readonly allowance: number
  readonly tenants: number
  /** Where the list came from: the platform's registry, or the configuration when the registry cannot be read. */
  readonly registered: boolean
}

const serverChecks = (
  settings: Settings,
  platformUrl: Redacted.Redacted<string>,
  state: Option.Option<PlatformState>,
  timeout: Duration.Duration
): ReadonlyArray<Effect.Effect<Check>> => {
  const bounded = boundedCheck(timeout)
  if (Option.isNone(state)) {
    // The registry cannot be read: the configured server can still be looked at.
    const target: ServerTarget = {
      name: "default",
      // Without TENANT_DATABASE_URL it is the platform's server, whose platform
      // database may be what is missing: the server itself is reached through `postgres`.
      url: Option.isSome(settings.tenantDatabaseUrl)
        ? tenantAdminUrl(settings, platformUrl)
        : withDatabase(platformUrl, "postgres"),
      status: "active",
      allowance: settings.tenantConnectionBudget,
      tenants: 0,
      registered: false
    }
    return [bounded("server default", serverCheck(target, settings, platformUrl, [], timeout))]
  }
  const claims = state.value.claims
  return state.value.servers.map((row) => {
    const name = `server ${row.name}`
    if (row.admin_url === null) {
      return Effect.succeed(check(
        name,
        row.tenants > 0 ? "warn" : "ok",
        `registered without a URL yet (from before servers were registered); ${plural(row.tenants, "tenant")}`,
        ["start the engine once with this configuration: it records the server's URL"]
      ))
    }
    const target: ServerTarget = {
      name: row.name,
      url: Redacted.make(row.admin_url),
      status: row.status,
      allowance: row.max_connections,
      tenants: row.tenants,
      registered: true
    }
    return bounded(name, serverCheck(target, settings, platformUrl, claims, timeout))
  })
}

const serverCheck = (
  target: ServerTarget,
  settings: Settings,
  platformUrl: Redacted.Redacted<string>,
  claims: ReadonlyArray<Readonly<Record<string, number>>>,
  timeout: Duration.Duration
): Effect.Effect<Check> =>
  Effect.gen(function*() {
    const name = `server ${target.name}`
    const where = hostOf(target.url)
    const origin = target.registered ? "" : " (from the configuration: the platform database cannot be read)"
    const read = yield* Effect.either(withClient(target.url, timeout, async (client) => {
      const version = await serverVersion(client)
      const { rows } = await client.query<{
        max_connections: number
        reserved: number
        in_use: number
        engine: number
        may_administer: boolean
      }>(
        `SELECT current_setting('max_connections')::int AS max_connections,
                current_setting('superuser_reserved_connections')::int
                  + coalesce(current_setting('reserved_connections', true)::int, 0) AS reserved,
                (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend') AS in_use,
                (SELECT count(*)::int FROM pg_stat_activity
                 WHERE backend_type = 'client backend' AND application_name LIKE 'tenant-engine/%'
                   AND application_name NOT IN ('tenant-engine/platform', 'tenant-engine/doctor')) AS engine,
                coalesce((SELECT rolsuper OR (rolcreatedb AND rolcreaterole) FROM pg_roles WHERE rolname = current_user), false)
                  AS may_administer`
      )
      return { version, row: rows[0] }
    }))
    if (Either.isLeft(read)) {
      const fix = connectionFix(
        read.left,
        where,
        target.registered
          ? "its registered URL (tenant-engine servers add)"
          : Option.isSome(settings.tenantDatabaseUrl) ? "TENANT_DATABASE_URL" : "DATABASE_URL"
      )
      const affected = target.tenants > 0
        ? [`its ${plural(target.tenants, "tenant")} cannot be served until it answers`]
        : []
      const about = target.registered
        ? ` (${target.status === "draining" ? "draining; " : ""}${plural(target.tenants, "tenant")})`
        : origin
      return check(name, "fail", `${where}${about} cannot be reached as its administrator: ${read.left.message}`, [
        ...fix,
        ...affected
      ])
    }
    const { row, version } = read.right
    if (row === undefined) return check(name, "fail", `${where} answered nothing to the doctor's query`)
    // What the engine may open there: the server's slots but those kept for superusers.
    const usable = row.max_connections - row.reserved
    const processes = Math.max(1, claims.length)
    const platformHere = hostOf(platformUrl) === where
    // Each process's platform pool and its notifications connection (an estimate: other processes may be configured otherwise).
    const platformUse = platformHere ? processes * (settings.platformPoolMax + 1) : 0
    const claimed = claims.reduce((sum, c) => sum + (c[target.name] ?? 0), 0)
    const free = usable - row.in_use
    const parts = [
      `${where}${origin}: PostgreSQL ${version.version}`,
      `${row.in_use} of ${row.max_connections} connections in use (${row.reserved} reserved for superusers)`,
      `the engine holds ${row.engine} of its allowance ${target.allowance}` +
      (target.registered ? ` (${claimed} claimed by ${plural(claims.length, "live process", "live processes")})` : ""),
      ...(platformHere ? [`the platform database is here too (about ${platformUse} connections)`] : []),
      plural(target.tenants, "tenant"),
      ...(target.status === "draining" ? ["draining: takes no new tenants"] : [])
    ]
    const problems: Array<[Status, string, string]> = []
    if (!row.may_administer) {
      problems.push([
        "fail",
        "its role may not create databases and roles",
        "register it with a URL whose role is a superuser or has CREATEDB and CREATEROLE"
      ])
    }
    if (version.num < MIN_SERVER_VERSION) {
      problems.push(["fail", `PostgreSQL ${version.version} is too old`, "the engine needs PostgreSQL 13 or later"])
    }
    if (target.allowance + platformUse > usable) {
      problems.push([
        "warn",
        `its allowance ${target.allowance}${platformHere ? ` plus the platform's ${platformUse}` : ""} is more than the ` +
        `${usable} connections it accepts: the engine may be refused connections under load`,
        `raise max_connections on the server, or lower ${target.name}'s allowance (servers.max_connections in the platform database)`
      ])
    }
    if (free < Math.max(5, Math.ceil(usable / 10))) {
      problems.push([
        "warn",
        `only ${Math.max(0, free)} connections free`,
        "see what holds them (SELECT usename, application_name, state, count(*) FROM pg_stat_activity GROUP BY 1, 2, 3)"
      ])
    }
    return check(
      name,
      worst(problems.map(([status]) => status)),
      [parts.join("; "), ...problems.map(([, what]) => what)].join(". "),
      problems.map(([, , fix]) => fix)
    )
  })

// --- tenant logins ---

/** TENANT_ROLE_SECRET, or the one kept under the data folder; read only (never made here). */
const readRoleSecret = (settings: Settings) =>
  Option.match(settings.tenantRoleSecret, {
    onSome: (secret) => Effect.succeed(Option.some(secret)),
    onNone: () =>
      Effect.promise(async () => {
        const kept = (await readFile(roleSecretFile(settings.dataDir), "utf8").catch(() => "")).trim()
        return kept === "" ? Option.none<Redacted.Redacted<string>>() : Option.some(Redacted.make(kept))
      })
  })

interface DerivedLogin {
  /** What logs in: a tenant's role, or a shared database's gateway. */
  readonly what: string
  /** The tenant whose role it is; null for a gateway. */
  readonly tenant: string | null
  readonly server: string
  readonly database: string
  readonly role: string
  readonly version: number
}

interface LoginOutcome {
  readonly derived: DerivedLogin
  readonly outcome: "ok" | "refused" | "untried"
}

/**
 * Tenant roles' passwords derive from TENANT_ROLE_SECRET. The platform
 * records which secret as a fingerprint; a process whose secret differs
 * serves no tenant (503) and creates, moves or rotates none. Compared here,
 * then one derived login per server and kind is tried with the secret, which
 * also finds a password changed outside the engine (or a role gone).
 */
const tenantLoginsCheck = (
  settings: Settings,
  secret: Option.Option<Redacted.Redacted<string>>,
  platformUrl: Redacted.Redacted<string>,
  state: PlatformState,
  secrets: Secrets,
  timeout: Duration.Duration
): Effect.Effect<Check> =>
  boundedCheck(timeout)(
    "tenant logins",
    Effect.gen(function*() {
      const name = "tenant logins"
      const read = yield* Effect.either(withClient(platformUrl, timeout, async (client) => {
        // Before platform migration 8 every password is stored: nothing derives from the secret.
        const { rows: derived } = await client.query<{ present: boolean }>(
          `SELECT EXISTS (SELECT 1 FROM information_schema.columns
                          WHERE table_schema = current_schema() AND table_name = 'tenants'
                            AND column_name = 'credential_version') AS present`
        )
        if (derived[0]?.present !== true) return undefined
        const recorded = (await tableExists(client, "role_secret"))
          ? (await client.query<{ fingerprint: string }>("SELECT fingerprint FROM role_secret")).rows[0]?.fingerprint
          : undefined
        const stored = (await client.query<{ n: number }>(
          `SELECT (SELECT count(*) FROM tenants WHERE db_password IS NOT NULL)::int
                + (SELECT count(*) FROM shared_databases WHERE login_password IS NOT NULL)::int AS n`
        )).rows[0]?.n ?? 0
        const tenants = await client.query<DerivedLogin>(
          `SELECT DISTINCT ON (db_server) 'tenant ' || id AS what, id AS tenant, db_server AS server, db_name AS database,
                  db_role AS role, credential_version AS version
           FROM tenants
           WHERE db_strategy = 'database' AND db_password IS NULL AND status IN ('active', 'suspended')
           ORDER BY db_server, id`
        )
        const gateways = await client.query<DerivedLogin>(
          `SELECT DISTINCT ON (server) 'the gateway of ' || database AS what, NULL AS tenant, server, database,
                  login_role AS role, login_version AS version
           FROM shared_databases WHERE login_password IS NULL ORDER BY server, database`
        )
        return { recorded, stored, logins: [...tenants.rows, ...gateways.rows] }
      }))
      if (Either.isLeft(read)) {
        return check(name, "fail", `the tenants' logins cannot be read: ${read.left.message}`, [
          "see the platform database's check above"
        ])
      }
      if (read.right === undefined) {
        return check(name, "ok", "every login's password is stored (platform schema before derived credentials)")
      }
      const { logins, recorded, stored } = read.right
      const where = Option.isSome(settings.tenantRoleSecret) ? "TENANT_ROLE_SECRET" : roleSecretFile(settings.dataDir)
      const sameSecret = "give every engine process and the CLI on this platform database the same TENANT_ROLE_SECRET " +
        `(unset, each uses the one kept in its DATA_DIR: ${roleSecretFile(settings.dataDir)} here), ` +
        "or adopt this one with tenant-engine tenants rotate-credentials --all"
      if (Option.isNone(secret)) {
        return logins.length === 0 && recorded === undefined
          ? check(name, "ok", "no login derived from a secret yet; none is kept here either (made on the first start)")
          : check(
            name,
            "fail",
            `TENANT_ROLE_SECRET is unset and no secret is kept in ${roleSecretFile(settings.dataDir)}: ` +
              "a process configured like this cannot log in as any tenant role",
            ["set TENANT_ROLE_SECRET to the secret the engine processes on this platform database use"]
          )
      }
      const problems: Array<[Status, string, string]> = []
      if (stored > 0) {
        problems.push([
          "warn",
          `${plural(stored, "login")} still ${stored === 1 ? "has its" : "have their"} password stored in the platform database (from before derived credentials)`,
          "tenant-engine tenants rotate-credentials --all removes them"
        ])
      }
      if (recorded !== undefined && recorded !== secretFingerprint(secret.value)) {
        // Every derived login would be refused: trying them says nothing more.
        problems.push([
          "fail",
          `the secret from ${where} is not the one the platform records: a process holding it answers every tenant 503 ` +
          "and creates, moves or rotates none",
          sameSecret
        ])
        return check(name, "fail", problems.map(([, what]) => what).join(". "), problems.map(([, , fix]) => fix))
      }
      const outcomes = yield* Effect.forEach(logins, (derived): Effect.Effect<LoginOutcome> => {
        const server = state.servers.find((row) => row.name === derived.server)
        if (server?.admin_url == null) return Effect.succeed({ derived, outcome: "untried" })
        const password = rolePassword(secret.value, derived)
        secrets.add(password)
        const url = login(serverOf(Redacted.make(server.admin_url)), {
          database: derived.database,
          user: derived.role,
          password: Redacted.value(password)
        })
        return withClient(url, timeout, (client) => client.query("SELECT 1")).pipe(
          Effect.as<LoginOutcome>({ derived, outcome: "ok" }),
          // Refused is this check's finding; not reaching the server is the server check's.
          Effect.catchAll((problem) =>
            Effect.succeed<LoginOutcome>({ derived, outcome: problem.code === "28P01" ? "refused" : "untried" })
          )
        )
      }, { concurrency: "unbounded" })
      const refused = outcomes.filter((o) => o.outcome === "refused")
      const loggedIn = outcomes.filter((o) => o.outcome === "ok")
      const untried = outcomes.filter((o) => o.outcome === "untried")
      const detail = (recorded === undefined ? "no secret recorded yet; " : "the secret is the recorded one; ") +
        `${plural(loggedIn.length, "derived login")} of ${outcomes.length} tried logged in with the secret from ${where}` +
        (untried.length > 0
          ? `; not tried: ${untried.map((o) => `${o.derived.what} on ${o.derived.server} (its server did not let it try)`).join(", ")}`
          : "")
      if (refused.length > 0) {
        problems.push([
          "fail",
          `refused: ${refused.map((o) => `${o.derived.what} on ${o.derived.server}`).join(", ")}: ` +
          (recorded === undefined
            ? "this secret is not the one their passwords derive from (or a password was changed outside the engine)"
            : "their passwords were changed outside the engine, or the roles are gone") +
          ", and those tenants answer 503",
          recorded === undefined
            ? sameSecret
            : `tenant-engine tenants rotate-credentials ${refused.length === 1 ? refused[0]?.derived.tenant ?? "--all" : "--all"} ` +
              "sets passwords the engine knows again"
        ])
      }
      return check(
        name,
        worst(problems.map(([status]) => status)),
        [detail, ...problems.map(([, what]) => what)].join(". "),
        problems.map(([, , fix]) => fix)
      )
    })
  )

// --- issuers ---

/** A JWK's key type decides which algorithms it can verify. */
const algorithmsOfKey = (key: Record<string, unknown>): ReadonlyArray<string> => {
  if (typeof key["use"] === "string" && key["use"] !== "sig") return []
  if (typeof key["alg"] === "string") return [key["alg"]]
  switch (key["kty"]) {
    case "RSA":
      return ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
    case "EC":
      return key["crv"] === "P-256" ? ["ES256"] : key["crv"] === "P-384" ? ["ES384"] : key["crv"] === "P-521" ? ["ES512"] : []
    case "OKP":
      return key["crv"] === "Ed25519" ? ["EdDSA", "Ed25519"] : []
    default:
      return []
  }
}

interface Fetched {
  readonly body: unknown
  /** The issuer's clock minus ours, in milliseconds, from its Date header (none without one). */
  readonly skewMillis: number | undefined
}

/** GET of a JSON document, redirects not followed (as IssuerKeys fetches), with the skew of the answer's Date. */
const fetchJson = (url: string, timeout: Duration.Duration, what: string) =>
  Effect.tryPromise({
    try: async (signal): Promise<Fetched> => {
      const sent = Date.now()
      const response = await fetch(url, {
        signal: AbortSignal.any([signal, AbortSignal.timeout(Duration.toMillis(timeout))]),
        redirect: "manual",
        headers: { accept: "application/json, application/jwk-set+json" }
      })
      const received = Date.now()
      if (response.status !== 200) {
        await response.body?.cancel()
        throw new Error(`${what} at ${url} answered HTTP ${response.status}`)
      }
      const date = response.headers.get("date")
      const issuerTime = date === null ? Number.NaN : Date.parse(date)
      // Date has whole seconds: its middle, against the middle of the exchange.
      const skewMillis = Number.isNaN(issuerTime) ? undefined : issuerTime + 500 - (sent + received) / 2
      const text = await response.text()
      try {
        return { body: JSON.parse(text), skewMillis }
      } catch {
        throw new Error(`${what} at ${url} is not JSON`)
      }
    },
    catch: (cause) => describeError(cause)
  })

const issuerChecks = (settings: Settings, timeout: Duration.Duration): ReadonlyArray<Effect.Effect<Check>> => {
  const bounded = boundedCheck(timeout)
  if (settings.authIssuers.length === 0) return [developmentIssuerCheck(settings)]
  return settings.authIssuers.map((issuer) =>
    bounded(`issuer ${issuer}`, issuerCheck(issuer, settings, timeout))
  )
}

/** The development issuer's keys are a local file (made on the first start). */
const developmentIssuerCheck = (settings: Settings) =>
  Effect.promise(async (): Promise<Check> => {
    const file = join(settings.dataDir, "issuer", "jwks.json")
    const name = "issuer (development)"
    const text = await readFile(file, "utf8").catch(() => undefined)
    if (text === undefined) {
      return check(name, "warn", `no keys yet in ${file}`, ["they are made when the server (npm start) or tenant-engine token first runs"])
    }
    let keys = 0
    try {
      const parsed: unknown = JSON.parse(text)
      keys = typeof parsed === "object" && parsed !== null && "keys" in parsed && Array.isArray(parsed.keys)
        ? parsed.keys.length
        : 0
    } catch {
      keys = 0
    }
    return keys > 0
      ? check(name, "ok", `local keys (${plural(keys, "key")}) in ${file}; nothing to reach`)
      : check(name, "fail", `${file} holds no key`, [`remove ${join(settings.dataDir, "issuer")} to have new keys made on the next start`])
  })

const issuerCheck = (issuer: string, settings: Settings, timeout: Duration.Duration): Effect.Effect<Check> =>
  Effect.gen(function*() {
    const name = `issuer ${issuer}`
    const keepsVerifying = "running engines keep verifying with the keys they hold, but cannot learn new ones"
    const skews: Array<number> = []
    let jwksUrl: string
    let how: string
    if (Option.isSome(settings.authJwksUrl)) {
      jwksUrl = settings.authJwksUrl.value
      how = "AUTH_JWKS_URL"
    } else {
      const discoveryUrl = `${issuer.replace(/\/+$/, "")}/.well-known/openid-configuration`
      const discovered = yield* Effect.either(fetchJson(discoveryUrl, timeout, "the discovery document"))
      if (Either.isLeft(discovered)) {
        return check(name, "fail", `discovery failed: ${discovered.left}`, [
          "is the identity provider up and reachable from here? Check AUTH_ISSUER",
          keepsVerifying
        ])
      }
      if (discovered.right.skewMillis !== undefined) skews.push(discovered.right.skewMillis)
      const document = discovered.right.body
      const named = typeof document === "object" && document !== null && "issuer" in document ? document.issuer : undefined
      const jwksUri = typeof document === "object" && document !== null && "jwks_uri" in document ? document.jwks_uri : undefined
      if (named !== issuer) {
        return check(name, "fail", `its discovery document names issuer ${JSON.stringify(named)}, not ${issuer}`, [
          "AUTH_ISSUER must be exactly the issuer the provider names (its `iss`, trailing slash included)"
        ])
      }
      if (typeof jwksUri !== "string") {
        return check(name, "fail", `its discovery document at ${discoveryUrl} has no jwks_uri`, [
          "set AUTH_JWKS_URL to where its keys are published"
        ])
      }
      jwksUrl = jwksUri
      how = "discovery"
    }
    const fetched = yield* Effect.either(fetchJson(jwksUrl, timeout, "the JSON Web Key Set"))
    if (Either.isLeft(fetched)) {
      return check(name, "fail", `its keys cannot be fetched: ${fetched.left}`, [
        `is ${jwksUrl} up and reachable from here?${how === "AUTH_JWKS_URL" ? " Check AUTH_JWKS_URL" : ""}`,
        keepsVerifying
      ])
    }
    if (fetched.right.skewMillis !== undefined) skews.push(fetched.right.skewMillis)
    const body = fetched.right.body
    const keys: ReadonlyArray<Record<string, unknown>> =
      typeof body === "object" && body !== null && "keys" in body && Array.isArray(body.keys)
        ? body.keys.filter((key): key is Record<string, unknown> => typeof key === "object" && key !== null)
        : []
    const usable = keys.filter((key) => algorithmsOfKey(key).some((alg) => settings.authAlgorithms.includes(alg)))
    const problems: Array<[Status, string, string]> = []
    if (keys.length === 0) {
      problems.push(["fail", `its JWKS at ${jwksUrl} has no keys`, "no token of this issuer can be verified: see the identity provider's key configuration"])
    } else if (usable.length === 0) {
      problems.push([
        "fail",
        `none of its ${plural(keys.length, "key")} can verify ${settings.authAlgorithms.join(", ")}`,
        "set AUTH_ALGORITHMS to include the algorithm the provider signs with"
      ])
    }
    // The largest skew seen; none when no answer had a Date header.
    const skew = skews.reduce<number | undefined>((most, s) => most === undefined || Math.abs(s) > Math.abs(most) ? s : most, undefined)
    const tolerance = Duration.toMillis(settings.authClockTolerance)
    // Date has whole seconds: under 2 s is no measurable skew.
    const failAbove = Math.max(tolerance, 2_000)
    const warnAbove = Math.max(2_000, Math.min(30_000, tolerance / 2))
    let skewText = "no Date header: clock skew not measured"
    if (skew !== undefined) {
      const amount = `${(Math.abs(skew) / 1000).toFixed(1)} s`
      skewText = Math.abs(skew) < 2_000
        ? "clocks agree (within 2 s)"
        : `the issuer's clock is ${amount} ${skew > 0 ? "ahead of" : "behind"} this machine's`
      const fix = "synchronise this machine's clock (NTP: timedatectl, chronyc tracking)"
      if (Math.abs(skew) > failAbove) {
        problems.push([
          "fail",
          `clock skew ${amount} is above AUTH_CLOCK_TOLERANCE (${seconds(settings.authClockTolerance)}): fresh tokens are refused as not yet valid or expired`,
          fix
        ])
      } else if (Math.abs(skew) > warnAbove) {
        problems.push(["warn", `clock skew ${amount} is close to AUTH_CLOCK_TOLERANCE (${seconds(settings.authClockTolerance)})`, fix])
      }
    }
    const detail = `keys by ${how} from ${jwksUrl}: ${plural(keys.length, "key")}, ${usable.length} usable with AUTH_ALGORITHMS; ${skewText}`
    return check(
      name,
      worst(problems.map(([status]) => status)),
      [detail, ...problems.map(([, what]) => what)].join(". "),
      problems.map(([, , fix]) => fix)
    )
  })

// --- the fleet ---

interface FleetCounts {
  readonly tenants: number
  readonly suspended: number
  readonly failed: number
  readonly behind: number
  readonly ahead: number
  readonly migrating: number
  readonly stuck: number
  readonly moving: number
}

const fleetCheck = (url: Redacted.Redacted<string>, state: PlatformState, timeout: Duration.Duration): Effect.Effect<Check> =>
  boundedCheck(timeout)(
    "fleet",
    Effect.gen(function*() {
      const latest = yield* Effect.orDie(latestVersion(fromFolder(tenantMigrations)))
      const live = "status IN ('active', 'suspended')"
      const stale = `updated_at < now() - interval '${STALE_MIGRATION_CLAIM}'`
      const read = yield* Effect.either(withClient(url, timeout, async (client) => {
        const counts = (await client.query<FleetCounts>(
          `SELECT count(*) FILTER (WHERE ${live})::int AS tenants,
                  count(*) FILTER (WHERE status = 'suspended')::int AS suspended,
                  count(*) FILTER (WHERE ${live} AND migration_state = 'failed')::int AS failed,
                  count(*) FILTER (WHERE ${live} AND migration_state = 'current' AND schema_version < $1)::int AS behind,
                  count(*) FILTER (WHERE ${live} AND migration_state = 'current' AND schema_version > $1)::int AS ahead,
                  count(*) FILTER (WHERE ${live} AND migration_state = 'migrating' AND NOT ${stale})::int AS migrating,
                  count(*) FILTER (WHERE ${live} AND migration_state = 'migrating' AND ${stale})::int AS stuck,
                  count(*) FILTER (WHERE moving_until > now())::int AS moving
           FROM tenants`,
          [latest]
        )).rows[0]
        const failed = (await client.query<{ id: string; migration_error: string | null }>(
          `SELECT id, migration_error FROM tenants WHERE ${live} AND migration_state = 'failed' ORDER BY id LIMIT ${NAMED}`
        )).rows
        const stuck = (await client.query<{ id: string }>(
          `SELECT id FROM tenants WHERE ${live} AND migration_state = 'migrating' AND ${stale} ORDER BY id LIMIT ${NAMED}`
        )).rows
        // A move whose claim lapsed (or was released) with its record still there: cut off.
        const cutOff = (await client.query<{ tenant_id: string; phase: string; to_server: string; to_strategy: string; total: number }>(
          `SELECT m.tenant_id, m.phase, m.to_server, m.to_strategy, count(*) OVER ()::int AS total
           FROM tenant_moves m JOIN tenants t ON t.id = m.tenant_id
           WHERE t.moving_until IS NULL OR t.moving_until < now()
           ORDER BY m.tenant_id LIMIT ${NAMED}`
        )).rows
        const leftBehind = (await client.query<{ id: string; status: string; total: number }>(
          `SELECT id, status, count(*) OVER ()::int AS total FROM tenants
           WHERE status IN ('provisioning', 'deleting') AND updated_at < now() - interval '${LEFT_BEHIND_AFTER}'
           ORDER BY id LIMIT ${NAMED}`
        )).rows
        return { counts, failed, stuck, cutOff, leftBehind }
      }))
      if (Either.isLeft(read)) {
        return check("fleet", "fail", `the tenants cannot be read: ${read.left.message}`, [
          "see the platform database's check above"
        ])
      }
      const { counts, cutOff, failed, leftBehind, stuck } = read.right
      if (counts === undefined) return check("fleet", "fail", "the tenants cannot be counted")
      const current = counts.tenants - counts.failed - counts.behind - counts.ahead - counts.migrating - counts.stuck
      const summary = `${plural(counts.tenants, "tenant")}` +
        (counts.suspended > 0 ? ` (${counts.suspended} suspended)` : "") +
        `, schema version ${latest}: ${current} current` +
        (counts.behind > 0 ? `, ${counts.behind} behind` : "") +
        (counts.migrating > 0 ? `, ${counts.migrating} being migrated now` : "") +
        (counts.moving > 0 ? `, ${counts.moving} being moved now` : "")
      const problems: Array<[Status, string, string]> = []
      if (counts.failed > 0) {
        const first = failed[0]
        problems.push([
          "fail",
          `${plural(counts.failed, "tenant")} failed to migrate and answer 503: ${someOf(failed.map((t) => t.id), counts.failed)}` +
          (first?.migration_error != null ? ` (${first.id}: ${first.migration_error.slice(0, 200)})` : ""),
          "tenant-engine migrate --status shows each error; fix the cause, then run tenant-engine migrate (it retries failed tenants)"
        ])
      }
      if (counts.behind > 0) {
        problems.push([
          "warn",
          `${plural(counts.behind, "tenant")} behind schema version ${latest}`,
          "tenant-engine migrate"
        ])
      }
      if (counts.stuck > 0) {
        problems.push([
          "warn",
          `${plural(counts.stuck, "tenant")} claimed for migration over ${STALE_MIGRATION_CLAIM} ago (a runner that died?) and answering 503: ` +
          someOf(stuck.map((t) => t.id), counts.stuck),
          "tenant-engine migrate takes them over"
        ])
      }
      if (counts.ahead > 0) {
        problems.push([
          "warn",
          `${plural(counts.ahead, "tenant")} at a schema version newer than this build's ${latest}`,
          "this tenant-engine is older than the one that migrated them: run the newer build"
        ])
      }
      const cutOffTotal = cutOff[0]?.total ?? 0
      if (cutOffTotal > 0) {
        problems.push([
          "warn",
          `${plural(cutOffTotal, "move")} cut off, leaving a copy behind: ${someOf(cutOff.map((m) => m.tenant_id), cutOffTotal)}`,
          cutOff.map((m) =>
            `tenant-engine tenants move ${m.tenant_id} --to ${m.to_server} --strategy ${m.to_strategy}` +
            " (finishes or restarts it and drops what was left)"
          ).join("\n")
        ])
      }
      const leftTotal = leftBehind[0]?.total ?? 0
      if (leftTotal > 0) {
        problems.push([
          "warn",
          `${plural(leftTotal, "tenant")} left half-made or half-deleted for over ${LEFT_BEHIND_AFTER}: ` +
          someOf(leftBehind.map((t) => `${t.id} (${t.status})`), leftTotal),
          leftBehind.map((t) =>
            t.status === "deleting"
              ? `tenant-engine tenants delete ${t.id} --yes (finishes the deletion)`
              : `a create of ${t.id} died: see the engine's log, then DELETE FROM tenants WHERE id = '${t.id}' AND status = 'provisioning' in the platform database frees the id`
          ).join("\n")
        ])
      }
      const usable = state.servers.filter((server) => server.admin_url !== null)
      if (usable.length > 0 && usable.every((server) => server.status === "draining")) {
        problems.push([
          "warn",
          "every server is draining: no new tenant can be created",
          "register a server (tenant-engine servers add) or make one active again (UPDATE servers SET status = 'active' WHERE name = ...)"
        ])
      }
      return check(
        "fleet",
        worst(problems.map(([status]) => status)),
        [summary, ...problems.map(([, what]) => what)].join(". "),
        problems.map(([, , fix]) => fix)
      )
    })
  )

// --- output ---

const LABEL: Readonly<Record<Status, string>> = { ok: "ok", warn: "WARN", fail: "FAIL" }

/** One line per check (status, name, detail), its fix indented under it, and a count at the end. */
export const formatChecks = (checks: ReadonlyArray<Check>): string => {
  const width = Math.max(...checks.map((c) => c.name.length))
  const lines: Array<string> = []
  for (const c of checks) {
    lines.push(`${LABEL[c.status].padEnd(4)}  ${c.name.padEnd(width)}  ${c.detail}`)
    for (const fix of c.fix?.split("\n") ?? []) lines.push(`${" ".repeat(6)}-> ${fix}`)
  }
  const count = (status: Status) => checks.filter((c) => c.status === status).length
  lines.push("", `${count("fail")} failed, ${count("warn")} to look at, ${count("ok")} ok`)
  return lines.join("\n")
}
