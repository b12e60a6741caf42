/**
 * Server child processes: started with a given environment, ready when an
 * HTTP path answers 200, stopped with SIGTERM (SIGKILL if they linger). Their
 * output goes to a log file; the last lines are kept for error messages.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { createWriteStream, type WriteStream } from "node:fs"

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
}

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
  const child = spawn(process.execPath, [...options.nodeArgs], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] })
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
