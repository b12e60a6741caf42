import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { checkResponse, type ObservedResponse, type OpenApiDocument } from "./openapi.js"
import { get, platform } from "./support.js"

/**
 * /openapi.json declares what the server sends, and the checker every HTTP
 * suite runs its replies through (support.ts) catches what it does not:
 * bodies as the old wire had them, undeclared statuses, missing headers.
 */

const json = { "content-type": "application/json" }
const reply = (
  method: string,
  path: string,
  status: number,
  body: unknown,
  headers: ObservedResponse["headers"] = json
): ObservedResponse => ({ method, path, status, headers, text: body === undefined ? "" : JSON.stringify(body) })

const BEARER = { ...json, "www-authenticate": `Bearer realm="platform"` }

layer(platform(), { excludeTestServices: true })("the OpenAPI document", (it) => {
  const document = Effect.map(get("/openapi.json"), (r) => r.body as OpenApiDocument)

  it.effect("declares the wire's error bodies: no _tag, no HttpApiDecodeError, the headers errors carry", () =>
    Effect.gen(function*() {
      const doc = yield* document
      const text = JSON.stringify(doc)
      expect(text).not.toContain("_tag")
      expect(text).not.toContain("HttpApiDecodeError")
      expect(doc.components?.schemas?.["TenantUnavailable"]).toEqual({
        type: "object",
        required: ["error", "message"],
        properties: { error: { type: "string", enum: ["tenant_unavailable"] }, message: { type: "string" } },
        additionalProperties: false
      })
      const notes = doc.paths["/v1/notes/{id}"]!["get"]!.responses
      // Every route can answer bad input, body limits and defects; a tenant route 401/403/503 with their headers.
      expect(Object.keys(notes).sort()).toEqual(["200", "400", "401", "403", "404", "413", "415", "500", "503"])
      expect(notes["400"]!.content!["application/json"]!.schema).toEqual({
        anyOf: [{ $ref: "#/components/schemas/BadRequest" }, { $ref: "#/components/schemas/NoteValidationError" }]
      })
      expect(notes["401"]!.headers).toEqual({ "WWW-Authenticate": { required: true, schema: { type: "string" } } })
      expect(notes["403"]!.headers?.["WWW-Authenticate"]).toMatchObject({ required: false })
      expect(notes["503"]!.headers).toEqual({ "Retry-After": { required: true, schema: { type: "string" } } })
      expect(doc.components?.schemas?.["InternalError"]).toMatchObject({ required: ["error", "message", "requestId"] })
      expect(doc.components?.schemas?.["ServiceUnavailable"]).toEqual({
        type: "object",
        required: ["error", "message"],
        properties: { error: { type: "string", enum: ["service_unavailable"] }, message: { type: "string" } },
        additionalProperties: false
      })
      // The platform database not answering: any route may answer 503 service_unavailable, with Retry-After.
      const serviceUnavailable = { $ref: "#/components/schemas/ServiceUnavailable" }
      for (const [path, operations] of Object.entries(doc.paths)) {
        for (const [method, operation] of Object.entries(operations)) {
          expect(Object.keys(operation.responses), `${method} ${path}`).toEqual(
            expect.arrayContaining(["413", "415", "500", "503"])
          )
          const unavailable = operation.responses["503"]!
          const schema = unavailable.content!["application/json"]!.schema as { anyOf?: ReadonlyArray<unknown> }
          expect(schema.anyOf ?? [schema], `${method} ${path}`).toContainEqual(serviceUnavailable)
          expect(unavailable.headers?.["Retry-After"], `${method} ${path}`).toBeDefined()
        }
      }
      expect(doc.paths["/v1/me"]!["get"]!.responses["503"]!.headers).toEqual({
        "Retry-After": { required: true, schema: { type: "string" } }
      })
    }))

  it.effect("the checker refuses what the old wire sent and what is not declared, and accepts what is", () =>
    Effect.gen(function*() {
      const doc = yield* document
      const check = (observed: ObservedResponse) => checkResponse(doc, observed)
      const missing = { error: "missing_token", message: "no Authorization header" }
      expect(check(reply("GET", "/v1/me", 401, missing, BEARER))).toEqual([])
      // What PlatformMiddleware used to leave in the document: _tag, and retryAfterSeconds in the body.
      expect(check(reply("GET", "/v1/me", 401, { ...missing, _tag: "MissingToken" }, BEARER)).join()).toMatch(
        /_tag is not declared/
      )
      expect(
        check(reply("GET", "/v1/notes?limit=2", 503, {
          error: "tenant_unavailable",
          message: "busy",
          retryAfterSeconds: 1
        }, { ...json, "retry-after": "1" })).join()
      ).toMatch(/retryAfterSeconds is not declared/)
      // The challenge and Retry-After are required where every error of the status carries them.
      expect(check(reply("GET", "/v1/me", 401, missing)).join()).toMatch(/WWW-Authenticate is required/)
      expect(check(reply("GET", "/v1/notes", 503, { error: "tenant_unavailable", message: "busy" })).join()).toMatch(
        /Retry-After is required/
      )
      expect(check(reply("GET", "/v1/me", 503, { error: "service_unavailable", message: "later" })).join()).toMatch(
        /Retry-After is required/
      )
      expect(check(reply("GET", "/v1/me", 503, { error: "service_unavailable", message: "later" }, { ...json, "retry-after": "2" })))
        .toEqual([])
      // A status the route does not declare, a code the status does not have, a wrong type, a body where none is declared.
      expect(check(reply("GET", "/v1/me", 404, { error: "not_found", message: "x" })).join()).toMatch(/status not declared/)
      expect(check(reply("GET", "/v1/me", 403, { error: "not_found", message: "x" })).join()).toMatch(/is not one of/)
      expect(check(reply("GET", "/healthz", 200, { status: "fine" })).join()).toMatch(/is not one of/)
      expect(check(reply("DELETE", "/v1/notes/1", 204, { error: "x" })).join()).toMatch(/a body where none is declared/)
      expect(check(reply("GET", "/healthz", 200, { status: "ok" }, { "content-type": "text/plain" })).join()).toMatch(
        /content type/
      )
      expect(check(reply("GET", "/v1/notes", 200, { items: [{ id: 1 }], nextCursor: null })).join()).toMatch(
        /items\[0\]\.id: 1 is not string/
      )
      // Routes the document has no operation for are not checked: an unknown path, or method.
      expect(check(reply("GET", "/v1/nowhere", 404, { error: "not_found", message: "no such route" }))).toEqual([])
      expect(check(reply("PUT", "/v1/notes", 404, { error: "not_found", message: "no such route" }))).toEqual([])
    }))
})
