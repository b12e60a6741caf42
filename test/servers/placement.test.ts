import { expect, layer } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import { PlatformDb } from "../../src/platform/PlatformDb.js"
import { TenantAdmin } from "../../src/platform/TenantAdmin.js"
import { ServerRegistry } from "../../src/servers/ServerRegistry.js"
import { TenancyConfig } from "../../src/tenancy/TenancyConfig.js"
import { TenantContexts } from "../../src/tenancy/TenantContexts.js"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { adminUrl, query, secondUrl, titles, TwoServers, writeNote } from "./support.js"

/**
 * Tenants on two real PostgreSQL servers: the registry, placement by weight,
 * draining, and moves between servers and strategies with their data, while
 * writes keep coming.
 */

const Tenancy = TwoServers()

const databaseExists = (url: string, name: string) =>
  Effect.map(query(url, "SELECT 1 FROM pg_database WHERE datname = $1", [name]), (rows) => rows.length === 1)

const serverOf = (id: string) => Effect.map(Effect.flatMap(TenantDatabases, (d) => d.find(id)), (t) => t.placement)

layer(Tenancy, { excludeTestServices: true, timeout: 120_000 })("servers and moves", (it) => {
  it.effect("the configured server is registered as default; a second one is added after checks that never show its URL", () =>
    Effect.gen(function*() {
      const registry = yield* ServerRegistry
      expect((yield* registry.list).map((s) => s.name)).toEqual(["default"])
      const refusal = (name: string, url: string, options = {}) =>
        Effect.map(Effect.flip(registry.add(name, url, options)), (e) => ({ tag: e._tag, message: e.message }))
      expect((yield* refusal("Bad Name", secondUrl)).tag).toBe("InvalidServer")
      expect((yield* refusal("second", "mysql://x")).tag).toBe("InvalidServer")
      expect((yield* refusal("second", secondUrl, { weight: 0 })).tag).toBe("InvalidServer")
      expect((yield* refusal("default", secondUrl)).tag).toBe("ServerAlreadyExists")
      // The same server under another name would double its tenants' allowance.
      expect((yield* refusal("again", adminUrl)).message).toContain("registered already, as default")
      // A server that does not answer; a password in the URL is never repeated.
      const unreachable = yield* refusal("nowhere", "postgres://someone:hunter2secret@127.0.0.1:1/postgres")
      expect(unreachable.tag).toBe("InvalidServer")
      expect(unreachable.message).not.toContain("hunter2secret")

      const added = yield* registry.add("second", secondUrl, { weight: 1, maxConnections: 30 })
      expect(added).toMatchObject({ name: "second", status: "active", weight: 1, maxConnections: 30, tenants: 0 })
      expect(JSON.stringify(yield* registry.list)).not.toContain(new URL(secondUrl).host)
    }))

  it.effect("new tenants go to the active server with the fewest tenants per weight; a draining or unknown server is refused", () =>
    Effect.gen(function*() {
      const admin = yield* TenantAdmin
      const placed: Array<string> = []
      for (const id of ["spread-a", "spread-b", "spread-c", "spread-d"]) {
        placed.push((yield* admin.create(id, id)).placement.server)
      }
      expect(placed).toEqual(["default", "second", "default", "second"])
      expect((yield* admin.create("pinned", "P", { server: "second", strategy: "schema" })).placement)
        .toMatchObject({ server: "second", strategy: "schema" })
      expect((yield* Effect.flip(admin.create("lost", "L", { server: "nosuch" })))._tag).toBe("InvalidTenant")

      // Its data is really there: the session connects to the second server.
      yield* writeNote("spread-b", "on the second server")
      const { database } = yield* serverOf("spread-b")
      expect(yield* databaseExists(secondUrl, database)).toBe(true)
      expect(yield* databaseExists(adminUrl, database)).toBe(false)
      expect(yield* titles("spread-b")).toEqual(["on the second server"])

      yield* admin.drainServer("second")
      expect((yield* Effect.flip(admin.create("late", "L", { server: "second" }))).message).toContain("draining")
      expect((yield* admin.create("late", "L")).placement.server).toBe("default")
      const servers = yield* admin.listServers
      expect(servers.map((s) => [s.name, s.status, s.tenants])).toEqual([["default", "active", 3], ["second", "draining", 3]])
      yield* Effect.flatMap(PlatformDb, (sql) => sql`UPDATE servers SET status = 'active' WHERE name = 'second'`)
    }))

  it.effect("a tenant moves between servers and strategies with every note; its old copy is dropped", () =>
    Effect.gen(function*() {
      const admin = yield* TenantAdmin
      yield* admin.create("mover", "Mover", { server: "default", strategy: "database" })
      for (let i = 0; i < 50; i++) yield* writeNote("mover", `note ${String(i).padStart(2, "0")}`)
      const expected = yield* titles("mover")
      const first = yield* serverOf("mover")

      const steps: Array<string> = []
      const summary = yield* admin.move("mover", { to: "second" }, (p) => Effect.sync(() => steps.push(p.step)))
      expect(summary).toMatchObject({
        moved: true,
        from: { server: "default", strategy: "database" },
        to: { server: "second", strategy: "database" },
        tables: [{ table: "notes", rows: 50 }]
      })
      expect(steps).toEqual(["draining", "creating", "copied", "switched"])
      expect(yield* titles("mover")).toEqual(expected)
      expect(yield* databaseExists(adminUrl, first.database)).toBe(false)
      expect(yield* databaseExists(secondUrl, (yield* serverOf("mover")).database)).toBe(true)

      // Same server, another strategy: a schema in the second server's shared database.
      yield* admin.move("mover", { strategy: "schema" }, () => Effect.void)
      expect(yield* serverOf("mover")).toMatchObject({ server: "second", strategy: "schema" })
      expect(yield* titles("mover")).toEqual(expected)
      // And back to a database of its own on the first server; writes work there.
      yield* admin.move("mover", { to: "default", strategy: "database" }, () => Effect.void)
      expect(yield* serverOf("mover")).toMatchObject({ server: "default", strategy: "database" })
      yield* writeNote("mover", "after the moves")
      expect((yield* titles("mover")).length).toBe(51)
      const [leftovers] = yield* Effect.flatMap(PlatformDb, (sql) => sql<{ n: number }>`SELECT count(*)::int AS n FROM tenant_moves`)
      expect(leftovers!.n).toBe(0)
      // Where it is already: nothing to do.
      expect((yield* admin.move("mover", { to: "default" }, () => Effect.void)).moved).toBe(false)
    }))

  it.effect("while a tenant moves, its writes are refused with 503 or land and are kept: none is lost; other tenants are served", () =>
    Effect.gen(function*() {
      const admin = yield* TenantAdmin
      yield* admin.create("busy", "Busy", { server: "default" })
      yield* admin.create("bystander", "Bystander", { server: "default" })
      let stop = false
      const accepted: Array<string> = []
      let refused = 0
      let otherErrors = 0
      const writer = Effect.gen(function*() {
        for (let i = 0; !stop; i++) {
          const outcome = yield* Effect.either(writeNote("busy", `w${i}`))
          if (outcome._tag === "Right") accepted.push(outcome.right.title)
          else if (outcome.left._tag === "TenantUnavailable") refused++
          else otherErrors++
          const other = yield* Effect.either(writeNote("bystander", `b${i}`))
          if (other._tag === "Left") otherErrors++
        }
      })
      const running = yield* Effect.fork(writer)
      yield* Effect.sleep("300 millis")
      const summary = yield* admin.move("busy", { to: "second", strategy: "schema" }, () => Effect.void)
      yield* Effect.sleep("300 millis")
      stop = true
      yield* Fiber.join(running)
      expect(summary.moved).toBe(true)
      expect(otherErrors).toBe(0)
      expect(accepted.length).toBeGreaterThan(0)
      // Every accepted write is there after the move.
      const kept = new Set(yield* titles("busy"))
      expect(accepted.filter((title) => !kept.has(title))).toEqual([])
      expect(kept.size).toBe(accepted.length)
      yield* Effect.log(`during the move: ${accepted.length} writes accepted, ${refused} refused with 503, unavailable ${summary.unavailableMillis} ms`)
    }))

  it.effect("a tenant being moved gets 503 tenant_unavailable; a claim whose mover died lapses", () =>
    Effect.gen(function*() {
      const admin = yield* TenantAdmin
      const sql = yield* PlatformDb
      yield* admin.create("claimed", "C", { server: "default" })
      yield* sql`UPDATE tenants SET moving_until = now() + interval '1 minute' WHERE id = 'claimed'`
      const refused = yield* Effect.flip(titles("claimed"))
      expect(refused).toMatchObject({ _tag: "TenantUnavailable", error: "tenant_unavailable" })
      expect((yield* Effect.flip(admin.move("claimed", { to: "second" }, () => Effect.void)))._tag).toBe("TenantUnavailable")
      // The mover died a while ago: its claim has lapsed, the tenant serves, and a new move goes through.
      yield* sql`UPDATE tenants SET moving_until = now() - interval '1 second' WHERE id = 'claimed'`
      yield* Effect.flatMap(TenantContexts, (c) => c.invalidate("claimed"))
      expect(yield* titles("claimed")).toEqual([])
      expect((yield* admin.move("claimed", { to: "second" }, () => Effect.void)).moved).toBe(true)
    }))

  it.effect("an interrupted move leaves the tenant whole where it was, and the next run completes it", () =>
    Effect.gen(function*() {
      const admin = yield* TenantAdmin
      yield* admin.create("halfway", "H", { server: "default" })
      for (let i = 0; i < 20; i++) yield* writeNote("halfway", `h${i}`)
      const before = yield* serverOf("halfway")
      // Interrupted once its new database exists on the second server.
      const fiber = yield* Effect.fork(admin.move("halfway", { to: "second" }, () => Effect.void))
      const sql = yield* PlatformDb
      const target = yield* Effect.gen(function*() {
        while (true) {
          const rows = yield* sql<{ to_database: string }>`SELECT to_database FROM tenant_moves WHERE tenant_id = 'halfway'`
          if (rows.length > 0 && (yield* databaseExists(secondUrl, rows[0]!.to_database))) return rows[0]!.to_database
          yield* Effect.sleep("5 millis")
        }
      }).pipe(Effect.timeout("20 seconds"))
      yield* Fiber.interrupt(fiber)
      expect(yield* serverOf("halfway")).toEqual(before)
      expect((yield* titles("halfway")).length).toBe(20)
      expect(yield* databaseExists(secondUrl, target)).toBe(false)
      const summary = yield* admin.move("halfway", { to: "second" }, () => Effect.void)
      expect(summary.tables).toEqual([{ table: "notes", rows: 20 }])
      expect((yield* titles("halfway")).length).toBe(20)
    }))

  it.effect("a server is removed only once no tenant is on it", () =>
    Effect.gen(function*() {
      const registry = yield* ServerRegistry
      expect((yield* Effect.flip(registry.remove("second")))._tag).toBe("ServerInUse")
      expect((yield* Effect.flip(registry.remove("nosuch")))._tag).toBe("ServerNotFound")
      const admin = yield* TenantAdmin
      for (const tenant of yield* admin.list) {
        if (tenant.placement.server === "second") yield* admin.move(tenant.id, { to: "default" }, () => Effect.void)
      }
      yield* registry.remove("second")
      expect((yield* registry.list).map((s) => s.name)).toEqual(["default"])
      // The engine's own template and shared databases on it are gone too.
      const { databasePrefix } = yield* TenancyConfig
      expect(yield* query(secondUrl, "SELECT datname FROM pg_database WHERE starts_with(datname, $1)", [databasePrefix]))
        .toEqual([])
      expect(Exit.isSuccess(yield* Effect.exit(registry.add("second", secondUrl)))).toBe(true)
    }))
})
