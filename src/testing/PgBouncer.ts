import { Data, Effect, Option, type Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { chown, mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir, userInfo } from "node:os"
import { delimiter, join } from "node:path"
import Pg from "pg"
import { freePort } from "../platform/EmbeddedPostgres.js"

export class PgBouncerError extends Data.TaggedError("PgBouncerError")<{
  readonly message: string
}> {}

export interface PgBouncerOptions {
  /**
   * A URL on the server behind the pooler. Its user and password are the ones
   * clients give the pooler and the pooler gives the server.
   */
  readonly targetUrl: string
  /** Server connections per (database, user) pair; default 10. */
  readonly poolSize?: number
  /** Client connections the pooler accepts in all; default 200. */
  readonly maxClientConnections?: number
}

export interface PgBouncer {
  /** The target URL with the pooler's host and port: same user, password and database. */
  readonly url: string
  readonly port: number
}

/**
 * Where Debian's `pgbouncer` package puts the binary (/usr/sbin, which a
 * non-root PATH often lacks), or any `pgbouncer` on the PATH; undefined when it
 * is not installed. Synchronous so a test file can decide at load time whether
 * its pooler tests run (`it.effect.skipIf(pgBouncerBinary() === undefined)`).
 */
export const pgBouncerBinary = (): string | undefined => {
  const folders = [...(process.env["PATH"] ?? "").split(delimiter), "/usr/sbin", "/usr/local/sbin"]
  for (const folder of folders) {
    if (folder === "") continue
    const candidate = join(folder, "pgbouncer")
    if (existsSync(candidate)) return candidate
  }
  return undefined
}

/** The message a test skipped for want of the binary gives. */
export const PGBOUNCER_MISSING = "pgbouncer is not installed (apt-get install pgbouncer; .ci/run installs it): skipped"

/**
 * A PgBouncer in transaction mode in front of one PostgreSQL server, for
 * tests: its own temporary folder, configuration and free port on 127.0.0.1,
 * every database of the server reachable through it (a wildcard entry). It is
 * ready (it answered a query) when this succeeds; when the scope closes the
 * process is stopped and the folder removed. `Option.none()` when the binary
 * is not installed, so callers can skip rather than fail.
 *
 * Authentication: the user and password of the target URL go into the
 * pooler's auth_file in plain text, which serves both sides: with a password
 * (the embedded server uses scram-sha-256) clients log in to the pooler with
 * SCRAM and the pooler logs in to the server with SCRAM; without one (a
 * trust-auth server) the pooler trusts its clients as the server does.
 *
 * PgBouncer refuses to run as root: as root it is told to switch (`-u`) to the
 * `postgres` user (which the embedded server runs as), or `nobody`, which
 * owns the folder.
 */
export const startPgBouncer = (
  options: PgBouncerOptions
): Effect.Effect<Option.Option<PgBouncer>, PgBouncerError, Scope.Scope> =>
  Effect.gen(function*() {
    const binary = pgBouncerBinary()
    if (binary === undefined) return Option.none()

    const target = new URL(options.targetUrl)
    const user = decodeURIComponent(target.username) || "postgres"
    const password = decodeURIComponent(target.password)
    const port = yield* Effect.promise(freePort)
    const runAs = userInfo().uid === 0 ? yield* attempt("choosing a user to run as", unprivilegedUser) : undefined

    const directory = yield* Effect.acquireRelease(
      attempt("creating its folder", () => mkdtemp(join(tmpdir(), "tenant-engine-pgbouncer-"))),
      (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
    )
    const configFile = join(directory, "pgbouncer.ini")
    const authFile = join(directory, "users.txt")
    const config = [
      "[databases]",
      // Every database name a client asks for, on the target server.
      `* = host=${target.hostname.replace(/^\[|\]$/g, "")} port=${target.port || "5432"}`,
      "",
      "[pgbouncer]",
      "listen_addr = 127.0.0.1",
      `listen_port = ${port}`,
      // No Unix socket: a fixed socket folder would be shared by parallel poolers.
      "unix_socket_dir =",
      `auth_type = ${password === "" ? "trust" : "scram-sha-256"}`,
      `auth_file = ${authFile}`,
      // Other roles (a shared database's gateway, tenant roles) log in with
      // their own passwords, which the pooler looks up on the server as this user.
      `auth_user = ${user}`,
      "pool_mode = transaction",
      `max_client_conn = ${options.maxClientConnections ?? 200}`,
      `default_pool_size = ${options.poolSize ?? 10}`,
      // node-postgres may send these in its start-up packet; PgBouncer refuses
      // unknown start-up parameters unless told to ignore them.
      "ignore_startup_parameters = extra_float_digits,options",
      "server_tls_sslmode = disable",
      "log_connections = 0",
      "log_disconnections = 0",
      ""
    ].join("\n")
    yield* attempt("writing its configuration", async () => {
      await writeFile(configFile, config, { mode: 0o600 })
      await writeFile(authFile, `${quoted(user)} ${quoted(password)}\n`, { mode: 0o600 })
      if (runAs !== undefined) {
        for (const path of [directory, configFile, authFile]) await chown(path, runAs.uid, runAs.gid)
      }
    })

    // Its last lines, for the message when it does not start.
    const output: Array<string> = []
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const args = runAs === undefined ? [configFile] : ["-u", runAs.name, configFile]
        const pooler = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] })
        const keep = (chunk: Buffer) => {
          output.push(...chunk.toString("utf8").split("\n").filter((line) => line !== ""))
          if (output.length > 30) output.splice(0, output.length - 30)
        }
        pooler.stdout?.on("data", keep)
        pooler.stderr?.on("data", keep)
        // An error spawning (ENOENT, EACCES) shows in the message when it never answers.
        pooler.on("error", (error) => output.push(String(error)))
        return pooler
      }),
      (pooler) => Effect.promise(() => stop(pooler))
    )

    const url = new URL(options.targetUrl)
    url.hostname = "127.0.0.1"
    url.port = String(port)
    const bouncerUrl = url.toString()
    yield* Effect.tryPromise({
      try: () => waitUntilAnswering(child, bouncerUrl, 15_000),
      catch: (cause) =>
        new PgBouncerError({
          message: `pgbouncer did not accept connections on 127.0.0.1:${port}: ${
            cause instanceof Error ? cause.message : String(cause)
          }\n${output.slice(-8).join("\n")}`
        })
    })
    return Option.some({ url: bouncerUrl, port })
  })

