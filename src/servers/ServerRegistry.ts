import { Context, Effect, Layer, Redacted, Schema } from "effect"
import Pg from "pg"
import { serverOf } from "../db/DatabaseUrl.js"
import { FOREIGN_KEY_VIOLATION, orDie, sqlState, UNIQUE_VIOLATION } from "../db/SqlErrors.js"
import { messageOf } from "../ErrorText.js"
import { PlatformDb } from "../platform/PlatformDb.js"
import { serverObjectNames } from "../tenancy/ServerAdmin.js"
import { TenancyConfig } from "../tenancy/TenancyConfig.js"
import { DEFAULT_SERVER, ServerName, type ServerStatus, ServerView } from "./Server.js"
import { InvalidServer, ServerAlreadyExists, ServerInUse, ServerNotFound } from "./ServerErrors.js"

/** A registered server, as the engine reaches it: by name, with an administrative URL. */
export interface ServerAddress {
  readonly name: string
  readonly url: Redacted.Redacted<string>
}

export interface ServerOptions {
  /** Its share of new tenants against the other active servers' (default 1). */
  readonly weight?: number | undefined
  /** The connections every engine process together may open on it (default 80). */
  readonly maxConnections?: number | undefined
}

/**
 * The PostgreSQL servers tenants are placed on, in the platform database's
 * `servers` table. A server's administrative URL (with its password) is read
 * by the engine alone: no view, log line or error shows it. The server of the
 * configuration (TENANT_DATABASE_URL, else DATABASE_URL's) is registered as
 * `default` when the engine starts and finds none, so a configuration with
 * one server keeps working as it did.
 */
export class ServerRegistry extends Context.Tag("tenant-engine/ServerRegistry")<ServerRegistry, {
  /** Registers a server after checking that the engine can connect to it and create databases and roles there. */
  readonly add: (name: string, url: string, options?: ServerOptions) => Effect.Effect<ServerView, InvalidServer | ServerAlreadyExists>
  readonly list: Effect.Effect<ReadonlyArray<ServerView>>
  /** Takes no new tenants from now on; its tenants stay until moved. */
  readonly drain: (name: string) => Effect.Effect<ServerView, ServerNotFound>
  /** Forgets a server that holds no tenant. */
  readonly remove: (name: string) => Effect.Effect<void, ServerNotFound | ServerInUse>
  /** Where to reach a server as its administrator. */
  readonly address: (name: string) => Effect.Effect<ServerAddress, ServerNotFound>
  /**
   * The server for a new tenant (or one that moves): the one asked for when
   * it is active; otherwise the active server with the fewest tenants per
   * unit of weight, other than `except`.
   */
  readonly choose: (requested: string | undefined, except?: string) => Effect.Effect<string, InvalidServer>
}>() {
  static readonly layer = Layer.effect(ServerRegistry, Effect.suspend(() => make))
}

interface ServerRow {
  readonly name: string
  readonly status: ServerStatus
  readonly weight: number
  readonly max_connections: number
  readonly tenants: number
}

const toView = (row: ServerRow) =>
  new ServerView({
    name: row.name,
    status: row.status,
    weight: row.weight,
    maxConnections: row.max_connections,
    tenants: row.tenants
  }, true)

const validName = Schema.is(ServerName)

/** The URL's server answers as a role that may create databases and roles; the reason when it does not. */
const checkServer = (url: string) =>
  Effect.tryPromise({
    try: async () => {
      const client = new Pg.Client({
        connectionString: url,
        connectionTimeoutMillis: 5_000,
        application_name: "tenant-engine/servers"
      })
      try {
        await client.connect()
        const { rows } = await client.query<{ rolsuper: boolean; rolcreatedb: boolean; rolcreaterole: boolean }>(
          "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user"
        )
        const role = rows[0]
        return role !== undefined && (role.rolsuper || (role.rolcreatedb && role.rolcreaterole))
          ? undefined
          : "its role may not create databases and roles"
      } finally {
        await client.end().catch(() => undefined)
      }
    },
    // pg's messages name the host and the user, never the password.
    catch: (cause) => `it cannot be reached: ${messageOf(cause)}`
  }).pipe(Effect.merge)

