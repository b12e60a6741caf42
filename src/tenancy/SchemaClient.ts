import type * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import { PgClient } from "@effect/sql-pg"
import { Effect, Stream } from "effect"
import Pg from "pg"
import { CANCEL_SENT, cancelActiveQuery } from "../db/Pool.js"

/** Where a schema tenant's data is, inside the shared database its pool logs in to. */
export interface SchemaTenant {
  readonly database: string
  readonly schema: string
  readonly role: string
}

/**
 * The SqlClient of one schema tenant on its server's shared pool.
 *
 * The pool logs in as the shared database's gateway role, which can read no
 * tenant's tables. Every unit of work becomes the tenant with
 * transaction-scoped settings (`SET LOCAL ROLE`, `SET LOCAL search_path`), so
 * nothing is left on the connection for its next user, whatever failed, and a
 * transaction-mode pooler in front changes nothing:
 *
 * - a statement outside a transaction is its own unit: the settings and the
 *   statement go in one pipeline (extended protocol, one Sync, so one
 *   implicit transaction and one round trip); the settings are made by
 *   `set_config(..., true)`, which only the gateway may call (SET LOCAL
 *   would warn there, in every response and in the server's log);
 * - `sql.withTransaction` pins a connection and starts with
 *   `BEGIN; SET LOCAL ...` (one round trip, simple protocol).
 *
 * PostgreSQL checks `SET ROLE` against the session user, which is a member of
 * every tenant role: only this client stands between a tenant's statement and
 * another tenant's role. So it refuses statements that change the role; the
 * shared database also denies tenant roles `set_config` and PL/pgSQL (the
 * other ways to issue a SET), which TenantDatabases sets up.
 */
export const makeSchemaClient = (
  pool: Pg.Pool,
  tenant: SchemaTenant
): Effect.Effect<SqlClient.SqlClient, never, Reactivity.Reactivity> => {
  // A transaction takes the tenant at BEGIN; a statement outside one, in the
  // same pipeline (see UnitOfWork). Both end with their transaction.
  const begin = [
    "BEGIN",
    `SET LOCAL search_path TO ${Pg.escapeIdentifier(tenant.schema)}`,
    `SET LOCAL ROLE ${Pg.escapeIdentifier(tenant.role)}`
  ].join("; ")
  const enter: Setting = { text: ENTER, values: [Pg.escapeIdentifier(tenant.schema), tenant.role] }
  const unit = new SchemaConnection(pool, undefined, enter, begin)
  const pinned = Effect.flatMap(
    Effect.acquireRelease(
      Effect.async<Pg.PoolClient, SqlError>((resume) => {
        pool.connect((cause, client) => {
          resume(
            cause || client === undefined
              ? Effect.fail(new SqlError({ cause, message: "Failed to acquire connection for transaction" }))
              : Effect.succeed(client)
          )
        })
      }),
      // A transaction cut off mid-statement may still be open on it: destroy rather than reuse.
      (client, exit) => Effect.sync(() => client.release(exit._tag === "Failure" ? true : undefined))
    ),
    (client) => Effect.succeed(new SchemaConnection(pool, client, enter, begin))
  )

  return SqlClient.make({
    acquirer: Effect.succeed(unit),
    transactionAcquirer: pinned,
    beginTransaction: begin,
    compiler,
    spanAttributes: [
      ["db.system.name", "postgresql"],
      ["db.namespace", `${tenant.database}.${tenant.schema}`]
    ]
  })
}

/** Compiling holds no state: one compiler serves every schema tenant's client. */
const compiler = PgClient.makeCompiler()

/** Statements that would take another role: `SET [SESSION | LOCAL] ROLE`, `SET SESSION AUTHORIZATION`. */
const ROLE_CHANGE = /^(SET|RESET)\s+((SESSION|LOCAL)\s+)?(ROLE|SESSION\s+AUTHORIZATION)\b/i

/**
 * Whether any statement in the text changes the role. Comments go first and
 * every `;` is taken as a statement boundary (also inside literals): that can
 * only refuse more, never less.
 */
