import { expect, layer } from "@effect/vitest"
import { Cause, Effect, Exit, Option } from "effect"
import { randomUUID } from "node:crypto"
import { NoteService } from "../../src/notes/NoteService.js"
import { TenancyConfig } from "../../src/tenancy/TenancyConfig.js"
import type { Tenant, TenantStrategy } from "../../src/tenancy/Tenant.js"
import { TenantContexts, type TenantContextStats, withTenant } from "../../src/tenancy/TenantContexts.js"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { TenantSession } from "../../src/tenancy/TenantSession.js"
import { TestTenancy, TestUser } from "../../src/testing/index.js"
import { STRATEGIES } from "../strategies.js"
import { adminUrl, eventually, sampleTenantConnections, tenantConnections } from "./support.js"

const BUDGET = 20
const PER_TENANT = 2
/** The shared pool of schema tenants: part of the budget. */
const SHARED = 10

const provisionAll = (prefix: string, count: number) =>
  Effect.flatMap(TenantDatabases, (databases) =>
    Effect.forEach(
      Array.from({ length: count }, (_, i) => `${prefix}-${i}`),
      (id) => databases.find(id).pipe(Effect.catchTag("TenantNotFound", () => databases.provision(id, id))),
      { concurrency: 4 }
    ))

const stats = Effect.flatMap(TenantContexts, (c) => c.stats)

/**
 * What the budget means once the load is over, per strategy. Database
 * tenants: each open context holds a pool of PER_TENANT, so at most
 * BUDGET / PER_TENANT are open. Schema tenants: their contexts hold no
 * connection; every connection is the shared pool's, which is counted once.
 * `sampledMax` is the most connections to tenant data seen at once, if sampled.
 */
const withinBudget: Record<TenantStrategy, (after: TenantContextStats, sampledMax?: number) => void> = {
  database: (after, sampledMax) => {
    if (sampledMax !== undefined) expect(sampledMax).toBeLessThanOrEqual(BUDGET)
    expect(after.connections).toBeLessThanOrEqual(BUDGET)
    expect(after.connections).toBe(after.open * PER_TENANT)
    expect(after.open).toBeLessThanOrEqual(BUDGET / PER_TENANT)
    expect(after.schemaOpen).toBe(0)
  },
  schema: (after, sampledMax) => {
    if (sampledMax !== undefined) {
      expect(sampledMax).toBeLessThanOrEqual(BUDGET)
      expect(sampledMax).toBeLessThanOrEqual(SHARED)
    }
    expect(after.connections).toBeLessThanOrEqual(BUDGET)
    expect(after.connections).toBe(SHARED)
    expect(after.schemaOpen).toBe(after.open)
  }
}

