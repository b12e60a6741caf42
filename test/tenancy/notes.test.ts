import { describe, expect, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { randomUUID } from "node:crypto"
import { Cursor, type Note, type NotePage } from "../../src/notes/Note.js"
import { NoteService } from "../../src/notes/NoteService.js"
import type { Tenant, TenantStrategy } from "../../src/tenancy/Tenant.js"
import { TenantContexts, withTenant } from "../../src/tenancy/TenantContexts.js"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { TenantSession } from "../../src/tenancy/TenantSession.js"
import { TestTenancy, TestUser } from "../../src/testing/index.js"
import { STRATEGIES } from "../strategies.js"
import { adminUrl, typedFailure } from "./support.js"

const PAGES = "pages"
const RULES = "rules"
const emoji = "😀" // one code point, two UTF-16 units

const base64url = (text: string) => Buffer.from(text, "utf8").toString("base64url")

/** Newest first: createdAt descending, then id descending (uuids compare as their lowercase hex text). */
const newestFirst = (a: Note, b: Note) =>
  Date.parse(b.createdAt) - Date.parse(a.createdAt) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0)

/** Every page from the first, following nextCursor. */
const allPages = (limit: number | undefined) =>
  Effect.gen(function*() {
    const notes = yield* NoteService
    const pages: Array<ReadonlyArray<Note>> = []
    let cursor: string | undefined = undefined
    for (;;) {
      const page: NotePage = yield* notes.list({ limit, cursor })
      pages.push(page.items)
      if (page.nextCursor === null) return pages
      cursor = page.nextCursor
    }
  })

/** The notes table as stored, read through the tenant's own session. */
const storedNotes = Effect.flatMap(TenantSession, ({ sql }) =>
  sql<{ id: string; title: string; body: string; created_by: string; updated_at: Date }>`
    SELECT id, title, body, created_by, updated_at FROM notes ORDER BY id`).pipe(withTenant(RULES))

/** The tenant, provisioned on first use; it must have the suite's strategy. */
const ensureTenant = (id: string, name: string, strategy: TenantStrategy) =>
  Effect.flatMap(TenantDatabases, (databases) =>
    databases.find(id).pipe(
      Effect.catchTag("TenantNotFound", () => databases.provision(id, name)),
      Effect.tap((tenant) => {
        expect(tenant.placement.strategy).toBe(strategy)
      })
    ))

const create = (owner: Tenant, input: unknown, accountId?: string) =>
  Effect.flatMap(NoteService, (s) => s.create(input)).pipe(
    withTenant(RULES),
    Effect.provide(TestUser(owner, accountId === undefined ? {} : { accountId }))
  )

