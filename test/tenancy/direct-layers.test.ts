import * as Reactivity from "@effect/experimental/Reactivity"
import { expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { NoteRepo } from "../../src/notes/NoteRepo.js"
import { NoteService } from "../../src/notes/NoteService.js"
import { TenantContexts } from "../../src/tenancy/TenantContexts.js"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { SharedPools } from "../../src/tenancy/SharedPools.js"
import { TenantSession } from "../../src/tenancy/TenantSession.js"
import { TestTenancy, TestUser } from "../../src/testing/index.js"
import { adminUrl, tenantConnections } from "./support.js"

/**
 * The way a user of this project tests a tenant-scoped service: a fresh tenant
 * database from TestTenancy, and the service's layers composed directly on a
 * TenantSession for it, with no HTTP and no TenantContexts cache.
 */
const session = (tenantId: string) =>
  Layer.unwrapEffect(
    Effect.gen(function*() {
      const databases = yield* TenantDatabases
      const tenant = yield* databases.provision(tenantId, "Direct")
      const placement = yield* databases.placement(tenant.id)
      return TenantSession.layer(placement, { maxConnections: 2, acquireTimeout: "5 seconds" }).pipe(
        // What a schema tenant's session runs on; a database tenant's opens a pool of its own.
        Layer.provide(SharedPools.layer({ connections: 2, acquireTimeout: "5 seconds" })),
        Layer.merge(TestUser(tenant))
      )
    }).pipe(Effect.orDie)
  )

const notesOn = <A, E, R>(sessionLayer: Layer.Layer<A | TenantSession, E, R>) =>
  NoteService.layer.pipe(
    Layer.provideMerge(NoteRepo.layer),
    Layer.provideMerge(sessionLayer),
    Layer.provide(Reactivity.layer)
  )

layer(TestTenancy({ adminUrl }), { excludeTestServices: true, timeout: 120_000 })("layers composed directly", (it) => {
  it.layer(notesOn(session("direct")))("NoteService on NoteRepo on TenantSession", (it) => {
    it.effect("creates, reads, pages, updates and removes notes", () =>
      Effect.gen(function*() {
        const notes = yield* NoteService
        const created = yield* Effect.forEach([1, 2, 3], (i) => notes.create({ title: `note ${i}`, body: `body ${i}` }))
        const page = yield* notes.list({ limit: 2 })
        expect(page.items).toHaveLength(2)
        const rest = yield* notes.list({ limit: 2, cursor: page.nextCursor! })
        expect(new Set([...page.items, ...rest.items].map((n) => n.id))).toEqual(new Set(created.map((n) => n.id)))
        const updated = yield* notes.update(created[0]!.id, { title: "renamed" })
        expect(updated.title).toBe("renamed")
        yield* notes.remove(created[1]!.id)
        expect((yield* Effect.flip(notes.get(created[1]!.id)))._tag).toBe("NoteNotFound")
        // The repository is there to be used on its own too.
        const repo = yield* NoteRepo
        expect((yield* repo.find(created[2]!.id))?.title).toBe("note 3")
        const { tenantId } = yield* TenantSession
        expect(tenantId).toBe("direct")
      }))

    it.effect("no tenant context cache was involved", () =>
      Effect.gen(function*() {
        const stats = yield* Effect.flatMap(TenantContexts, (c) => c.stats)
        expect(stats).toEqual({ open: 0, schemaOpen: 0, connections: 0, references: 0, opened: 0, closed: 0 })
      }))
  })

  it.effect("built and released inside one test, the session's pool is closed afterwards", () =>
    Effect.gen(function*() {
      const databases = yield* TenantDatabases
      const note = yield* Effect.flatMap(NoteService, (s) => s.create({ title: "scoped", body: "" })).pipe(
        Effect.provide(notesOn(session("direct-scoped")))
      )
      expect(note.title).toBe("scoped")
      // The pool ended with the layer's scope: no connection to that database is left.
      const left = yield* tenantConnections(databases.databaseName("direct-scoped"))
      expect(left).toBe(0)
    }))
})
