#!/usr/bin/env node
// The operator CLI as an installed command: the build in dist/, built first
// when it is missing or older than the sources (bin/build.mjs).
import { ensureBuilt } from "./build.mjs"

await ensureBuilt()
await import("../dist/src/cli/main.js")
