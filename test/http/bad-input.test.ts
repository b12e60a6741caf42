import { Bodies, bodyOf } from "../bodies.js"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as Net from "node:net"
import { Traffic } from "../../src/http/Traffic.js"
import { TestIssuer } from "../../src/testing/TestIssuer.js"
import {
  adminToken,
  allNotes,
  createNote,
  del,
  eventually,
  expectDocumented,
  expectError,
  get,
  makeTenant,
  patch,
  platform,
  type Reply,
  send,
  serverUrl,
  userToken
} from "./support.js"

/** Bad input gets 400 bad_request (413, 415 for bodies) and writes nothing. */

const expectBadRequest = (reply: Reply, what: string) => {
  expect(reply.status, `${what}: ${reply.text}`).toBe(400)
  expectError(reply, 400, "bad_request")
}

/** `buffer` in pieces of `size` bytes. */
const splitInto = (buffer: Buffer, size: number): ReadonlyArray<Buffer> => {
  const pieces: Array<Buffer> = []
  for (let at = 0; at < buffer.length; at += size) pieces.push(buffer.subarray(at, at + size))
  return pieces
}

interface Exchange {
  readonly status: number
  readonly headers: Record<string, string>
  readonly text: string
  /** The server ended the connection (FIN). */
  readonly ended: boolean
  /** A socket error (ECONNRESET: the server reset the connection rather than closing it). */
  readonly error: string | undefined
  /** Pieces of the body sent before the answer came. */
  readonly piecesSent: number
}

/**
 * A POST over a plain TCP socket, its body sent piece by piece (10 ms apart),
 * chunked or with its length declared, as a client that stops sending once
 * it has an answer (or, with `sendAll`, one that sends everything anyway and
 * only then closes); resolves when the connection closes, with what came
 * back and how the connection ended. One response, with a Content-Length.
 */
