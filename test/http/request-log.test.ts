import { expect, layer } from "@effect/vitest"
import { Effect, HashMap, Layer, Logger, LogLevel } from "effect"
import { adminToken, breakAccountsTable, get, makeTenant, platform, userToken } from "./support.js"

/**
 * The access log: one line per request, carrying the request's id and what
 * authentication learned about the caller (log annotations of the request,
 * not state kept beside it).
 */

interface Line {
  readonly level: string
  readonly message: string
  readonly annotations: Record<string, unknown>
}
const lines: Array<Line> = []
const capture = Logger.add(Logger.make(({ annotations, logLevel, message }) => {
  lines.push({
    level: logLevel.label,
    message: String(Array.isArray(message) ? message[0] : message),
    annotations: Object.fromEntries(HashMap.toEntries(annotations))
  })
}))

/** The access line of the request with this id. */
const accessLine = (requestId: string) => {
  const found = lines.filter((line) => line.annotations["requestId"] === requestId && /^[A-Z]+ \//.test(line.message))
  expect(found, requestId).toHaveLength(1)
  return found[0]!
}

layer(platform({ logLevel: LogLevel.Info }).pipe(Layer.provide(capture)), { excludeTestServices: true })("request log", (it) => {
  it.effect("one line per request with its id, status and caller; nothing of one request in another's", () =>
    Effect.gen(function*() {
      yield* makeTenant("logged")
      const user = yield* get("/v1/notes?limit=5", yield* userToken("lou", "logged"), {
        headers: { "x-request-id": "log-user-1" }
      })
      expect(user.status).toBe(200)
      expect(accessLine("log-user-1")).toMatchObject({
        level: "INFO",
        message: expect.stringMatching(/^GET \/v1\/notes 200 \d+\.\dms$/),
        annotations: { requestId: "log-user-1", tenant: "logged", accountKind: "user" }
      })
      yield* get("/v1/admin/tenants", yield* adminToken, { headers: { "x-request-id": "log-admin-1" } })
      expect(accessLine("log-admin-1").annotations).toEqual({ requestId: "log-admin-1", accountKind: "admin" })
      const anonymous = yield* get("/v1/me", undefined, { headers: { "x-request-id": "log-anon-1" } })
      expect(anonymous.status).toBe(401)
      expect(accessLine("log-anon-1")).toMatchObject({
        message: expect.stringMatching(/^GET \/v1\/me 401 /),
        annotations: { requestId: "log-anon-1" }
      })
    }))

  it.effect("a defect: a warning access line and an error line with the cause, both under the request id of the 500", () =>
    Effect.gen(function*() {
      yield* makeTenant("logged-down")
      const token = yield* userToken("dot", "logged-down")
      yield* breakAccountsTable
      const reply = yield* get("/v1/me", token)
      expect(reply.status).toBe(500)
      const requestId = String(reply.headers["x-request-id"])
      expect(accessLine(requestId)).toMatchObject({ level: "WARN", message: expect.stringMatching(/^GET \/v1\/me 500 /) })
      expect(lines.filter((line) => line.annotations["requestId"] === requestId && line.level === "ERROR")).toEqual([
        expect.objectContaining({ message: "unexpected failure" })
      ])
    }).pipe(Effect.scoped))
})
