import { expect, layer } from "@effect/vitest"
import { Context, Duration, Effect, Layer, Redacted, Schedule, Schema } from "effect"
import Pg from "pg"
import { inject } from "vitest"
import { AccountDirectory } from "../../src/auth/AccountDirectory.js"
import { AuthConfig } from "../../src/auth/AuthConfig.js"
import { ServiceClient } from "../../src/auth/ServiceClient.js"
import { PlatformConfig } from "../../src/platform/PlatformConfig.js"
import { PlatformDb } from "../../src/platform/PlatformDb.js"
import { CHANNEL, PlatformNotifications } from "../../src/platform/PlatformNotifications.js"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { TestIssuer } from "../../src/testing/TestIssuer.js"
import { authenticate, AuthStack, countAccounts, ensureTenant } from "./support.js"

/**
 * Another AccountDirectory on the same platform database, with a pool (and
 * LISTEN connection) of its own: what another process would have.
 */
const anotherDirectory = (
  overrides: Partial<AuthConfig["Type"]> = {},
  notificationHeartbeat: Duration.Duration | undefined = undefined
) =>
  Effect.gen(function*() {
    const config = yield* AuthConfig
    const platform = yield* PlatformConfig
    const context = yield* Layer.build(
      AccountDirectory.layer.pipe(
        Layer.provide(Layer.provideMerge(PlatformNotifications.layer, PlatformDb.layer)),
        Layer.provide(Layer.succeed(PlatformConfig, { ...platform, maxConnections: 3, notificationHeartbeat })),
        Layer.provide(Layer.succeed(AuthConfig, { ...config, ...overrides }))
      )
    )
    return Context.get(context, AccountDirectory)
  })

const listenerPids = Effect.flatMap(PlatformDb, (sql) =>
  sql<{ pid: number }>`
    SELECT pid FROM pg_stat_activity
    WHERE datname = current_database() AND query LIKE 'LISTEN %' AND pid <> pg_backend_pid()`.pipe(
    Effect.orDie,
    Effect.map((rows) => new Set(rows.map((row) => row.pid)))
  ))

/** The effect's first value that satisfies `until`, trying every 20 ms for up to 5 seconds. */
const eventually = <A, E, R>(effect: Effect.Effect<A, E, R>, until: (a: A) => boolean) =>
  effect.pipe(
    Effect.filterOrFail(until, () => "not yet"),
    Effect.retry(Schedule.spaced("20 millis")),
    Effect.timeout("5 seconds")
  )

