/**
 * PostgreSQL's own counters, read from the server's `postgres` database (never
 * from the databases under test, so that reading them adds nothing to what
 * they count).
 *
 * pg_stat_database counts transactions, not statements; outside an explicit
 * transaction every statement is one. A backend reports its counts when it
 * goes idle, at most once a second, and what it holds back is sent about 10 s
 * later: a reading is exact only that long after the activity stopped.
 *
 * Tenant data is named by prefixes (`TenantData`): the tenant databases'
 * common prefix, and the shared database of schema tenants.
 */
import Pg from "pg"

export const onDatabase = (url: string, database: string) => {
  const u = new URL(url)
  u.pathname = "/" + encodeURIComponent(database)
  return u.toString()
}

/** Database names (or their beginnings) holding tenant data. */
export type TenantData = ReadonlyArray<string>

/** `WHERE` on `datname`: it starts with one of the prefixes in parameter $1. */
const UNDER = "EXISTS (SELECT 1 FROM unnest($1::text[]) AS p(prefix) WHERE starts_with(datname, p.prefix))"

export interface TenantConnections {
  /** Every client connection to tenant data. */
  readonly connections: number
  /** Of those, the tenant pools' (logged in as a tenant role or the gateway, not as the administrator reading these). */
  readonly pooled: number
  readonly databases: ReadonlyArray<string>
}

export class DbStats {
  private constructor(private readonly client: Pg.Client) {}

  static async open(adminUrl: string): Promise<DbStats> {
    const client = new Pg.Client({ connectionString: onDatabase(adminUrl, "postgres"), application_name: "bench/stats" })
    await client.connect()
    client.on("error", () => {})
    return new DbStats(client)
  }

  close() {
    return this.client.end()
  }

  async version(): Promise<string> {
    const { rows } = await this.client.query<{ version: string }>("SELECT version()")
    return rows[0]!.version
  }

  async setting(name: string): Promise<string> {
    const { rows } = await this.client.query<{ setting: string }>("SELECT setting FROM pg_settings WHERE name = $1", [name])
    return rows[0]?.setting ?? "?"
  }

  /** Committed + rolled back transactions of one database. */
  async xacts(database: string): Promise<number> {
    const { rows } = await this.client.query<{ n: string | null }>(
      "SELECT sum(xact_commit + xact_rollback) AS n FROM pg_stat_database WHERE datname = $1",
      [database]
    )
    return Number(rows[0]?.n ?? 0)
  }

  /** Transactions of every database of tenant data. */
  async xactsUnder(data: TenantData): Promise<number> {
    const { rows } = await this.client.query<{ n: string | null }>(
      `SELECT sum(xact_commit + xact_rollback) AS n FROM pg_stat_database WHERE ${UNDER}`,
      [data]
    )
    return Number(rows[0]?.n ?? 0)
  }

  /** Sessions ever established to databases of tenant data (pg_stat_database.sessions). */
  async sessionsUnder(data: TenantData): Promise<number> {
    const { rows } = await this.client.query<{ n: string | null }>(
      `SELECT sum(sessions) AS n FROM pg_stat_database WHERE ${UNDER}`,
      [data]
    )
    return Number(rows[0]?.n ?? 0)
  }

  /**
   * Client connections open now to tenant data, those of tenant pools among
   * them, and the databases they reach. The engine's administrative pools
   * (provisioning, migrations) log in as the administrator, as this reader
   * does; tenant pools as a tenant's role or the shared database's gateway.
   */
  async connectionsUnder(data: TenantData): Promise<TenantConnections> {
    const { rows } = await this.client.query<{ datname: string; n: string; pooled: string }>(
      `SELECT datname, count(*) AS n, count(*) FILTER (WHERE usename <> current_user) AS pooled
       FROM pg_stat_activity WHERE backend_type = 'client backend' AND ${UNDER} GROUP BY datname`,
      [data]
    )
    return {
      connections: rows.reduce((sum, row) => sum + Number(row.n), 0),
      pooled: rows.reduce((sum, row) => sum + Number(row.pooled), 0),
      databases: rows.map((row) => row.datname)
    }
  }

  /**
   * Connections of tenant pools now, on this server, to databases whose names
   * start with `prefix`: every client backend there except the engine's
   * administrative ones (ADMIN_APPLICATIONS), which no connection allowance bounds.
   */
  async tenantPoolConnections(prefix: string): Promise<number> {
    const { rows } = await this.client.query<{ n: string }>(
      `SELECT count(*) AS n FROM pg_stat_activity
       WHERE backend_type = 'client backend' AND starts_with(datname, $1) AND NOT (application_name = ANY($2::text[]))`,
      [prefix, ADMIN_APPLICATIONS]
    )
    return Number(rows[0]?.n ?? 0)
  }

  /** The statements running now on one database (other than this reader's), their text shortened. */
  async activeStatements(database: string): Promise<ReadonlyArray<string>> {
    const { rows } = await this.client.query<{ q: string }>(
      `SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 200) AS q FROM pg_stat_activity
       WHERE datname = $1 AND state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()`,
      [database]
    )
    return rows.map((row) => row.q)
  }

