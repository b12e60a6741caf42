/**
 * The soak (`npm run bench -- --soak=SECONDS`; bench/run.ts hands off to
 * runSoak and runs nothing else): one engine, many tenants of both
 * strategies, mixed load for SECONDS, then the checks a service trusted with
 * many customers' data must pass after a long stretch of ordinary traffic:
 *
 *   - every write answered 201 is readable, through the API with the token
 *     that wrote it, with the content it was written with (or last patched to);
 *     the tenants' data, read as the superuser, holds each exactly once, holds
 *     nothing of the requests whose body was cut off, and nothing else of ours
 *     but requests whose answer we hung up on;
 *   - no 5xx at all;
 *   - no connection checked out (the engine's /metrics: tenant pools' connections
 *     − idle, statements waiting, context references) and none of the run's
 *     databases' backends `idle in transaction` or `active` (pg_stat_activity);
 *   - the engine's RSS (/proc/<pid>/status VmRSS, every few seconds) stays
 *     within ±15% of its first reading after the warm-up.
 *
 * The load is a loop of our own over node:http (keep-alive agent), not
 * autocannon: every 201's note id and content is recorded. A fixed number of
 * clients each send one request after another, choosing at random a tenant, a
 * token of it (its service client's machine token or one of its users'), and
 * a kind: GET /v1/me, GET /v1/notes, GET /v1/notes/{id}, POST /v1/notes (title
 * a fresh random id, body derived from it by sha256, so that any body read
 * back can be checked against its title), PATCH /v1/notes/{id}. A share of
 * the requests (5%) go instead through a raw socket that hangs up mid-request:
 * a POST whose body is cut off half way, a complete POST or a GET closed before
 * its answer is read.
 *
 * Settings (environment):
 *
 *   BENCH_SOAK_DATABASE_TENANTS (20), BENCH_SOAK_SCHEMA_TENANTS (40)
 *   BENCH_SOAK_USERS_PER_TENANT (3)   user tokens per tenant (and one machine token each)
 *   BENCH_SOAK_NOTES (20)             notes written into each tenant before the load
 *   BENCH_SOAK_CONCURRENCY (32)       clients sending at once
 *   BENCH_SOAK_HANGUPS (0.05)         share of requests that hang up
 *   BENCH_SOAK_HANGUP_KINDS (cut,post,get)   how they hang up: a POST body cut off, a POST or a GET closed before the answer
 *   BENCH_SOAK_WARMUP (10% of the run, 10 to 60 s)   RSS is compared with its reading at the end of this
 *   BENCH_SOAK_RSS_INTERVAL (2)       seconds between RSS readings
 *   BENCH_SOAK_KEEP_LOG               a file to copy the engine's log to (the run's folder is removed)
 *   BENCH_SOAK_NODE_OPTIONS           NODE_OPTIONS of the engine (diagnosis, e.g. --max-old-space-size=256)
 *   BENCH_SOAK_BUDGET (48), BENCH_SOAK_POOL_MAX (2)
 *                                     TENANT_CONNECTION_BUDGET and TENANT_POOL_MAX of the engine: half the
 *                                     budget is the schema tenants' shared pool, the rest holds 12 of the 20
 *                                     database tenants' pools, so contexts are closed and opened all along
 *                                     (and the whole stays far below a shared server's max_connections)
 */
import { createHash, randomBytes } from "node:crypto"
import { copyFileSync } from "node:fs"
import http from "node:http"
import net from "node:net"
import Pg from "pg"
import { onDatabase } from "./lib/dbstats.js"
import {
  adminToken,
  forEachLimited,
  type Issuer,
  machineToken,
  provisionTenants,
  type ProvisionedTenant,
  schemaTenantIdOf,
  seedNotes,
  tenantIdOf,
  userToken
} from "./lib/fixture.js"
import { cpuSeconds, memory } from "./lib/proc.js"
import { SOAK_HEADING, writeSection } from "./lib/report.js"
import type { ProbeReading } from "./lib/probe.js"
import type { ServerProcess } from "./lib/servers.js"

// --- settings ---

const HANGUPS = ["POST, body cut off half way", "POST complete, closed before the answer", "GET /v1/notes, closed before the answer"] as const
type Hangup = (typeof HANGUPS)[number]