for (const strategy of STRATEGIES) {
  layer(TestTenancy({ adminUrl, defaultStrategy: strategy }), { excludeTestServices: true, timeout: 120_000 })(
    `notes (${strategy} tenants)`,
    (it) => {
      const tenant = ensureTenant(RULES, "Rules", strategy)

      describe("keyset pagination", () => {
        const setUp = Effect.gen(function*() {
          const tenant = yield* ensureTenant(PAGES, "Pages", strategy)
          const existing = yield* Effect.flatMap(NoteService, (s) => s.list({ limit: 1 })).pipe(withTenant(PAGES))
          if (existing.items.length > 0) return
          // Some concurrently, so that many share a millisecond; then 80 forced onto one
          // timestamp, so that the id alone orders them.
          yield* Effect.flatMap(NoteService, (s) =>
            Effect.forEach(
              Array.from({ length: 250 }, (_, i) => i),
              (i) => s.create({ title: `note ${i}`, body: `body ${i}` }),
              { concurrency: 2, discard: true }
            )).pipe(withTenant(PAGES), Effect.provide(TestUser(tenant)))
          yield* Effect.flatMap(TenantSession, ({ sql }) =>
            sql`UPDATE notes SET created_at = '2024-05-01T12:00:00.123Z'
                WHERE id IN (SELECT id FROM notes ORDER BY id LIMIT 80)`).pipe(withTenant(PAGES))
        })

        const everyNote = Effect.flatMap(TenantSession, ({ sql }) =>
          sql<{ id: string; created_at: Date }>`SELECT id, created_at FROM notes`).pipe(withTenant(PAGES))

        it.effect("pages return each of 250 notes exactly once, newest first", () =>
          Effect.gen(function*() {
            yield* setUp
            const stored = yield* everyNote
            expect(stored).toHaveLength(250)
            for (const limit of [7, 20, 100, undefined]) {
              const pages = yield* allPages(limit).pipe(withTenant(PAGES))
              const size = limit ?? 20
              expect(pages).toHaveLength(Math.ceil(250 / size))
              for (const page of pages.slice(0, -1)) expect(page).toHaveLength(size)
              const items = pages.flat()
              expect(items).toHaveLength(250)
              expect(new Set(items.map((n) => n.id)).size).toBe(250)
              expect(items.map((n) => n.id)).toEqual([...items].sort(newestFirst).map((n) => n.id))
              expect(new Set(items.map((n) => n.id))).toEqual(new Set(stored.map((r) => r.id)))
            }
            // The ties really are there: 80 notes share one createdAt.
            const pages = yield* allPages(100).pipe(withTenant(PAGES))
            const tied = pages.flat().filter((n) => n.createdAt === "2024-05-01T12:00:00.123Z")
            expect(tied).toHaveLength(80)
            expect((yield* Effect.flatMap(TenantContexts, (c) => c.stats)).references).toBe(0)
          }))

        it.effect("the default page is 20; limits 1 and 100 are accepted", () =>
          Effect.gen(function*() {
            yield* setUp
            const result = yield* Effect.gen(function*() {
              const notes = yield* NoteService
              return {
                byDefault: yield* notes.list(),
                undefinedLimit: yield* notes.list({ limit: undefined }),
                one: yield* notes.list({ limit: 1 }),
                hundred: yield* notes.list({ limit: 100 })
              }
            }).pipe(withTenant(PAGES))
            expect(result.byDefault.items).toHaveLength(20)
            expect(result.byDefault.nextCursor).not.toBeNull()
            expect(result.undefinedLimit.items).toHaveLength(20)
            expect(result.one.items).toHaveLength(1)
            expect(result.hundred.items).toHaveLength(100)
            expect(result.one.items[0]).toEqual(result.byDefault.items[0])
          }))

        it.effect("limits 0, 101, non-integers and non-numbers are refused", () =>
          Effect.gen(function*() {
            yield* setUp
            for (const limit of [0, 101, -1, 1.5, 20.000001, Number.NaN, Number.POSITIVE_INFINITY, 1e9]) {
              const error = yield* typedFailure(
                Effect.flatMap(NoteService, (s) => s.list({ limit })).pipe(withTenant(PAGES)),
                `limit ${limit}`
              )
              expect(error._tag, `limit ${limit}`).toBe("NoteValidationError")
            }
            // A caller that skipped type checking (a CLI, a job) cannot slip a string through.
            const stringly = JSON.parse("\"20\"")
            const error = yield* typedFailure(
              Effect.flatMap(NoteService, (s) => s.list({ limit: stringly })).pipe(withTenant(PAGES)),
              "limit \"20\""
            )
            expect(error._tag).toBe("NoteValidationError")
          }))

        it.effect("a tampered cursor is a NoteValidationError, not a crash", () =>
          Effect.gen(function*() {
            yield* setUp
            const first = yield* Effect.flatMap(NoteService, (s) => s.list({ limit: 5 })).pipe(withTenant(PAGES))
            const valid = first.nextCursor!
            // The cursor made from the note's text is the Cursor schema's own encoding.
            const last = first.items[4]!
            expect(valid).toBe(Schema.encodeSync(Cursor)([new Date(last.createdAt), last.id]))
            const tampered = [
              "garbage",
              "!!!not base64!!!",
              "%%%",
              valid.slice(0, -3),
              valid + "x",
              valid.slice(1),
              base64url("not json"),
              base64url("{\"a\":1}"),
              base64url("[]"),
              base64url("null"),
              base64url("[\"2024-01-01T00:00:00.000Z\"]"),
              base64url(`["2024-01-01T00:00:00.000Z","${randomUUID()}","extra"]`),
              base64url("[\"2024-01-01T00:00:00.000Z\",\"not-a-uuid\"]"),
              base64url("[\"2024-01-01T00:00:00.000Z\",\"1' OR '1'='1\"]"),
              base64url("[\"2024-01-01T00:00:00.000Z\",42]"),
              base64url(`["not a date","${randomUUID()}"]`),
              base64url(`[1714564800000,"${randomUUID()}"]`),
              // Dates JavaScript accepts and PostgreSQL's timestamptz cannot hold.
              base64url(`["-100000-01-01T00:00:00.000Z","${randomUUID()}"]`),
              base64url(`["-005000-01-01T00:00:00.000Z","${randomUUID()}"]`)
            ]
            for (const cursor of tampered) {
              const error = yield* typedFailure(
                Effect.flatMap(NoteService, (s) => s.list({ cursor })).pipe(withTenant(PAGES)),
                `cursor ${cursor} (${Buffer.from(cursor, "base64url").toString("utf8")})`
              )
              expect(error._tag, `cursor ${cursor}`).toBe("NoteValidationError")
            }
            // The real cursor still works after all that.
            const second = yield* Effect.flatMap(NoteService, (s) => s.list({ limit: 5, cursor: valid })).pipe(
              withTenant(PAGES)
            )
            expect(second.items).toHaveLength(5)
            expect(second.items[0]!.id).not.toBe(first.items[4]!.id)
            expect((yield* Effect.flatMap(TenantContexts, (c) => c.stats)).references).toBe(0)
          }))
      })

      describe("rules for note input", () => {
        it.effect("titles of 1 to 200 and bodies of up to 10,000 code points are accepted", () =>
          Effect.gen(function*() {
            const owner = yield* tenant
            const accepted = [
              { title: "x", body: "" },
              { title: "t".repeat(200), body: "b".repeat(10_000) },
              // Counted in code points, as PostgreSQL counts: an emoji is one.
              { title: emoji.repeat(200), body: emoji.repeat(10_000) },
              { title: "ünïcödé ✓", body: "line\nbreak\ttab" }
            ]
            for (const input of accepted) {
              const note = yield* create(owner, input)
              expect(note.title).toBe(input.title)
              expect(note.body).toBe(input.body)
              const again = yield* Effect.flatMap(NoteService, (s) => s.get(note.id)).pipe(withTenant(RULES))
              expect(again).toEqual(note)
            }
          }))

        it.effect("invalid input is refused with NoteValidationError and nothing is written", () =>
          Effect.gen(function*() {
            const owner = yield* tenant
            const before = yield* storedNotes
            const refused: ReadonlyArray<readonly [string, unknown]> = [
              ["empty title", { title: "", body: "b" }],
              ["201-character title", { title: "t".repeat(201), body: "" }],
              ["201-emoji title", { title: emoji.repeat(201), body: "" }],
              ["10,001-character body", { title: "t", body: "b".repeat(10_001) }],
              ["10,001-emoji body", { title: "t", body: emoji.repeat(10_001) }],
              ["NUL in title", { title: "a\u0000b", body: "" }],
              ["NUL in body", { title: "t", body: "a\u0000" }],
              ["unknown field", { title: "t", body: "", color: "red" }],
              ["created_by from input", { title: "t", body: "", createdBy: randomUUID() }],
              ["id from input", { title: "t", body: "", id: randomUUID() }],
              ["missing body", { title: "t" }],
              ["missing title", { body: "b" }],
              ["title not a string", { title: 42, body: "" }],
              ["body null", { title: "t", body: null }],
              ["not an object", "title"],
              ["null", null],
              ["an array", [{ title: "t", body: "" }]]
            ]
            for (const [what, input] of refused) {
              const error = yield* typedFailure(create(owner, input), what)
              expect(error._tag, what).toBe("NoteValidationError")
            }
            expect(yield* storedNotes).toEqual(before)
          }))

        it.effect("updates follow the same rules; a refused update changes nothing", () =>
          Effect.gen(function*() {
            const owner = yield* tenant
            const note = yield* create(owner, { title: "original", body: "text" })
            const before = yield* storedNotes
            const refused: ReadonlyArray<readonly [string, unknown]> = [
              ["empty title", { title: "" }],
              ["201-character title", { title: "t".repeat(201) }],
              ["10,001-emoji body", { body: emoji.repeat(10_001) }],
              ["NUL in title", { title: "\u0000" }],
              ["NUL in body", { body: "x\u0000y" }],
              ["unknown field", { title: "ok", extra: true }],
              ["created_by", { createdBy: randomUUID() }],
              ["title null", { title: null }],
              ["not an object", 17]
            ]
            for (const [what, patch] of refused) {
              const error = yield* typedFailure(
                Effect.flatMap(NoteService, (s) => s.update(note.id, patch)).pipe(withTenant(RULES)),
                what
              )
              expect(error._tag, what).toBe("NoteValidationError")
            }
            expect(yield* storedNotes).toEqual(before)

            const updated = yield* Effect.flatMap(NoteService, (s) => s.update(note.id, { body: emoji.repeat(10_000) })).pipe(
              withTenant(RULES)
            )
            expect(updated.title).toBe("original")
            expect(updated.body).toBe(emoji.repeat(10_000))
            expect(updated.createdBy).toBe(note.createdBy)
          }))

        it.effect("created_by is the caller's account id", () =>
          Effect.gen(function*() {
            const owner = yield* tenant
            const alice = randomUUID()
            const bob = randomUUID()
            const byAlice = yield* create(owner, { title: "by alice", body: "" }, alice)
            const byBob = yield* create(owner, { title: "by bob", body: "" }, bob)
            expect(byAlice.createdBy).toBe(alice)
            expect(byBob.createdBy).toBe(bob)
            const rows = yield* storedNotes
            expect(rows.find((r) => r.id === byAlice.id)?.created_by).toBe(alice)
            expect(rows.find((r) => r.id === byBob.id)?.created_by).toBe(bob)
            // An update by anyone keeps the author.
            const updated = yield* Effect.flatMap(NoteService, (s) => s.update(byAlice.id, { title: "edited" })).pipe(
              withTenant(RULES)
            )
            expect(updated.createdBy).toBe(alice)
          }))
      })
    }
  )
}
