/**
 * Server child processes: started with a given environment, ready when an
 * HTTP path answers 200, stopped with SIGTERM (SIGKILL if they linger). Their
 * output goes to a log file; the last lines are kept for error messages.
 * Optionally with bench/lib/probe.ts preloaded, read with readProbe().
 */
import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { createWriteStream, mkdtempSync, readFileSync, rmSync, type WriteStream } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { ProbeReading } from "./probe.js"

export const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "")

export interface ServerProcess {
  readonly name: string
  readonly pid: number
  readonly port: number
  readonly baseUrl: string
  readonly logFile: string
  /** Output lines seen so far that look like warnings or errors. */
  readonly warnings: () => ReadonlyArray<string>
  readonly tail: () => string
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code or signal. */
  readonly stop: (graceMs?: number) => Promise<string>
  readonly exited: () => boolean
  /** A fresh reading of the preloaded probe (SIGUSR2); undefined when the server runs without it. */
  readonly readProbe: () => Promise<ProbeReading | undefined>
}

const children = new Set<ChildProcess>()

/** Kills every child still running (for a failing or interrupted run). */
export const killAllChildren = () => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
  }
}

export { freePort } from "../../src/platform/EmbeddedPostgres.js"

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export interface StartOptions {
  readonly name: string
  /** Arguments to node (`process.execPath`), e.g. ["--import", "tsx", "src/main.ts"]. */
  readonly nodeArgs: ReadonlyArray<string>
  readonly env: Readonly<Record<string, string>>
  readonly port: number
  readonly logFile: string
  readonly readyPath?: string
  readonly readyTimeoutMs?: number
  /**
   * Preload bench/lib/probe.ts (before the script, the last of nodeArgs, which
   * must come after `--import tsx`), writing its readings to this file; with
   * `countInstructions`, Effect's instructions are counted too (slow).
   */
  readonly probe?: { readonly file: string; readonly countInstructions?: boolean }
}

const PROBE_MODULE = new URL("probe.ts", import.meta.url).href

/**
 * Node runs the server directly (no npx or tsx wrapper process), so the pid
 * measured is the server's own.
 */
export const startServerProcess = async (options: StartOptions): Promise<ServerProcess> => {
  const log: WriteStream = createWriteStream(options.logFile, { flags: "a" })
  const tailLines: Array<string> = []
  const warnings: Array<string> = []
  const env: Record<string, string> = {}
  // Only what a server needs from our environment: no stray PORT, DATABASE_URL or NODE_OPTIONS.
  for (const name of ["PATH", "HOME", "LANG", "TZ", "TMPDIR"]) {
    const value = process.env[name]
    if (value !== undefined) env[name] = value
  }
  Object.assign(env, options.env)
  const args = [...options.nodeArgs]
  const probe = options.probe
  if (probe !== undefined) {
    rmSync(probe.file, { force: true })
    args.splice(args.length - 1, 0, "--import", PROBE_MODULE)
    env["BENCH_PROBE_FILE"] = probe.file
    if (probe.countInstructions === true) env["BENCH_COUNT_INSTRUCTIONS"] = "1"
  }
  const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] })
  children.add(child)
  const onData = (chunk: Buffer) => {
    log.write(chunk)
    for (const line of chunk.toString("utf8").split("\n")) {
      if (line.trim() === "") continue
      tailLines.push(line)
      if (tailLines.length > 40) tailLines.shift()
      if (/warn|error|fatal/i.test(line)) warnings.push(line)
    }
  }
  child.stdout!.on("data", onData)
  child.stderr!.on("data", onData)
  let exitDescription: string | undefined
  const exit = new Promise<string>((resolve) =>
    child.once("exit", (code, signal) => {
      children.delete(child)
      exitDescription = signal !== null ? `signal ${signal}` : `code ${code}`
      log.end()
      resolve(exitDescription)
    })
  )
  const baseUrl = `http://127.0.0.1:${options.port}`
  const tail = () => tailLines.join("\n")
  const deadline = Date.now() + (options.readyTimeoutMs ?? 90_000)
  for (;;) {
    if (exitDescription !== undefined) {
      throw new Error(`${options.name} exited (${exitDescription}) before it was ready:\n${tail()}`)
    }
    try {
      const response = await fetch(baseUrl + (options.readyPath ?? "/readyz"))
      await response.arrayBuffer()
      if (response.status === 200) break
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL")
      throw new Error(`${options.name} was not ready within ${options.readyTimeoutMs ?? 90_000} ms:\n${tail()}`)
    }
    await sleep(150)
  }
  return {
    name: options.name,
    pid: child.pid!,
    port: options.port,
    baseUrl,
    logFile: options.logFile,
    warnings: () => warnings,
    tail,
    exited: () => exitDescription !== undefined,
    readProbe: async () => {
      if (probe === undefined) return undefined
      const read = () => {
        try {
          return JSON.parse(readFileSync(probe.file, "utf8")) as ProbeReading
        } catch {
          return undefined // none yet
        }
      }
      const seq = read()?.seq ?? 0
      child.kill("SIGUSR2")
      const deadline = Date.now() + 5000
      for (;;) {
        const reading = read()
        if (reading !== undefined && reading.seq > seq) return reading
        if (Date.now() > deadline) throw new Error(`${options.name}: no probe reading in ${probe.file} within 5 s`)
        await sleep(10)
      }
    },
    stop: async (graceMs = 20_000) => {
      if (exitDescription !== undefined) return exitDescription
      child.kill("SIGTERM")
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs)
      const result = await exit
      clearTimeout(timer)
      return result
    }
  }
}

/**
 * A bench run's namespace (databases and roles under `<prefix><hex>`), its
 * temporary folder, and the cleanup that runs the steps pushed onto
 * `cleanups` in reverse, once, also on SIGINT or SIGTERM; child processes
 * are killed whatever happens.
 */
export const benchRun = (prefix: string, log: (message: string) => void) => {
  const ns = `${prefix}${randomBytes(4).toString("hex")}`
  const tmp = mkdtempSync(join(tmpdir(), `bench-${ns}-`))
  const cleanups: Array<() => Promise<unknown>> = []
  let cleaned = false
  const cleanup = async () => {
    if (cleaned) return
    cleaned = true
    killAllChildren()
    for (const f of cleanups.reverse()) {
      try {
        await f()
      } catch (error) {
        console.error("cleanup step failed:", error)
      }
    }
    rmSync(tmp, { recursive: true, force: true })
  }
  process.on("exit", killAllChildren)
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      log(`${signal}: cleaning up`)
      void cleanup().finally(() => process.exit(130))
    })
  }
  return { ns, tmp, cleanups, cleanup }
}
