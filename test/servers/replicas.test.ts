import { expect, layer } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import Pg from "pg"
import { inject } from "vitest"
import { withDatabase } from "../../src/db/DatabaseUrl.js"
import { freePort } from "../../src/platform/EmbeddedPostgres.js"
import { dropNamespace, makeNamespace } from "../../src/testing/TestDatabases.js"
import { TestIssuer } from "../../src/testing/TestIssuer.js"
import { buildOnce, builtServer, repositoryRoot } from "../cli/build.js"

/**
 * Two engine processes (the build, as operators run it) on one platform
 * database: what one changes is in effect in the other within a second, and
 * together they stay inside each server's connection allowance.
 */

const adminUrl = inject("databaseUrl")
const namespace = makeNamespace()
const platformUrl = Redacted.value(withDatabase(Redacted.make(adminUrl), `${namespace}_platform`))
const ALLOWANCE = 6

const query = <R extends Pg.QueryResultRow>(url: string, text: string, values: ReadonlyArray<unknown> = []) =>
  Effect.promise(async () => {
    const client = new Pg.Client({ connectionString: url })
    await client.connect()
    try {
      return (await client.query<R>(text, [...values])).rows
    } finally {
      await client.end()
    }
  })

interface Engine {
  readonly url: string
  readonly child: ChildProcess
  output: string
}

/** An engine process on the shared platform database; killed (SIGKILL unless it exited) when the scope closes. */
const engine = Effect.gen(function*() {
  const issuer = yield* TestIssuer
  const port = yield* Effect.promise(() => freePort())
  return yield* Effect.acquireRelease(
    Effect.async<Engine, Error>((resume) => {
      const child = spawn(process.execPath, [builtServer], {
        cwd: repositoryRoot,
        env: {
          PATH: process.env["PATH"] ?? "",
          DATABASE_URL: platformUrl,
          TENANT_DATABASE_URL: adminUrl,
          TENANT_DATABASE_PREFIX: `${namespace}_t_`,
          TENANT_CONNECTION_BUDGET: String(ALLOWANCE),
          TENANT_POOL_MAX: "1",
          TENANT_SHARED_POOL_MAX: "1",
          AUTH_ISSUER: issuer.issuer,
          PORT: String(port),
          LOG_FORMAT: "json"
        },
        stdio: ["ignore", "pipe", "pipe"]
      })
      const started: Engine = { url: `http://127.0.0.1:${port}`, child, output: "" }
      const timer = setTimeout(() => resume(Effect.fail(new Error(`not listening after 60 s:\n${started.output}`))), 60_000)
      const onData = (chunk: Buffer) => {
        started.output += chunk.toString()
        if (started.output.includes(`listening on http://127.0.0.1:${port}`)) {
          clearTimeout(timer)
          resume(Effect.succeed(started))
        }
      }
      child.stdout!.on("data", onData)
      child.stderr!.on("data", onData)
      child.once("exit", (code) => {
        clearTimeout(timer)
        resume(Effect.fail(new Error(`exited with ${code}:\n${started.output}`)))
      })
    }),
    ({ child }) =>
      Effect.promise(() =>
        new Promise<void>((done) => {
          if (child.exitCode !== null || child.signalCode !== null) return done()
          child.once("exit", () => done())
          child.kill("SIGKILL")
        })
      )
  )
})

const call = (base: string, method: string, path: string, token: string, body?: unknown) =>
  Effect.promise(async () => {
    const response = await fetch(base + path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {})
    })
    const text = await response.text()
    return { status: response.status, body: text === "" ? undefined : JSON.parse(text) as unknown }
  })

/** Milliseconds until `check` holds, trying every 10 ms for up to 5 s (fails past that). */
const within = (check: Effect.Effect<boolean>) =>
  Effect.gen(function*() {
    const start = Date.now()
    while (!(yield* check)) {
      if (Date.now() - start > 5_000) return yield* Effect.dieMessage("not within 5 s")
      yield* Effect.sleep("10 millis")
    }
    return Date.now() - start
  })

const Setup = Layer.mergeAll(
  TestIssuer.layer(),
  Layer.scopedDiscard(Effect.addFinalizer(() => dropNamespace(adminUrl, namespace))),
  Layer.effectDiscard(Effect.promise(buildOnce))
)

