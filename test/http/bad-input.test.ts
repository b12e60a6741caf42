import { Bodies, bodyOf } from "../bodies.js"
import { expect, layer } from "@effect/vitest"
import { Effect, Either } from "effect"
import { Traffic } from "../../src/http/Traffic.js"
import { TestIssuer } from "../../src/testing/TestIssuer.js"
import {
  adminToken,
  allNotes,
  createNote,
  del,
  eventually,
  expectError,
  get,
  makeTenant,
  patch,
  platform,
  type Reply,
  send,
  sendOrHangUp,
  userToken
} from "./support.js"

/** Bad input gets 400 bad_request (413, 415 for bodies) and writes nothing. */

const expectBadRequest = (reply: Reply, what: string) => {
  expect(reply.status, `${what}: ${reply.text}`).toBe(400)
  expectError(reply, 400, "bad_request")
}

const title200 = "t".repeat(200)
const body10k = "b".repeat(10_000)

layer(platform(), { excludeTestServices: true })("bad input over HTTP", (it) => {
  it.effect("POST /v1/notes: wrong types, bad lengths, unknown fields, NUL and malformed JSON are 400; nothing is written", () =>
    Effect.gen(function*() {
      yield* makeTenant("bad-create")
      const token = yield* userToken("una", "bad-create")
      const payloads: ReadonlyArray<readonly [string, unknown]> = [
        ["a numeric title", { title: 42, body: "" }],
        ["a null title", { title: null, body: "" }],
        ["an array body", { title: "t", body: ["b"] }],
        ["a numeric body", { title: "t", body: 7 }],
        ["no title", { body: "b" }],
        ["no body", { title: "t" }],
        ["an empty title", { title: "", body: "b" }],
        ["a title of 201 characters", { title: "t".repeat(201), body: "" }],
        ["a title of 201 code points", { title: "😀".repeat(201), body: "" }],
        ["a body of 10,001 characters", { title: "t", body: "b".repeat(10_001) }],
        ["an unknown field", { title: "t", body: "b", pinned: true }],
        ["a client-chosen id", { id: "00000000-0000-4000-8000-000000000000", title: "t", body: "b" }],
        ["a client-chosen author", { title: "t", body: "b", createdBy: "someone" }],
        ["a NUL in the title", { title: "a\u0000b", body: "" }],
        ["a NUL in the body", { title: "t", body: "x\u0000" }],
        ["an array", [{ title: "t", body: "b" }]],
        ["a string", "title"],
        ["null", null]
      ]
      for (const [what, json] of payloads) {
        expectBadRequest(yield* send("POST", "/v1/notes", { token, body: JSON.stringify(json), headers: { "content-type": "application/json" } }), what)
      }
      // The NUL as the JSON escape, exactly as a client would send it.
      expectBadRequest(
        yield* send("POST", "/v1/notes", {
          token,
          body: `{"title":"nul\\u0000here","body":""}`,
          headers: { "content-type": "application/json" }
        }),
        "an escaped NUL"
      )
      const raw: ReadonlyArray<readonly [string, string]> = [
        ["truncated JSON", `{"title":"t","body":`],
        ["not JSON", "title=t&body=b"],
        ["single quotes", `{'title':'t','body':'b'}`],
        ["a trailing comma", `{"title":"t","body":"b",}`],
        ["an empty body", ""]
      ]
      for (const [what, body] of raw) {
        expectBadRequest(
          yield* send("POST", "/v1/notes", { token, body, headers: { "content-type": "application/json" } }),
          what
        )
      }
      expect(yield* allNotes(token)).toEqual([])

      // The bounds themselves are accepted.
      const longest = yield* createNote(token, title200, body10k)
      expect(longest.title).toBe(title200)
      expect(longest.body).toBe(body10k)
      const astral = yield* createNote(token, "😀".repeat(200), "")
      expect([...astral.title]).toHaveLength(200)
      expect((yield* allNotes(token)).map((n) => n.id).sort()).toEqual([longest.id, astral.id].sort())
    }))

  it.effect("PATCH /v1/notes/{id}: bad payloads are 400 and the note is unchanged", () =>
    Effect.gen(function*() {
      yield* makeTenant("bad-patch")
      const token = yield* userToken("vic", "bad-patch")
      const note = yield* createNote(token, "original", "kept")
      const payloads: ReadonlyArray<readonly [string, unknown]> = [
        ["a numeric title", { title: 1 }],
        ["a null title", { title: null }],
        ["an empty title", { title: "" }],
        ["a title of 201 characters", { title: "t".repeat(201) }],
        ["a body of 10,001 characters", { body: "b".repeat(10_001) }],
        ["an unknown field", { title: "new", color: "red" }],
        ["a changed id", { id: "00000000-0000-4000-8000-000000000000" }],
        ["a changed author", { createdBy: "someone" }],
        ["a NUL in the title", { title: "new\u0000" }],
        ["an array", [{ title: "new" }]]
      ]
      for (const [what, json] of payloads) {
        expectBadRequest(yield* patch(`/v1/notes/${note.id}`, token, json), what)
      }
      expectBadRequest(
        yield* send("PATCH", `/v1/notes/${note.id}`, { token, body: `{"title":`, headers: { "content-type": "application/json" } }),
        "truncated JSON"
      )
      expect((yield* get(`/v1/notes/${note.id}`, token)).body).toEqual(note)
    }))

  it.effect("a note id that is not a UUID is 400 on get, patch and delete", () =>
    Effect.gen(function*() {
      yield* makeTenant("bad-ids")
      const token = yield* userToken("walt", "bad-ids")
      const note = yield* createNote(token, "stays")
      for (const id of ["not-a-uuid", "1", "00000000-0000-4000-8000-00000000000", `${note.id}x`, "%00", "' OR 1=1 --"]) {
        const path = `/v1/notes/${encodeURIComponent(id)}`
        expectBadRequest(yield* get(path, token), `GET ${id}`)
        expectBadRequest(yield* patch(path, token, { title: "changed" }), `PATCH ${id}`)
        expectBadRequest(yield* del(path, token), `DELETE ${id}`)
      }
      expect(yield* allNotes(token)).toEqual([note])
    }))

  it.effect("path ids of any length are 400 (the router would match no parameter over 100 characters)", () =>
    Effect.gen(function*() {
      yield* makeTenant("long-ids")
      const token = yield* userToken("wanda", "long-ids")
      const admin = yield* adminToken
      const note = yield* createNote(token, "stays")
      for (const length of [101, 1_000, 8_000]) {
        const id = "a".repeat(length)
        expectBadRequest(yield* get(`/v1/notes/${id}`, token), `GET a note id of ${length}`)
        expectBadRequest(yield* patch(`/v1/notes/${id}`, token, { title: "changed" }), `PATCH a note id of ${length}`)
        expectBadRequest(yield* del(`/v1/notes/${id}`, token), `DELETE a note id of ${length}`)
        expectBadRequest(yield* get(`/v1/admin/tenants/${id}`, admin), `GET a tenant id of ${length}`)
        expectBadRequest(yield* del(`/v1/admin/tenants/${id}/clients/x`, admin), `DELETE a client of tenant id of ${length}`)
      }
      expect(yield* allNotes(token)).toEqual([note])
    }))

  it.effect("limit outside 1..100 or not an integer, and a tampered cursor, are 400", () =>
    Effect.gen(function*() {
      yield* makeTenant("bad-pages")
      const token = yield* userToken("xena", "bad-pages")
      for (let i = 0; i < 3; i++) yield* createNote(token, `n${i}`)
      for (const limit of ["0", "101", "-1", "abc", "1.5", "", "1e2x", "9999999999999999999"]) {
        expectBadRequest(yield* get(`/v1/notes?limit=${encodeURIComponent(limit)}`, token), `limit=${limit}`)
      }
      const first = yield* get("/v1/notes?limit=1", token)
      const cursor = bodyOf(first, Bodies.notes).nextCursor!
      expect(cursor).toEqual(expect.any(String))
      const decoded = Buffer.from(cursor, "base64url").toString("utf8")
      const tampered = [
        cursor.slice(0, -2),
        cursor + "!",
        "not-a-cursor",
        Buffer.from("[1,2]").toString("base64url"),
        Buffer.from(decoded.replace(/"[0-9a-f-]{36}"/, "\"x'; DROP TABLE notes; --\"")).toString("base64url"),
        Buffer.from(JSON.stringify(["99999-01-01T00:00:00.000Z", "00000000-0000-4000-8000-000000000000"])).toString("base64url"),
        Buffer.from(JSON.stringify(["yesterday", "00000000-0000-4000-8000-000000000000"])).toString("base64url")
      ]
      for (const bad of tampered) {
        const reply = yield* get(`/v1/notes?cursor=${encodeURIComponent(bad)}`, token)
        expectBadRequest(reply, `cursor ${bad}`)
      }
      // Still all there, and the real cursor works.
      expect(yield* allNotes(token)).toHaveLength(3)
      const second = yield* get(`/v1/notes?limit=1&cursor=${encodeURIComponent(cursor)}`, token)
      expect(second.status).toBe(200)
      expect(bodyOf(second, Bodies.notes).items[0]!.id).not.toBe(bodyOf(first, Bodies.notes).items[0]!.id)
    }))

  it.effect("bodies over 1 MiB are refused with 413 and nothing is written", () =>
    Effect.gen(function*() {
      yield* makeTenant("big-bodies")
      const token = yield* userToken("yuri", "big-bodies")
      const huge = JSON.stringify({ title: "big", body: "x".repeat(1024 * 1024 + 16) })
      const announced = yield* send("POST", "/v1/notes", { token, body: huge, headers: { "content-type": "application/json" } })
      expectError(announced, 413, "payload_too_large")
      const admin = yield* adminToken
      const bigTenant = JSON.stringify({ id: "big-tenant", name: "n".repeat(2 * 1024 * 1024) })
      expectError(
        yield* send("POST", "/v1/admin/tenants", { token: admin, body: bigTenant, headers: { "content-type": "application/json" } }),
        413,
        "payload_too_large"
      )
      // Just under the limit is read (and then judged by the schema).
      const under = JSON.stringify({ title: "big", body: "x".repeat(1024 * 1024 - 64) })
      expectBadRequest(
        yield* send("POST", "/v1/notes", { token, body: under, headers: { "content-type": "application/json" } }),
        "a body of 1 MiB - 64 bytes"
      )
      expect(yield* allNotes(token)).toEqual([])
      expect(bodyOf(yield* get("/v1/admin/tenants", admin), Bodies.tenants).items.map((t) => t.id)).not.toContain("big-tenant")
    }))

  it.effect("a chunked body over 1 MiB is cut off (413 or a closed connection), writes nothing, and its request ends", () =>
    Effect.gen(function*() {
      yield* makeTenant("chunked")
      const token = yield* userToken("yves", "chunked")
      const huge = JSON.stringify({ title: "big", body: "x".repeat(2 * 1024 * 1024) })
      // Without a Content-Length the size is known only while reading; the
      // platform's reader then destroys the connection (no 413 can be sent).
      const outcome = yield* Effect.either(sendOrHangUp("POST", "/v1/notes", {
        token,
        body: huge,
        chunked: true,
        headers: { "content-type": "application/json" }
      }))
      if (Either.isRight(outcome)) expectError(outcome.right, 413, "payload_too_large")
      // The request must not stay in flight: a graceful shutdown would wait for it.
      const traffic = yield* Traffic
      yield* eventually("the cut-off request to end", Effect.sync(() => traffic.inFlight === 0), "10 seconds")
      expect(yield* allNotes(token)).toEqual([])
      // Small chunked bodies are fine.
      const small = yield* send("POST", "/v1/notes", {
        token,
        body: JSON.stringify({ title: "chunked", body: "ok" }),
        chunked: true,
        headers: { "content-type": "application/json" }
      })
      expect(small.status, small.text).toBe(201)
    }))

  it.effect("text/plain and form bodies are refused with 415; nothing is written", () =>
    Effect.gen(function*() {
      yield* makeTenant("media")
      const token = yield* userToken("zoe", "media")
      const note = yield* createNote(token, "original")
      const json = JSON.stringify({ title: "t", body: "b" })
      const types = [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        // Not parsed as JSON by the router: refused rather than misread.
        "application/vnd.api+json",
        "text/plain; note=application/json"
      ]
      for (const type of types) {
        const created = yield* send("POST", "/v1/notes", { token, body: json, headers: { "content-type": type } })
        expectError(created, 415, "unsupported_media_type")
        const patched = yield* send("PATCH", `/v1/notes/${note.id}`, {
          token,
          body: JSON.stringify({ title: "changed" }),
          headers: { "content-type": type }
        })
        expectError(patched, 415, "unsupported_media_type")
      }
      // application/json with parameters is fine.
      const withCharset = yield* send("POST", "/v1/notes", {
        token,
        body: json,
        headers: { "content-type": "application/json; charset=utf-8" }
      })
      expect(withCharset.status, withCharset.text).toBe(201)
      const notes = yield* allNotes(token)
      expect(notes.map((n) => n.id).sort()).toEqual([note.id, bodyOf(withCharset, Bodies.note).id].sort())
      expect(notes.find((n) => n.id === note.id)?.title).toBe("original")
    }))

  it.effect("admin payloads: bad JSON, unknown fields and wrong types are 400 and create nothing", () =>
    Effect.gen(function*() {
      yield* makeTenant("admin-input")
      const admin = yield* adminToken
      const cases: ReadonlyArray<readonly [string, string, unknown]> = [
        ["POST", "/v1/admin/tenants", { id: ["x"], name: "X" }],
        ["POST", "/v1/admin/tenants", { id: "withnul", name: "a\u0000b" }],
        ["POST", "/v1/admin/tenants", { id: "toolong", name: "n".repeat(201) }],
        ["POST", "/v1/admin/tenants/admin-input/clients", { clientId: 1, displayName: "One" }],
        ["POST", "/v1/admin/tenants/admin-input/clients", { clientId: "c\u0000", displayName: "Nul" }],
        ["POST", "/v1/admin/tenants/admin-input/clients", { clientId: "c", displayName: "C", disabled: true }],
        ["POST", "/v1/admin/tenants/admin-input/domains", { domain: 5 }],
        ["POST", "/v1/admin/tenants/admin-input/domains", { domain: "a.example", tenantId: "other" }],
        ["PATCH", "/v1/admin/tenants/admin-input", { status: "SUSPENDED" }]
      ]
      for (const [method, path, json] of cases) {
        expectBadRequest(yield* send(method, path, { token: admin, json }), `${method} ${path} ${JSON.stringify(json)}`)
      }
      expectBadRequest(
        yield* send("POST", "/v1/admin/tenants", { token: admin, body: "{", headers: { "content-type": "application/json" } }),
        "truncated JSON"
      )
      const tenants = bodyOf(yield* get("/v1/admin/tenants", admin), Bodies.tenants).items.map((t) => t.id)
      expect(tenants).not.toContain("withnul")
      expect(tenants).not.toContain("toolong")
      expect((yield* get("/v1/admin/tenants/admin-input/clients", admin)).body).toEqual({ items: [] })
      expect((yield* get("/v1/admin/tenants/admin-input/domains", admin)).body).toEqual({ items: [] })
      expect(bodyOf(yield* get("/v1/admin/tenants", admin), Bodies.tenants).items).toContainEqual(
        expect.objectContaining({ id: "admin-input", status: "active" })
      )
      // A user token that names no real tenant is still refused after all that.
      const issuer = yield* TestIssuer
      expect((yield* get("/v1/me", yield* issuer.user("nobody", { tenant: "withnul" }))).status).toBe(403)
    }))
})
