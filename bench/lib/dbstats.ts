/**
 * PostgreSQL's own counters, read from the server's `postgres` database (never
 * from the databases under test, so that reading them adds nothing to what
 * they count).
 *
 * pg_stat_database counts transactions, not statements; outside an explicit
 * transaction every statement is one. A backend reports its counts when it
 * goes idle, at most once a second, and what it holds back is sent about 10 s
 * later: a reading is exact only that long after the activity stopped.
 */
import Pg from "pg"

export const onDatabase = (url: string, database: string) => {
  const u = new URL(url)
  u.pathname = "/" + encodeURIComponent(database)
  return u.toString()
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

  /** Transactions of every database whose name starts with `prefix`. */
  async xactsUnder(prefix: string): Promise<number> {
    const { rows } = await this.client.query<{ n: string | null }>(
      "SELECT sum(xact_commit + xact_rollback) AS n FROM pg_stat_database WHERE starts_with(datname, $1)",
      [prefix]
    )
    return Number(rows[0]?.n ?? 0)
  }

  /** Sessions ever established to databases whose name starts with `prefix` (pg_stat_database.sessions). */
  async sessionsUnder(prefix: string): Promise<number> {
    const { rows } = await this.client.query<{ n: string | null }>(
      "SELECT sum(sessions) AS n FROM pg_stat_database WHERE starts_with(datname, $1)",
      [prefix]
    )
    return Number(rows[0]?.n ?? 0)
  }

  /** Connections open now to databases under `prefix`, and how many databases they reach. */
  async connectionsUnder(prefix: string): Promise<{ connections: number; databases: ReadonlyArray<string> }> {
    const { rows } = await this.client.query<{ datname: string; n: string }>(
      "SELECT datname, count(*) AS n FROM pg_stat_activity WHERE starts_with(datname, $1) GROUP BY datname",
      [prefix]
    )
    return { connections: rows.reduce((sum, row) => sum + Number(row.n), 0), databases: rows.map((row) => row.datname) }
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

/** Samples tenant-database connections on an interval: the highest count, and databases seen appearing. */
export class ConnectionSampler extends IntervalSampler {
  maxConnections = 0
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

  constructor(private readonly stats: DbStats, private readonly prefix: string, intervalMs = 100) {
    super(intervalMs)
  }

  protected async sample() {
    const { connections, databases } = await this.stats.connectionsUnder(this.prefix)
    this.samples++
    this.firstSample ??= databases.length
    this.maxConnections = Math.max(this.maxConnections, connections)
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
