/**
 * The stack floor: what the engine's stack costs with nothing of the engine in
 * it. Three HttpApi endpoints served by @effect/platform-node exactly as the
 * engine serves its API (HttpApiBuilder on NodeHttpServer, tracing off),
 * answering through the engine's own response schemas:
 *
 * - GET /v1/me: a constant body of the /v1/me shape.
 * - GET /v1/notes?limit=N: a page of notes read with the engine's SQL through
 *   @effect/sql-pg, one PgClient per tenant database (pool of TENANT_POOL_MAX,
 *   logged in as the tenant's role, as the engine does), the tenants taken in
 *   turn. Placements are read once at start from the platform database
 *   (DATABASE_URL); without it the notes endpoints answer 500.
 * - POST /v1/notes: the body read and decoded by HttpApi with the engine's
 *   NewNote schema (title 1..200 characters, body 0..10,000), inserted with
 *   the engine's SQL into the next tenant's notes table, 201 with the Note.
 *
 * No authentication, no middleware, no tenant look-up, no per-request context:
 * no server built on this stack can answer these faster, so the floor's req/s
 * next to the raw baseline's says how much of the engine/raw gap belongs to
 * the stack (HttpApi, @effect/sql-pg) rather than to the engine.
 *
 *   PORT=... DATABASE_URL=... npx tsx bench/floor-server.ts
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiGroup } from "@effect/platform"
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import type { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Logger, LogLevel, Redacted, Schema } from "effect"
import { createServer } from "node:http"
import Pg from "pg"
import { Account, Principal } from "../src/auth/UserWithAccount.js"
import { MeResponse } from "../src/http/Api.js"
import { withoutTracing } from "../src/http/HttpLive.js"
import { cursorAfter, NewNote, Note, NotePage } from "../src/notes/Note.js"
import { NOTE_COLUMNS, type NoteRow, toNote } from "../src/notes/NoteRepo.js"
import { Tenant } from "../src/tenancy/Tenant.js"
import { tenantLogins } from "./lib/tenantLogins.js"

const createdAt = new Date("2026-01-01T00:00:00.000Z")
const me: typeof MeResponse.Type = {
  principal: new Principal({
    kind: "user",
    issuer: "http://127.0.0.1/issuer",
    subject: "floor",
    scopes: ["notes:read", "notes:write"]
  }),
  account: new Account({
    id: "00000000-0000-4000-8000-000000000000",
    tenantId: "floor",
    kind: "user",
    displayName: "Floor",
    createdAt
  }),
  tenant: new Tenant({ id: "floor", name: "Floor", status: "active", createdAt })
}

class Api extends HttpApi.make("floor").add(
  HttpApiGroup.make("floor")
    .add(HttpApiEndpoint.get("me", "/v1/me").addSuccess(MeResponse))
    .add(
      HttpApiEndpoint.get("notes", "/v1/notes")
        .setUrlParams(Schema.Struct({ limit: Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 100)) }))
        .addSuccess(NotePage)
    )
    .add(HttpApiEndpoint.post("create", "/v1/notes").setPayload(NewNote).addSuccess(Note, { status: 201 }))
) {}

const port = Number(process.env["PORT"] ?? "3200")
const platformUrl = process.env["DATABASE_URL"]
const poolMax = Number(process.env["TENANT_POOL_MAX"] ?? "4")

/** Each active database tenant's database URL, logged in as its role (read with plain pg, once). */
const tenantUrls = Effect.promise(async () => {
  if (platformUrl === undefined) return []
  const platform = new Pg.Client({ connectionString: platformUrl })
  await platform.connect()
  try {
    // Database tenants only: schema tenants have no login of their own (the engine reaches them through its shared pool).
    return (await tenantLogins(platform)).map((login) => login.url)
  } finally {
    await platform.end()
  }
})

/** One PgClient per tenant database, made before the server listens. */
const tenantClients = Effect.flatMap(
  tenantUrls,
  (urls) =>
    Effect.forEach(urls, (url) =>
      // The engine's and the raw baseline's idle timeout: pg's default of 10 s would
      // close the pools between the warm-up and the measured run.
      PgClient.make({ url: Redacted.make(url), maxConnections: poolMax, idleTimeout: "30 seconds" }))
)

const handlersFor = (clients: ReadonlyArray<SqlClient.SqlClient>) => {
  const tenants = clients.map((sql) => ({ sql, columns: sql.literal(NOTE_COLUMNS) }))
  let next = 0
  /** The tenants in turn (none without DATABASE_URL). */
  const nextTenant = () => tenants[next++ % tenants.length]
  const noTenants = Effect.dieMessage("no tenant databases: DATABASE_URL is not set")
  return HttpApiBuilder.group(Api, "floor", (handlers) =>
    handlers
      .handle("me", () => Effect.succeed(me))
      .handle("notes", ({ urlParams: { limit } }) => {
        const tenant = nextTenant()
        if (tenant === undefined) return noTenants
        const { columns, sql } = tenant
        return sql<NoteRow>`SELECT ${columns} FROM notes ORDER BY notes.created_at DESC, notes.id DESC LIMIT ${
          limit + 1
        }`.pipe(
          Effect.orDie,
          Effect.map((rows) => {
            const items = rows.slice(0, limit).map(toNote)
            const last = items[items.length - 1]
            return { items, nextCursor: rows.length > limit && last ? cursorAfter(last) : null }
          })
        )
      })
      .handle("create", ({ payload: { body, title } }) => {
        const tenant = nextTenant()
        if (tenant === undefined) return noTenants
        const { columns, sql } = tenant
        // The engine's INSERT (NoteRepo), created_by the one account the floor has.
        return sql<NoteRow>`INSERT INTO notes (title, body, created_by) VALUES (${title}, ${body}, ${me.account.id}) RETURNING ${columns}`
          .pipe(Effect.orDie, Effect.map((rows) => toNote(rows[0]!)))
      }))
}

Effect.gen(function*() {
  const clients = yield* tenantClients
  const server = HttpApiBuilder.serve().pipe(
    Layer.provide(HttpApiBuilder.api(Api).pipe(Layer.provide(handlersFor(clients)))),
    Layer.provide(NodeHttpServer.layer(createServer, { port, host: "127.0.0.1" })),
    withoutTracing
  )
  yield* Layer.build(server)
  console.log(`floor server listening on http://127.0.0.1:${port} (${clients.length} tenant databases)`)
  return yield* Effect.never
}).pipe(
  Effect.scoped,
  Effect.provide(Reactivity.layer),
  Effect.provide(Logger.minimumLogLevel(LogLevel.Warning)),
  NodeRuntime.runMain
)
