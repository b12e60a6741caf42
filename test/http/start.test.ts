import { type ChildProcess, execFile, spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { mkdtemp, readFile, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ConfigProvider, Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { readSettings } from "../../src/AppConfig.js"
import { freePort } from "../../src/platform/EmbeddedPostgres.js"
import { buildOnce, builtServer, repositoryRoot as root } from "../cli/build.js"

/**
 * `npm start` end to end: the real entry point as a child process, with
 * nothing configured but a data folder and a port, so it starts an embedded
 * PostgreSQL and the development issuer, seeds the demo tenant and prints
 * curl lines that must work as pasted.
 *
 * The child is `node dist/src/main.js` (what the start script runs once the
 * build is fresh) without npm in between: npm does not pass SIGTERM on to its
 * child. The build is made (if stale) once, before the first child.
 */

beforeAll(buildOnce, 300_000)

/** The environment of a user who configured nothing. */
const bareEnvironment = (extra: Record<string, string>) => {
  const env: Record<string, string> = {}
  for (const [name, value] of Object.entries(process.env)) {
    if (value === undefined) continue
    if (/^(DATABASE_URL|TENANT_|AUTH_|PORT$|HOST$|LOG_|PLATFORM_|DATA_DIR$|NODE_OPTIONS$|VITEST)/.test(name)) continue
    env[name] = value
  }
  return { ...env, ...extra }
}


const exitOf = (child: ChildProcess, withinMs: number) =>
  new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit, reject) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      return resolveExit({ code: child.exitCode, signal: child.signalCode })
    }
    const timer = setTimeout(() => reject(new Error(`no exit within ${withinMs} ms`)), withinMs)
    child.once("exit", (code, signal) => {
      clearTimeout(timer)
      resolveExit({ code, signal })
    })
  })

const shell = (command: string) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolveRun) => {
    execFile("sh", ["-c", command], { timeout: 15_000 }, (error, stdout, stderr) => {
      resolveRun({ code: error ? (typeof error.code === "number" ? error.code : 1) : 0, stdout, stderr })
    })
  })

const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
})