/** Drops the engine's own template and shared databases and roles on a server that holds no tenant any more. */
const dropEngineObjects = (url: string, names: ReturnType<typeof serverObjectNames>) =>
  Effect.tryPromise({
    try: async () => {
      const client = new Pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000, application_name: "tenant-engine/servers" })
      try {
        await client.connect()
        for (const database of [names.template, names.shared]) {
          await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(database)} WITH (FORCE)`)
        }
        for (const role of [names.gateway, names.appRole]) {
          await client.query(`DROP ROLE IF EXISTS ${client.escapeIdentifier(role)}`)
        }
      } finally {
        await client.end().catch(() => undefined)
      }
    },
    catch: messageOf
  })

const make = Effect.gen(function*() {
  const platform = yield* PlatformDb
  const config = yield* TenancyConfig

  // The configured server, registered on first start (migration 0006 keeps a
  // row without URL for the tenants made before servers were registered).
  const configured = Redacted.value(config.adminUrl)
  const [registeredDefault] = yield* platform`
    INSERT INTO servers (name, admin_url, max_connections)
    VALUES (${DEFAULT_SERVER}, ${configured}, ${config.connectionBudget})
    ON CONFLICT (name) DO UPDATE SET admin_url = EXCLUDED.admin_url, max_connections = EXCLUDED.max_connections
    WHERE servers.admin_url IS NULL`.pipe(
    Effect.zipRight(platform<{ admin_url: string | null }>`SELECT admin_url FROM servers WHERE name = ${DEFAULT_SERVER}`),
    orDie
  )
  const registeredUrl = registeredDefault?.admin_url
  if (registeredUrl != null && registeredUrl !== configured) {
    const [was, now] = [serverOf(Redacted.make(registeredUrl)), serverOf(config.adminUrl)]
    if (was === now) {
      // Same server, other credentials (rotated): the configuration wins.
      yield* platform`UPDATE servers SET admin_url = ${configured} WHERE name = ${DEFAULT_SERVER}`.pipe(orDie)
    } else {
      yield* Effect.logWarning(
        `TENANT_DATABASE_URL names ${now}, but the default server is registered at ${was}: its tenants stay there`
      )
    }
  }

  const rows = (name?: string) =>
    platform<ServerRow>`
      SELECT s.name, s.status, s.weight, s.max_connections,
             (SELECT count(*)::int FROM tenants t WHERE t.db_server = s.name) AS tenants
      FROM servers s
      WHERE s.admin_url IS NOT NULL ${name === undefined ? platform`` : platform`AND s.name = ${name}`}
      ORDER BY s.created_at, s.name`.pipe(orDie)

  const view = (name: string) =>
    Effect.flatMap(rows(name), (found) =>
      found[0] !== undefined
        ? Effect.succeed(toView(found[0]))
        : new ServerNotFound({ message: `no server named ${JSON.stringify(name)}` }))

  const add = Effect.fn("ServerRegistry.add")(function*(name: string, url: string, options: ServerOptions = {}) {
    const weight = options.weight ?? 1
    const maxConnections = options.maxConnections ?? 80
    if (!validName(name)) {
      return yield* new InvalidServer({ message: `invalid server name ${JSON.stringify(name)}` })
    }
    if (!Number.isInteger(weight) || weight < 1) {
      return yield* new InvalidServer({ message: "a server's weight is a positive integer" })
    }
    if (!Number.isInteger(maxConnections) || maxConnections < 1) {
      return yield* new InvalidServer({ message: "a server's connections are a positive integer" })
    }
    let host: string
    try {
      if (!/^postgres(ql)?:$/.test(new URL(url).protocol)) throw new Error("not postgres")
      host = serverOf(Redacted.make(url))
    } catch {
      // The URL is not repeated: it may hold a password.
      return yield* new InvalidServer({ message: "a server's URL is a postgres:// or postgresql:// URL" })
    }
    const registered = yield* platform<{ name: string; admin_url: string }>`
      SELECT name, admin_url FROM servers WHERE admin_url IS NOT NULL`.pipe(orDie)
    if (registered.some((row) => row.name === name)) {
      return yield* new ServerAlreadyExists({ message: `a server named ${name} is registered` })
    }
    const twin = registered.find((row) => serverOf(Redacted.make(row.admin_url)) === host)
    if (twin !== undefined) {
      return yield* new InvalidServer({ message: `that server is registered already, as ${twin.name}` })
    }
    const problem = yield* checkServer(url)
    if (problem !== undefined) return yield* new InvalidServer({ message: `server ${name} cannot be used: ${problem}` })
    yield* platform`
      INSERT INTO servers (name, admin_url, weight, max_connections)
      VALUES (${name}, ${url}, ${weight}, ${maxConnections})`.pipe(
      Effect.catchIf(
        (e) => sqlState(e) === UNIQUE_VIOLATION,
        () => new ServerAlreadyExists({ message: `a server named ${name} is registered` })
      ),
      Effect.catchTag("SqlError", Effect.die)
    )
    return yield* Effect.orDie(view(name))
  })

  const drain = Effect.fn("ServerRegistry.drain")(function*(name: string) {
    yield* platform`UPDATE servers SET status = 'draining' WHERE name = ${name} AND admin_url IS NOT NULL`.pipe(orDie)
    return yield* view(name)
  })

  const remove = Effect.fn("ServerRegistry.remove")(function*(name: string) {
    yield* view(name)
    // The foreign key from tenants decides, also against a tenant placed there meanwhile.
    const removed = yield* platform<{ admin_url: string }>`DELETE FROM servers WHERE name = ${name} RETURNING admin_url`.pipe(
      Effect.catchIf(
        (e) => sqlState(e) === FOREIGN_KEY_VIOLATION,
        () => new ServerInUse({ message: `server ${name} holds tenants: move them to another server first` })
      ),
      Effect.catchTag("SqlError", Effect.die)
    )
    const server = removed[0]
    if (server === undefined) return yield* new ServerNotFound({ message: `no server named ${JSON.stringify(name)}` })
    // What the engine made there for itself goes too; a server that cannot be reached keeps it (said in the log).
    yield* dropEngineObjects(server.admin_url, serverObjectNames(config.databasePrefix)).pipe(
      Effect.catchAll((problem) =>
        Effect.logWarning(`server ${name} is removed, but its template and shared databases stay there: ${problem}`)
      )
    )
  })

  const address = (name: string) =>
    platform<{ admin_url: string }>`SELECT admin_url FROM servers WHERE name = ${name} AND admin_url IS NOT NULL`.pipe(
      orDie,
      Effect.flatMap((found) =>
        found[0] !== undefined
          ? Effect.succeed<ServerAddress>({ name, url: Redacted.make(found[0].admin_url) })
          : new ServerNotFound({ message: `no server named ${JSON.stringify(name)}` })
      )
    )

  const choose = (requested: string | undefined, except?: string) =>
    Effect.gen(function*() {
      if (requested !== undefined) {
        const found = yield* rows(requested)
        const server = found[0]
        if (server === undefined) return yield* new InvalidServer({ message: `no server named ${JSON.stringify(requested)}` })
        if (server.status !== "active") {
          return yield* new InvalidServer({ message: `server ${requested} is draining: it takes no new tenants` })
        }
        return server.name
      }
      const active = (yield* rows()).filter((server) => server.status === "active" && server.name !== except)
      if (active.length === 0) {
        return yield* new InvalidServer({
          message: except === undefined ? "no server takes new tenants: every one is draining" : "no other server takes tenants"
        })
      }
      return active.reduce((best, server) => server.tenants / server.weight < best.tenants / best.weight ? server : best).name
    })

  return ServerRegistry.of({
    add,
    list: Effect.map(rows(), (found) => found.map(toView)),
    drain,
    remove,
    address,
    choose
  })
})