const attempt = <A>(what: string, f: () => Promise<A>) =>
  Effect.tryPromise({
    try: f,
    catch: (cause) =>
      new PgBouncerError({ message: `pgbouncer, ${what}: ${cause instanceof Error ? cause.message : String(cause)}` })
  })

/** auth_file quoting: double quotes around, a double quote inside doubled. */
const quoted = (text: string) => `"${text.replaceAll("\"", "\"\"")}"`

/** `postgres` when it exists (the embedded server runs as it), else `nobody`. */
const unprivilegedUser = async () => {
  const passwd = await readFile("/etc/passwd", "utf8")
  const entries = passwd.split("\n").map((line) => line.split(":"))
  for (const name of ["postgres", "nobody"]) {
    const entry = entries.find((fields) => fields[0] === name)
    if (entry !== undefined) return { name, uid: Number(entry[2]), gid: Number(entry[3]) }
  }
  throw new Error("running as root, and neither a 'postgres' nor a 'nobody' user exists to run pgbouncer as")
}

/**
 * Tries a query every 100 ms until one succeeds, the process exits, or the
 * time is up. Plain timers, not Effect's Clock: under @effect/vitest's
 * TestClock an Effect schedule would never wake up.
 */
const waitUntilAnswering = async (child: ChildProcess, url: string, timeoutMillis: number) => {
  const deadline = Date.now() + timeoutMillis
  for (;;) {
    if (!running(child)) throw new Error("pgbouncer exited")
    try {
      return await answers(url)
    } catch (error) {
      if (Date.now() > deadline) throw error
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
}

/** One query through a fresh connection: the pooler reached the server. */
const answers = async (url: string) => {
  const client = new Pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 })
  await client.connect()
  try {
    await client.query("SELECT 1")
  } finally {
    await client.end()
  }
}

/** Spawned and not exited yet (no pid: it could not be spawned at all). */
const running = (child: ChildProcess) => child.pid !== undefined && child.exitCode === null && child.signalCode === null

/** SIGTERM (PgBouncer's immediate shutdown), SIGKILL if it is still there after 5 seconds. */
const stop = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (!running(child)) return resolve()
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000)
    child.once("exit", () => {
      clearTimeout(timer)
      resolve()
    })
    child.kill("SIGTERM")
  })
