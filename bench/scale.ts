/**
 * Fleet scale check (`npm run test:scale`, not part of `npm test`): against a
 * real PostgreSQL (TEST_DATABASE_URL, else the local server), in a namespace
 * of its own, it provisions a fleet of tenants, writes a note in each, adds a
 * tenant migration (through a loader: nothing is written into migrations/),
 * migrates the fleet at the default concurrency, asks for the fleet's status,
 * migrates again (nothing to do), and checks that every tenant is current and
 * still has its note. Prints a table of timings; drops the namespace at the end
 * (also when interrupted).
 *
 *   TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npm run test:scale
 *   SCALE_TENANTS=50 npm run test:scale
 */
import { NodeRuntime } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import * as Migrator from "@effect/sql/Migrator"
import { Console, Duration, Effect, Layer, Logger, LogLevel } from "effect"
import { cpus } from "node:os"
import Pg from "pg"
import notesMigration from "../migrations/tenant/0001_notes.js"
import { NoteService } from "../src/notes/NoteService.js"
import { PlatformDb } from "../src/platform/PlatformDb.js"
import { TenancyConfig } from "../src/tenancy/TenancyConfig.js"
import { TenantContexts, withTenant } from "../src/tenancy/TenantContexts.js"
import { TenantDatabases } from "../src/tenancy/TenantDatabases.js"
import { TenantMigrations } from "../src/tenancy/TenantMigrations.js"
import { TenantMigrator } from "../src/tenancy/TenantMigrator.js"
import { TenantSession } from "../src/tenancy/TenantSession.js"
import { makeNamespace, testConfig } from "../src/testing/TestDatabases.js"
import { TestUser } from "../src/testing/TestUser.js"