  /** Client connections now: to this run's databases, and on the whole server (this reader included). */
  async serverConnections(prefix: string): Promise<{ ours: number; total: number }> {
    const { rows } = await this.client.query<{ ours: string; total: string }>(
      `SELECT count(*) FILTER (WHERE starts_with(datname, $1)) AS ours, count(*) AS total
       FROM pg_stat_activity WHERE backend_type = 'client backend'`,
      [prefix]
    )
    return { ours: Number(rows[0]?.ours ?? 0), total: Number(rows[0]?.total ?? 0) }
  }

  /** Client connections on the whole server that are not in `ours` (other users of a shared server). */
  async otherConnections(prefix: string): Promise<number> {
    const { rows } = await this.client.query<{ n: string }>(
      `SELECT count(*) AS n FROM pg_stat_activity
       WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
         AND (datname IS NULL OR NOT starts_with(datname, $1))`,
      [prefix]
    )
    return Number(rows[0]?.n ?? 0)
  }
}

/** application_name of the engine's administrative connections (src/tenancy/ServerAdmin.ts, TableCopy.ts). */
export const ADMIN_APPLICATIONS: ReadonlyArray<string> = [
  "tenant-engine/provisioning",
  "tenant-engine/template",
  "tenant-engine/migrate",
  "tenant-engine/move"
]

/** Runs `sample` every `intervalMs` (each after the previous one ends) from start() until stop(). */
abstract class IntervalSampler {
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined

  constructor(private readonly intervalMs: number) {}

  protected abstract sample(): Promise<void>

  start(): this {
    const loop = () => {
      this.running = this.sample().catch(() => {}).finally(() => {
        if (this.timer !== undefined) this.timer = setTimeout(loop, this.intervalMs)
      })
    }
    this.timer = setTimeout(loop, 0)
    return this
  }

  async stop() {
    const timer = this.timer
    this.timer = undefined
    if (timer !== undefined) clearTimeout(timer)
    await this.running
    return this
  }
}

/** Samples connections to tenant data on an interval: the highest counts, and databases seen appearing. */
export class ConnectionSampler extends IntervalSampler {
  maxConnections = 0
  /** The most connections of tenant pools at once (what the budget bounds). */
  maxPooled = 0
  maxDatabases = 0
  samples = 0
  /** Times a database went from no connection to some between two samples (pools seen opening). */
  appearances = 0
  private present = new Set<string>()
  /** Tenant databases connected in the first and the latest sample. */
  firstSample: number | undefined
  get lastSample() {
    return this.present.size
  }
  readonly distinct = new Set<string>()

  constructor(private readonly stats: DbStats, private readonly data: TenantData, intervalMs = 100) {
    super(intervalMs)
  }

  protected async sample() {
    const { connections, databases, pooled } = await this.stats.connectionsUnder(this.data)
    this.samples++
    this.firstSample ??= databases.length
    this.maxConnections = Math.max(this.maxConnections, connections)
    this.maxPooled = Math.max(this.maxPooled, pooled)
    this.maxDatabases = Math.max(this.maxDatabases, databases.length)
    const now = new Set(databases)
    for (const db of now) {
      if (!this.present.has(db)) this.appearances++
      this.distinct.add(db)
    }
    this.present = now
  }
}

/** Samples client connections on the whole server: the most at once, and the most of this run's databases. */
export class ServerConnectionSampler extends IntervalSampler {
  maxTotal = 0
  maxOurs = 0

  constructor(private readonly stats: DbStats, private readonly prefix: string, intervalMs = 250) {
    super(intervalMs)
  }

  protected async sample() {
    const { ours, total } = await this.stats.serverConnections(this.prefix)
    this.maxOurs = Math.max(this.maxOurs, ours)
    this.maxTotal = Math.max(this.maxTotal, total)
  }
}

/**
 * Samples the statements running on one database (the platform's): which
 * kinds of statement its transactions are, by their first words.
 */
export class StatementSampler extends IntervalSampler {
  samples = 0
  readonly seen = new Map<string, number>()

  constructor(private readonly stats: DbStats, private readonly database: string, intervalMs = 20) {
    super(intervalMs)
  }

  protected async sample() {
    this.samples++
    for (const text of await this.stats.activeStatements(this.database)) {
      const key = text.slice(0, 90)
      this.seen.set(key, (this.seen.get(key) ?? 0) + 1)
    }
  }

  /** The most seen, most first. */
  top(n: number): ReadonlyArray<readonly [string, number]> {
    return [...this.seen.entries()].sort((a, b) => b[1] - a[1]).slice(0, n)
  }
}

/** Samples tenant pools' connections on one server (tenantPoolConnections): the most at once, and how often above a limit. */
export class AllowanceSampler extends IntervalSampler {
  max = 0
  samples = 0
  above = 0

  constructor(private readonly stats: DbStats, private readonly prefix: string, private readonly limit: number, intervalMs = 20) {
    super(intervalMs)
  }

  protected async sample() {
    const n = await this.stats.tenantPoolConnections(this.prefix)
    this.samples++
    this.max = Math.max(this.max, n)
    if (n > this.limit) this.above++
  }
}
