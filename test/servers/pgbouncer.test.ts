import { expect, layer } from "@effect/vitest"
import { Effect, Option } from "effect"
import { TenantAdmin } from "../../src/platform/TenantAdmin.js"
import { PGBOUNCER_MISSING, pgBouncerBinary, startPgBouncer } from "../../src/testing/PgBouncer.js"
import { secondUrl, titles, TwoServers, writeNote } from "./support.js"

/**
 * A server registered through a transaction-mode PgBouncer: schema tenants
 * work through it, and the pooler's server connections, passed from one
 * tenant's unit of work to another's, carry nothing of the one before.
 */

const Tenancy = TwoServers()

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