const adminUrl = process.env["TEST_DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres"
const TENANTS = Number(process.env["SCALE_TENANTS"] ?? 300)
const PROVISION_CONCURRENCY = Number(process.env["SCALE_PROVISION_CONCURRENCY"] ?? 4)

// --- the tenant migrations: the real 0001, then 0002 added half-way ---

const extra: Record<string, Effect.Effect<void, unknown, SqlClient.SqlClient>> = {}
const Migrations = Layer.succeed(
  TenantMigrations,
  Effect.suspend(() => Migrator.fromRecord({ "0001_notes": notesMigration, ...extra }))
)
const pinnedNotes = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE notes ADD COLUMN pinned boolean NOT NULL DEFAULT false`
  yield* sql`CREATE INDEX notes_pinned ON notes (created_at DESC, id DESC) WHERE pinned`
})

const namespace = makeNamespace()

// The server's own defaults for the tenant pools: 4 connections each, 80 in all.
const Scale = TenantMigrator.layer.pipe(
  Layer.provideMerge(TenantContexts.layer),
  Layer.provideMerge(TenantDatabases.layer),
  Layer.provideMerge(Layer.merge(PlatformDb.layer, Migrations)),
  Layer.provideMerge(testConfig({ adminUrl, maxConnectionsPerTenant: 4, connectionBudget: 80 }, namespace)),
  Layer.provide(Logger.minimumLogLevel(LogLevel.Warning))
)

// --- measuring ---

interface Row {
  readonly step: string
  readonly millis: number
  readonly per?: number
  readonly note?: string
}
const rows: Array<Row> = []

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.timed(effect), ([duration, a]) => [Duration.toMillis(duration), a] as const)

const percentile = (values: ReadonlyArray<number>, p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0
}

const ms = (n: number) => (n >= 10_000 ? `${(n / 1000).toFixed(1)} s` : `${n.toFixed(n < 10 ? 2 : 0)} ms`)

const printTable = () => {
  const header = ["step", "total", "per tenant", ""]
  const body = rows.map((r) => [r.step, ms(r.millis), r.per === undefined ? "" : ms(r.per), r.note ?? ""])
  const widths = header.map((_, i) => Math.max(...[header, ...body].map((cells) => cells[i]!.length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => (i === 1 || i === 2 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ").trimEnd()
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...body.map(line)].join("\n")
}

const serverVersion = Effect.promise(async () => {
  const client = new Pg.Client({ connectionString: adminUrl })
  await client.connect()
  try {
    return (await client.query<{ server_version: string }>("SHOW server_version")).rows[0]!.server_version
  } finally {
    await client.end()
  }
})

const tenantIdOf = (i: number) => `scale-${String(i).padStart(4, "0")}`

const program = Effect.gen(function*() {
  const databases = yield* TenantDatabases
  const migrator = yield* TenantMigrator
  const config = yield* TenancyConfig
  const ids = Array.from({ length: TENANTS }, (_, i) => tenantIdOf(i + 1))
  const redacted = adminUrl.replace(/\/\/([^:@/]+):[^@/]*@/, "//$1:***@")
  yield* Console.log(
    `fleet scale: ${TENANTS} tenants on PostgreSQL ${yield* serverVersion} at ${redacted}, ` +
      `namespace ${namespace}, ${cpus().length} cores`
  )

  // The template is prepared by the first provisioning; time it apart.
  const [templateMillis] = yield* timed(Effect.orDie(databases.provision(ids[0]!, "Scale 1")))
  rows.push({ step: "provision the first tenant (and the template)", millis: templateMillis })

  const latencies: Array<number> = []
  const [provisionMillis] = yield* timed(
    Effect.forEach(ids.slice(1), (id, i) =>
      Effect.map(timed(Effect.orDie(databases.provision(id, `Scale ${i + 2}`))), ([millis]) => {
        latencies.push(millis)
      }), { concurrency: PROVISION_CONCURRENCY, discard: true })
  )
  rows.push({
    step: `provision ${TENANTS - 1} more, ${PROVISION_CONCURRENCY} at a time`,
    millis: provisionMillis,
    per: provisionMillis / (TENANTS - 1),
    note: `each: p50 ${ms(percentile(latencies, 50))}, p95 ${ms(percentile(latencies, 95))}, max ${ms(percentile(latencies, 100))}`
  })

  // A note in every tenant, through its own context (as a request would write it).
  const tenants = yield* databases.list
  const noteIds = new Map<string, string>()
  const [notesMillis] = yield* timed(
    Effect.forEach(tenants, (tenant) =>
      Effect.flatMap(NoteService, (notes) => notes.create({ title: `note of ${tenant.id}`, body: "written before 0002" })).pipe(
        withTenant(tenant.id),
        Effect.provide(TestUser(tenant)),
        Effect.orDie,
        Effect.map((note) => void noteIds.set(tenant.id, note.id))
      ), { concurrency: 8, discard: true })
  )
  rows.push({ step: "write a note in each tenant", millis: notesMillis, per: notesMillis / TENANTS })

  // A new migration appears; the fleet is behind.
  extra["0002_pinned"] = pinnedNotes
  const behind = yield* migrator.status
  if (behind.counts.behind !== TENANTS) return yield* Effect.dieMessage(`expected ${TENANTS} tenants behind, ${JSON.stringify(behind.counts)}`)

  const concurrency = Math.max(1, Math.min(8, Math.floor(config.connectionBudget / config.maxConnectionsPerTenant)))
  const [migrateMillis, migrated] = yield* timed(migrator.migrateAll({ progress: "none", json: true }).pipe(
    Effect.withConsole({ ...(yield* Effect.console), log: () => Effect.void }),
    Effect.orDie
  ))
  if (migrated.migrated.length !== TENANTS || migrated.failed.length > 0) {
    return yield* Effect.dieMessage(`fleet migration incomplete: ${JSON.stringify({ ...migrated, migrated: migrated.migrated.length })}`)
  }
  rows.push({
    step: `migrateAll (0002), default concurrency ${concurrency}`,
    millis: migrateMillis,
    per: migrateMillis / TENANTS,
    note: `${migrated.migrated.length} migrated, ${migrated.failed.length} failed`
  })

  const [statusMillis, status] = yield* timed(migrator.status)
  rows.push({ step: "status of the fleet", millis: statusMillis, note: JSON.stringify(status.counts) })

  const [noopMillis, noop] = yield* timed(migrator.migrateAll({ progress: "none", json: true }).pipe(
    Effect.withConsole({ ...(yield* Effect.console), log: () => Effect.void }),
    Effect.orDie
  ))
  rows.push({
    step: "migrateAll again (nothing to do)",
    millis: noopMillis,
    note: `${noop.migrated.length} migrated, ${noop.skipped.length} skipped`
  })

  // Every tenant current, at 2, with its note and the new column.
  if (status.counts.current !== TENANTS || status.tenants.some((t) => t.version !== 2)) {
    return yield* Effect.dieMessage(`not every tenant is current: ${JSON.stringify(status.counts)}`)
  }
  const [verifyMillis, intact] = yield* timed(
    Effect.forEach(tenants, (tenant) =>
      Effect.gen(function*() {
        const notes = yield* Effect.flatMap(NoteService, (s) => s.list())
        const { sql } = yield* TenantSession
        const pinned = yield* sql<{ pinned: boolean }>`SELECT pinned FROM notes`
        return notes.items.length === 1 && notes.items[0]!.id === noteIds.get(tenant.id) &&
          notes.items[0]!.title === `note of ${tenant.id}` && pinned.length === 1 && pinned[0]!.pinned === false
      }).pipe(withTenant(tenant.id), Effect.provide(TestUser(tenant)), Effect.orDie), { concurrency: 8 })
  )
  const broken = intact.filter((ok) => !ok).length
  rows.push({ step: "read every note back after migrating", millis: verifyMillis, per: verifyMillis / TENANTS, note: `${TENANTS - broken} intact` })
  if (broken > 0) return yield* Effect.dieMessage(`${broken} tenants lost their note or lack the new column`)

  const contexts = yield* Effect.flatMap(TenantContexts, (c) => c.stats)
  yield* Console.log("\n" + printTable())
  yield* Console.log(
    `\ntenant contexts: ${contexts.opened} opened, ${contexts.closed} closed, at most ${Math.floor(config.connectionBudget / config.maxConnectionsPerTenant)} open at once`
  )
  yield* Console.log(`dropping namespace ${namespace}...`)
})

const started = performance.now()
program.pipe(
  Effect.provide(Scale),
  Effect.tap(() => Console.log(`done in ${((performance.now() - started) / 1000).toFixed(1)} s, namespace dropped`)),
  Effect.tapErrorCause(() => Effect.sync(() => rows.length > 0 && console.error("\n" + printTable()))),
  NodeRuntime.runMain
)
