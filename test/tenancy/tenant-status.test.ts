import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { NoteService } from "../../src/notes/NoteService.js"
import { TenancyConfig } from "../../src/tenancy/TenancyConfig.js"
import { TenantContexts, withTenant } from "../../src/tenancy/TenantContexts.js"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { TestTenancy, TestUser } from "../../src/testing/index.js"
import { adminQuery, adminUrl, typedFailure } from "./support.js"

const stats = Effect.flatMap(TenantContexts, (c) => c.stats)
const listIn = (tenantId: string) => Effect.flatMap(NoteService, (s) => s.list()).pipe(withTenant(tenantId))

/** Recreates a dropped tenant database as provisioning makes it: a copy of the template, closed to PUBLIC. */
const restoreDatabase = (tenantId: string) =>
  Effect.gen(function*() {
    const { databasePrefix } = yield* TenancyConfig
    const placement = yield* Effect.flatMap(TenantDatabases, (d) => d.placement(tenantId))
    yield* adminQuery(`CREATE DATABASE "${placement.database}" TEMPLATE "${databasePrefix}template"`)
    yield* adminQuery(`REVOKE ALL ON DATABASE "${placement.database}" FROM PUBLIC`)
    yield* adminQuery(`GRANT CONNECT, TEMPORARY ON DATABASE "${placement.database}" TO "${placement.role}"`)
  })

// The idle time is long: a failure kept by the cache would be seen again on the next call.
layer(TestTenancy({ adminUrl, idleTimeout: "5 minutes", acquireTimeout: "2 seconds" }), {
  excludeTestServices: true,
  timeout: 120_000
})("tenant status", (it) => {
  it.effect("a suspended tenant: placement and withTenant fail with TenantSuspended; reactivated, it serves again", () =>
    Effect.gen(function*() {
      const databases = yield* TenantDatabases
      const contexts = yield* TenantContexts
      const tenant = yield* databases.provision("susp", "Suspended")
      const note = yield* Effect.flatMap(NoteService, (s) => s.create({ title: "before", body: "" })).pipe(
        withTenant("susp"),
        Effect.provide(TestUser(tenant))
      )
      // Suspending is followed by invalidating the cached context (as the admin path does).
      const suspended = yield* databases.setStatus("susp", "suspended")
      expect(suspended.status).toBe("suspended")
      yield* contexts.invalidate("susp")
      expect((yield* typedFailure(databases.placement("susp"), "placement"))._tag).toBe("TenantSuspended")
      expect((yield* typedFailure(listIn("susp"), "withTenant"))._tag).toBe("TenantSuspended")
      const after = yield* stats
      expect(after.references).toBe(0)
      // It is still known, only suspended.
      expect((yield* databases.find("susp")).status).toBe("suspended")

      yield* databases.setStatus("susp", "active")
      const page = yield* listIn("susp")
      expect(page.items.map((n) => n.id)).toEqual([note.id])
    }))

  it.effect("a tenant suspended before its first use never opens a context", () =>
    Effect.gen(function*() {
      const databases = yield* TenantDatabases
      yield* databases.provision("susp-early", "Early")
      yield* databases.setStatus("susp-early", "suspended")
      const before = yield* stats
      for (let i = 0; i < 3; i++) {
        expect((yield* typedFailure(listIn("susp-early"), "withTenant"))._tag).toBe("TenantSuspended")
      }
      const after = yield* stats
      expect(after.opened).toBe(before.opened)
      expect(after.open).toBe(before.open)
      expect(after.references).toBe(0)
    }))

  it.effect("an unknown tenant is TenantNotFound and takes no room", () =>
    Effect.gen(function*() {
      const databases = yield* TenantDatabases
      const before = yield* stats
      for (const id of ["nobody", "also-nobody", "Not A Valid Id", ""]) {
        expect((yield* typedFailure(databases.placement(id), `placement ${id}`))._tag).toBe("TenantNotFound")
        expect((yield* typedFailure(databases.find(id), `find ${id}`))._tag).toBe("TenantNotFound")
        expect((yield* typedFailure(listIn(id), `withTenant ${id}`))._tag).toBe("TenantNotFound")
        expect((yield* typedFailure(databases.setStatus(id, "suspended"), `setStatus ${id}`))._tag).toBe(
          "TenantNotFound"
        )
      }
      const after = yield* stats
      expect(after).toEqual({ ...before, references: 0 })
    }))

  it.effect("a tenant whose database was dropped: TenantUnavailable, not cached; restored, it serves at once", () =>
    Effect.gen(function*() {
      const databases = yield* TenantDatabases
      yield* databases.provision("dropped", "Dropped")
      const placement = yield* databases.placement("dropped")
      yield* adminQuery(`DROP DATABASE "${placement.database}" WITH (FORCE)`)
      const before = yield* stats
      for (let i = 0; i < 2; i++) {
        expect((yield* typedFailure(listIn("dropped"), "withTenant"))._tag).toBe("TenantUnavailable")
      }
      const after = yield* stats
      // Nothing is held or kept open by the failed opens.
      expect(after.references).toBe(0)
      expect(after.open).toBe(before.open)
      expect(after.opened - before.opened).toBe(after.closed - before.closed)

      yield* restoreDatabase("dropped")
      const page = yield* listIn("dropped")
      expect(page.items).toEqual([])
      expect((yield* stats).open).toBe(before.open + 1)
    }))

  it.effect("a database refusing connections for a while: the failure is not sticky", () =>
    Effect.gen(function*() {
      const databases = yield* TenantDatabases
      yield* databases.provision("closed-door", "Closed")
      const { database } = yield* databases.placement("closed-door")
      yield* adminQuery(`ALTER DATABASE "${database}" ALLOW_CONNECTIONS false`)
      expect((yield* typedFailure(listIn("closed-door"), "closed"))._tag).toBe("TenantUnavailable")
      yield* adminQuery(`ALTER DATABASE "${database}" ALLOW_CONNECTIONS true`)
      const page = yield* listIn("closed-door")
      expect(page.items).toEqual([])
      expect((yield* stats).references).toBe(0)
    }))

  it.effect("an open context whose database disappears answers TenantUnavailable, never a defect", () =>
    Effect.gen(function*() {
      const databases = yield* TenantDatabases
      const tenant = yield* databases.provision("vanishing", "Vanishing")
      yield* Effect.flatMap(NoteService, (s) => s.create({ title: "x", body: "" })).pipe(
        withTenant("vanishing"),
        Effect.provide(TestUser(tenant))
      )
      const { database } = yield* databases.placement("vanishing")
      yield* adminQuery(`DROP DATABASE "${database}" WITH (FORCE)`)
      for (let i = 0; i < 3; i++) {
        expect((yield* typedFailure(listIn("vanishing"), "after the drop"))._tag).toBe("TenantUnavailable")
      }
      expect((yield* stats).references).toBe(0)
      // Restored (empty), it serves again: the cached pool connects anew.
      yield* restoreDatabase("vanishing")
      const page = yield* listIn("vanishing")
      expect(page.items).toEqual([])
    }))
})
