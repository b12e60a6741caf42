/**
 * Fleet scale check (`npm run test:scale`, not part of `npm test`): against a
 * real PostgreSQL (TEST_DATABASE_URL, else the local server), in a namespace
 * of its own, it provisions a fleet of tenants (schema tenants by default),
 * writes a note in each, adds a tenant migration (through a loader: nothing is
 * written into migrations/), migrates the fleet at the default concurrency,
 * asks for the fleet's status, migrates again (nothing to do), and checks that
 * every tenant is current and still has its note. The status and the no-op
 * migration are also timed as the operator runs them (`tenant-engine migrate
 * --status` and `migrate`, as processes). Prints a table of timings, writes
 * it as a section of bench/RESULTS.md, and drops the namespace at the end
 * (also when interrupted).
 *
 *   TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npm run test:scale
 *   SCALE_TENANTS=300 SCALE_STRATEGY=database npm run test:scale
 *
 * Settings (environment):
 *
 *   SCALE_TENANTS (10000)               tenants in the fleet
 *   SCALE_STRATEGY (schema)             schema | database
 *   SCALE_PROVISION_CONCURRENCY (4)     provisionings at once
 *   SCALE_CLI (1)                       0: do not time the CLI commands as processes
 *   SCALE_RESULTS (bench/RESULTS.md)    the file whose "Fleet scale" section is replaced; `none` for none
 */
import { NodeRuntime } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import * as Migrator from "@effect/sql/Migrator"
import { Console, Duration, Effect, Layer, Logger, LogLevel, Schema } from "effect"
import { execFile } from "node:child_process"
import { cpus, loadavg } from "node:os"
import { join } from "node:path"
import Pg from "pg"
import notesMigration from "../migrations/tenant/0001_notes.js"
import { NoteService } from "../src/notes/NoteService.js"
import { TenantStrategy } from "../src/tenancy/Tenant.js"
import { TenancyConfig } from "../src/tenancy/TenancyConfig.js"
import { TenantContexts, withTenant } from "../src/tenancy/TenantContexts.js"
import { TenantDatabases } from "../src/tenancy/TenantDatabases.js"
import { TenantMigrations } from "../src/tenancy/TenantMigrations.js"
import { TenantMigrator } from "../src/tenancy/TenantMigrator.js"
import { TenantSession } from "../src/tenancy/TenantSession.js"
import { makeNamespace, testConfig } from "../src/testing/TestDatabases.js"
import { TestUser } from "../src/testing/TestUser.js"
import { onDatabase } from "./lib/dbstats.js"
import { cpuByPidOfCommand, cpuOfCommandSince, endedChildrenCpuSeconds, machineBusy, machineBusySeconds, machineCpu } from "./lib/proc.js"
import { SCALE_HEADING, sourceState, writeSection } from "./lib/report.js"
import { ROOT } from "./lib/servers.js"
import { tenancyWith } from "../src/PlatformLive.js"

