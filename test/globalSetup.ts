import { Effect, Exit, Redacted, Scope } from "effect"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type {} from "vitest"
import type { TestProject } from "vitest/node"
import { startEmbeddedPostgres } from "../src/platform/EmbeddedPostgres.js"

declare module "vitest" {
  export interface ProvidedContext {
    /** A superuser URL on the PostgreSQL the tests use. */
    databaseUrl: string
  }
}

/**
 * One PostgreSQL for the whole run: TEST_DATABASE_URL when set, otherwise an
 * embedded one in a temporary folder, removed afterwards.
 */
export default async function setup(project: TestProject) {
  const external = process.env["TEST_DATABASE_URL"]
  if (external) {
    project.provide("databaseUrl", external)
    return
  }
  const directory = await mkdtemp(join(tmpdir(), "tenant-engine-test-"))
  const scope = Effect.runSync(Scope.make())
  const server = await Effect.runPromise(
    startEmbeddedPostgres({ directory, ephemeral: true }).pipe(Scope.extend(scope))
  )
  project.provide("databaseUrl", Redacted.value(server.url))
  return async () => {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await rm(directory, { recursive: true, force: true })
  }
}