for (const strategy of STRATEGIES) {
  layer(
    TestTenancy({
      adminUrl,
      defaultStrategy: strategy,
      connectionBudget: BUDGET,
      maxConnectionsPerTenant: PER_TENANT,
      sharedPoolConnections: SHARED
    }),
    { excludeTestServices: true, timeout: 120_000 }
  )(`connection budget under load (${strategy} tenants)`, (it) => {
    it.effect("200 concurrent units of work across 20 tenants stay within a budget of 20 connections", () =>
      Effect.gen(function*() {
        const { databasePrefix } = yield* TenancyConfig
        const tenants = yield* provisionAll("load", 20)
        expect(new Set(tenants.map((t) => t.placement.strategy))).toEqual(new Set([strategy]))
        const unit = (i: number) => {
          const tenant = tenants[i % tenants.length]!
          return Effect.gen(function*() {
            const notes = yield* NoteService
            const note = yield* notes.create({ title: `unit ${i}`, body: "" })
            const again = yield* notes.get(note.id)
            const page = yield* notes.list({ limit: 100 })
            return again.id === note.id && page.items.some((n) => n.id === note.id)
          }).pipe(withTenant(tenant.id), Effect.provide(TestUser(tenant)))
        }
        const { exits, max, samples } = yield* Effect.scoped(Effect.gen(function*() {
          const sampler = yield* sampleTenantConnections(databasePrefix)
          const exits = yield* Effect.forEach(
            Array.from({ length: 200 }, (_, i) => i),
            (i) => Effect.exit(unit(i)),
            { concurrency: "unbounded" }
          )
          return { exits, ...yield* sampler.stop }
        }))
        const failures = exits.filter(Exit.isFailure)
        expect(failures.map((e) => Cause.pretty(e.cause)).slice(0, 3)).toEqual([])
        expect(exits.filter((e) => Exit.isSuccess(e) && e.value)).toHaveLength(200)
        const after = yield* stats
        console.log(
          `200 units / 20 ${strategy} tenants / budget ${BUDGET}: max ${max} connections to tenant data ` +
            `over ${samples} samples; contexts opened ${after.opened}, closed ${after.closed}`
        )
        expect(samples).toBeGreaterThan(1)
        expect(max).toBeGreaterThan(0)
        withinBudget[strategy](after, max)
        expect(after.references).toBe(0)
        // Each tenant has exactly its own notes.
        for (const [index, tenant] of tenants.entries()) {
          const page = yield* Effect.flatMap(NoteService, (s) => s.list({ limit: 100 })).pipe(withTenant(tenant.id))
          const expected = Array.from({ length: 200 }, (_, i) => i).filter((i) => i % 20 === index).map((i) => `unit ${i}`)
          expect(page.items.map((n) => n.title).sort()).toEqual(expected.sort())
        }
      }))

    it.effect("1,000 units with mixed outcomes leave no reference held and no connection checked out", () =>
      Effect.gen(function*() {
        const { databasePrefix } = yield* TenancyConfig
        const tenants = yield* provisionAll("mixed", 4)
        expect(new Set(tenants.map((t) => t.placement.strategy))).toEqual(new Set([strategy]))
        const kinds = [
          "success",
          "not found",
          "invalid",
          "defect",
          "interrupt",
          "timeout mid-query",
          "defect in transaction",
          "timeout in transaction",
          "unknown tenant"
        ] as const
        type Kind = typeof kinds[number]
        const work = (kind: Kind, i: number, tenant: Tenant): Effect.Effect<unknown, unknown, TenantContexts> => {
          const inTenant = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
            effect.pipe(withTenant(tenant.id), Effect.provide(TestUser(tenant)))
          switch (kind) {
            case "success":
              return inTenant(Effect.flatMap(NoteService, (s) => s.create({ title: `ok ${i}`, body: "" })))
            case "not found":
              return inTenant(Effect.flatMap(NoteService, (s) => s.get(randomUUID())))
            case "invalid":
              return inTenant(Effect.flatMap(NoteService, (s) => s.create({ title: "", body: "" })))
            case "defect":
              return inTenant(Effect.flatMap(NoteService, (s) => Effect.zipRight(s.list(), Effect.die(`boom ${i}`))))
            case "interrupt":
              return inTenant(Effect.flatMap(NoteService, (s) => Effect.zipRight(s.list({ limit: 1 }), Effect.interrupt)))
            case "timeout mid-query":
              // The timeout inside the tenant context: the statement is running (or waiting for a connection).
              return inTenant(
                Effect.flatMap(TenantSession, ({ sql }) => sql`SELECT pg_sleep(0.05)`.pipe(Effect.timeout("5 millis")))
              )
            case "defect in transaction":
              return inTenant(Effect.flatMap(TenantSession, ({ sql }) =>
                sql.withTransaction(
                  Effect.zipRight(
                    sql`INSERT INTO notes (title, body, created_by) VALUES ('rolled back', '', gen_random_uuid())`,
                    Effect.die(`boom in transaction ${i}`)
                  )
                )))
            case "timeout in transaction":
              return inTenant(
                Effect.flatMap(TenantSession, ({ sql }) =>
                  sql.withTransaction(
                    Effect.zipRight(
                      sql`INSERT INTO notes (title, body, created_by) VALUES ('rolled back', '', gen_random_uuid())`,
                      sql`SELECT pg_sleep(0.05)`
                    )
                  ).pipe(Effect.timeout("5 millis")))
              )
            case "unknown tenant":
              return Effect.flatMap(NoteService, (s) => s.list()).pipe(withTenant(`no-such-${i}`))
          }
        }
        const units = Array.from({ length: 1000 }, (_, i) => {
          const kind = kinds[i % kinds.length]!
          return { kind, effect: work(kind, i, tenants[i % tenants.length]!) }
        })
        const results = yield* Effect.forEach(
          units,
          ({ effect, kind }) => Effect.map(Effect.exit(effect), (exit) => ({ kind, exit })),
          { concurrency: 100 }
        )

        // Each kind ended the way it should.
        const outcome = (exit: Exit.Exit<unknown, unknown>) => {
          if (Exit.isSuccess(exit)) return "success"
          if (Cause.isInterruptedOnly(exit.cause)) return "interrupted"
          const failure = Cause.failureOption(exit.cause)
          if (Option.isNone(failure)) return "defect"
          const error = failure.value
          return `failure ${typeof error === "object" && error !== null && "_tag" in error ? String(error._tag) : String(error)}`
        }
        const seen = new Map<string, Set<string>>()
        for (const { exit, kind } of results) {
          const set = seen.get(kind) ?? new Set()
          set.add(outcome(exit))
          seen.set(kind, set)
        }
        expect(Object.fromEntries([...seen].map(([k, v]) => [k, [...v].sort()]))).toEqual({
          "success": ["success"],
          "not found": ["failure NoteNotFound"],
          "invalid": ["failure NoteValidationError"],
          "defect": ["defect"],
          "interrupt": ["interrupted"],
          "timeout mid-query": ["failure TimeoutException"],
          "defect in transaction": ["defect"],
          "timeout in transaction": ["failure TimeoutException"],
          "unknown tenant": ["failure TenantNotFound"]
        })

        // Nothing is held: no references, and no connection busy or left in a transaction.
        const after = yield* stats
        expect(after.references).toBe(0)
        withinBudget[strategy](after)
        const busyAtOnce = yield* tenantConnections(databasePrefix, ["active", "idle in transaction"])
        // A cancelled statement ends on the server a moment after the client gave up on it.
        const busy = yield* eventually(
          tenantConnections(databasePrefix, ["active", "idle in transaction", "idle in transaction (aborted)"]),
          (n) => n === 0
        )
        console.log(`1,000 mixed units (${strategy} tenants): busy tenant connections right after: ${busyAtOnce}, settled: ${busy}`)
        expect(busy).toBe(0)

        // Rolled back transactions wrote nothing; every tenant still serves.
        for (const tenant of tenants) {
          const rows = yield* Effect.flatMap(TenantSession, ({ sql }) =>
            sql<{ n: number }>`SELECT count(*)::int AS n FROM notes WHERE title = 'rolled back'`).pipe(withTenant(tenant.id))
          expect(rows[0]?.n).toBe(0)
          const page = yield* Effect.flatMap(NoteService, (s) => s.list({ limit: 1 })).pipe(withTenant(tenant.id))
          expect(page.items).toHaveLength(1)
        }
        expect((yield* stats).references).toBe(0)
      }))
  })
}
