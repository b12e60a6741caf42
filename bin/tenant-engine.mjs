#!/usr/bin/env node
// The operator CLI as an installed command: the build in dist/, built first
// when it is missing or older than the sources (bin/build.mjs).
import { ensureBuilt } from "./build.mjs"

try {
  await ensureBuilt()
} catch (error) {
  // What esbuild refused is already on stderr; this says what it means.
  process.stderr.write(`tenant-engine: dist/ is missing or stale and could not be built: ${error instanceof Error ? error.message : error}\n`)
  process.exit(1)
}
await import("../dist/src/cli/main.js")
