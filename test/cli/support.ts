import { HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { type Console, Effect, type Exit, Layer, Logger, LogLevel } from "effect"
import { spawn } from "node:child_process"
import * as Http from "node:http"
import { join } from "node:path"
import { adminQuery } from "../tenancy/support.js"
import { inject } from "vitest"
import { AuthConfig } from "../../src/auth/AuthConfig.js"
import { DevIssuer } from "../../src/auth/DevIssuer.js"
import { HttpLive } from "../../src/http/HttpLive.js"
import { Traffic } from "../../src/http/Traffic.js"
import { PlatformLive } from "../../src/PlatformLive.js"
import { TenantMigrations } from "../../src/tenancy/TenantMigrations.js"
import { testConfig, type TestDatabasesOptions, testRoleSecret } from "../../src/testing/TestDatabases.js"
import { TestIssuer } from "../../src/testing/TestIssuer.js"
import { platformWith } from "../../src/PlatformLive.js"
import { buildOnce, builtCli, repositoryRoot } from "./build.js"

/**
 * Helpers for the CLI and fleet suites: the CLI as a child process on a
 * namespace of the test server, the platform in-process on the same
 * namespace (so that what a child does is seen by a running server), plain
 * HTTP over a socket, and console capture for in-process runs.
 */

export const adminUrl = inject("databaseUrl")
export { repositoryRoot }

/** A URL on the test server naming another database. */
export const urlOf = (database: string) => {
  const url = new URL(adminUrl)
  url.pathname = "/" + encodeURIComponent(database)
  return url.toString()
}

/** The names testConfig(options, namespace) gives: what a CLI child must be told to use the same ones. */
export const namesOf = (namespace: string) => ({
  platformDatabase: `${namespace}_platform`,
  tenantPrefix: `${namespace}_t_`
})

// --- the CLI as a child process ---

export interface CliResult {
  readonly args: ReadonlyArray<string>
  readonly code: number | null
  /** Set when the child was killed (by the timeout below, say). */
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  readonly millis: number
}

/**
 * The environment of an operator who set the platform database, the tenant
 * prefix and a data folder, and nothing else (no AUTH_ISSUER, so `token`
 * mints with the development issuer of that folder).
 */
export const cliEnvironment = (
  options: { readonly namespace: string; readonly dataDir: string },
  extra: Record<string, string> = {}
) => {
  const env: Record<string, string> = {}
  for (const [name, value] of Object.entries(process.env)) {
    if (value === undefined) continue
    if (/^(DATABASE_URL|TENANT_|AUTH_|PORT$|HOST$|LOG_|PLATFORM_|DATA_DIR$|NODE_OPTIONS$|VITEST|TEST_DATABASE_URL)/.test(name)) {
      continue
    }
    env[name] = value
  }
  const names = namesOf(options.namespace)
  return {
    ...env,
    DATABASE_URL: urlOf(names.platformDatabase),
    TENANT_DATABASE_PREFIX: names.tenantPrefix,
    // The secret testConfig gives the namespace: the child logs in as the same tenant roles.
    TENANT_ROLE_SECRET: testRoleSecret(options.namespace),
    DATA_DIR: options.dataDir,
    NO_COLOR: "1",
    ...extra
  }
}

/**
 * `node dist/src/cli/main.js ...args` (the build, made first if needed), stdin
 * closed (no TTY), killed after `timeoutMs` (a bound against hanging: a loaded
 * 2-core machine running a dozen of these at once takes seconds for each).
 */
export const runCli = async (
  args: ReadonlyArray<string>,
  env: Record<string, string>,
  timeoutMs = 150_000
): Promise<CliResult> => {
  await buildOnce()
  return new Promise((resolveRun, reject) => {
    const started = Date.now()
    const child = spawn(process.execPath, [builtCli, ...args], {
      cwd: repositoryRoot,
      env,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs)
    child.once("error", (error) => {
      clearTimeout(timer)
      reject(error)
    })
    child.once("close", (code, signal) => {
      clearTimeout(timer)
      // CLI_TEST_TIMES=1 prints how long each child took (the suite's time is theirs).
      if (process.env["CLI_TEST_TIMES"]) console.log(`${Date.now() - started} ms: ${args.join(" ")}`)
      resolveRun({ args, code, signal, stdout, stderr, millis: Date.now() - started })
    })
  })
}

export const cli = (args: ReadonlyArray<string>, env: Record<string, string>) =>
  Effect.promise(() => runCli(args, env))

/** What a failed command must look like: non-zero, nothing on stdout, one line on stderr. */
export const oneLineFailure = (result: CliResult) => {
  const lines = stripAnsi(result.stderr).trim().split("\n")
  return {
    failed: result.code !== 0 && result.code !== null,
    stdout: result.stdout.trim(),
    lines: lines.length,
    message: lines[0] ?? ""
  }
}

export const stripAnsi = (text: string) => text.replace(/\x1b\[[0-9;]*[A-Za-z]/g, "")

/** The payload of a JWT, decoded without verification (the header too). */
export const decodeJwt = (token: string) => {
  const parts = token.trim().split(".")
  if (parts.length !== 3) throw new Error(`not a JWT: ${token.slice(0, 40)}`)
  const part = (text: string): Record<string, unknown> => JSON.parse(Buffer.from(text, "base64url").toString("utf8"))
  return { header: part(parts[0]!), payload: part(parts[1]!) }
}

// --- console capture for in-process runs ---

export interface Captured<A, E> {
  readonly exit: Exit.Exit<A, E>
  readonly stdout: string
  readonly stderr: string
}

/** Runs an effect with Console.log and Console.error captured (not printed). */
export const captureConsole = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<Captured<A, E>, never, R> =>
  Effect.gen(function*() {
    const current = yield* Effect.console
    const out: Array<string> = []
    const err: Array<string> = []
    const text = (args: ReadonlyArray<unknown>) => args.map((a) => (typeof a === "string" ? a : String(a))).join(" ")
    const console: Console.Console = {
      ...current,
      log: (...args) => Effect.sync(() => void out.push(text(args))),
      info: (...args) => Effect.sync(() => void out.push(text(args))),
      error: (...args) => Effect.sync(() => void err.push(text(args))),
      warn: (...args) => Effect.sync(() => void err.push(text(args))),
      unsafe: {
        ...current.unsafe,
        log: (...args) => void out.push(text(args)),
        info: (...args) => void out.push(text(args)),
        error: (...args) => void err.push(text(args)),
        warn: (...args) => void err.push(text(args))
      }
    }
    const exit = yield* Effect.exit(Effect.withConsole(effect, console))
    return { exit, stdout: stripAnsi(out.join("\n")), stderr: stripAnsi(err.join("\n")) }
  })

// --- the platform in-process, on a namespace of our choosing ---

export interface ServerOptions extends Omit<TestDatabasesOptions, "adminUrl"> {
  readonly namespace: string
  /** Trust, besides the TestIssuer, the development issuer whose keys are in this folder (what `token` mints with). */
  readonly devIssuerDirectory?: string
  readonly migrations?: Layer.Layer<TenantMigrations>
  readonly auth?: Partial<AuthConfig["Type"]>
}

/**
 * The HTTP server and every platform service on an ephemeral port, in the
 * given namespace (dropped at the end), trusting a TestIssuer (and the
 * development issuer of a data folder, when given).
 */
export const serverOn = (options: ServerOptions) => {
  const auth = Layer.effect(
    AuthConfig,
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      if (options.devIssuerDirectory === undefined) return issuer.authConfig(options.auth)
      const dev = yield* Effect.provide(DevIssuer, DevIssuer.layer({ directory: options.devIssuerDirectory }))
      return issuer.authConfig({ ...options.auth, issuers: [issuer.trustedIssuer, dev.trustedIssuer] })
    })
  )
  return HttpLive.pipe(
    Layer.provideMerge(NodeHttpServer.layerTest),
    Layer.provideMerge(options.migrations === undefined ? PlatformLive : platformWith(options.migrations)),
    Layer.provideMerge(Traffic.layer),
    Layer.provideMerge(auth),
    Layer.provideMerge(TestIssuer.layer()),
    Layer.provideMerge(testConfig({ adminUrl, ...options }, options.namespace)),
    Layer.provide(Logger.minimumLogLevel(LogLevel.Warning))
  )
}

export const issuerDirectory = (dataDir: string) => join(dataDir, "issuer")

// --- HTTP over a socket ---

export interface Reply {
  readonly status: number
  readonly headers: Http.IncomingHttpHeaders
  readonly text: string
  readonly body: unknown
}

const serverUrl = Effect.flatMap(HttpServer.HttpServer, (server) =>
  server.address._tag === "TcpAddress"
    ? Effect.succeed(`http://127.0.0.1:${server.address.port}`)
    : Effect.dieMessage("the test server is not on TCP"))

/** One request on a connection of its own (no keep-alive). */
export const request = (method: string, path: string, options: { token?: string; json?: unknown } = {}) =>
  Effect.flatMap(serverUrl, (base) =>
    Effect.async<Reply>((resume) => {
      const headers: Http.OutgoingHttpHeaders = {}
      const body = options.json === undefined ? undefined : JSON.stringify(options.json)
      if (body !== undefined) {
        headers["content-type"] = "application/json"
        headers["content-length"] = Buffer.byteLength(body)
      }
      if (options.token !== undefined) headers["authorization"] = `Bearer ${options.token}`
      const req = Http.request(new URL(path, base), { method, headers, agent: false }, (response) => {
        const chunks: Array<Buffer> = []
        response.on("data", (chunk: Buffer) => chunks.push(chunk))
        response.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8")
          let parsed: unknown = undefined
          try {
            parsed = text === "" ? undefined : JSON.parse(text)
          } catch {
            parsed = undefined
          }
          resume(Effect.succeed({ status: response.statusCode ?? 0, headers: response.headers, text, body: parsed }))
        })
        response.on("error", (error) => resume(Effect.die(error)))
      })
      req.on("error", (error) => resume(Effect.die(error)))
      if (body !== undefined) req.write(body)
      req.end()
      return Effect.sync(() => req.destroy())
    }))

// --- looking at the server from outside ---

export { adminQuery }

export const databaseExists = (name: string) =>
  Effect.map(adminQuery("SELECT 1 FROM pg_database WHERE datname = $1", [name]), (rows) => rows.length === 1)

export const roleExists = (name: string) =>
  Effect.map(adminQuery("SELECT 1 FROM pg_roles WHERE rolname = $1", [name]), (rows) => rows.length === 1)