const positive = (name: string, fallback: number) => {
  const text = process.env[name]
  if (text === undefined || text === "") return fallback
  const n = Number(text)
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, not ${text}`)
  return n
}

/** BENCH_SOAK_HANGUP_KINDS: some of cut, post, get (HANGUPS in that order); all when unset. */
const hangupKinds = (text: string | undefined): ReadonlyArray<Hangup> => {
  if (text === undefined || text === "") return HANGUPS
  const names = ["cut", "post", "get"]
  return text.split(",").map((name) => {
    const i = names.indexOf(name.trim())
    if (i < 0) throw new Error(`BENCH_SOAK_HANGUP_KINDS: ${name} is none of ${names.join(", ")}`)
    return HANGUPS[i]!
  })
}

const soakSettings = (seconds: number) => ({
  seconds,
  databaseTenants: positive("BENCH_SOAK_DATABASE_TENANTS", 20),
  schemaTenants: positive("BENCH_SOAK_SCHEMA_TENANTS", 40),
  usersPerTenant: positive("BENCH_SOAK_USERS_PER_TENANT", 3),
  notes: positive("BENCH_SOAK_NOTES", 20),
  concurrency: positive("BENCH_SOAK_CONCURRENCY", 32),
  hangupShare: positive("BENCH_SOAK_HANGUPS", 0.05),
  hangupKinds: hangupKinds(process.env["BENCH_SOAK_HANGUP_KINDS"]),
  warmup: positive("BENCH_SOAK_WARMUP", Math.min(60, Math.max(10, seconds / 10))),
  rssInterval: positive("BENCH_SOAK_RSS_INTERVAL", 2),
  budget: positive("BENCH_SOAK_BUDGET", 48),
  poolMax: positive("BENCH_SOAK_POOL_MAX", 2)
})
type SoakSettings = ReturnType<typeof soakSettings>

/** The RSS bound of issue 14: within ±15% of the reading after the warm-up. */
const RSS_BOUND = 0.15

/** What bench/run.ts gives the soak: its environment, and how it starts and stops engines. */
export interface SoakContext {
  readonly seconds: number
  readonly adminUrl: string
  readonly ns: string
  readonly platformDatabase: string
  readonly issuer: Issuer
  /** startEngine of bench/run.ts (every server of a run gets the same TENANT_ROLE_SECRET, the probe preloaded). */
  readonly startEngine: (name: string, extra: Record<string, string>) => Promise<ServerProcess>
  readonly stop: (server: ServerProcess) => Promise<string>
  /** The machine facts table of the run, as bench/run.ts renders it. */
  readonly machineFacts: string
  readonly command: string
  readonly resultsFile: string
  readonly log: (message: string) => void
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const pick = <T>(items: ReadonlyArray<T>): T => items[Math.floor(Math.random() * items.length)]!
const sha256 = (text: string) => createHash("sha256").update(text).digest("hex")

/** A note's body, derived from its title and version: whatever is read back can be checked against its title. */
const bodyOf = (title: string, version: number) => {
  const hash = sha256(`${title}:${version}`)
  // 64 to 512 characters, so that bodies differ in length too.
  return hash.repeat(1 + (parseInt(hash.slice(0, 2), 16) % 8))
}

// --- the tenants and their callers ---

interface Caller {
  /** "machine" or "user". */
  readonly kind: "machine" | "user"
  readonly token: string
}

interface SoakTenant {
  readonly tenant: ProvisionedTenant
  readonly callers: ReadonlyArray<Caller>
  /** Notes this run wrote into the tenant (answered 201), in order. */
  readonly written: Array<Written>
}

interface Written {
  readonly id: string
  readonly title: string
  /** The token that wrote it: it is read back with the same one. */
  readonly token: string
  /** The body it must have now; with `alsoBody`, either (a PATCH whose answer never came). */
  body: string
  alsoBody: string | undefined
  version: number
  /** A PATCH of it is in flight (no other PATCH then, and reads do not check its body). */
  busy: boolean
}

// --- requests ---

interface Answer {
  readonly status: number
  readonly text: string
}

const request = (
  agent: http.Agent,
  port: number,
  method: string,
  path: string,
  token: string,
  body?: string
): Promise<Answer> =>
  new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { authorization: `Bearer ${token}` }
    if (body !== undefined) {
      headers["content-type"] = "application/json"
      headers["content-length"] = Buffer.byteLength(body)
    }
    const req = http.request({ host: "127.0.0.1", port, method, path, agent, headers }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (chunk: Buffer) => chunks.push(chunk))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }))
      res.on("error", reject)
    })
    req.on("error", reject)
    // Far above any answer seen in the bench: a request this slow is a stuck one.
    req.setTimeout(30_000, () => req.destroy(new Error("no answer within 30 s")))
    req.end(body)
  })

interface NoteJson {
  readonly id: string
  readonly title: string
  readonly body: string
}

const parseNote = (text: string): NoteJson | undefined => {
  try {
    const value: unknown = JSON.parse(text)
    if (typeof value !== "object" || value === null) return undefined
    const { body, id, title } = value as Record<string, unknown>
    return typeof id === "string" && typeof title === "string" && typeof body === "string" ? { id, title, body } : undefined
  } catch {
    return undefined
  }
}

/**
 * A client that hangs up: a raw socket sends `head` and `body`, then is
 * destroyed after `afterMs` without reading anything.
 */
const hangUp = (port: number, head: string, body: string, afterMs: number) =>
  new Promise<void>((resolve) => {
    const socket = net.connect(port, "127.0.0.1")
    socket.on("error", () => {}) // a reset from the server is what hanging up may bring
    socket.on("close", () => resolve())
    socket.on("connect", () => {
      socket.write(head + body)
      setTimeout(() => socket.destroy(), afterMs)
    })
  })

const requestHead = (method: string, path: string, token: string, port: number, length?: number) =>
  `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${token}\r\n` +
  (length !== undefined ? `Content-Type: application/json\r\nContent-Length: ${length}\r\n` : "") +
  "\r\n"

// --- tallies ---

const KINDS = ["GET /v1/me", "GET /v1/notes", "GET /v1/notes/{id}", "POST /v1/notes", "PATCH /v1/notes/{id}"] as const
type Kind = (typeof KINDS)[number]
/** Weights of the kinds (of 100). GET /v1/notes/{id} and PATCH need a note written before: GET /v1/notes instead. */
const WEIGHTS: ReadonlyArray<readonly [Kind, number]> = [
  ["GET /v1/me", 10],
  ["GET /v1/notes", 30],
  ["GET /v1/notes/{id}", 25],
  ["POST /v1/notes", 25],
  ["PATCH /v1/notes/{id}", 10]
]
const MACHINE_SHARE = 0.4


class Tally {
  readonly statuses = new Map<string, Map<number, number>>()
  readonly errors = new Map<string, Map<string, number>>()
  readonly latencies = new Map<string, Array<number>>()
  readonly hangups = new Map<Hangup, number>()
  /** Reads during the load whose note was not the one written (title or body). */
  readonly readMismatches: Array<string> = []
  /** 201s and PATCH 200s whose answer was not the note sent. */
  readonly answerMismatches: Array<string> = []
  /** The first few 5xx answers: what they said. */
  readonly serverErrors: Array<string> = []

  status(key: string, status: number, ms: number, text: string) {
    if (status >= 500 && this.serverErrors.length < 10) {
      this.serverErrors.push(`${key} at ${new Date().toISOString().slice(11, 23)}: ${status} ${text.slice(0, 300)}`)
    }
    const byStatus = this.statuses.get(key) ?? new Map<number, number>()
    byStatus.set(status, (byStatus.get(status) ?? 0) + 1)
    this.statuses.set(key, byStatus)
    const list = this.latencies.get(key) ?? []
    list.push(ms)
    this.latencies.set(key, list)
  }

  error(key: string, error: unknown) {
    const message = error instanceof Error ? `${(error as NodeJS.ErrnoException).code ?? ""} ${error.message}`.trim() : String(error)
    const byMessage = this.errors.get(key) ?? new Map<string, number>()
    byMessage.set(message, (byMessage.get(message) ?? 0) + 1)
    this.errors.set(key, byMessage)
  }

  count(predicate: (status: number) => boolean) {
    let n = 0
    for (const byStatus of this.statuses.values()) for (const [s, c] of byStatus) if (predicate(s)) n += c
    return n
  }
}

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!

// --- the load ---

interface LoadState {
  readonly tenants: ReadonlyArray<SoakTenant>
  readonly tally: Tally
  /** Titles of POSTs cut off half way: none may exist. */
  readonly cutTitles: Set<string>
  /** Titles of complete POSTs whose answer was never read: each may exist, once. */
  readonly unansweredTitles: Set<string>
  readonly runTag: string
}

const chooseKind = (): Kind => {
  let r = Math.random() * 100
  for (const [kind, weight] of WEIGHTS) {
    if (r < weight) return kind
    r -= weight
  }
  return "GET /v1/notes"
}

const newTitle = (state: LoadState) => `soak-${state.runTag}-${randomBytes(9).toString("base64url")}`

/** One request of a client: a normal one (recorded), or a hang-up. */
const oneRequest = async (state: LoadState, agent: http.Agent, port: number, settings: SoakSettings) => {
  const t = pick(state.tenants)
  const machine = Math.random() < MACHINE_SHARE
  const callers = t.callers.filter((c) => c.kind === (machine ? "machine" : "user"))
  const caller = pick(callers.length > 0 ? callers : t.callers)
  const tally = state.tally

  if (Math.random() < settings.hangupShare) {
    const how = pick(settings.hangupKinds)
    tally.hangups.set(how, (tally.hangups.get(how) ?? 0) + 1)
    if (how === "GET /v1/notes, closed before the answer") {
      await hangUp(port, requestHead("GET", "/v1/notes?limit=20", caller.token, port), "", Math.random() * 10)
    } else {
      const title = newTitle(state)
      const body = JSON.stringify({ title, body: bodyOf(title, 0) })
      const length = Buffer.byteLength(body)
      if (how === "POST, body cut off half way") {
        state.cutTitles.add(title)
        // Whole title sent, body cut: the server has everything but the end, and must write nothing.
        await hangUp(port, requestHead("POST", "/v1/notes", caller.token, port, length), body.slice(0, Math.floor(length / 2)), Math.random() * 20)
      } else {
        state.unansweredTitles.add(title)
        await hangUp(port, requestHead("POST", "/v1/notes", caller.token, port, length), body, Math.random() * 10)
      }
    }
    return
  }

  let kind = chooseKind()
  const free = t.written.filter((w) => !w.busy)
  if ((kind === "GET /v1/notes/{id}" || kind === "PATCH /v1/notes/{id}") && free.length === 0) kind = "GET /v1/notes"
  const key = `${kind} (${caller.kind})`
  const started = performance.now()
  const ms = () => performance.now() - started
  try {
    switch (kind) {
      case "GET /v1/me": {
        const a = await request(agent, port, "GET", "/v1/me", caller.token)
        tally.status(key, a.status, ms(), a.text)
        return
      }
      case "GET /v1/notes": {
        const a = await request(agent, port, "GET", "/v1/notes?limit=20", caller.token)
        tally.status(key, a.status, ms(), a.text)
        return
      }
      case "GET /v1/notes/{id}": {
        const w = pick(t.written)
        const busy = w.busy
        const version = w.version
        const a = await request(agent, port, "GET", `/v1/notes/${w.id}`, caller.token)
        tally.status(key, a.status, ms(), a.text)
        if (a.status !== 200) {
          tally.readMismatches.push(`${t.tenant.id} ${w.id}: ${a.status} ${a.text.slice(0, 200)}`)
          return
        }
        const note = parseNote(a.text)
        // A PATCH in flight (then or since, or done meanwhile) may change the body under us: only the title is checked then.
        const bodyOk = busy || w.busy || w.version !== version || note?.body === w.body || note?.body === w.alsoBody
        if (note === undefined || note.title !== w.title || !bodyOk) {
          tally.readMismatches.push(`${t.tenant.id} ${w.id}: read ${a.text.slice(0, 200)}`)
        }
        return
      }
      case "POST /v1/notes": {
        const title = newTitle(state)
        const body = bodyOf(title, 0)
        const a = await request(agent, port, "POST", "/v1/notes", caller.token, JSON.stringify({ title, body }))
        tally.status(key, a.status, ms(), a.text)
        if (a.status !== 201) return
        const note = parseNote(a.text)
        if (note === undefined || note.title !== title || note.body !== body) {
          tally.answerMismatches.push(`${t.tenant.id}: POST ${title} answered ${a.text.slice(0, 200)}`)
          if (note === undefined) return
        }
        t.written.push({ id: note.id, title, token: caller.token, body, alsoBody: undefined, version: 0, busy: false })
        return
      }
      case "PATCH /v1/notes/{id}": {
        const w = pick(free)
        w.busy = true
        const version = w.version + 1
        const body = bodyOf(w.title, version)
        try {
          const a = await request(agent, port, "PATCH", `/v1/notes/${w.id}`, caller.token, JSON.stringify({ body }))
          tally.status(key, a.status, ms(), a.text)
          if (a.status === 200) {
            const note = parseNote(a.text)
            if (note === undefined || note.title !== w.title || note.body !== body) {
              tally.answerMismatches.push(`${t.tenant.id}: PATCH ${w.id} answered ${a.text.slice(0, 200)}`)
            }
            w.body = body
            w.alsoBody = undefined
            w.version = version
          } else if (a.status >= 500) {
            // Unknown whether it was applied: either body is right afterwards.
            w.alsoBody = body
            w.version = version
          }
        } catch (error) {
          w.alsoBody = body
          w.version = version
          throw error
        } finally {
          w.busy = false
        }
        return
      }
    }
  } catch (error) {
    tally.error(key, error)
  }
}

// --- what the engine and PostgreSQL say about connections ---

interface MetricsReading {
  readonly connections: number
  readonly idle: number
  readonly waiting: number
  readonly references: number
  readonly contextsOpen: number
  readonly accountCacheEntries: number
}

/** The sum over every label set of a metric in Prometheus' text format. */
const metricSum = (text: string, name: string) => {
  let sum = 0
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line)
    if (match?.[1] === name) sum += Number(match[3])
  }
  return sum
}

const readMetrics = async (baseUrl: string): Promise<MetricsReading> => {
  const response = await fetch(`${baseUrl}/metrics`)
  const text = await response.text()
  if (response.status !== 200) throw new Error(`GET /metrics: ${response.status} ${text.slice(0, 200)}`)
  return {
    connections: metricSum(text, "tenant_engine_db_connections"),
    idle: metricSum(text, "tenant_engine_db_connections_idle"),
    waiting: metricSum(text, "tenant_engine_db_connections_waiting"),
    references: metricSum(text, "tenant_engine_tenant_context_references"),
    contextsOpen: metricSum(text, "tenant_engine_tenant_contexts_open"),
    accountCacheEntries: metricSum(text, "tenant_engine_account_cache_entries")
  }
}

interface BackendStates {
  /** state → count, over client backends of the run's databases (platform and tenant data). */
  readonly byState: ReadonlyMap<string, number>
  /** Backends idle in a transaction or running a statement: what nothing should be once the load has stopped. */
  readonly stuck: ReadonlyArray<string>
}

const backendStates = async (adminUrl: string, ns: string): Promise<BackendStates> => {
  const client = new Pg.Client({ connectionString: onDatabase(adminUrl, "postgres"), application_name: "bench/soak" })
  await client.connect()
  try {
    const { rows } = await client.query<{ datname: string; usename: string; application_name: string; state: string | null; xact_age: string | null; query: string }>(
      `SELECT datname, usename, application_name, state,
              extract(epoch FROM now() - xact_start)::numeric(10,1)::text AS xact_age, left(query, 120) AS query
       FROM pg_stat_activity WHERE backend_type = 'client backend' AND starts_with(datname, $1)`,
      [ns]
    )
    const byState = new Map<string, number>()
    for (const row of rows) byState.set(row.state ?? "?", (byState.get(row.state ?? "?") ?? 0) + 1)
    const stuck = rows
      .filter((row) => row.state !== "idle")
      .map((row) => `${row.datname} ${row.usename} ${row.application_name}: ${row.state} (transaction ${row.xact_age ?? "—"} s) ${row.query}`)
    return { byState, stuck }
  } finally {
    await client.end()
  }
}

interface ConnectionCheck {
  readonly when: string
  readonly metrics: MetricsReading
  readonly backends: BackendStates
}

const checkConnections = async (ctx: SoakContext, engine: ServerProcess, when: string): Promise<ConnectionCheck> => ({
  when,
  metrics: await readMetrics(engine.baseUrl),
  backends: await backendStates(ctx.adminUrl, ctx.ns)
})

const connectionsClean = (c: ConnectionCheck) =>
  c.metrics.connections - c.metrics.idle === 0 && c.metrics.waiting === 0 && c.metrics.references === 0 && c.backends.stuck.length === 0

// --- verification ---

interface Verification {
  readonly written: number
  readonly verified: number
  readonly failures: ReadonlyArray<string>
  /** Reads of another tenant's note (1 in 10 of the notes): each must be 404. */
  readonly crossTenantReads: number
  readonly crossTenantFailures: ReadonlyArray<string>
  readonly seconds: number
}

/** Reads back every note answered 201 through the API, with the token that wrote it; and some with another tenant's. */
const verifyThroughApi = async (tenants: ReadonlyArray<SoakTenant>, port: number): Promise<Verification> => {
  const started = performance.now()
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 })
  const all = tenants.flatMap((t, i) => t.written.map((w) => ({ t, w, other: tenants[(i + 1) % tenants.length]! })))
  let verified = 0
  let crossTenantReads = 0
  const failures: Array<string> = []
  const crossTenantFailures: Array<string> = []
  await forEachLimited(all, 16, async ({ other, t, w }, index) => {
    try {
      const a = await request(agent, port, "GET", `/v1/notes/${w.id}`, w.token)
      const note = a.status === 200 ? parseNote(a.text) : undefined
      if (note !== undefined && note.id === w.id && note.title === w.title && (note.body === w.body || note.body === w.alsoBody)) verified++
      else failures.push(`${t.tenant.id} ${w.id} (${w.title}): ${a.status} ${a.text.slice(0, 200)}`)
      if (index % 10 === 0) {
        crossTenantReads++
        const b = await request(agent, port, "GET", `/v1/notes/${w.id}`, other.callers[0]!.token)
        if (b.status !== 404) crossTenantFailures.push(`${t.tenant.id}'s ${w.id} read by ${other.tenant.id}: ${b.status} ${b.text.slice(0, 200)}`)
      }
    } catch (error) {
      failures.push(`${t.tenant.id} ${w.id}: ${String(error)}`)
    }
  })
  agent.destroy()
  return { written: all.length, verified, failures, crossTenantReads, crossTenantFailures, seconds: (performance.now() - started) / 1000 }
}

