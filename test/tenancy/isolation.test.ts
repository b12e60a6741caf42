import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { inject } from "vitest"
import { NoteService } from "../../src/notes/NoteService.js"
import { TenantContexts, withTenant } from "../../src/tenancy/TenantContexts.js"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { TestTenancy, TestUser } from "../../src/testing/index.js"

layer(TestTenancy({ adminUrl: inject("databaseUrl") }), { excludeTestServices: true, timeout: 120_000 })("tenant isolation", (it) => {
  it.effect("notes written in one tenant are invisible in another", () =>
    Effect.gen(function*() {
      const databases = yield* TenantDatabases
      const a = yield* databases.provision("iso-a", "A")
      const b = yield* databases.provision("iso-b", "B")
      const note = yield* Effect.flatMap(NoteService, (s) => s.create({ title: "secret", body: "of A" })).pipe(
        withTenant(a.id),
        Effect.provide(TestUser(a))
      )
      const inB = yield* Effect.gen(function*() {
        const notes = yield* NoteService
        const page = yield* notes.list()
        const get = yield* Effect.flip(notes.get(note.id))
        const update = yield* Effect.flip(notes.update(note.id, { title: "hijacked" }))
        const remove = yield* Effect.flip(notes.remove(note.id))
        return { page, get, update, remove }
      }).pipe(withTenant(b.id))
      expect(inB.page.items).toEqual([])
      expect(inB.get._tag).toBe("NoteNotFound")
      expect(inB.update._tag).toBe("NoteNotFound")
      expect(inB.remove._tag).toBe("NoteNotFound")
      const inA = yield* Effect.flatMap(NoteService, (s) => s.get(note.id)).pipe(withTenant(a.id))
      expect(inA.title).toBe("secret")
      expect(inA.body).toBe("of A")
      const stats = yield* Effect.flatMap(TenantContexts, (c) => c.stats)
      expect(stats.references).toBe(0)
    }))
})
