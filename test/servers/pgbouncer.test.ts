import { expect, layer } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { inject } from "vitest"
import { AccountDirectory } from "../../src/auth/AccountDirectory.js"
import { NoteService } from "../../src/notes/NoteService.js"
import { TenantAdmin } from "../../src/platform/TenantAdmin.js"
import { tenancyWith } from "../../src/PlatformLive.js"
import { withTenant } from "../../src/tenancy/TenantContexts.js"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { TenantMigrations } from "../../src/tenancy/TenantMigrations.js"
import { PGBOUNCER_MISSING, pgBouncerBinary, startPgBouncer } from "../../src/testing/PgBouncer.js"
import { dropNamespace, makeNamespace, testConfig } from "../../src/testing/TestDatabases.js"
import { TestIssuer } from "../../src/testing/TestIssuer.js"
import { TestUser } from "../../src/testing/TestUser.js"

/**
 * A server registered through a transaction-mode PgBouncer: schema tenants
 * work through it, and the pooler's server connections, passed from one
 * tenant's unit of work to another's, carry nothing of the one before.
 */

const adminUrl = inject("databaseUrl")
const secondUrl = inject("secondDatabaseUrl")
const namespace = makeNamespace()

const Tenancy = TenantAdmin.layer.pipe(
  Layer.provideMerge(AccountDirectory.layer),
  Layer.provideMerge(tenancyWith(TenantMigrations.layer)),
  Layer.provide(TestIssuer.authConfig()),
  Layer.provide(TestIssuer.layer()),
  Layer.provideMerge(testConfig({ adminUrl }, namespace)),
  Layer.provideMerge(Layer.scopedDiscard(Effect.addFinalizer(() => dropNamespace(secondUrl, namespace))))
)

const writeNote = (id: string, title: string) =>
  Effect.gen(function*() {
    const tenant = yield* (yield* TenantDatabases).find(id)
    return yield* Effect.flatMap(NoteService, (notes) => notes.create({ title, body: "" })).pipe(
      withTenant(id),
      Effect.provide(TestUser(tenant))
    )
  })

const titles = (id: string) =>
  Effect.flatMap(NoteService, (notes) => Effect.map(notes.list({ limit: 100 }), (page) => page.items.map((n) => n.title).sort()))
    .pipe(withTenant(id))

layer(Tenancy, { excludeTestServices: true, timeout: 120_000 })(
  pgBouncerBinary() === undefined ? `behind PgBouncer (${PGBOUNCER_MISSING})` : "behind PgBouncer",
  (it) => {
    it.scoped.skipIf(pgBouncerBinary() === undefined)(
      "schema tenants on a server registered through a transaction-mode pooler: their work never leaks into each other's",
      () =>
        Effect.gen(function*() {
          // Two server connections for many units of work: each is handed from tenant to tenant.
          const bouncer = yield* startPgBouncer({ targetUrl: secondUrl, poolSize: 2 }).pipe(
            Effect.flatMap(Option.match({ onNone: () => Effect.dieMessage(PGBOUNCER_MISSING), onSome: Effect.succeed }))
          )
          const admin = yield* TenantAdmin
          yield* admin.addServer("pooled", bouncer.url)
          const ids = ["pooled-a", "pooled-b", "pooled-c"]
          for (const id of ids) {
            expect((yield* admin.create(id, id, { server: "pooled", strategy: "schema" })).placement.server).toBe("pooled")
          }
          yield* Effect.forEach(
            Array.from({ length: 60 }, (_, i) => i),
            (i) => writeNote(ids[i % 3]!, `${ids[i % 3]} ${String(i).padStart(2, "0")}`),
            { concurrency: 12 }
          )
          for (const id of ids) {
            const own = yield* titles(id)
            expect(own).toHaveLength(20)
            expect(own.every((title) => title.startsWith(`${id} `))).toBe(true)
          }
          // A tenant moves onto it (COPY through the pooler) and serves from there.
          yield* admin.create("pooled-mover", "M", { server: "default", strategy: "database" })
          yield* writeNote("pooled-mover", "before")
          const moved = yield* admin.move("pooled-mover", { to: "pooled", strategy: "schema" }, () => Effect.void)
          expect(moved.tables).toEqual([{ table: "notes", rows: 1 }])
          yield* writeNote("pooled-mover", "after")
          expect(yield* titles("pooled-mover")).toEqual(["after", "before"])
        })
    )
  }
)