layer(Setup, { excludeTestServices: true, timeout: 180_000 })("two engine processes", (it) => {
  it.scoped("a change made through one is in effect in the other within 1 s; together they stay inside the allowance", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const a = yield* engine
      const b = yield* engine
      const admin = yield* issuer.user("operator", { scopes: ["platform:admin"] })
      expect((yield* call(a.url, "POST", "/v1/admin/tenants", admin, { id: "shared-co", name: "Shared" })).status).toBe(201)
      expect((yield* call(a.url, "POST", "/v1/admin/tenants/shared-co/clients", admin, { clientId: "shared-job", displayName: "J" })).status)
        .toBe(201)
      const machine = yield* issuer.machine("shared-job", { scopes: ["notes:read", "notes:write"] })
      const user = yield* issuer.user("shared-user", { tenant: "shared-co", scopes: ["notes:read", "notes:write"] })
      // B knows them (cached) before the changes.
      expect((yield* call(b.url, "GET", "/v1/notes", machine)).status).toBe(200)
      expect((yield* call(b.url, "GET", "/v1/notes", user)).status).toBe(200)

      const times: Record<string, number> = {}
      expect((yield* call(a.url, "PATCH", "/v1/admin/tenants/shared-co", admin, { status: "suspended" })).status).toBe(200)
      times["suspend"] = yield* within(Effect.map(call(b.url, "GET", "/v1/notes", user), (r) => r.status === 403))
      expect((yield* call(a.url, "PATCH", "/v1/admin/tenants/shared-co", admin, { status: "active" })).status).toBe(200)
      times["resume"] = yield* within(Effect.map(call(b.url, "GET", "/v1/notes", user), (r) => r.status === 200))
      expect((yield* call(a.url, "DELETE", "/v1/admin/tenants/shared-co/clients/shared-job", admin)).status).toBe(204)
      times["client disabled"] = yield* within(Effect.map(call(b.url, "GET", "/v1/notes", machine), (r) => r.status === 403))
      for (const [change, millis] of Object.entries(times)) expect(millis, change).toBeLessThan(1_000)

      // Load on both over several tenants: their tenant connections together never pass the allowance.
      for (const id of ["load-a", "load-b", "load-c", "load-d", "load-e", "load-f", "load-g", "load-h"]) {
        expect((yield* call(a.url, "POST", "/v1/admin/tenants", admin, { id, name: id })).status).toBe(201)
      }
      const tokens = yield* Effect.forEach(
        ["load-a", "load-b", "load-c", "load-d", "load-e", "load-f", "load-g", "load-h"],
        (tenant) => issuer.user(`u-${tenant}`, { tenant, scopes: ["notes:read", "notes:write"] })
      )
      let most = 0
      let stop = false
      const sample = Effect.gen(function*() {
        while (!stop) {
          const [row] = yield* query<{ n: number }>(
            adminUrl,
            `SELECT count(*)::int AS n FROM pg_stat_activity
             WHERE starts_with(datname, $1) AND application_name NOT IN
               ('tenant-engine/provisioning', 'tenant-engine/template', 'tenant-engine/migrate', 'tenant-engine/move')`,
            [`${namespace}_t_`]
          )
          most = Math.max(most, row!.n)
          yield* Effect.sleep("20 millis")
        }
      })
      const sampling = yield* Effect.fork(sample)
      const statuses = yield* Effect.forEach(
        Array.from({ length: 160 }, (_, i) => i),
        (i) => Effect.map(call(i % 2 === 0 ? a.url : b.url, "GET", "/v1/notes", tokens[i % tokens.length]!), (r) => r.status),
        { concurrency: 16 }
      )
      stop = true
      yield* sampling.await
      expect(statuses.filter((status) => status !== 200 && status !== 503)).toEqual([])
      expect(statuses.filter((status) => status === 200).length).toBeGreaterThan(0)
      expect(most).toBeLessThanOrEqual(ALLOWANCE)
      const claims = yield* query<{ claims: Record<string, number> }>(platformUrl, "SELECT claims FROM engine_processes")
      expect(claims).toHaveLength(2)
      expect(claims.reduce((sum, row) => sum + (row.claims["default"] ?? 0), 0)).toBeLessThanOrEqual(ALLOWANCE)

      // B dies without a word: after 10 s of silence A takes its share.
      b.child.kill("SIGKILL")
      const regained = yield* Effect.gen(function*() {
        const start = Date.now()
        while (Date.now() - start < 20_000) {
          const rows = yield* query<{ claims: Record<string, number> }>(
            platformUrl,
            "SELECT claims FROM engine_processes WHERE seen_at > now() - interval '10 seconds'"
          )
          if (rows.length === 1 && (rows[0]!.claims["default"] ?? 0) === ALLOWANCE) return Date.now() - start
          yield* Effect.sleep("200 millis")
        }
        return -1
      })
      expect(regained).toBeGreaterThan(0)
      yield* Effect.log(`changes seen by the other process after ${JSON.stringify(times)} ms; at most ${most} tenant connections of ${ALLOWANCE}; share regained ${regained} ms after the other process died`)
    }))
})