layer(AuthStack({ adminUrl: inject("databaseUrl") }), { excludeTestServices: true })("account directory", (it) => {
  it.effect("setup: tenants", () =>
    Effect.gen(function*() {
      yield* ensureTenant("acme")
      yield* ensureTenant("globex")
    }))

  it.effect("service clients: register, list, disable, and their errors", () =>
    Effect.gen(function*() {
      const directory = yield* AccountDirectory
      const client = yield* directory.registerClient("acme", "report-job", "Report job")
      expect(Object.keys(Schema.encodeSync(ServiceClient)(client)).sort()).toEqual(
        ["accountId", "clientId", "createdAt", "disabled", "displayName", "tenantId"]
      )
      expect(client).toMatchObject({ clientId: "report-job", tenantId: "acme", displayName: "Report job", disabled: false })
      expect(client.createdAt).toBeInstanceOf(Date)

      const before = yield* countAccounts
      const duplicate = yield* Effect.flip(directory.registerClient("globex", "report-job", "Other"))
      expect(duplicate).toMatchObject({ _tag: "ClientAlreadyExists", error: "client_exists" })
      expect(duplicate.message).not.toMatch(/acme/)
      // The machine account of the refused client was rolled back with it.
      expect(yield* countAccounts).toBe(before)
      expect((yield* Effect.flip(directory.registerClient("nowhere", "x-job", "X")))._tag).toBe("TenantNotFound")
      expect((yield* Effect.flip(directory.registerClient("acme", "", "X")))._tag).toBe("InvalidServiceClient")
      expect((yield* Effect.flip(directory.registerClient("acme", "a\nb", "X")))._tag).toBe("InvalidServiceClient")
      expect((yield* Effect.flip(directory.registerClient("acme", "y-job", "x".repeat(201))))._tag).toBe(
        "InvalidServiceClient"
      )
      expect(yield* countAccounts).toBe(before)

      yield* directory.registerClient("acme", "export-job", "Export job")
      expect((yield* directory.listClients("acme")).map((c) => c.clientId)).toEqual(["report-job", "export-job"])
      expect(yield* directory.listClients("globex")).toEqual([])
      expect((yield* Effect.flip(directory.listClients("nowhere")))._tag).toBe("TenantNotFound")

      const disabled = yield* directory.disableClient("acme", "export-job")
      expect(disabled.disabled).toBe(true)
      expect((yield* directory.disableClient("acme", "export-job")).disabled).toBe(true)
      expect((yield* Effect.flip(directory.disableClient("acme", "ghost")))._tag).toBe("ClientNotFound")
      expect((yield* Effect.flip(directory.disableClient("globex", "report-job")))._tag).toBe("ClientNotFound")
      expect((yield* Effect.flip(directory.disableClient("nowhere", "report-job")))._tag).toBe("TenantNotFound")
    }))

  it.effect("email domains: normalised, validated, unique across tenants", () =>
    Effect.gen(function*() {
      const directory = yield* AccountDirectory
      const added = yield* directory.addDomain("acme", "  Mail.ACME.Example ")
      expect(added).toMatchObject({ domain: "mail.acme.example", tenantId: "acme" })
      expect((yield* directory.addDomain("acme", "bücher.example")).domain).toBe("xn--bcher-kva.example")
      for (const bad of ["", "localhost", "not a domain", "a..b", "-x.example", "x-.example", "1.2.3.4", "a@b.example"]) {
        expect((yield* Effect.flip(directory.addDomain("acme", bad)))._tag).toBe("InvalidDomain")
      }
      const again = yield* Effect.flip(directory.addDomain("globex", "MAIL.acme.example"))
      expect(again).toMatchObject({ _tag: "DomainAlreadyExists", error: "domain_exists" })
      expect(again.message).not.toMatch(/acme"/)
      expect((yield* Effect.flip(directory.addDomain("nowhere", "x.example")))._tag).toBe("TenantNotFound")
      expect((yield* directory.listDomains("acme")).map((d) => d.domain)).toEqual([
        "mail.acme.example",
        "xn--bcher-kva.example"
      ])
      expect((yield* Effect.flip(directory.listDomains("nowhere")))._tag).toBe("TenantNotFound")
    }))

  it.effect("disableAccount of an unknown account", () =>
    Effect.gen(function*() {
      const directory = yield* AccountDirectory
      for (const id of ["00000000-0000-4000-8000-000000000000", "not-a-uuid", "'; DROP TABLE accounts; --"]) {
        expect(yield* Effect.flip(directory.disableAccount(id))).toMatchObject({ _tag: "AccountNotFound", error: "not_found" })
      }
    }))

  it.effect("a repeat caller is answered from the cache: no platform query, even with the tables locked", () =>
    Effect.gen(function*() {
      const directory = yield* AccountDirectory
      const issuer = yield* TestIssuer
      const userToken = yield* issuer.user("cached-user", { tenant: "acme" })
      const machineToken = yield* issuer.machine("report-job")
      yield* authenticate(userToken)
      yield* authenticate(machineToken)
      const warm = yield* directory.stats
      expect(warm.listening).toBe(true)

      // Another session holds every table the look-ups read: any platform
      // query on them would wait, so calls that finish made none.
      const config = yield* PlatformConfig
      const locker = new Pg.Client({ connectionString: Redacted.value(config.url) })
      yield* Effect.acquireRelease(
        Effect.promise(async () => {
          await locker.connect()
          await locker.query("BEGIN")
          await locker.query("LOCK TABLE accounts, service_clients, tenants, tenant_domains IN ACCESS EXCLUSIVE MODE")
        }),
        () => Effect.promise(() => locker.query("ROLLBACK").then(() => locker.end()))
      )
      for (let i = 0; i < 20; i++) {
        yield* authenticate(userToken).pipe(Effect.timeout("2 seconds"))
        yield* authenticate(machineToken).pipe(Effect.timeout("2 seconds"))
      }
      const after = yield* directory.stats
      expect(after.misses).toBe(warm.misses)
      expect(after.hits).toBe(warm.hits + 40)
      // Control: a caller not in the cache does need the tables, and waits.
      const stranger = yield* Effect.flip(
        authenticate(yield* issuer.user("uncached-user", { tenant: "acme" })).pipe(Effect.timeout("300 millis"))
      )
      expect(stranger._tag).toBe("TimeoutException")
    }).pipe(Effect.scoped))

  it.scoped("a change through another directory is seen by this one on the very next call", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const other = yield* anotherDirectory()
      const databases = yield* TenantDatabases
      yield* ensureTenant("hooli")
      yield* other.registerClient("hooli", "hooli-job", "Job")
      const user = yield* issuer.user("hooli-user", { tenant: "hooli" })
      const machine = yield* issuer.machine("hooli-job")
      const seen = yield* authenticate(user)
      yield* authenticate(machine)
      // Cached now: the next calls would not look.
      yield* authenticate(user)
      yield* authenticate(machine)

      yield* other.disableClient("hooli", "hooli-job")
      expect((yield* Effect.flip(authenticate(machine)))._tag).toBe("ClientDisabled")

      yield* databases.setStatus("hooli", "suspended")
      yield* other.invalidateTenant("hooli")
      expect((yield* Effect.flip(authenticate(user)))._tag).toBe("TenantSuspended")
      yield* databases.setStatus("hooli", "active")
      yield* other.invalidateTenant("hooli")
      yield* authenticate(user)
      yield* authenticate(user)

      yield* other.disableAccount(seen.account.id)
      expect((yield* Effect.flip(authenticate(user)))._tag).toBe("AccountDisabled")

      // Not a lucky ordering: again and again, the very next call sees it.
      for (let i = 0; i < 25; i++) {
        yield* other.registerClient("hooli", `hooli-job-${i}`, "Job")
        const token = yield* issuer.machine(`hooli-job-${i}`)
        yield* authenticate(token)
        yield* authenticate(token)
        yield* other.disableClient("hooli", `hooli-job-${i}`)
        expect((yield* Effect.flip(authenticate(token)))._tag).toBe("ClientDisabled")
      }
    }))

  it.effect("a change made around the directory (TenantDatabases, plain SQL) reaches the cache too", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const databases = yield* TenantDatabases
      const directory = yield* AccountDirectory
      const sql = yield* PlatformDb
      yield* ensureTenant("umbrella")
      yield* directory.registerClient("umbrella", "umbrella-job", "Job")
      const user = yield* issuer.user("umbrella-user", { tenant: "umbrella" })
      const machine = yield* issuer.machine("umbrella-job")
      const { account } = yield* authenticate(user)
      yield* authenticate(machine)
      const outcome = (token: string) => Effect.map(Effect.either(authenticate(token)), (e) => (e._tag === "Right" ? "ok" : e.left._tag))

      // No invalidateTenant call: the platform database's trigger announces it.
      yield* databases.setStatus("umbrella", "suspended")
      expect(yield* eventually(outcome(user), (tag) => tag === "TenantSuspended")).toBe("TenantSuspended")
      yield* databases.setStatus("umbrella", "active")
      expect(yield* eventually(outcome(user), (tag) => tag === "ok")).toBe("ok")

      yield* Effect.orDie(sql`UPDATE service_clients SET disabled_at = now() WHERE client_id = 'umbrella-job'`)
      expect(yield* eventually(outcome(machine), (tag) => tag === "ClientDisabled")).toBe("ClientDisabled")
      yield* Effect.orDie(sql`UPDATE accounts SET disabled_at = now() WHERE id = ${account.id}`)
      expect(yield* eventually(outcome(user), (tag) => tag === "AccountDisabled")).toBe("AccountDisabled")
      yield* Effect.orDie(sql`DELETE FROM accounts WHERE id = ${account.id}`)
      // Deleted: on first sight again, a new account.
      const again = yield* eventually(Effect.either(authenticate(user)), (e) => e._tag === "Right")
      expect(again._tag === "Right" && again.right.account.id !== account.id).toBe(true)
    }))

  it.scoped("entries expire after the TTL; the cache holds at most its capacity", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const directory = yield* anotherDirectory({ accountCacheTtl: Duration.millis(150), accountCacheCapacity: 2 })
      const identity = (subject: string) => ({ issuer: issuer.issuer, subject, tenant: "acme" })
      yield* directory.user(identity("ttl-a"))
      yield* directory.user(identity("ttl-a"))
      expect((yield* directory.stats)).toMatchObject({ hits: 1, misses: 1 })
      yield* Effect.sleep("200 millis")
      yield* directory.user(identity("ttl-a"))
      expect((yield* directory.stats).misses).toBe(2)
      yield* directory.user(identity("ttl-b"))
      yield* directory.user(identity("ttl-c"))
      expect((yield* directory.stats).size).toBe(2)
      // ttl-a was the least recently used: evicted.
      yield* directory.user(identity("ttl-a"))
      expect((yield* directory.stats).misses).toBe(5)
    }))

  it.effect("a notification that is not the protocol's (another version, a stray NOTIFY) drops everything cached", () =>
    Effect.gen(function*() {
      const directory = yield* AccountDirectory
      const issuer = yield* TestIssuer
      const identity = { issuer: issuer.issuer, subject: "stray-notify-user", tenant: "acme" }
      yield* directory.user(identity)
      yield* directory.user(identity)
      const warm = yield* directory.stats
      expect(warm.size).toBeGreaterThan(0)
      const sql = yield* PlatformDb
      for (const payload of ["not json", JSON.stringify({ type: "change", from: "db", seq: 1, kind: "planet", id: "x" })]) {
        yield* directory.user(identity)
        yield* Effect.orDie(sql`SELECT pg_notify(${CHANNEL}, ${payload})`)
        yield* eventually(directory.stats, (stats) => stats.size === 0)
      }
      // A change from the triggers names what it drops: a rename of the tenant drops its callers.
      yield* directory.user(identity)
      const before = (yield* directory.stats).misses
      yield* Effect.orDie(sql`UPDATE tenants SET name = name || '' WHERE id = 'acme'`)
      yield* directory.user(identity)
      expect((yield* directory.stats).misses).toBe(before)
      yield* Effect.orDie(sql`UPDATE tenants SET name = name || '!' WHERE id = 'acme'`)
      yield* eventually(directory.stats, (stats) => stats.size === 0)
      yield* Effect.orDie(sql`UPDATE tenants SET name = 'acme' WHERE id = 'acme'`)
    }))

  it.scoped("a lost LISTEN connection turns the cache off until a new one is proven, then on again", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const before = yield* listenerPids
      const directory = yield* anotherDirectory({}, Duration.millis(200))
      const mine = [...(yield* listenerPids)].filter((pid) => !before.has(pid))
      expect(mine.length).toBe(1)
      const other = yield* anotherDirectory()
      yield* ensureTenant("acme")
      const identity = { issuer: issuer.issuer, subject: "listener-user", tenant: "acme" }
      const { account } = yield* directory.user(identity)
      yield* directory.user(identity)
      expect((yield* directory.stats).hits).toBe(1)

      const sql = yield* PlatformDb
      for (const pid of mine) yield* Effect.orDie(sql`SELECT pg_terminate_backend(${pid})`)
      yield* eventually(directory.stats, (stats) => !stats.listening)
      const off = yield* directory.stats
      yield* directory.user(identity)
      expect((yield* directory.stats).misses).toBe(off.misses + 1)
      yield* eventually(directory.stats, (stats) => stats.listening)
      yield* eventually(other.stats, (stats) => stats.listening)

      yield* directory.user(identity)
      yield* directory.user(identity)
      yield* other.disableAccount(account.id)
      expect((yield* Effect.flip(directory.user(identity)))._tag).toBe("AccountDisabled")
    }))

  it.scoped("a client disabled by plain SQL while the LISTEN connection is down is refused within the staleness bound", () =>
    Effect.gen(function*() {
      const sql = yield* PlatformDb
      const before = yield* listenerPids
      // The defaults: pings every 250 ms, a 1-second bound.
      const directory = yield* anotherDirectory()
      const mine = [...(yield* listenerPids)].filter((pid) => !before.has(pid))
      expect(mine.length).toBe(1)
      yield* ensureTenant("acme")
      yield* directory.registerClient("acme", "gap-job", "Job")
      const identity = { clientId: "gap-job", tenant: "acme" }
      yield* directory.machine(identity)
      yield* directory.machine(identity)
      const warm = yield* directory.stats
      expect(warm.hits).toBeGreaterThan(0)

      // The listener's backend dies; in the gap before a new one is proven,
      // the client is disabled around every directory: its notification
      // reaches no listener of this directory.
      for (const pid of mine) yield* Effect.orDie(sql`SELECT pg_terminate_backend(${pid})`)
      yield* Effect.orDie(sql`UPDATE service_clients SET disabled_at = now() WHERE client_id = 'gap-job'`)
      const disabledAt = Date.now()
      const noticed = !(yield* directory.stats).listening

      // Every answer, with when its call started: none admitted once the bound has passed.
      const answers: Array<{ readonly startedAt: number; readonly outcome: string }> = []
      const outcome = Effect.suspend(() => {
        const startedAt = Date.now()
        return Effect.map(Effect.either(directory.machine(identity)), (result) => {
          const answer = { startedAt, outcome: result._tag === "Right" ? "ok" : result.left._tag }
          answers.push(answer)
          return answer
        })
      })
      const refused = yield* eventually(outcome, (answer) => answer.outcome === "ClientDisabled")
      const BOUND = 1_000
      for (const answer of answers) {
        expect(answer.outcome === "ok" && answer.startedAt > disabledAt + BOUND, JSON.stringify(answer)).toBe(false)
        expect(["ok", "ClientDisabled"]).toContain(answer.outcome)
      }
      console.log(
        `client disabled in the gap (loss noticed by then: ${noticed}): refused ${refused.startedAt - disabledAt} ms after the UPDATE ` +
          `(bound ${BOUND} ms), after ${answers.length} call(s)`
      )
      // And it stays refused once the new connection is proven.
      yield* eventually(directory.stats, (stats) => stats.listening)
      expect((yield* Effect.flip(directory.machine(identity)))._tag).toBe("ClientDisabled")
    }))

  it.scoped("with no recent proof that every change was heard (pings late), the cache is not used: the caller is re-read", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      // A ping only every 30 s: the last proof ages past the 200 ms bound long before the next one.
      const directory = yield* anotherDirectory({ accountCacheStaleness: Duration.millis(200) }, Duration.seconds(30))
      yield* ensureTenant("acme")
      const identity = { issuer: issuer.issuer, subject: "late-ping-user", tenant: "acme" }
      yield* directory.user(identity)
      yield* Effect.sleep("300 millis")
      const before = yield* directory.stats
      expect(before.listening).toBe(true)
      yield* directory.user(identity)
      yield* directory.user(identity)
      const after = yield* directory.stats
      expect(after.misses - before.misses).toBe(2)
      expect(after.hits).toBe(before.hits)
    }))

  it.scoped("the platform database down: a cached caller is served within the bound, then refused with 503; an unknown one at once", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const config = yield* PlatformConfig
      const directory = yield* anotherDirectory({ accountCacheStaleness: Duration.seconds(2) })
      yield* ensureTenant("acme")
      const known = { issuer: issuer.issuer, subject: "outage-known", tenant: "acme" }
      yield* directory.user(known)
      yield* directory.user(known)
      expect((yield* directory.stats).hits).toBeGreaterThan(0)

      const database = new URL(Redacted.value(config.url)).pathname.slice(1)
      const admin = new Pg.Client({ connectionString: inject("databaseUrl") })
      yield* Effect.acquireRelease(
        Effect.promise(async () => {
          await admin.connect()
          await admin.query(`ALTER DATABASE ${database} WITH ALLOW_CONNECTIONS false`)
          await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", [database])
        }),
        () =>
          Effect.promise(async () => {
            await admin.query(`ALTER DATABASE ${database} WITH ALLOW_CONNECTIONS true`)
            await admin.end()
          })
      )
      const downAt = Date.now()
      const unknown = yield* Effect.flip(directory.user({ ...known, subject: "outage-unknown" }))
      expect(unknown).toMatchObject({ _tag: "ServiceUnavailable", error: "service_unavailable" })
      // Served from memory until the bound has passed since the last proof, then refused.
      const answers: Array<{ readonly startedAt: number; readonly outcome: string }> = []
      const refused = yield* eventually(
        Effect.suspend(() => {
          const startedAt = Date.now()
          return Effect.map(Effect.either(directory.user(known)), (result) => {
            const answer = { startedAt, outcome: result._tag === "Right" ? "ok" : result.left._tag }
            answers.push(answer)
            return answer
          })
        }),
        (answer) => answer.outcome !== "ok"
      ).pipe(Effect.timeout("10 seconds"))
      expect(refused.outcome).toBe("ServiceUnavailable")
      for (const answer of answers) {
        expect(answer.outcome === "ok" && answer.startedAt > downAt + 2_000, JSON.stringify(answer)).toBe(false)
      }
      const stats = yield* directory.stats
      expect(stats.outageHits).toBeGreaterThan(0)
      console.log(`platform down: the cached caller was served ${refused.startedAt - downAt} ms into the outage (bound 2000 ms), ` +
        `${stats.outageHits} time(s) from memory`)
    }))

  it.scoped("what a re-read found is what the cache falls back on: a client refused on a re-read stays refused once the database goes down", () =>
    Effect.gen(function*() {
      const sql = yield* PlatformDb
      const config = yield* PlatformConfig
      const before = yield* listenerPids
      // A wide bound: without the re-read's answer, the old entry would admit the client for 30 s.
      const directory = yield* anotherDirectory({ accountCacheStaleness: Duration.seconds(30) })
      const mine = [...(yield* listenerPids)].filter((pid) => !before.has(pid))
      yield* ensureTenant("acme")
      yield* directory.registerClient("acme", "reread-job", "Job")
      const identity = { clientId: "reread-job", tenant: "acme" }
      yield* directory.machine(identity)
      yield* directory.machine(identity)

      for (const pid of mine) yield* Effect.orDie(sql`SELECT pg_terminate_backend(${pid})`)
      yield* Effect.orDie(sql`UPDATE service_clients SET disabled_at = now() WHERE client_id = 'reread-job'`)
      const outcome = Effect.map(Effect.either(directory.machine(identity)), (e) => (e._tag === "Right" ? "ok" : e.left._tag))
      expect(yield* eventually(outcome, (tag) => tag === "ClientDisabled")).toBe("ClientDisabled")

      // Now the platform database refuses connections: the cache answers, with what the re-read found.
      const database = new URL(Redacted.value(config.url)).pathname.slice(1)
      const admin = new Pg.Client({ connectionString: inject("databaseUrl") })
      yield* Effect.acquireRelease(
        Effect.promise(async () => {
          await admin.connect()
          await admin.query(`ALTER DATABASE ${database} WITH ALLOW_CONNECTIONS false`)
          await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", [database])
        }),
        () =>
          Effect.promise(async () => {
            await admin.query(`ALTER DATABASE ${database} WITH ALLOW_CONNECTIONS true`)
            await admin.end()
          })
      )
      const outageHits = (yield* directory.stats).outageHits
      expect(yield* outcome).toBe("ClientDisabled")
      expect((yield* directory.stats).outageHits).toBe(outageHits + 1)
      // A caller the database never answered for is not made up: 503.
      expect(yield* Effect.map(Effect.either(directory.machine({ clientId: "never-seen-job" })), (e) => e._tag === "Left" && e.left._tag))
        .toBe("ServiceUnavailable")
    }))
})