export const changesRole = (text: string): boolean =>
  text
    .replace(/\/\*[\s\S]*?\*\//g, " ")
    .replace(/--[^\n]*/g, " ")
    .split(";")
    .some((statement) => ROLE_CHANGE.test(statement.trim()))

const refused = (text: string) =>
  changesRole(text)
    ? new SqlError({ message: "a tenant's statement may not change the role", cause: new Error(text.slice(0, 200)) })
    : undefined

/** pg gives several results for a pipeline or a multi-statement text: the statement's is the last. */
type Results = Pg.QueryResult | ReadonlyArray<Pg.QueryResult>

const lastResult = (result: Results): Pg.QueryResult => "rows" in result ? result : result[result.length - 1]!

/**
 * Takes the tenant for the rest of the transaction: its schema as the search
 * path and its role. Both set_config calls are evaluated (the concatenation
 * needs both), and no row comes back. Permissions are checked as the
 * statement starts, while the session is still the gateway.
 */
const ENTER = "SELECT WHERE (set_config('search_path', $1, true) || set_config('role', $2, true)) IS NULL"

interface Setting {
  readonly text: string
  readonly values: ReadonlyArray<string>
}

/** pg's own method that writes a query's extended-protocol messages; its typings omit it. */
const writeQuery: (this: Pg.Query, connection: unknown) => void = Reflect.get(Pg.Query.prototype, "prepare")

interface ProtocolWriter {
  readonly parse: (message: { readonly text: string }) => void
  readonly bind: (message: { readonly values: ReadonlyArray<string> }) => void
  readonly execute: (message: { readonly portal: string }) => void
}

/**
 * One statement as a unit of work: the setting goes first in the same
 * pipeline (Parse/Bind/Execute, no Sync between), so it holds for exactly
 * this statement. pg reports each command's result; the statement's is the last.
 */
class UnitOfWork extends Pg.Query {
  readonly setting: Setting
  constructor(
    setting: Setting,
    config: { readonly text: string; readonly values: ReadonlyArray<unknown>; readonly rowMode?: "array" },
    callback: (error: Error | undefined, result: Results) => void
  ) {
    // `queryMode: "extended"`: pg would send a statement without parameters by the
    // simple protocol, which cannot be pipelined behind the setting.
    const options: Pg.QueryConfig = Object.assign({ text: config.text, values: [...config.values] }, {
      queryMode: "extended",
      ...(config.rowMode ? { rowMode: config.rowMode } : {})
    })
    super(options, callback)
    this.setting = setting
  }
  prepare(connection: ProtocolWriter) {
    connection.parse({ text: this.setting.text })
    connection.bind({ values: this.setting.values })
    connection.execute({ portal: "" })
    writeQuery.call(this, connection)
  }
}

/** A connection error (not PostgreSQL refusing a statement): the client is not to be reused. */
const brokenBy = (error: Error | undefined): Error | undefined =>
  error === undefined || error instanceof Pg.DatabaseError ? undefined : error

class SchemaConnection implements Connection {
  constructor(
    private readonly pool: Pg.Pool,
    /** Set inside a transaction: its statements run there, with the settings BEGIN took. */
    private readonly pinned: Pg.PoolClient | undefined,
    private readonly enter: Setting,
    /** This tenant's own BEGIN: the one text that may take its role. */
    private readonly begin: string
  ) {}

  /**
   * Runs one query and gives its last result. Interrupted, it cancels the
   * query out of band and waits for it to end before the connection goes back:
   * on a shared pool the next user of the connection is another tenant, whose
   * query a late cancel must not hit.
   */
  private run(text: string, values: ReadonlyArray<unknown>, rowMode?: "array") {
    const denied = refused(text)
    if (denied) return Effect.fail(denied)
    const pinned = this.pinned
    const pool = this.pool
    const enter = this.enter
    return Effect.async<Pg.QueryResult, SqlError>((resume) => {
      let client: Pg.PoolClient | undefined = pinned
      let interrupted = false
      let cancelSent = false
      let ended: (() => void) | undefined
      const submit = (target: Pg.PoolClient, release: (error?: Error) => void) => {
        const config = { text, values, ...(rowMode ? { rowMode } : {}) }
        const callback = (error: Error | undefined, result: Results) => {
          // A cancel still on its way would hit the next tenant's statement: such a connection is ended.
          release(cancelSent ? CANCEL_SENT : brokenBy(error))
          if (interrupted) return ended?.()
          resume(
            error
              ? Effect.fail(new SqlError({ cause: error, message: "Failed to execute statement" }))
              : Effect.succeed(lastResult(result))
          )
        }
        if (pinned) {
          target.query(Object.assign({ text, values: [...values] }, rowMode ? { rowMode } : {}), callback)
        } else {
          target.query(new UnitOfWork(enter, config, callback))
        }
      }
      if (pinned) {
        submit(pinned, () => {})
      } else {
        pool.connect((cause, connected, release) => {
          if (cause || connected === undefined) {
            if (!interrupted) resume(Effect.fail(new SqlError({ cause, message: "Failed to acquire connection" })))
            return
          }
          if (interrupted) return release()
          client = connected
          submit(connected, (error) => release(error))
        })
      }
      return Effect.async<void>((resumeInterrupt) => {
        interrupted = true
        const target = client
        if (target === undefined) return resumeInterrupt(Effect.void)
        ended = () => resumeInterrupt(Effect.void)
        cancelSent = cancelActiveQuery(pool, target)
      })
    })
  }

  execute(
    sql: string,
    params: ReadonlyArray<unknown>,
    transformRows: (<A extends object>(row: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined
  ) {
    const rows = Effect.map(this.run(sql, params), (result) => result.rows ?? [])
    return transformRows ? Effect.map(rows, transformRows) : rows
  }
  executeRaw(sql: string, params: ReadonlyArray<unknown>) {
    return this.run(sql, params)
  }
  executeWithoutTransform(sql: string, params: ReadonlyArray<unknown>) {
    return this.execute(sql, params, undefined)
  }
  executeValues(sql: string, params: ReadonlyArray<unknown>) {
    return Effect.map(this.run(sql, params, "array"), (result): ReadonlyArray<ReadonlyArray<unknown>> => result.rows)
  }
  executeUnprepared(
    sql: string,
    params: ReadonlyArray<unknown>,
    transformRows: (<A extends object>(row: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined
  ) {
    // Inside a transaction this is BEGIN (with the settings), COMMIT, savepoints:
    // several statements in one string, which only the simple protocol takes.
    if (this.pinned && params.length === 0) {
      const denied = sql === this.begin ? undefined : refused(sql)
      if (denied) return Effect.fail(denied)
      const pinned = this.pinned
      const rows = Effect.async<ReadonlyArray<object>, SqlError>((resume) => {
        pinned.query(sql, (error: Error | undefined, result: Results) => {
          resume(
            error
              ? Effect.fail(new SqlError({ cause: error, message: "Failed to execute statement" }))
              : Effect.succeed(lastResult(result).rows ?? [])
          )
        })
      })
      return transformRows ? Effect.map(rows, transformRows) : rows
    }
    return this.execute(sql, params, transformRows)
  }
  /** The rows of one unit of work, as a stream: buffered, as a unit of work must end before its connection is shared. */
  executeStream(
    sql: string,
    params: ReadonlyArray<unknown>,
    transformRows: (<A extends object>(row: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined
  ) {
    return Stream.fromIterableEffect(this.execute(sql, params, transformRows))
  }
}