interface StoredCheck {
  /** Notes of this run found in the tenants' data (titles `soak-<run>-…`). */
  readonly found: number
  /** Answered 201 but not there, or there more than once. */
  readonly missingOrDuplicated: ReadonlyArray<string>
  /** Cut-off POSTs found written. */
  readonly cutWritten: number
  /** Unanswered complete POSTs found written (allowed: the server had the whole request). */
  readonly unansweredWritten: number
  /** Titles of ours found that no request accounts for. */
  readonly unexplained: ReadonlyArray<string>
}

/**
 * Reads the titles of this run's notes straight from each tenant's data (as
 * the superuser, where the platform's `tenants` row places it), and checks
 * them against what the load sent.
 */
const checkStored = async (ctx: SoakContext, state: LoadState): Promise<StoredCheck> => {
  const platform = new Pg.Client({ connectionString: onDatabase(ctx.adminUrl, ctx.platformDatabase) })
  await platform.connect()
  const { rows: placements } = await platform.query<{ id: string; db_name: string; db_schema: string | null }>(
    "SELECT id, db_name, db_schema FROM tenants"
  )
  await platform.end()
  const placementOf = new Map(placements.map((p) => [p.id, p]))
  const prefix = `soak-${state.runTag}-`
  let found = 0
  let cutWritten = 0
  let unansweredWritten = 0
  const missingOrDuplicated: Array<string> = []
  const unexplained: Array<string> = []
  await forEachLimited(state.tenants, 4, async (t) => {
    const placement = placementOf.get(t.tenant.id)
    if (placement === undefined) throw new Error(`tenant ${t.tenant.id} is not in the platform database`)
    const client = new Pg.Client({ connectionString: onDatabase(ctx.adminUrl, placement.db_name) })
    await client.connect()
    try {
      const table = placement.db_schema === null ? "notes" : `${client.escapeIdentifier(placement.db_schema)}.notes`
      const { rows } = await client.query<{ title: string; n: string }>(
        `SELECT title, count(*) AS n FROM ${table} WHERE starts_with(title, $1) GROUP BY title`,
        [prefix]
      )
      const counts = new Map(rows.map((row) => [row.title, Number(row.n)]))
      for (const n of counts.values()) found += n
      const answered = new Set(t.written.map((w) => w.title))
      for (const title of answered) {
        const n = counts.get(title) ?? 0
        if (n !== 1) missingOrDuplicated.push(`${t.tenant.id} ${title}: ${n} rows`)
      }
      for (const [title, n] of counts) {
        if (answered.has(title)) continue
        if (state.cutTitles.has(title)) cutWritten += n
        else if (state.unansweredTitles.has(title) && n === 1) unansweredWritten++
        else unexplained.push(`${t.tenant.id} ${title}: ${n} rows`)
      }
    } finally {
      await client.end()
    }
  })
  return { found, missingOrDuplicated, cutWritten, unansweredWritten, unexplained }
}

