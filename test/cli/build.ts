import { execFile } from "node:child_process"
import { join, resolve } from "node:path"

/**
 * The tests that spawn the programs run the build in dist/, as operators do.
 * It is built (when missing or stale) once per test process, before the first
 * child: `node bin/build.mjs --if-stale` takes a lock, so test files starting
 * together build it once and the others find it fresh.
 */

export const repositoryRoot = resolve(import.meta.dirname, "../..")

/** The compiled entry points the children run (no staleness check in between: sources edited during a run do not rebuild under the tests' feet). */
export const builtCli = join(repositoryRoot, "dist", "src", "cli", "main.js")
export const builtServer = join(repositoryRoot, "dist", "src", "main.js")

let building: Promise<void> | undefined

export const buildOnce = (): Promise<void> =>
  (building ??= new Promise<void>((done, fail) => {
    execFile(
      process.execPath,
      [join(repositoryRoot, "bin", "build.mjs"), "--if-stale"],
      { cwd: repositoryRoot, timeout: 300_000 },
      (error, _stdout, stderr) => (error ? fail(new Error(`the build failed:\n${stderr}`)) : done())
    )
  }))
