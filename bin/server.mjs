#!/usr/bin/env node
// `npm start`: the server from the build in dist/, built first when it is
// missing or older than the sources (bin/build.mjs).
import { ensureBuilt } from "./build.mjs"

await ensureBuilt()
await import("../dist/src/main.js")