// --- the run ---

interface ProbeAt {
  readonly atS: number
  readonly reading: ProbeReading
}

interface RssReading {
  readonly atS: number
  readonly rssMiB: number
}

export const runSoak = async (ctx: SoakContext) => {
  const settings = soakSettings(ctx.seconds)
  const log = ctx.log
  const nodeOptions = process.env["BENCH_SOAK_NODE_OPTIONS"]
  const engineSettings = {
    TENANT_CONNECTION_BUDGET: String(settings.budget),
    TENANT_POOL_MAX: String(settings.poolMax),
    // For diagnosis: e.g. a capped old space tells a leak from a heap V8 keeps.
    ...(nodeOptions !== undefined ? { NODE_OPTIONS: nodeOptions } : {})
  }
  const engine = await ctx.startEngine("engine-soak", engineSettings)
  const port = engine.port
  const admin = await adminToken(ctx.issuer)

  // Tenants of both strategies, each with a service client; a few notes each so that lists have something to page.
  const provisionStarted = performance.now()
  const database = await provisionTenants(
    engine.baseUrl,
    admin,
    Array.from({ length: settings.databaseTenants }, (_, i) => tenantIdOf(i + 1)),
    4,
    { strategy: "database" }
  )
  const schema = await provisionTenants(
    engine.baseUrl,
    admin,
    Array.from({ length: settings.schemaTenants }, (_, i) => schemaTenantIdOf(i + 1)),
    4,
    { strategy: "schema" }
  )
  const provisionSeconds = (performance.now() - provisionStarted) / 1000
  const provisioned = [...database, ...schema]
  await seedNotes(ctx.adminUrl, ctx.platformDatabase, provisioned, settings.notes, 4)
  log(`soak: ${database.length} database and ${schema.length} schema tenants provisioned in ${provisionSeconds.toFixed(1)} s`)

  const tenants: Array<SoakTenant> = []
  for (const tenant of provisioned) {
    const callers: Array<Caller> = [{ kind: "machine", token: await machineToken(ctx.issuer, tenant.clientId!) }]
    for (let u = 0; u < settings.usersPerTenant; u++) {
      callers.push({ kind: "user", token: await userToken(ctx.issuer, tenant.id, `soak-u${u}-${tenant.id}`) })
    }
    tenants.push({ tenant, callers, written: [] })
  }

  const state: LoadState = {
    tenants,
    tally: new Tally(),
    cutTitles: new Set(),
    unansweredTitles: new Set(),
    runTag: randomBytes(3).toString("hex")
  }

  // RSS every few seconds, connections (the engine's /metrics) every 10 s, all through the run.
  const rss: Array<RssReading> = []
  const during: Array<MetricsReading> = []
  const loadStarted = Date.now()
  const rssTimer = setInterval(() => {
    try {
      rss.push({ atS: (Date.now() - loadStarted) / 1000, rssMiB: memory(engine.pid).rssMiB })
    } catch {
      // the engine has gone: the load's errors will say so
    }
  }, settings.rssInterval * 1000)
  const metricsTimer = setInterval(() => {
    readMetrics(engine.baseUrl).then((m) => during.push(m), () => {})
  }, 10_000)
  // The probe at the end of the warm-up, then every minute: each reading's loop delay covers the time since the one before.
  const probes: Array<ProbeAt> = []
  const readProbe = () => {
    const atS = (Date.now() - loadStarted) / 1000
    engine.readProbe().then((p) => p !== undefined && probes.push({ atS, reading: p }), () => {})
  }
  let probeTimer: NodeJS.Timeout | undefined
  let cpuAtWarmup = 0
  const warmupTimer = setTimeout(() => {
    cpuAtWarmup = cpuSeconds(engine.pid)
    readProbe()
    probeTimer = setInterval(readProbe, 60_000)
    log(`soak: warm-up over (${settings.warmup} s)`)
  }, settings.warmup * 1000)
  const progressTimer = setInterval(() => {
    const t = state.tally
    log(
      `soak: ${((Date.now() - loadStarted) / 1000).toFixed(0)} s: ${t.count(() => true)} answered, ` +
        `5xx ${t.count((s) => s >= 500)}, written ${tenants.reduce((n, x) => n + x.written.length, 0)}, ` +
        `RSS ${rss.at(-1)?.rssMiB.toFixed(0) ?? "?"} MiB`
    )
  }, 60_000)

  log(`soak: ${settings.seconds} s of mixed load, ${settings.concurrency} clients, ${settings.hangupShare * 100}% hang-ups`)
  const deadline = loadStarted + settings.seconds * 1000
  const agent = new http.Agent({ keepAlive: true, maxSockets: settings.concurrency })
  await Promise.all(Array.from({ length: settings.concurrency }, async () => {
    while (Date.now() < deadline) await oneRequest(state, agent, port, settings)
  }))
  const loadSeconds = (Date.now() - loadStarted) / 1000
  const cpuAtEnd = cpuSeconds(engine.pid)
  clearInterval(probeTimer)
  const probeAtEnd = await engine.readProbe()
  if (probeAtEnd !== undefined) probes.push({ atS: loadSeconds, reading: probeAtEnd })
  clearInterval(rssTimer)
  clearInterval(metricsTimer)
  clearInterval(progressTimer)
  clearTimeout(warmupTimer)
  agent.destroy()
  rss.push({ atS: (Date.now() - loadStarted) / 1000, rssMiB: memory(engine.pid).rssMiB })
  log(`soak: load over after ${loadSeconds.toFixed(0)} s; checking`)

  // A moment for the requests of the hung-up clients to end in the engine.
  await sleep(3000)
  const afterLoad = await checkConnections(ctx, engine, "3 s after the load")
  const verification = await verifyThroughApi(tenants, port)
  log(`soak: ${verification.verified} of ${verification.written} writes read back in ${verification.seconds.toFixed(1)} s`)
  const stored = await checkStored(ctx, state)
  await sleep(1000)
  const afterChecks = await checkConnections(ctx, engine, "after the read-back")
  const warnings = [...engine.warnings()]
  const exit = await ctx.stop(engine)
  // The run's folder goes at the end: BENCH_SOAK_KEEP_LOG=FILE keeps the engine's log for a look afterwards.
  const keepLog = process.env["BENCH_SOAK_KEEP_LOG"]
  if (keepLog !== undefined && keepLog !== "") copyFileSync(engine.logFile, keepLog)
  log(`soak: engine stopped: ${exit}`)

  const section = renderSoak({
    ctx,
    settings,
    engineSettings,
    databaseTenants: database.length,
    schemaTenants: schema.length,
    provisionSeconds,
    state,
    loadSeconds,
    rss,
    during,
    checks: [afterLoad, afterChecks],
    verification,
    stored,
    probes,
    cpuCores: (cpuAtEnd - cpuAtWarmup) / Math.max(1, loadSeconds - settings.warmup),
    warnings,
    exit
  })
  writeSection(ctx.resultsFile, SOAK_HEADING, section.markdown)
  log(`soak: written to ${ctx.resultsFile} (section "${SOAK_HEADING.slice(3)}")`)
  console.log("\n" + section.summary.join("\n"))
  if (section.failed.length > 0) throw new Error(`soak: failed: ${section.failed.join("; ")}`)
}

