/**
 * The framework floor: what the engine's HTTP stack costs with nothing in it.
 * One HttpApi endpoint, GET /v1/me, served by @effect/platform-node exactly as
 * the engine serves its API (HttpApiBuilder.serve on NodeHttpServer, tracing
 * off), answering a constant body of the /v1/me shape through its success
 * schema. No authentication, no middleware, no database.
 *
 * No server built on this stack can answer GET /v1/me faster than this one, so
 * its req/s next to the raw baseline's says how much of the engine/raw gap
 * belongs to the stack rather than to the engine.
 *
 *   PORT=... npx tsx bench/floor-server.ts
 */
import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiGroup } from "@effect/platform"
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { Effect, Layer, Logger, LogLevel } from "effect"
import { createServer } from "node:http"
import { MeResponse } from "../src/http/Api.js"
import { withoutTracing } from "../src/http/HttpLive.js"
import { Account, Principal } from "../src/auth/UserWithAccount.js"
import { Tenant } from "../src/tenancy/Tenant.js"

const createdAt = new Date("2026-01-01T00:00:00.000Z")
const me: typeof MeResponse.Type = {
  principal: new Principal({
    kind: "user",
    issuer: "http://127.0.0.1/issuer",
    subject: "floor",
    scopes: ["notes:read", "notes:write"]
  }),
  account: new Account({ id: "00000000-0000-4000-8000-000000000000", tenantId: "floor", kind: "user", createdAt }),
  tenant: new Tenant({ id: "floor", name: "Floor", status: "active", createdAt })
}

class Api extends HttpApi.make("floor").add(
  HttpApiGroup.make("me").add(HttpApiEndpoint.get("me", "/v1/me").addSuccess(MeResponse))
) {}

const Handlers = HttpApiBuilder.group(Api, "me", (handlers) => handlers.handle("me", () => Effect.succeed(me)))

const port = Number(process.env["PORT"] ?? "3200")

HttpApiBuilder.serve().pipe(
  Layer.provide(HttpApiBuilder.api(Api).pipe(Layer.provide(Handlers))),
  Layer.provide(NodeHttpServer.layer(createServer, { port, host: "127.0.0.1" })),
  withoutTracing,
  Layer.provide(Logger.minimumLogLevel(LogLevel.Warning)),
  Layer.launch,
  NodeRuntime.runMain
)

console.log(`floor server listening on http://127.0.0.1:${port}`)
