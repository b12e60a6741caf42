import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import Pg from "pg"
import { inject } from "vitest"
import { PGBOUNCER_MISSING, pgBouncerBinary, startPgBouncer } from "../../src/testing/index.js"

/**
 * The test infrastructure the multi-server tests stand on: two different
 * PostgreSQL servers in every run (globalSetup), and a PgBouncer in
 * transaction mode in front of either when the package is installed.
 */
const servers = [
  { name: "first server (databaseUrl)", url: inject("databaseUrl") },
  { name: "second server (secondDatabaseUrl)", url: inject("secondDatabaseUrl") }
] as const

/** A plain `pg` connection, closed with the scope. */
const connect = (url: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const client = new Pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
      await client.connect()
      return client
    }),
    (client) => Effect.promise(() => client.end())
  )

const query = <R extends Pg.QueryResultRow>(client: Pg.Client, text: string, values: ReadonlyArray<unknown> = []) =>
  Effect.promise(() => client.query<R>(text, [...values]).then((result) => result.rows))

const one = <R extends Pg.QueryResultRow>(client: Pg.Client, text: string, values: ReadonlyArray<unknown> = []) =>
  Effect.flatMap(query<R>(client, text, values), (rows) => {
    const [row] = rows
    return row === undefined ? Effect.dieMessage(`no row from: ${text}`) : Effect.succeed(row)
  })

interface Identity {
  readonly system_identifier: string
  readonly port: number
  readonly superuser: string
}

/** What tells one server from another: its cluster's identifier (made by initdb) and its port. */
const identity = (client: Pg.Client) =>
  one<Identity>(
    client,
    `SELECT system_identifier::text, inet_server_port() AS port, current_setting('is_superuser') AS superuser
     FROM pg_control_system()`
  )

const backendPid = (client: Pg.Client) =>
  Effect.map(one<{ pid: number }>(client, "SELECT pg_backend_pid() AS pid"), (row) => row.pid)

describe("two PostgreSQL servers", () => {
  it.scoped("are two different servers, each taking a superuser connection", () =>
    Effect.gen(function*() {
      const [first, second] = yield* Effect.forEach(servers, (server) => Effect.flatMap(connect(server.url), identity))
      expect(first?.superuser).toBe("on")
      expect(second?.superuser).toBe("on")
      expect(first?.system_identifier).not.toBe(second?.system_identifier)
    }))
})

const missing = pgBouncerBinary() === undefined
// Said once on stderr, where the default reporter shows it, besides the suites' names.
if (missing) console.warn(PGBOUNCER_MISSING)

for (const server of servers) {
  describe(`PgBouncer in transaction mode in front of the ${server.name}${missing ? `: ${PGBOUNCER_MISSING}` : ""}`, () => {
    const bouncer = startPgBouncer({ targetUrl: server.url, poolSize: 4 }).pipe(
      Effect.flatMap(Option.match({
        onNone: () => Effect.dieMessage(PGBOUNCER_MISSING),
        onSome: Effect.succeed
      }))
    )

    it.scoped.skipIf(missing)("reaches that server with the same user and password", () =>
      Effect.gen(function*() {
        const { url } = yield* bouncer
        expect(new URL(url).port).not.toBe(new URL(server.url).port)
        const direct = yield* Effect.flatMap(connect(server.url), identity)
        const pooled = yield* Effect.flatMap(connect(url), identity)
        expect(pooled).toEqual(direct)
      }))

    it.scoped.skipIf(missing)("gives one client's transactions whichever backend is free", () =>
      Effect.gen(function*() {
        const { url } = yield* bouncer
        const client = yield* connect(url)
        yield* query(client, "BEGIN")
        const first = yield* backendPid(client)
        yield* query(client, "COMMIT")
        // Other clients hold transactions open until one of them holds the
        // backend the first transaction ran on; the client's next transaction
        // then cannot run there. (Session pooling would keep it on one backend.)
        const held: Array<number> = []
        while (!held.includes(first) && held.length < 3) {
          const other = yield* connect(url)
          yield* query(other, "BEGIN")
          held.push(yield* backendPid(other))
        }
        expect(held).toContain(first)
        yield* query(client, "BEGIN")
        const second = yield* backendPid(client)
        yield* query(client, "COMMIT")
        expect(second).not.toBe(first)
      }))

    it.scoped.skipIf(missing)("keeps transaction-scoped settings for their transaction, and only for it", () =>
      Effect.gen(function*() {
        const { url } = yield* bouncer
        const client = yield* connect(url)
        yield* query(client, "BEGIN")
        yield* query(client, "SET LOCAL statement_timeout = '1234ms'")
        yield* query(client, "SELECT set_config('tenant_engine.probe', 'inside', true)")
        const inside = yield* one<{ timeout: string; probe: string }>(
          client,
          "SELECT current_setting('statement_timeout') AS timeout, current_setting('tenant_engine.probe') AS probe"
        )
        yield* query(client, "COMMIT")
        expect(inside).toEqual({ timeout: "1234ms", probe: "inside" })
        // After the transaction, whichever backend the next one lands on has
        // neither (a backend that saw the placeholder setting shows it empty).
        const after = yield* one<{ timeout: string; probe: string | null }>(
          client,
          "SELECT current_setting('statement_timeout') AS timeout, current_setting('tenant_engine.probe', true) AS probe"
        )
        expect(after.timeout).not.toBe("1234ms")
        expect(["", null]).toContain(after.probe)
      }))
  })
}