// --- the section ---

interface SoakResult {
  readonly ctx: SoakContext
  readonly settings: SoakSettings
  readonly engineSettings: Record<string, string>
  readonly databaseTenants: number
  readonly schemaTenants: number
  readonly provisionSeconds: number
  readonly state: LoadState
  readonly loadSeconds: number
  readonly rss: ReadonlyArray<RssReading>
  readonly during: ReadonlyArray<MetricsReading>
  readonly checks: ReadonlyArray<ConnectionCheck>
  readonly verification: Verification
  readonly stored: StoredCheck
  /** From the end of the warm-up to the end of the load. */
  readonly probes: ReadonlyArray<ProbeAt>
  readonly cpuCores: number
  readonly warnings: ReadonlyArray<string>
  readonly exit: string
}

const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : "—")
const mark = (ok: boolean) => (ok ? "✓" : "✗")
const code = (text: string) => `\`${text.replaceAll("`", "'").replaceAll("|", "\\|")}\``
const listOf = (items: ReadonlyArray<string>, n = 5) =>
  items.length === 0 ? "" : `: ${items.slice(0, n).map(code).join("; ")}${items.length > n ? ` (and ${items.length - n} more)` : ""}`

const renderSoak = (r: SoakResult) => {
  const s = r.settings
  const tally = r.state.tally
  const answered = tally.count(() => true)
  const fivexx = tally.count((status) => status >= 500)
  const unavailable = tally.count((status) => status === 503)
  const errors = [...tally.errors.values()].reduce((n, m) => n + [...m.values()].reduce((a, b) => a + b, 0), 0)
  const hangups = [...tally.hangups.values()].reduce((a, b) => a + b, 0)
  const written = r.verification.written

  // RSS after the warm-up, against its first reading then.
  const after = r.rss.filter((x) => x.atS >= s.warmup)
  const reference = after[0]?.rssMiB ?? NaN
  const values = after.map((x) => x.rssMiB)
  const min = Math.min(...values)
  const max = Math.max(...values)
  const last = values.at(-1) ?? NaN
  const deviation = Math.max(Math.abs(min - reference), Math.abs(max - reference)) / reference
  const rssOk = after.length > 0 && deviation <= RSS_BOUND
  // A leak shows as a rising minimum: the lowest reading of each quarter after the warm-up.
  const quarters = [0, 1, 2, 3].map((q) => {
    const part = values.slice(Math.floor((q * values.length) / 4), Math.floor(((q + 1) * values.length) / 4))
    return part.length === 0 ? NaN : Math.min(...part)
  })
  const everyMinute = r.rss.filter((x, i) => i === 0 || Math.floor(x.atS / 60) !== Math.floor(r.rss[i - 1]!.atS / 60))

  const last2 = r.checks.at(-1)!
  const firstProbe = r.probes[0]?.reading
  const lastProbe = r.probes.at(-1)?.reading
  const gcShare = firstProbe !== undefined && lastProbe !== undefined && r.probes.length > 1
    ? (lastProbe.gcMs - firstProbe.gcMs) / (lastProbe.atMs - firstProbe.atMs)
    : NaN
  // The first reading's delay covers the warm-up: not counted.
  const loopP99s = r.probes.slice(1).map((p) => p.reading.loopDelayP99Ms)
  const loopMax = Math.max(...r.probes.slice(1).map((p) => p.reading.loopDelayMaxMs))
  const checks: Array<readonly [string, string, boolean]> = [
    [
      "every write answered 201 read back through the API (the token that wrote it): same title and body",
      `${r.verification.verified} of ${written}${listOf(r.verification.failures)}`,
      r.verification.verified === written && r.verification.failures.length === 0
    ],
    [
      "… and in the tenants' data (superuser SQL): each exactly once",
      `${written - r.stored.missingOrDuplicated.length} of ${written}${listOf(r.stored.missingOrDuplicated)}`,
      r.stored.missingOrDuplicated.length === 0
    ],
    [
      "POSTs cut off half way: nothing written",
      `${r.stored.cutWritten} of ${r.state.cutTitles.size} written`,
      r.stored.cutWritten === 0
    ],
    [
      "notes of ours no request accounts for (a complete POST hung up on may be written, once)",
      `${r.stored.unexplained.length}${listOf(r.stored.unexplained)} (hung-up complete POSTs written: ${r.stored.unansweredWritten} of ${r.state.unansweredTitles.size})`,
      r.stored.unexplained.length === 0
    ],
    [
      "another tenant's token reading a note: 404",
      `${r.verification.crossTenantReads - r.verification.crossTenantFailures.length} of ${r.verification.crossTenantReads}${listOf(r.verification.crossTenantFailures)}`,
      r.verification.crossTenantFailures.length === 0
    ],
    [
      "reads during the load saw the note as written (GET /v1/notes/{id}: 200, its title, its body unless a PATCH was in flight)",
      `${tally.readMismatches.length} mismatches${listOf(tally.readMismatches)}`,
      tally.readMismatches.length === 0
    ],
    [
      "answers to POST (201) and PATCH (200) were the note sent",
      `${tally.answerMismatches.length} mismatches${listOf(tally.answerMismatches)}`,
      tally.answerMismatches.length === 0
    ],
    ["5xx answers", `${fivexx} (503: ${unavailable})${listOf(tally.serverErrors)}`, fivexx === 0],
    ...r.checks.map((c): readonly [string, string, boolean] => [
      `connections ${c.when}: checked out (engine /metrics: tenant pools' connections − idle), waiting, context references; backends of the run's databases not idle (pg_stat_activity)`,
      `${c.metrics.connections - c.metrics.idle} checked out of ${c.metrics.connections} open, ${c.metrics.waiting} waiting, ` +
      `${c.metrics.references} references; backends: ${[...c.backends.byState].map(([st, n]) => `${st} ${n}`).join(", ") || "none"}` +
      listOf(c.backends.stuck),
      connectionsClean(c)
    ]),
    [
      `RSS after the warm-up (${fmt(s.warmup)} s) within ±${RSS_BOUND * 100}% of its first reading then`,
      `${fmt(reference)} MiB; min ${fmt(min)}, max ${fmt(max)}, last ${fmt(last)} MiB: at most ${fmt(deviation * 100, 1)}% away`,
      rssOk
    ],
    ["engine stopped with SIGTERM", r.exit, r.exit === "code 0"]
  ]
  const failed = checks.filter(([, , ok]) => !ok).map(([what, value]) => `${what}: ${value}`)

  const kindRows = [...tally.statuses.keys()].sort().map((key) => {
    const byStatus = tally.statuses.get(key)!
    const n = [...byStatus.values()].reduce((a, b) => a + b, 0)
    const sorted = [...(tally.latencies.get(key) ?? [])].sort((a, b) => a - b)
    const statusText = [...byStatus].sort((a, b) => a[0] - b[0]).map(([st, c]) => `${st}: ${c}`).join(", ")
    const errs = [...(tally.errors.get(key)?.values() ?? [])].reduce((a, b) => a + b, 0)
    return `| ${key} | ${n} | ${statusText} | ${errs} | ${fmt(percentile(sorted, 50))} / ${fmt(percentile(sorted, 99))} / ${fmt(sorted.at(-1) ?? NaN)} |`
  })
  const errorLines = [...tally.errors].flatMap(([key, m]) => [...m].map(([message, n]) => `- ${key}: ${n} × ${code(message)}`))
  const maxDuring = (f: (m: MetricsReading) => number) => (r.during.length === 0 ? NaN : Math.max(...r.during.map(f)))
  const warningShapes = new Map<string, number>()
  for (const line of r.warnings) {
    const shape = line.replace(/\[\d{2}:\d{2}:\d{2}\.\d{3}\]/, "").replace(/\(#\d+\)/, "").replace(/\d+(\.\d+)?ms/, "…ms").trim().slice(0, 200)
    warningShapes.set(shape, (warningShapes.get(shape) ?? 0) + 1)
  }

  const markdown = [
    SOAK_HEADING,
    "",
    `Command: ${code(r.ctx.command)} (bench/soak.ts, through bench/run.ts; \`npm run bench\` keeps this section). ` +
    `Load ${fmt(r.loadSeconds)} s; checks ${failed.length === 0 ? "all passed" : `FAILED: ${failed.length}`}.`,
    "",
    r.ctx.machineFacts,
    "",
    `One engine (\`node --import tsx src/main.ts\`, the probe preloaded) with ${Object.entries(r.engineSettings).map(([k, v]) => `${k}=${v}`).join(", ")} ` +
    `(the rest the defaults: the shared pool half the budget, so the ${r.databaseTenants} database tenants' pools share ` +
    `${s.budget / 2} connections and their contexts are closed and opened again all through the run). ` +
    `${r.databaseTenants} database tenants and ${r.schemaTenants} schema tenants provisioned through POST /v1/admin/tenants ` +
    `(${fmt(r.provisionSeconds, 1)} s), each with ${s.notes} notes written as the superuser beforehand, a service client ` +
    `(a machine token) and ${s.usersPerTenant} users (user tokens; their first logins happen during the load).`,
    "",
    `Load: ${s.concurrency} clients (node:http, keep-alive), each sending one request after another for ${s.seconds} s: ` +
    `a random tenant, a machine token (${MACHINE_SHARE * 100}%) or one of its users', and a kind: ` +
    `${WEIGHTS.map(([k, w]) => `${k} ${w}%`).join(", ")} (GET and PATCH by id: a note this run wrote in the tenant, else GET /v1/notes). ` +
    "A POST's title is a fresh random id and its body derived from it (sha256), so every note read can be checked; a PATCH " +
    `changes the body. ${s.hangupShare * 100}% of requests instead hang up, from a raw socket: ` +
    `${s.hangupKinds.join("; ")} (closed 0–20 ms after sending).`,
    "",
    "| check | result | |",
    "|---|---|:-:|",
    ...checks.map(([what, value, ok]) => `| ${what} | ${value} | ${mark(ok)} |`),
    "",
    `Requests answered: ${answered} (${fmt(answered / r.loadSeconds)} per second), ${errors} without an answer; hang-ups: ${hangups} ` +
    `(${[...tally.hangups].map(([k, n]) => `${k}: ${n}`).join("; ")}); notes written (201): ${written}.`,
    "",
    "| kind (token) | requests | statuses | errors | p50 / p99 / max ms |",
    "|---|---:|---|---:|---:|",
    ...kindRows,
    "",
    ...(errorLines.length > 0 ? ["Requests without an answer:", "", ...errorLines, ""] : []),
    `RSS of the engine (VmRSS every ${s.rssInterval} s): after the warm-up first ${fmt(reference)}, min ${fmt(min)}, max ${fmt(max)}, ` +
    `last ${fmt(last)} MiB; lowest reading of each quarter after the warm-up ${quarters.map((q) => fmt(q)).join(", ")} MiB ` +
    `(a leak shows as a rising minimum); each minute from the start: ${everyMinute.map((x) => fmt(x.rssMiB)).join(", ")} MiB.`,
    "",
    `After the warm-up: engine CPU ${fmt(r.cpuCores, 2)} cores, GC pauses ${fmt(gcShare * 100, 1)}% of wall time, ` +
    `event-loop delay p99 of each minute ${loopP99s.map((v) => fmt(v)).join(", ")} ms, max ${fmt(loopMax)} ms; ` +
    `JS heap in use (process.memoryUsage().heapUsed; bench/lib/probe.ts, read at the end of the warm-up, every minute and at the end) ` +
    `${r.probes.map((p) => fmt(p.reading.heapUsedMiB)).join(", ")} MiB, reserved (heapTotal) ` +
    `${r.probes.map((p) => fmt(p.reading.heapTotalMiB)).join(", ")} MiB, external ${r.probes.map((p) => fmt(p.reading.externalMiB)).join(", ")} MiB. ` +
    `During the load (/metrics every 10 s, ${r.during.length} readings): tenant pools' connections up to ${fmt(maxDuring((m) => m.connections))}, ` +
    `checked out up to ${fmt(maxDuring((m) => m.connections - m.idle))}, statements waiting up to ${fmt(maxDuring((m) => m.waiting))}, ` +
    `contexts open up to ${fmt(maxDuring((m) => m.contextsOpen))}; at the end: ${last2.metrics.contextsOpen} contexts open, ` +
    `${last2.metrics.accountCacheEntries} accounts cached.`,
    "",
    `Engine log lines that look like warnings or errors: ${r.warnings.length}` +
    (warningShapes.size === 0
      ? "."
      : `:\n\n${[...warningShapes].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([shape, n]) => `- ${n} × ${code(shape)}`).join("\n")}`),
    ""
  ].join("\n")

  const summary = [
    `soak: ${answered} answered, 5xx ${fivexx}, hang-ups ${hangups}, writes verified ${r.verification.verified}/${written}`,
    `soak: RSS after warm-up ${fmt(reference)} MiB, min ${fmt(min)}, max ${fmt(max)}, last ${fmt(last)} (±${fmt(deviation * 100, 1)}%)`,
    ...r.checks.map((c) =>
      `soak: connections ${c.when}: ${c.metrics.connections - c.metrics.idle} checked out, ${c.backends.stuck.length} backends not idle`
    ),
    ...failed.map((f) => `soak: FAILED: ${f}`)
  ]
  return { markdown, summary, failed }
}