describe("npm start", () => {
  // Concurrent: the child processes overlap (the suite runs its files one at a time on 2 cores).
  it.concurrent("starts on an embedded PostgreSQL, the printed curl lines work, and SIGTERM exits 0", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "tenant-engine-start-"))
    const port = await freePort()
    const child = spawn(process.execPath, [builtServer], {
      cwd: root,
      env: bareEnvironment({ DATA_DIR: dataDir, PORT: String(port) }),
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()))
    child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()))
    const postmasterPid = join(dataDir, "postgres", "pg", "postmaster.pid")
    cleanups.push(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM")
        await exitOf(child, 15_000).catch(() => child.kill("SIGKILL"))
      }
      // A PostgreSQL left behind by a failed run is stopped (fast shutdown) before its folder goes.
      if (existsSync(postmasterPid)) {
        const pid = Number((await readFile(postmasterPid, "utf8")).split("\n")[0])
        if (Number.isInteger(pid) && pid > 0) {
          try {
            process.kill(pid, "SIGINT")
          } catch {
            // already gone
          }
        }
      }
      await rm(dataDir, { recursive: true, force: true })
    })

    await new Promise<void>((ready, fail) => {
      const timer = setTimeout(() => fail(new Error(`not listening after 120 s:\n${output}`)), 120_000)
      const check = () => {
        if (output.includes(`listening on http://127.0.0.1:${port}`)) {
          clearTimeout(timer)
          ready()
        }
      }
      child.stdout!.on("data", check)
      child.stderr!.on("data", check)
      child.once("exit", (code) => {
        clearTimeout(timer)
        fail(new Error(`exited with ${code} before listening:\n${output}`))
      })
      check()
    })

    expect(output).toMatch(/DEVELOPMENT issuer/)
    const curls = output.split("\n").filter((line) => line.startsWith("curl "))
    expect(curls).toHaveLength(4)
    const replies: Array<unknown> = []
    for (const line of curls) {
      const run = await shell(`${line} -w '\\n%{http_code}'`)
      expect(run.code, `${line}\n${run.stderr}`).toBe(0)
      const lines = run.stdout.trimEnd().split("\n")
      const status = Number(lines.pop())
      expect(status, `${line}\n${run.stdout}`).toBeGreaterThanOrEqual(200)
      expect(status, `${line}\n${run.stdout}`).toBeLessThan(300)
      replies.push(JSON.parse(lines.join("\n")))
    }
    const [me, created, list, tenants] = replies as [any, any, any, any]
    expect(me).toMatchObject({
      principal: { kind: "user", subject: "alice", scopes: ["notes:read", "notes:write"] },
      account: { tenantId: "acme", kind: "user" },
      tenant: { id: "acme", status: "active" }
    })
    expect(created).toMatchObject({ title: "Hello", body: "from the acme service" })
    expect(list.items).toContainEqual(created)
    expect(tenants.items).toContainEqual(expect.objectContaining({ id: "acme", name: "Acme Corporation", status: "active" }))
    const docs = await fetch(`http://127.0.0.1:${port}/docs`)
    expect(docs.status).toBe(200)
    await docs.arrayBuffer()

    child.kill("SIGTERM")
    const exit = await exitOf(child, 15_000)
    expect(exit, output).toEqual({ code: 0, signal: null })
    expect(output).toMatch(/stopped/)
    // The embedded PostgreSQL was stopped with it.
    expect(existsSync(postmasterPid)).toBe(false)
  }, 180_000)

  it.concurrent("a bad configuration value stops start-up with a non-zero exit and a message naming the variable", async () => {
    await Promise.all([
      expectRefused({ PORT: "abc" }, ["PORT"]),
      // Every bad value is named, not only the first.
      expectRefused({ LOG_FORMAT: "xml", LOG_LEVEL: "loud" }, ["LOG_FORMAT", "LOG_LEVEL"])
    ])
  })

  // A value refused by a validation rule (after withDefault, map or option)
  // carries no path, so each rule's message names its variable. In process,
  // through the same readSettings that main.ts runs.
  it("values refused by a validation rule name their variable too", async () => {
    const bad = { AUTH_ALGORITHMS: "HS256", TENANT_POOL_MAX: "0", DATABASE_URL: "mysql://localhost/db", TENANT_DATABASE_PREFIX: "Bad-Prefix" }
    for (const [name, value] of Object.entries(bad)) {
      const { problems } = await Effect.runPromise(
        readSettings.pipe(
          Effect.flip,
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map([[name, value]])))
        )
      )
      expect(problems.some((problem) => problem.startsWith(`${name}: `))).toBe(true)
    }
  })
})

/** Runs the entry point with the variables set; it must stop at once, naming each of `named`. */
const expectRefused = async (variables: Record<string, string>, named: ReadonlyArray<string>) => {
  const dataDir = await mkdtemp(join(tmpdir(), "tenant-engine-badconfig-"))
  try {
    const run = await new Promise<{ code: number | null; output: string }>((done) => {
      execFile(
        process.execPath,
        [builtServer],
        { cwd: root, env: bareEnvironment({ DATA_DIR: dataDir, ...variables }), timeout: 30_000 },
        (error, stdout, stderr) =>
          done({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, output: stdout + stderr })
      )
    })
    const what = JSON.stringify(variables)
    expect(run.code, `${what}\n${run.output}`).not.toBe(0)
    expect(run.code, `${what} was killed, not refused:\n${run.output}`).not.toBe(-1)
    expect(run.output, what).toMatch(/Invalid configuration/)
    for (const name of named) expect(run.output, what).toMatch(new RegExp(`^${name}: `, "m"))
    // It stopped before starting anything.
    expect(run.output, what).not.toMatch(/listening on|embedded PostgreSQL/)
    expect(existsSync(join(dataDir, "postgres"))).toBe(false)
  } finally {
    await rm(dataDir, { recursive: true, force: true })
  }
}
