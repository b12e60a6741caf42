import { expect, layer } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import Pg from "pg"
import { databaseOf, login } from "../../src/db/DatabaseUrl.js"
import { NoteService } from "../../src/notes/NoteService.js"
import { PlatformConfig } from "../../src/platform/PlatformConfig.js"
import { TenantContexts, withTenant } from "../../src/tenancy/TenantContexts.js"
import { TenantDatabases, type TenantPlacement } from "../../src/tenancy/TenantDatabases.js"
import { TestTenancy, TestUser } from "../../src/testing/index.js"
import { adminUrl } from "./support.js"

/** Connects as a tenant's role to a database and runs statements; the SQLSTATE and message on refusal. */
const asRole = (placement: TenantPlacement, database: string, statements: ReadonlyArray<string>) =>
  Effect.promise(async () => {
    const url = login(placement.server, { database, user: placement.role, password: Redacted.value(placement.password) })
    const client = new Pg.Client({ connectionString: Redacted.value(url) })
    client.on("error", () => {})
    try {
      await client.connect()
      const results: Array<ReadonlyArray<Record<string, unknown>>> = []
      for (const statement of statements) results.push((await client.query(statement)).rows)
      return { ok: true as const, results }
    } catch (error) {
      const code = error instanceof Error && "code" in error ? String(error.code) : undefined
      return { ok: false as const, code, message: error instanceof Error ? error.message : String(error) }
    } finally {
      await client.end().catch(() => {})
    }
  })

layer(TestTenancy({ adminUrl }), { excludeTestServices: true, timeout: 120_000 })("tenant isolation", (it) => {
  it.effect("notes written in one tenant are invisible in another, and cannot be changed from it", () =>
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
        const update = yield* Effect.flip(notes.update(note.id, { title: "hijacked", body: "by B" }))
        const remove = yield* Effect.flip(notes.remove(note.id))
        return { page, get, update, remove }
      }).pipe(withTenant(b.id))
      expect(inB.page.items).toEqual([])
      expect(inB.page.nextCursor).toBeNull()
      expect(inB.get._tag).toBe("NoteNotFound")
      expect(inB.update._tag).toBe("NoteNotFound")
      expect(inB.remove._tag).toBe("NoteNotFound")

      // Read as A afterwards: the note is there, exactly as written.
      const inA = yield* Effect.gen(function*() {
        const notes = yield* NoteService
        return { note: yield* notes.get(note.id), page: yield* notes.list() }
      }).pipe(withTenant(a.id))
      expect(inA.note).toEqual(note)
      expect(inA.note.title).toBe("secret")
      expect(inA.note.body).toBe("of A")
      expect(inA.page.items.map((n) => n.id)).toEqual([note.id])

      // B's own note stays in B.
      const ofB = yield* Effect.flatMap(NoteService, (s) => s.create({ title: "of B", body: "" })).pipe(
        withTenant(b.id),
        Effect.provide(TestUser(b))
      )
      const seenByA = yield* Effect.flatMap(NoteService, (s) => Effect.flip(s.get(ofB.id))).pipe(withTenant(a.id))
      expect(seenByA._tag).toBe("NoteNotFound")
      const listedInA = yield* Effect.flatMap(NoteService, (s) => s.list()).pipe(withTenant(a.id))
      expect(listedInA.items.map((n) => n.id)).toEqual([note.id])

      const stats = yield* Effect.flatMap(TenantContexts, (c) => c.stats)
      expect(stats.references).toBe(0)
    }))

  it.effect("a tenant's role is refused by another tenant's database and can use its own", () =>
    Effect.gen(function*() {
      const databases = yield* TenantDatabases
      yield* databases.provision("dbiso-a", "A")
      yield* databases.provision("dbiso-b", "B")
      const a = yield* databases.placement("dbiso-a")
      const b = yield* databases.placement("dbiso-b")
      expect(a.database).not.toBe(b.database)
      expect(a.role).not.toBe(b.role)

      // A's role into B's database: PostgreSQL itself refuses.
      const intoB = yield* asRole(a, b.database, ["SELECT 1"])
      expect(intoB.ok).toBe(false)
      if (!intoB.ok) {
        expect(intoB.code).toBe("42501")
        expect(intoB.message).toMatch(/permission denied for database/)
      }
      const intoA = yield* asRole(b, a.database, ["SELECT 1"])
      expect(intoA.ok).toBe(false)
      if (!intoA.ok) expect(intoA.code).toBe("42501")

      // Nor can it reach the platform's tenant registry (where every tenant's password is).
      const platform = databaseOf(yield* PlatformConfig.pipe(Effect.map((c) => c.url)))
      const registry = yield* asRole(a, platform, ["SELECT db_password FROM tenants"])
      expect(registry.ok).toBe(false)
      if (!registry.ok) expect(registry.code).toBe("42501")

      // Its own database: read and write its notes table.
      const own = yield* asRole(a, a.database, [
        "INSERT INTO notes (title, body, created_by) VALUES ('direct', 'by role', gen_random_uuid()) RETURNING id",
        "SELECT title, body FROM notes",
        "UPDATE notes SET body = 'changed' RETURNING body",
        "DELETE FROM notes RETURNING id",
        "SELECT count(*)::int AS n FROM notes"
      ])
      expect(own.ok).toBe(true)
      if (own.ok) {
        expect(own.results[1]).toEqual([{ title: "direct", body: "by role" }])
        expect(own.results[2]).toEqual([{ body: "changed" }])
        expect(own.results[3]).toHaveLength(1)
        expect(own.results[4]).toEqual([{ n: 0 }])
      }
    }))
})