const adminUrl = process.env["TEST_DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres"
const positive = (name: string, fallback: number) => {
  const text = process.env[name]
  if (text === undefined || text === "") return fallback
  const n = Number(text)
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, not ${text}`)
  return n
}
const TENANTS = positive("SCALE_TENANTS", 10_000)
const STRATEGY = Schema.decodeUnknownSync(TenantStrategy)(process.env["SCALE_STRATEGY"] || "schema")
const PROVISION_CONCURRENCY = positive("SCALE_PROVISION_CONCURRENCY", 4)
const TIME_CLI = process.env["SCALE_CLI"] !== "0"
const RESULTS = process.env["SCALE_RESULTS"] ?? join(ROOT, "bench", "RESULTS.md")

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

// The server's own defaults for the tenant pools: 4 connections each, 80 in
// all, half of them for the shared pool of schema tenants, 10,000 schema contexts.
const BUDGET = 80
const POOL_MAX = 4
const Scale = tenancyWith(Migrations).pipe(
  Layer.provideMerge(
    testConfig({
      adminUrl,
      defaultStrategy: STRATEGY,
      maxConnectionsPerTenant: POOL_MAX,
      connectionBudget: BUDGET,
      sharedPoolConnections: BUDGET / 2,
      maxContexts: 10_000
    }, namespace)
  ),
  Layer.provide(Logger.minimumLogLevel(LogLevel.Warning))
)

// --- measuring ---

/** What the machine did during a step (other people's work shares it). */
interface Busy {
  /** Share of all cores busy, 0..1. */
  readonly machine: number
  /**
   * Cores taken by this process (the engine's code runs in it) and the CLI
   * processes it ran, by PostgreSQL, and by everything else.
   */
  readonly own: number
  readonly postgres: number
  readonly other: number
}

interface Row {
  readonly step: string
  readonly millis: number
  readonly per?: number
  readonly busy?: Busy | undefined
  readonly note?: string
}
const rows: Array<Row> = []

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.timed(effect), ([duration, a]) => [Duration.toMillis(duration), a] as const)

/** Times an effect and reads the machine's CPU around it. */
const measured = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const machineBefore = machineCpu()
    const postgresBefore = cpuByPidOfCommand("postgres")
    const ownBefore = process.cpuUsage()
    const childrenBefore = endedChildrenCpuSeconds()
    const [millis, a] = yield* timed(effect)
    const machineAfter = machineCpu()
    const postgres = cpuOfCommandSince("postgres", postgresBefore)
    const ownUsage = process.cpuUsage(ownBefore)
    const own = (ownUsage.user + ownUsage.system) / 1e6 + endedChildrenCpuSeconds() - childrenBefore
    const wall = Math.max(millis, 1) / 1000
    const busy: Busy = {
      machine: machineBusy(machineBefore, machineAfter),
      own: own / wall,
      // Backends that ended during the step take their CPU with them: a lower bound.
      postgres: Math.max(0, postgres) / wall,
      other: Math.max(0, machineBusySeconds(machineBefore, machineAfter) - own - Math.max(0, postgres)) / wall
    }
    // Over a few ms, /proc/stat's ticks (10 ms) say nothing.
    return [millis, a, millis >= 500 ? busy : undefined] as const
  })

const percentile = (values: ReadonlyArray<number>, p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0
}

const ms = (n: number) => (n >= 10_000 ? `${(n / 1000).toFixed(1)} s` : `${n.toFixed(n < 10 ? 2 : 0)} ms`)
const pct = (n: number) => `${(n * 100).toFixed(0)}`
const cores = (n: number) => n.toFixed(2)

const HEADER = ["step", "total", "per tenant", "machine busy %", "this process (cores)", "PostgreSQL (cores)", "other processes (cores)", "note"]
const cells = (r: Row) => [
  r.step,
  ms(r.millis),
  r.per === undefined ? "" : ms(r.per),
  r.busy === undefined ? "" : pct(r.busy.machine),
  r.busy === undefined ? "" : cores(r.busy.own),
  r.busy === undefined ? "" : cores(r.busy.postgres),
  r.busy === undefined ? "" : cores(r.busy.other),
  r.note ?? ""
]
const NUMERIC = new Set([1, 2, 3, 4, 5, 6])

const printTable = () => {
  const body = rows.map(cells)
  const widths = HEADER.map((_, i) => Math.max(...[HEADER, ...body].map((c) => c[i]!.length)))
  const line = (c: ReadonlyArray<string>) => c.map((x, i) => (NUMERIC.has(i) ? x.padStart(widths[i]!) : x.padEnd(widths[i]!))).join("  ").trimEnd()
  return [line(HEADER), widths.map((w) => "-".repeat(w)).join("  "), ...body.map(line)].join("\n")
}

const markdownTable = () => [
  `| ${HEADER.join(" | ")} |`,
  `|${HEADER.map((_, i) => (NUMERIC.has(i) ? "---:" : "---")).join("|")}|`,
  ...rows.map((r) => `| ${cells(r).map((c) => c.replaceAll("|", "\\|")).join(" | ")} |`)
]

const serverFacts = Effect.promise(async () => {
  const client = new Pg.Client({ connectionString: adminUrl })
  await client.connect()
  try {
    const version = (await client.query<{ server_version: string }>("SHOW server_version")).rows[0]!.server_version
    const max = (await client.query<{ max_connections: string }>("SHOW max_connections")).rows[0]!.max_connections
    return { version, maxConnections: max }
  } finally {
    await client.end()
  }
})

/** The share of the machine busy over one second. */
const busyOverASecond = Effect.promise(async () => {
  const before = machineCpu()
  await new Promise((resolve) => setTimeout(resolve, 1000))
  return machineBusy(before, machineCpu())
})

/**
 * Runs the operator's CLI (`tenant-engine ...`) against this namespace, as a
 * process: node start-up, module loading, the platform migration check and
 * the command. Returns its wall time and output.
 */
const cli = (args: ReadonlyArray<string>) =>
  Effect.async<{ millis: number; stdout: string }, Error>((resume) => {
    const started = performance.now()
    const env: Record<string, string> = {}
    for (const name of ["PATH", "HOME", "LANG", "TZ", "TMPDIR"]) {
      const value = process.env[name]
      if (value !== undefined) env[name] = value
    }
    Object.assign(env, {
      DATABASE_URL: onDatabase(adminUrl, `${namespace}_platform`),
      TENANT_DATABASE_PREFIX: `${namespace}_t_`,
      TENANT_CONNECTION_BUDGET: String(BUDGET),
      TENANT_POOL_MAX: String(POOL_MAX),
      LOG_LEVEL: "Warn"
    })
    execFile(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { cwd: ROOT, env, maxBuffer: 64 * 2 ** 20 }, (error, stdout, stderr) => {
      const millis = performance.now() - started
      resume(
        error
          ? Effect.fail(new Error(`tenant-engine ${args.join(" ")}: ${error.message}\n${stderr}`))
          : Effect.succeed({ millis, stdout })
      )
    })
  })

const tenantIdOf = (i: number) => `scale-${String(i).padStart(5, "0")}`

const quietly = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.console, (console) => effect.pipe(Effect.withConsole({ ...console, log: () => Effect.void })))

const program = Effect.gen(function*() {
  const databases = yield* TenantDatabases
  const migrator = yield* TenantMigrator
  const config = yield* TenancyConfig
  const ids = Array.from({ length: TENANTS }, (_, i) => tenantIdOf(i + 1))
  const redacted = adminUrl.replace(/\/\/([^:@/]+):[^@/]*@/, "//$1:***@")
  const server = yield* serverFacts
  const date = new Date().toISOString()
  const load = loadavg().map((l) => l.toFixed(2)).join(" ")
  const busyBefore = yield* busyOverASecond
  yield* Console.log(
    `fleet scale: ${TENANTS} ${STRATEGY} tenants on PostgreSQL ${server.version} at ${redacted}, ` +
      `namespace ${namespace}, ${cpus().length} cores, load average ${load}, machine ${pct(busyBefore)}% busy`
  )

  // The template (database) or the shared database (schema) is prepared by the first provisioning; time it apart.
  const [firstMillis, , firstBusy] = yield* measured(Effect.orDie(databases.provision(ids[0]!, "Scale 1", { strategy: STRATEGY })))
  rows.push({
    step: `provision the first tenant (and the ${STRATEGY === "database" ? "template database" : "shared database"})`,
    millis: firstMillis,
    busy: firstBusy
  })

  const latencies: Array<number> = []
  const progressEvery = Math.max(100, Math.ceil(TENANTS / 10 / 100) * 100)
  const [provisionMillis, , provisionBusy] = yield* measured(
    Effect.forEach(ids.slice(1), (id, i) =>
      Effect.map(timed(Effect.orDie(databases.provision(id, `Scale ${i + 2}`, { strategy: STRATEGY }))), ([millis]) => {
        latencies.push(millis)
        if (latencies.length % progressEvery === 0) {
          console.log(`  provisioned ${latencies.length + 1}/${TENANTS} (p50 so far ${ms(percentile(latencies, 50))})`)
        }
      }), { concurrency: PROVISION_CONCURRENCY, discard: true })
  )
  const provisioning = {
    p50: percentile(latencies, 50),
    p95: percentile(latencies, 95),
    p99: percentile(latencies, 99),
    max: percentile(latencies, 100)
  }
  rows.push({
    step: `provision ${TENANTS - 1} more, ${PROVISION_CONCURRENCY} at a time`,
    millis: provisionMillis,
    per: provisionMillis / Math.max(1, TENANTS - 1),
    busy: provisionBusy,
    note: `each: p50 ${ms(provisioning.p50)}, p95 ${ms(provisioning.p95)}, p99 ${ms(provisioning.p99)}, max ${ms(provisioning.max)}`
  })

  // A note in every tenant, through its own context (as a request would write it).
  const tenants = yield* databases.list
  if (tenants.length !== TENANTS || tenants.some((t) => t.placement.strategy !== STRATEGY)) {
    return yield* Effect.dieMessage(`expected ${TENANTS} ${STRATEGY} tenants, found ${tenants.length}`)
  }
  const noteIds = new Map<string, string>()
  const [notesMillis, , notesBusy] = yield* measured(
    Effect.forEach(tenants, (tenant) =>
      Effect.flatMap(NoteService, (notes) => notes.create({ title: `note of ${tenant.id}`, body: "written before 0002" })).pipe(
        withTenant(tenant.id),
        Effect.provide(TestUser(tenant)),
        Effect.orDie,
        Effect.map((note) => void noteIds.set(tenant.id, note.id))
      ), { concurrency: 8, discard: true })
  )
  rows.push({ step: "write a note in each tenant (through its context)", millis: notesMillis, per: notesMillis / TENANTS, busy: notesBusy })

  // A new migration appears; the fleet is behind.
  extra["0002_pinned"] = pinnedNotes
  const behind = yield* migrator.status
  if (behind.counts.behind !== TENANTS) return yield* Effect.dieMessage(`expected ${TENANTS} tenants behind, ${JSON.stringify(behind.counts)}`)

  const concurrency = Math.max(1, Math.min(8, Math.floor(config.connectionBudget / config.maxConnectionsPerTenant)))
  console.log(`  migrating ${TENANTS} tenants to 0002...`)
  const [migrateMillis, migrated, migrateBusy] = yield* measured(
    quietly(migrator.migrateAll({ progress: "none", json: true })).pipe(Effect.orDie)
  )
  if (migrated.migrated.length !== TENANTS || migrated.failed.length > 0) {
    return yield* Effect.dieMessage(`fleet migration incomplete: ${JSON.stringify({ ...migrated, migrated: migrated.migrated.length })}`)
  }
  rows.push({
    step: `migrateAll (0002), default concurrency ${concurrency}`,
    millis: migrateMillis,
    per: migrateMillis / TENANTS,
    busy: migrateBusy,
    note: `${migrated.migrated.length} migrated, ${migrated.failed.length} failed`
  })

  const [statusMillis, status, statusBusy] = yield* measured(migrator.status)
  rows.push({ step: "status of the fleet (what `migrate --status` runs)", millis: statusMillis, busy: statusBusy, note: JSON.stringify(status.counts) })

  const [noopMillis, noop, noopBusy] = yield* measured(
    quietly(migrator.migrateAll({ progress: "none", json: true })).pipe(Effect.orDie)
  )
  rows.push({
    step: "migrateAll again (nothing to do)",
    millis: noopMillis,
    busy: noopBusy,
    note: `${noop.migrated.length} migrated, ${noop.skipped.length} skipped`
  })

  // The same two as the operator runs them. The CLI's loader is migrations/tenant
  // (0001 only), so it sees the fleet at 2 as current and has nothing to do either.
  let cliStatus: { millis: number } | undefined
  let cliNoop: { millis: number } | undefined
  let cliStartup = 0
  if (TIME_CLI) {
    const [, version, versionBusy] = yield* measured(cli(["--version"]).pipe(Effect.orDie))
    cliStartup = version.millis
    rows.push({
      step: "`tenant-engine --version`, as a process",
      millis: version.millis,
      busy: versionBusy,
      note: "start-up alone: node, tsx and the CLI's modules"
    })
    const [, statusRun, statusRunBusy] = yield* measured(cli(["migrate", "--status", "--json"]).pipe(Effect.orDie))
    const listed = yield* Effect.try(() => JSON.parse(statusRun.stdout) as unknown).pipe(Effect.orDie)
    const count = Array.isArray(listed) ? listed.length : -1
    if (count !== TENANTS) return yield* Effect.dieMessage(`tenant-engine migrate --status listed ${count} tenants, not ${TENANTS}`)
    cliStatus = { millis: statusRun.millis }
    rows.push({
      step: "`tenant-engine migrate --status --json`, as a process",
      millis: statusRun.millis,
      busy: statusRunBusy,
      note: `${count} tenants listed; includes node start-up and the platform migration check`
    })
    const [, noopRun, noopRunBusy] = yield* measured(cli(["migrate", "--json"]).pipe(Effect.orDie))
    cliNoop = { millis: noopRun.millis }
    const summary = yield* Effect.try(() => JSON.parse(noopRun.stdout) as { migrated?: ReadonlyArray<string> }).pipe(Effect.orDie)
    rows.push({
      step: "`tenant-engine migrate --json` (nothing to do), as a process",
      millis: noopRun.millis,
      busy: noopRunBusy,
      note: `${summary.migrated?.length ?? "?"} migrated`
    })
  }

  // Every tenant current, at 2, with its note and the new column.
  if (status.counts.current !== TENANTS || status.tenants.some((t) => t.version !== 2)) {
    return yield* Effect.dieMessage(`not every tenant is current: ${JSON.stringify(status.counts)}`)
  }
  const [verifyMillis, intact, verifyBusy] = yield* measured(
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
  rows.push({ step: "read every note back after migrating", millis: verifyMillis, per: verifyMillis / TENANTS, busy: verifyBusy, note: `${TENANTS - broken} intact` })
  if (broken > 0) return yield* Effect.dieMessage(`${broken} tenants lost their note or lack the new column`)

  const contexts = yield* Effect.flatMap(TenantContexts, (c) => c.stats)
  const bound = STRATEGY === "database"
    ? `at most ${Math.floor(config.connectionBudget / config.maxConnectionsPerTenant)} open at once (budget ${config.connectionBudget} / ${config.maxConnectionsPerTenant} per pool)`
    : `schema contexts bounded by ${config.maxContexts}, on one shared pool of ${config.sharedPoolConnections} connections; ${contexts.open} open at the end`
  const contextsLine = `tenant contexts: ${contexts.opened} opened, ${contexts.closed} closed, ${bound}`

  const check = (ok: boolean) => (ok ? "✓" : "✗")
  const targets: ReadonlyArray<readonly [string, string, string]> = [
    ["provisioning, median per tenant < 100 ms", ms(provisioning.p50), check(provisioning.p50 < 100)],
    ["provisioning, p99 per tenant < 100 ms", ms(provisioning.p99), check(provisioning.p99 < 100)],
    ["fleet migration of every tenant (report)", `${ms(migrateMillis)} (${ms(migrateMillis / TENANTS)} per tenant)`, migrated.failed.length === 0 ? "✓ all migrated" : "✗"],
    ["`migrate --status` < 1 s (the fleet's status)", ms(statusMillis), check(statusMillis < 1000)],
    ...(cliStatus
      ? [[
        "… `tenant-engine migrate --status` as a process, less its start-up (`--version`)",
        `${ms(cliStatus.millis - cliStartup)} (${ms(cliStatus.millis)} − ${ms(cliStartup)})`,
        check(cliStatus.millis - cliStartup < 1000)
      ] as const]
      : []),
    ["no-op migrate < 2 s", ms(noopMillis), check(noopMillis < 2000)],
    ...(cliNoop
      ? [[
        "… `tenant-engine migrate` as a process, less its start-up",
        `${ms(cliNoop.millis - cliStartup)} (${ms(cliNoop.millis)} − ${ms(cliStartup)})`,
        check(cliNoop.millis - cliStartup < 2000)
      ] as const]
      : []),
    ["every tenant current and still has its note", `${TENANTS - broken} of ${TENANTS}`, check(broken === 0)]
  ]

  yield* Console.log("\n" + printTable())
  yield* Console.log("\n" + targets.map(([what, value, ok]) => `${ok} ${what}: ${value}`).join("\n"))
  yield* Console.log(`\n${contextsLine}`)

  if (RESULTS !== "none") {
    const command = [
      ...Object.keys(process.env).filter((k) => k === "TEST_DATABASE_URL" || k.startsWith("SCALE_")).sort()
        .map((k) => `${k}=${process.env[k]}`),
      "npm run test:scale"
    ].join(" ")
    writeSection(RESULTS, SCALE_HEADING, [
      SCALE_HEADING,
      "",
      `Command: \`${command}\` (written by bench/scale.ts; \`npm run bench\` keeps this section).`,
      "",
      `${date}; ${cpus().length} × ${cpus()[0]?.model ?? "?"}; node ${process.version}; PostgreSQL ${server.version} ` +
      `(max_connections ${server.maxConnections}); source ${sourceState()}; load average at start ${load}; ` +
      `machine ${pct(busyBefore)}% busy in the second before.`,
      "",
      `${TENANTS} ${STRATEGY} tenants provisioned with TenantDatabases.provision (the engine's own code, in this ` +
      `process), ${PROVISION_CONCURRENCY} at a time, on the server's defaults: TENANT_CONNECTION_BUDGET ${BUDGET}, ` +
      `TENANT_POOL_MAX ${POOL_MAX}, shared pool ${config.sharedPoolConnections}, TENANT_CONTEXT_MAX ${config.maxContexts}. ` +
      "Per tenant latency is each provision call's, start to end, with the others running beside it. Machine busy: " +
      "/proc/stat over the step (100% = every core); PostgreSQL: every `postgres` process's CPU (a lower bound: " +
      "backends that ended take theirs with them); other processes: the rest of the machine's busy time (other " +
      "people's work: noise).",
      "",
      ...markdownTable(),
      "",
      "| target | measured | |",
      "|---|---:|---|",
      ...targets.map(([what, value, ok]) => `| ${what} | ${value} | ${ok} |`),
      "",
      `${contextsLine}.`,
      ""
    ].join("\n"))
    yield* Console.log(`written to ${RESULTS} (section "${SCALE_HEADING.slice(3)}")`)
  }
  yield* Console.log(`dropping namespace ${namespace}...`)
  return performance.now()
})

const started = performance.now()
program.pipe(
  Effect.provide(Scale),
  Effect.tap((ended) =>
    Console.log(
      `done in ${((performance.now() - started) / 1000).toFixed(1)} s, namespace dropped ` +
        `(in ${((performance.now() - ended) / 1000).toFixed(1)} s)`
    )
  ),
  Effect.tapErrorCause(() => Effect.sync(() => rows.length > 0 && console.error("\n" + printTable()))),
  NodeRuntime.runMain
)