const rawPost = (
  path: string,
  token: string,
  pieces: ReadonlyArray<Buffer>,
  chunked: boolean,
  options: { readonly sendAll?: boolean } = {}
) =>
  Effect.flatMap(serverUrl, (base) =>
    Effect.async<Exchange>((resume) => {
      const url = new URL(base)
      // Half-open allowed: the client decides when to stop sending, not the server's FIN.
      const socket = Net.connect({ port: Number(url.port), host: url.hostname, allowHalfOpen: true })
      const received: Array<Buffer> = []
      let ended = false
      let error: string | undefined
      let answered = false
      let piecesSent = 0
      const total = pieces.reduce((sum, piece) => sum + piece.length, 0)
      socket.on("data", (data) => {
        received.push(data)
        answered = Buffer.concat(received).includes("\r\n\r\n")
      })
      let writing = true
      socket.on("end", () => {
        ended = true
        if (!writing) socket.end()
      })
      socket.on("error", (e: NodeJS.ErrnoException) => (error = e.code ?? e.message))
      socket.on("close", () => {
        const raw = Buffer.concat(received).toString("utf8")
        const split = raw.indexOf("\r\n\r\n")
        const [statusLine = "", ...lines] = raw.slice(0, split).split("\r\n")
        const headers: Record<string, string> = {}
        for (const line of lines) {
          const colon = line.indexOf(":")
          headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
        }
        resume(Effect.succeed({
          status: Number(statusLine.split(" ")[1]),
          headers,
          text: raw.slice(split + 4),
          ended,
          error,
          piecesSent
        }))
      })
      socket.on("connect", async () => {
        socket.write(
          `POST ${path} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${token}\r\n` +
            `Content-Type: application/json\r\n` +
            (chunked ? "Transfer-Encoding: chunked\r\n" : `Content-Length: ${total}\r\n`) +
            "Connection: close\r\n\r\n"
        )
        for (const piece of pieces) {
          if ((answered && !options.sendAll) || socket.destroyed) break
          socket.write(chunked ? Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from("\r\n")]) : piece)
          piecesSent++
          await new Promise((resolve) => setTimeout(resolve, 10))
        }
        if (chunked && (!answered || options.sendAll) && !socket.destroyed) socket.write("0\r\n\r\n")
        writing = false
        if (ended) socket.end()
      })
      return Effect.sync(() => socket.destroy())
    }))

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

  it.effect("over a raw socket: a body over 1 MiB is 413 whether its length is declared or it is chunked; the connection ends cleanly; nothing is written", () =>
    Effect.gen(function*() {
      yield* makeTenant("chunked")
      const token = yield* userToken("yves", "chunked")
      const before = (yield* allNotes(token)).length
      const note = (body: string) => JSON.stringify({ title: "big", body })
      const quarter = 256 * 1024
      const cases: ReadonlyArray<readonly [string, ReadonlyArray<Buffer>, boolean, number]> = [
        // Over the limit only with the fifth of eight chunks: answered no earlier (in fact once all are in: see BodyGuards).
        ["chunked, 8 × 256 KiB", splitInto(Buffer.from(note("x".repeat(8 * quarter - 40))), quarter), true, 5],
        ["chunked, one chunk of 2 MiB", [Buffer.from(note("x".repeat(2 * 1024 * 1024)))], true, 1],
        ["declared 2 MiB, sent in 8 pieces", splitInto(Buffer.from(note("x".repeat(8 * quarter - 40))), quarter), false, 0]
      ]
      for (const [what, chunks, chunked, atLeast] of cases) {
        const exchange = yield* rawPost("/v1/notes", token, chunks, chunked)
        console.log(`${what}: ${exchange.status} after ${exchange.piecesSent} of ${chunks.length} piece(s) sent`)
        expect(exchange.piecesSent).toBeGreaterThanOrEqual(atLeast)
        expect(exchange.error, `${what}: the connection ended with an error`).toBeUndefined()
        expect(exchange.ended, `${what}: the server ended the connection`).toBe(true)
        expect(exchange.status, `${what}: ${exchange.text}`).toBe(413)
        expect(exchange.headers["connection"]).toBe("close")
        expect(JSON.parse(exchange.text)).toEqual({ error: "payload_too_large", message: expect.any(String) })
        yield* expectDocumented({ method: "POST", path: "/v1/notes", status: exchange.status, headers: exchange.headers, text: exchange.text })
      }
      // A client that does not read the answer before it has sent everything: it still gets it, and no reset.
      const stubborn = yield* rawPost("/v1/notes", token, splitInto(Buffer.from(note("x".repeat(8 * quarter - 40))), quarter), true, {
        sendAll: true
      })
      expect(stubborn.piecesSent).toBe(8)
      expect(stubborn.error).toBeUndefined()
      expect(stubborn.status, stubborn.text).toBe(413)
      expect(stubborn.ended).toBe(true)
      // Nothing was written, and no request stayed in flight (a graceful shutdown would wait for it).
      expect((yield* allNotes(token)).length).toBe(before)
      const traffic = yield* Traffic
      yield* eventually("the refused requests to end", Effect.sync(() => traffic.inFlight === 0), "10 seconds")

      // Within the limit, a chunked body is read in full, whatever its chunks cut
      // (here through a character of several bytes), and written once.
      const text = "héllo ✓ ".repeat(1000)
      const small = Buffer.from(JSON.stringify({ title: "chunked", body: text }))
      const created = yield* rawPost("/v1/notes", token, splitInto(small, 1001), true)
      expect(created.status, created.text).toBe(201)
      expect(created.error).toBeUndefined()
      expect(JSON.parse(created.text)).toMatchObject({ title: "chunked", body: text })
      const notes = yield* allNotes(token)
      expect(notes.length).toBe(before + 1)
      expect(notes[0]).toMatchObject({ title: "chunked", body: text })
      // Chunked and just under the limit: read, then judged by the schema (10,000 characters at most).
      const under = yield* rawPost("/v1/notes", token, splitInto(Buffer.from(note("x".repeat(1024 * 1024 - 64))), quarter), true)
      expect(under.status, under.text).toBe(400)
      expect((yield* allNotes(token)).length).toBe(before + 1)
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
