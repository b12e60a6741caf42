import { Bodies, bodyOf } from "../bodies.js"
import { expect, layer } from "@effect/vitest"
import { Effect, Layer, Logger, LogLevel, Schema } from "effect"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { TestIssuer } from "../../src/testing/TestIssuer.js"
import {
  adminQuery,
  adminToken,
  breakAccountsTable,
  countAccounts,
  createNote,
  del,
  eventually,
  expectError,
  get,
  insufficientScope,
  makeTenant,
  patch,
  platform,
  post,
  READ_WRITE,
  REALM,
  refusePlatformConnections,
  RFC3339,
  send,
  userToken,
  UUID
} from "./support.js"

/** The parts of the OpenAPI document the test reads. */
const OpenApiDocument = Schema.Struct({
  openapi: Schema.String,
  info: Schema.Unknown,
  paths: Schema.Record({ key: Schema.String, value: Schema.Record({ key: Schema.String, value: Schema.Unknown }) }),
  components: Schema.Struct({ securitySchemes: Schema.Record({ key: Schema.String, value: Schema.Unknown }) })
})

/** Every route of docs/API.md, success and error paths, as a client sees them. */

/** The server's error-level log lines, to tell client mistakes (not logged as errors) from failures (logged). */
const errorLogs: Array<string> = []
const captureErrors = Logger.add(Logger.make(({ logLevel, message }) => {
  if (LogLevel.greaterThanEqual(logLevel, LogLevel.Error)) {
    errorLogs.push(String(Array.isArray(message) ? message[0] : message))
  }
}))

layer(platform().pipe(Layer.provide(captureErrors)), { excludeTestServices: true })("routes", (it) => {
  it.effect("/healthz and /readyz answer without a token", () =>
    Effect.gen(function*() {
      const health = yield* get("/healthz")
      expect(health.status).toBe(200)
      expect(health.headers["content-type"]).toMatch(/^application\/json/)
      expect(health.body).toEqual({ status: "ok" })
      const ready = yield* get("/readyz")
      expect(ready.status).toBe(200)
      expect(ready.body).toEqual({ status: "ready" })
    }))

  it.effect("/v1/me of a user: principal, account and tenant in the contract's shapes", () =>
    Effect.gen(function*() {
      yield* makeTenant("me-user", "Me User Inc")
      const issuer = yield* TestIssuer
      const token = yield* issuer.user("alice", {
        tenant: "me-user",
        email: "alice@me-user.example",
        name: "Alice",
        scopes: ["notes:read"]
      })
      const reply = yield* get("/v1/me", token)
      expect(reply.status, reply.text).toBe(200)
      const { account, principal, tenant } = bodyOf(reply, Bodies.me)
      expect(Object.keys(bodyOf(reply, Bodies.object)).sort()).toEqual(["account", "principal", "tenant"])
      expect(principal).toEqual({
        kind: "user",
        issuer: issuer.issuer,
        subject: "alice",
        email: "alice@me-user.example",
        scopes: ["notes:read"]
      })
      expect(account).toEqual({
        id: expect.stringMatching(UUID),
        tenantId: "me-user",
        kind: "user",
        displayName: "Alice",
        createdAt: expect.stringMatching(RFC3339)
      })
      expect(tenant).toEqual({
        id: "me-user",
        name: "Me User Inc",
        status: "active",
        createdAt: expect.stringMatching(RFC3339)
      })
      // The same user again: the same account, not a new one.
      const again = yield* get("/v1/me", yield* userToken("alice", "me-user"))
      expect(bodyOf(again, Bodies.me).account.id).toBe(account.id)
      expect(bodyOf(again, Bodies.me).principal.scopes).toEqual(READ_WRITE)
    }))

  it.effect("/v1/me of a machine client, in each of the four token forms", () =>
    Effect.gen(function*() {
      yield* makeTenant("me-machine")
      const issuer = yield* TestIssuer
      const admin = yield* adminToken
      const registered = yield* post("/v1/admin/tenants/me-machine/clients", admin, {
        clientId: "billing",
        displayName: "Billing service"
      })
      expect(registered.status, registered.text).toBe(201)
      for (const form of ["client_id", "gty", "auth0", "keycloak"] as const) {
        const token = yield* issuer.machine("billing", { form, scopes: ["notes:read"] })
        const reply = yield* get("/v1/me", token)
        expect(reply.status, `${form}: ${reply.text}`).toBe(200)
        const body = bodyOf(reply, Bodies.me)
        expect(body.principal).toEqual({
          kind: "machine",
          issuer: issuer.issuer,
          subject: expect.any(String),
          clientId: "billing",
          scopes: ["notes:read"]
        })
        expect(body.account).toEqual({
          id: bodyOf(registered, Bodies.client).accountId,
          tenantId: "me-machine",
          kind: "machine",
          displayName: "Billing service",
          createdAt: expect.stringMatching(RFC3339)
        })
        expect(body.tenant).toMatchObject({ id: "me-machine", status: "active" })
      }
    }))

  it.effect("notes: create 201, get 200, patch 200, delete 204, then 404", () =>
    Effect.gen(function*() {
      yield* makeTenant("crud")
      const token = yield* userToken("carol", "crud")
      const me = yield* get("/v1/me", token)
      const created = yield* post("/v1/notes", token, { title: "First", body: "hello" })
      expect(created.status, created.text).toBe(201)
      expect(created.headers["content-type"]).toMatch(/^application\/json/)
      const note = bodyOf(created, Bodies.note)
      expect(note).toEqual({
        id: expect.stringMatching(UUID),
        title: "First",
        body: "hello",
        createdBy: bodyOf(me, Bodies.me).account.id,
        createdAt: expect.stringMatching(RFC3339),
        updatedAt: expect.stringMatching(RFC3339)
      })

      const read = yield* get(`/v1/notes/${note.id}`, token)
      expect(read.status).toBe(200)
      expect(read.body).toEqual(note)

      const titled = yield* patch(`/v1/notes/${note.id}`, token, { title: "Renamed" })
      expect(titled.status, titled.text).toBe(200)
      expect(titled.body).toMatchObject({ id: note.id, title: "Renamed", body: "hello", createdAt: note.createdAt })
      expect(Date.parse(bodyOf(titled, Bodies.note).updatedAt)).toBeGreaterThanOrEqual(Date.parse(note.updatedAt))
      const bodied = yield* patch(`/v1/notes/${note.id}`, token, { body: "" })
      expect(bodied.body).toMatchObject({ title: "Renamed", body: "" })
      const both = yield* patch(`/v1/notes/${note.id}`, token, { title: "Both", body: "b" })
      expect(both.body).toMatchObject({ title: "Both", body: "b" })
      const empty = yield* patch(`/v1/notes/${note.id}`, token, {})
      expect(empty.status).toBe(200)
      expect(empty.body).toMatchObject({ title: "Both", body: "b" })
      expect((yield* get(`/v1/notes/${note.id}`, token)).body).toMatchObject({ title: "Both", body: "b" })

      const removed = yield* del(`/v1/notes/${note.id}`, token)
      expect(removed.status).toBe(204)
      expect(removed.text).toBe("")

      expectError(yield* get(`/v1/notes/${note.id}`, token), 404, "not_found")
      expectError(yield* patch(`/v1/notes/${note.id}`, token, { title: "x" }), 404, "not_found")
      expectError(yield* del(`/v1/notes/${note.id}`, token), 404, "not_found")
      const missing = "00000000-0000-4000-8000-000000000000"
      expectError(yield* get(`/v1/notes/${missing}`, token), 404, "not_found")
      const list = yield* get("/v1/notes", token)
      expect(list.body).toEqual({ items: [], nextCursor: null })
    }))

  it.effect("notes list: newest first, default limit 20, limits 1 and 100, cursor paging to a null nextCursor", () =>
    Effect.gen(function*() {
      yield* makeTenant("paging")
      const token = yield* userToken("dave", "paging")
      const empty = yield* get("/v1/notes", token)
      expect(empty.status).toBe(200)
      expect(empty.body).toEqual({ items: [], nextCursor: null })

      const made: Array<string> = []
      for (let i = 0; i < 25; i++) made.push((yield* createNote(token, `note ${i}`, `body ${i}`)).id)

      const firstReply = yield* get("/v1/notes", token)
      expect(firstReply.status).toBe(200)
      const first = bodyOf(firstReply, Bodies.notes)
      expect(first.items).toHaveLength(20)
      expect(first.nextCursor).toEqual(expect.any(String))
      // Newest first: the last made is first.
      expect(first.items[0]!.title).toBe("note 24")
      const restReply = yield* get(`/v1/notes?cursor=${encodeURIComponent(first.nextCursor!)}`, token)
      expect(restReply.status).toBe(200)
      const rest = bodyOf(restReply, Bodies.notes)
      expect(rest.items).toHaveLength(5)
      expect(rest.nextCursor).toBeNull()
      const ids = [...first.items, ...rest.items].map((n) => n.id)
      expect(ids).toEqual([...made].reverse())
      const stamps = [...first.items, ...rest.items].map((n) => Date.parse(n.createdAt))
      expect(stamps).toEqual([...stamps].sort((a, b) => b - a))

      // Pages of 5 exactly cover 25: the fifth page ends it.
      const seen: Array<string> = []
      let cursor: string | null = null
      let pages = 0
      do {
        const page: typeof Bodies.notes.Type = bodyOf(
          yield* get(`/v1/notes?limit=5${cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`}`, token),
          Bodies.notes
        )
        expect(page.items).toHaveLength(5)
        seen.push(...page.items.map((n) => n.id))
        cursor = page.nextCursor
        pages++
      } while (cursor !== null)
      expect(pages).toBe(5)
      expect(seen).toEqual([...made].reverse())

      const one = yield* get("/v1/notes?limit=1", token)
      expect(one.status).toBe(200)
      expect(bodyOf(one, Bodies.notes).items).toHaveLength(1)
      expect(bodyOf(one, Bodies.notes).nextCursor).toEqual(expect.any(String))
      const hundred = yield* get("/v1/notes?limit=100", token)
      expect(hundred.status).toBe(200)
      expect(bodyOf(hundred, Bodies.notes).items).toHaveLength(25)
      expect(bodyOf(hundred, Bodies.notes).nextCursor).toBeNull()
      // An empty cursor is the first page.
      const blank = yield* get("/v1/notes?limit=3&cursor=", token)
      expect(bodyOf(blank, Bodies.notes).items.map((n) => n.id)).toEqual(ids.slice(0, 3))
    }))

  it.effect("notes routes need notes:read / notes:write: 403 insufficient_scope naming the scope", () =>
    Effect.gen(function*() {
      yield* makeTenant("scopes")
      const writer = yield* userToken("writer", "scopes")
      const note = yield* createNote(writer, "kept", "as is")
      const none = yield* userToken("nobody", "scopes", [])
      const readOnly = yield* userToken("reader", "scopes", ["notes:read"])
      const writeOnly = yield* userToken("scribe", "scopes", ["notes:write"])
      const cases = [
        [none, "GET", "/v1/notes", undefined, "notes:read"],
        [none, "GET", `/v1/notes/${note.id}`, undefined, "notes:read"],
        [none, "POST", "/v1/notes", { title: "no", body: "" }, "notes:write"],
        [none, "PATCH", `/v1/notes/${note.id}`, { title: "no" }, "notes:write"],
        [none, "DELETE", `/v1/notes/${note.id}`, undefined, "notes:write"],
        [readOnly, "POST", "/v1/notes", { title: "no", body: "" }, "notes:write"],
        [readOnly, "PATCH", `/v1/notes/${note.id}`, { title: "no" }, "notes:write"],
        [readOnly, "DELETE", `/v1/notes/${note.id}`, undefined, "notes:write"],
        [writeOnly, "GET", "/v1/notes", undefined, "notes:read"],
        [writeOnly, "GET", `/v1/notes/${note.id}`, undefined, "notes:read"]
      ] as const
      for (const [token, method, path, json, scope] of cases) {
        const reply = yield* send(method, path, { token, json })
        expectError(reply, 403, "insufficient_scope")
        expect(reply.headers["www-authenticate"], `${method} ${path}`).toBe(insufficientScope(scope))
      }
      // Refused requests wrote nothing and changed nothing.
      const list = yield* get("/v1/notes", readOnly)
      expect(list.status).toBe(200)
      expect(bodyOf(list, Bodies.notes).items).toEqual([note])
      // /v1/me needs no scope.
      expect((yield* get("/v1/me", none)).status).toBe(200)
    }))

  it.effect("admin: create tenant 201, 409 when it exists, 400 for a bad id or name, and list", () =>
    Effect.gen(function*() {
      const admin = yield* adminToken
      const created = yield* post("/v1/admin/tenants", admin, { id: "globex", name: "Globex" })
      expect(created.status, created.text).toBe(201)
      expect(created.body).toEqual({
        id: "globex",
        name: "Globex",
        status: "active",
        createdAt: expect.stringMatching(RFC3339),
        placement: {
          server: "default",
          strategy: "database",
          database: expect.stringMatching(/_globex$/),
          schema: null,
          role: expect.stringMatching(/_globex$/)
        }
      })
      expectError(yield* post("/v1/admin/tenants", admin, { id: "globex", name: "Again" }), 409, "tenant_exists")
      for (const id of ["Globex", "g", "-globex", "1globex", "glo_bex", "glo bex", "a".repeat(64), ""]) {
        expectError(yield* post("/v1/admin/tenants", admin, { id, name: "Bad" }), 400, "bad_request")
      }
      expectError(yield* post("/v1/admin/tenants", admin, { id: "noname", name: "" }), 400, "bad_request")
      expectError(yield* post("/v1/admin/tenants", admin, { id: "noname" }), 400, "bad_request")
      expectError(yield* post("/v1/admin/tenants", admin, { id: 7, name: "Seven" }), 400, "bad_request")
      expectError(
        yield* post("/v1/admin/tenants", admin, { id: "extra", name: "Extra", status: "active" }),
        400,
        "bad_request"
      )
      // The tenant works at once: its database was provisioned.
      const user = yield* userToken("gina", "globex")
      yield* createNote(user, "in globex")

      const list = yield* get("/v1/admin/tenants", admin)
      expect(list.status).toBe(200)
      expect(Object.keys(bodyOf(list, Bodies.object))).toEqual(["items"])
      expect(bodyOf(list, Bodies.tenants).items).toContainEqual(created.body)
      const ids = bodyOf(list, Bodies.tenants).items.map((t) => t.id)
      for (const bad of ["Globex", "g", "extra", "noname"]) expect(ids).not.toContain(bad)
    }))

  it.effect("admin: placement: a schema or database tenant on the default server, shown by GET /v1/admin/tenants/{id}", () =>
    Effect.gen(function*() {
      const admin = yield* adminToken
      const dense = yield* post("/v1/admin/tenants", admin, { id: "dense", name: "Dense", strategy: "schema" })
      expect(dense.status, dense.text).toBe(201)
      const { placement } = bodyOf(dense, Bodies.tenant)
      expect(placement).toEqual({
        server: "default",
        strategy: "schema",
        database: expect.stringMatching(/__shared$/),
        schema: expect.stringMatching(/_dense$/),
        role: placement.schema
      })
      const own = yield* post("/v1/admin/tenants", admin, { id: "roomy", name: "Roomy", strategy: "database", server: "default" })
      expect(own.status, own.text).toBe(201)
      expect(bodyOf(own, Bodies.tenant).placement).toMatchObject({ strategy: "database", schema: null })
      // Both serve notes at once, each its own.
      const inDense = yield* createNote(yield* userToken("dana", "dense"), "in dense")
      const inRoomy = yield* createNote(yield* userToken("rory", "roomy"), "in roomy")
      expectError(yield* get(`/v1/notes/${inRoomy.id}`, yield* userToken("dana", "dense")), 404, "not_found")
      expectError(yield* get(`/v1/notes/${inDense.id}`, yield* userToken("rory", "roomy")), 404, "not_found")

      const shown = yield* get("/v1/admin/tenants/dense", admin)
      expect(shown.status, shown.text).toBe(200)
      expect(shown.body).toEqual(dense.body)
      // Names only: never a URL, a password or a login.
      for (const reply of [dense, own, shown, yield* get("/v1/admin/tenants", admin)]) {
        expect(reply.text).not.toMatch(/postgres(ql)?:\/\/|password|gateway/i)
      }
      expectError(yield* get("/v1/admin/tenants/nosuch", admin), 404, "not_found")
      expectError(yield* get("/v1/admin/tenants/Not_An_Id", admin), 400, "bad_request")
      expectError(yield* post("/v1/admin/tenants", admin, { id: "elsewhere", name: "E", server: "nosuch" }), 400, "bad_request")
      expectError(yield* post("/v1/admin/tenants", admin, { id: "oddly", name: "O", strategy: "rows" }), 400, "bad_request")
      for (const bad of ["elsewhere", "oddly"]) expectError(yield* get(`/v1/admin/tenants/${bad}`, admin), 404, "not_found")
      // A tenant never sees where it lives.
      const me = yield* get("/v1/me", yield* userToken("dana", "dense"))
      expect(me.text).not.toContain("placement")
      expect(me.text).not.toContain("shared")
    }))

  it.effect("admin: suspending a tenant refuses its next request with 403 tenant_suspended; resuming lets it in", () =>
    Effect.gen(function*() {
      yield* makeTenant("initech", "Initech")
      const admin = yield* adminToken
      const user = yield* userToken("peter", "initech")
      const note = yield* createNote(user, "TPS report")
      const suspended = yield* patch("/v1/admin/tenants/initech", admin, { status: "suspended" })
      expect(suspended.status, suspended.text).toBe(200)
      expect(suspended.body).toEqual({
        id: "initech",
        name: "Initech",
        status: "suspended",
        createdAt: expect.stringMatching(RFC3339),
        placement: expect.objectContaining({ strategy: "database" })
      })
      expectError(yield* get("/v1/me", user), 403, "tenant_suspended")
      expectError(yield* get("/v1/notes", user), 403, "tenant_suspended")
      expectError(yield* post("/v1/notes", user, { title: "no", body: "" }), 403, "tenant_suspended")
      // A user seen for the first time is refused too, and not created.
      expectError(yield* get("/v1/me", yield* userToken("newcomer", "initech")), 403, "tenant_suspended")
      const listed = yield* get("/v1/admin/tenants", admin)
      expect(bodyOf(listed, Bodies.tenants).items).toContainEqual(suspended.body)

      const resumed = yield* patch("/v1/admin/tenants/initech", admin, { status: "active" })
      expect(resumed.status).toBe(200)
      expect(bodyOf(resumed, Bodies.tenant).status).toBe("active")
      const list = yield* get("/v1/notes", user)
      expect(list.status, list.text).toBe(200)
      expect(bodyOf(list, Bodies.notes).items).toEqual([note])

      expectError(yield* patch("/v1/admin/tenants/nosuch", admin, { status: "suspended" }), 404, "not_found")
      for (const body of [{ status: "deleted" }, {}, { status: "active", name: "x" }, { status: 1 }]) {
        expectError(yield* patch("/v1/admin/tenants/initech", admin, body), 400, "bad_request")
      }
      expectError(yield* patch("/v1/admin/tenants/Not_An_Id", admin, { status: "active" }), 400, "bad_request")
    }))

  it.effect("admin: add a service client (201, 409 duplicate), disable it (204), its next request gets 403 client_disabled", () =>
    Effect.gen(function*() {
      yield* makeTenant("hooli")
      const admin = yield* adminToken
      const issuer = yield* TestIssuer
      const added = yield* post("/v1/admin/tenants/hooli/clients", admin, { clientId: "nucleus", displayName: "Nucleus" })
      expect(added.status, added.text).toBe(201)
      expect(added.body).toEqual({
        clientId: "nucleus",
        tenantId: "hooli",
        displayName: "Nucleus",
        accountId: expect.stringMatching(UUID),
        disabled: false,
        createdAt: expect.stringMatching(RFC3339)
      })
      expectError(
        yield* post("/v1/admin/tenants/hooli/clients", admin, { clientId: "nucleus", displayName: "Again" }),
        409,
        "client_exists"
      )
      expectError(
        yield* post("/v1/admin/tenants/nosuch/clients", admin, { clientId: "other", displayName: "Other" }),
        404,
        "not_found"
      )
      expectError(
        yield* post("/v1/admin/tenants/hooli/clients", admin, { clientId: "", displayName: "Empty" }),
        400,
        "bad_request"
      )
      expectError(yield* post("/v1/admin/tenants/hooli/clients", admin, { clientId: "x" }), 400, "bad_request")

      const machine = yield* issuer.machine("nucleus", { scopes: READ_WRITE })
      const note = yield* createNote(machine, "from nucleus")
      expect(note.createdBy).toBe(bodyOf(added, Bodies.client).accountId)

      const disabled = yield* del("/v1/admin/tenants/hooli/clients/nucleus", admin)
      expect(disabled.status, disabled.text).toBe(204)
      expect(disabled.text).toBe("")
      expectError(yield* get("/v1/notes", machine), 403, "client_disabled")
      expectError(yield* get("/v1/me", machine), 403, "client_disabled")
      // A fresh token of the disabled client is refused as well.
      expectError(yield* get("/v1/me", yield* issuer.machine("nucleus", { form: "auth0" })), 403, "client_disabled")
      expectError(yield* del("/v1/admin/tenants/hooli/clients/nosuch", admin), 404, "not_found")
      expectError(yield* del("/v1/admin/tenants/nosuch/clients/nucleus", admin), 404, "not_found")
    }))

  it.effect("admin: add a domain (201); a new user with a verified email in it joins the tenant", () =>
    Effect.gen(function*() {
      yield* makeTenant("umbrella", "Umbrella")
      const admin = yield* adminToken
      const issuer = yield* TestIssuer
      const added = yield* post("/v1/admin/tenants/umbrella/domains", admin, { domain: "Umbrella.Example" })
      expect(added.status, added.text).toBe(201)
      expect(added.body).toEqual({ domain: "umbrella.example", tenantId: "umbrella", createdAt: expect.stringMatching(RFC3339) })
      expectError(yield* post("/v1/admin/tenants/umbrella/domains", admin, { domain: "umbrella.example" }), 409, "domain_exists")
      expectError(yield* post("/v1/admin/tenants/umbrella/domains", admin, { domain: "not a domain" }), 400, "bad_request")
      expectError(yield* post("/v1/admin/tenants/nosuch/domains", admin, { domain: "nosuch.example" }), 404, "not_found")

      const verified = yield* issuer.user("jill", { email: "jill@umbrella.example", emailVerified: true, scopes: READ_WRITE })
      const me = yield* get("/v1/me", verified)
      expect(me.status, me.text).toBe(200)
      expect(bodyOf(me, Bodies.me).account.tenantId).toBe("umbrella")
      expect(bodyOf(me, Bodies.me).tenant).toMatchObject({ id: "umbrella", name: "Umbrella" })
      yield* createNote(verified, "joined by domain")
      // No email_verified claim at all counts as verified too (only false refuses).
      const unstated = yield* issuer.user("chris", { email: "chris@UMBRELLA.example" })
      expect(bodyOf(yield* get("/v1/me", unstated), Bodies.me).account.tenantId).toBe("umbrella")
      // An unverified email places no one.
      expectError(
        yield* get("/v1/me", yield* issuer.user("albert", { email: "albert@umbrella.example", emailVerified: false })),
        403,
        "no_tenant"
      )
      expectError(yield* get("/v1/me", yield* issuer.user("barry", { email: "barry@elsewhere.example" })), 403, "no_tenant")
    }))

  it.effect("admin routes: 401 without a token, 403 insufficient_scope without platform:admin; no account is made", () =>
    Effect.gen(function*() {
      yield* makeTenant("adminless")
      const issuer = yield* TestIssuer
      const user = yield* userToken("mallory", "adminless", [...READ_WRITE, "admin", "platform:read"])
      const machine = yield* issuer.machine("whatever", { scopes: ["platform:admins"] })
      const accountsBefore = yield* countAccounts
      const routes = [
        ["POST", "/v1/admin/tenants", { id: "sneaky", name: "Sneaky" }],
        ["GET", "/v1/admin/tenants", undefined],
        ["PATCH", "/v1/admin/tenants/adminless", { status: "suspended" }],
        ["DELETE", "/v1/admin/tenants/adminless", undefined],
        ["POST", "/v1/admin/tenants/adminless/clients", { clientId: "sneaky", displayName: "Sneaky" }],
        ["GET", "/v1/admin/tenants/adminless/clients", undefined],
        ["DELETE", "/v1/admin/tenants/adminless/clients/sneaky", undefined],
        ["POST", "/v1/admin/tenants/adminless/domains", { domain: "sneaky.example" }],
        ["GET", "/v1/admin/tenants/adminless/domains", undefined]
      ] as const
      for (const [method, path, json] of routes) {
        const anonymous = yield* send(method, path, { json })
        expectError(anonymous, 401, "missing_token")
        expect(anonymous.headers["www-authenticate"], `${method} ${path}`).toBe(REALM)
        for (const token of [user, machine]) {
          const reply = yield* send(method, path, { token, json })
          expectError(reply, 403, "insufficient_scope")
          expect(reply.headers["www-authenticate"], `${method} ${path}`).toBe(
            `Bearer realm="platform", error="insufficient_scope", scope="platform:admin"`
          )
        }
      }
      // Nothing happened: no tenant, no client, no domain, still active; no account was made.
      const admin = yield* adminToken
      const tenants = yield* get("/v1/admin/tenants", admin)
      expect(bodyOf(tenants, Bodies.tenants).items.map((t) => t.id)).not.toContain("sneaky")
      expect(bodyOf(tenants, Bodies.tenants).items).toContainEqual(expect.objectContaining({ id: "adminless", status: "active" }))
      expect((yield* get("/v1/admin/tenants/adminless/clients", admin)).body).toEqual({ items: [] })
      expect((yield* get("/v1/admin/tenants/adminless/domains", admin)).body).toEqual({ items: [] })
      expect(yield* countAccounts).toBe(accountsBefore)
      // An admin token needs no account and makes none, even when it names a tenant.
      const named = yield* issuer.admin("root", { claims: { tenant: "adminless" } })
      expect((yield* get("/v1/admin/tenants", named)).status).toBe(200)
      expect(yield* countAccounts).toBe(accountsBefore)
    }))

  it.effect("x-request-id is echoed when sent and made otherwise, on successes and errors; client mistakes log no error", () =>
    Effect.gen(function*() {
      const echoed = yield* get("/healthz", undefined, { headers: { "x-request-id": "req-123.abc:9" } })
      expect(echoed.headers["x-request-id"]).toBe("req-123.abc:9")
      const made = yield* get("/healthz")
      expect(made.headers["x-request-id"]).toMatch(UUID)
      const other = yield* get("/healthz")
      expect(other.headers["x-request-id"]).toMatch(UUID)
      expect(other.headers["x-request-id"]).not.toBe(made.headers["x-request-id"])
      const onError = yield* get("/v1/me", undefined, { headers: { "x-request-id": "failing-1" } })
      expect(onError.status).toBe(401)
      expect(onError.headers["x-request-id"]).toBe("failing-1")
      yield* makeTenant("reqids")
      const logged = errorLogs.length
      const unknownRoute = yield* get("/v1/nowhere", undefined, { headers: { "x-request-id": "lost-1" } })
      expectError(unknownRoute, 404, "not_found")
      expect(unknownRoute.headers["x-request-id"]).toBe("lost-1")
      const malformed = yield* send("POST", "/v1/notes", {
        body: "{",
        headers: { "content-type": "application/json", "x-request-id": "malformed-1" },
        token: yield* userToken("rita", "reqids")
      })
      expectError(malformed, 400, "bad_request")
      expect(malformed.headers["x-request-id"]).toBe("malformed-1")
      // A client's mistake is not the server's error: no error log line.
      expect(errorLogs.slice(logged)).toEqual([])
      // A value that could forge log lines is replaced, not echoed.
      const hostile = yield* get("/healthz", undefined, { headers: { "x-request-id": "a b\"c" } })
      expect(hostile.headers["x-request-id"]).toMatch(UUID)
      const long = yield* get("/healthz", undefined, { headers: { "x-request-id": "x".repeat(300) } })
      expect(long.headers["x-request-id"]).toMatch(UUID)
    }))

  it.effect("unknown routes and methods are 404 not_found", () =>
    Effect.gen(function*() {
      yield* makeTenant("unknowns")
      const token = yield* userToken("una", "unknowns")
      for (const [method, path] of [["GET", "/v1/nowhere"], ["PUT", "/v1/notes"], ["POST", "/v1/me"], ["GET", "/v1"]] as const) {
        const reply = yield* send(method, path, { token })
        expectError(reply, 404, "not_found")
        expect(reply.body, `${method} ${path}`).toEqual({ error: "not_found", message: "no such route" })
      }
    }))

  it.effect("/openapi.json is an OpenAPI 3.1 document listing every route; /docs is an HTML page", () =>
    Effect.gen(function*() {
      const reply = yield* get("/openapi.json")
      expect(reply.status).toBe(200)
      expect(reply.headers["content-type"]).toMatch(/^application\/json/)
      const doc = bodyOf(reply, OpenApiDocument)
      expect(doc.openapi).toMatch(/^3\.1\.\d+$/)
      expect(doc.info).toMatchObject({ title: expect.any(String), version: expect.any(String) })
      const routes = [
        ["get", "/healthz"],
        ["get", "/readyz"],
        ["get", "/v1/me"],
        ["get", "/v1/notes"],
        ["post", "/v1/notes"],
        ["get", "/v1/notes/{id}"],
        ["patch", "/v1/notes/{id}"],
        ["delete", "/v1/notes/{id}"],
        ["post", "/v1/admin/tenants"],
        ["get", "/v1/admin/tenants"],
        ["patch", "/v1/admin/tenants/{id}"],
        ["delete", "/v1/admin/tenants/{id}"],
        ["post", "/v1/admin/tenants/{id}/clients"],
        ["delete", "/v1/admin/tenants/{id}/clients/{clientId}"],
        ["post", "/v1/admin/tenants/{id}/domains"]
      ] as const
      for (const [method, path] of routes) {
        expect(doc.paths?.[path]?.[method], `${method.toUpperCase()} ${path}`).toMatchObject({
          responses: expect.any(Object)
        })
      }
      // Bearer security is declared for the routes that need it.
      expect(Object.values(doc.components?.securitySchemes ?? {})).toContainEqual(
        expect.objectContaining({ type: "http", scheme: "bearer" })
      )
      const docs = yield* get("/docs")
      expect(docs.status).toBe(200)
      expect(docs.headers["content-type"]).toMatch(/^text\/html/)
      expect(docs.text).toMatch(/<html/i)
    }))

  it.effect("/readyz is 503 not_ready while the platform database refuses connections, and ready again after", () =>
    Effect.gen(function*() {
      const admin = yield* adminToken
      const logged = errorLogs.length
      const { accept, database } = yield* refusePlatformConnections
      const down = yield* get("/readyz")
      expectError(down, 503, "not_ready", [database])
      // Liveness is not readiness: the process is up.
      expect((yield* get("/healthz")).status).toBe(200)
      // A caller the directory must look up, an operator's operation: 503
      // service_unavailable with Retry-After, no SQL, no database name. Not a
      // defect: nothing is logged as an error.
      const me = yield* get("/v1/me", yield* userToken("outage", "me-user"))
      expectError(me, 503, "service_unavailable", [database])
      expect(me.headers["retry-after"]).toMatch(/^[1-9]\d*$/)
      expect(Object.keys(me.body as object).sort()).toEqual(["error", "message"])
      const list = yield* get("/v1/admin/tenants", admin)
      expectError(list, 503, "service_unavailable", [database])
      expect(list.headers["retry-after"]).toMatch(/^[1-9]\d*$/)
      expect(errorLogs.slice(logged)).toEqual([])
      yield* accept
      expect((yield* get("/readyz")).body).toEqual({ status: "ready" })
      yield* eventually("the new user to be served", Effect.map(get("/v1/me", yield* userToken("outage", "me-user")), (r) => r.status === 200))
    }).pipe(Effect.scoped))

  it.effect("a defect (a platform statement that fails) is a bare 500 with the request id, and is logged", () =>
    Effect.gen(function*() {
      yield* breakAccountsTable
      const me = yield* get("/v1/me", yield* userToken("defect", "me-user"))
      expectError(me, 500, "internal", ["accounts_renamed_by_test"])
      // A failure is logged (with its cause, which the body never shows).
      expect(errorLogs).toContain("unexpected failure")
      expect(me.body).toEqual({ error: "internal", message: expect.any(String), requestId: me.headers["x-request-id"] })
    }).pipe(Effect.scoped))

  it.effect("admin: DELETE a tenant (204) drops its database, accounts, clients and domains; 404 when unknown", () =>
    Effect.gen(function*() {
      yield* makeTenant("doomed-co", "Doomed Co")
      const admin = yield* adminToken
      const issuer = yield* TestIssuer
      const user = yield* userToken("dora", "doomed-co")
      yield* createNote(user, "soon gone")
      expect((yield* post("/v1/admin/tenants/doomed-co/clients", admin, { clientId: "doomed-svc", displayName: "D" })).status).toBe(201)
      expect((yield* post("/v1/admin/tenants/doomed-co/domains", admin, { domain: "doomed.example" })).status).toBe(201)
      const machine = yield* issuer.machine("doomed-svc", { scopes: READ_WRITE })
      expect((yield* get("/v1/notes", machine)).status).toBe(200)
      const database = (yield* TenantDatabases).databaseName("doomed-co")
      const accountsBefore = yield* countAccounts

      const removed = yield* del("/v1/admin/tenants/doomed-co", admin)
      expect(removed.status, removed.text).toBe(204)
      expect(removed.text).toBe("")

      // Gone everywhere: the list, the database server, the directory.
      expect(bodyOf(yield* get("/v1/admin/tenants", admin), Bodies.tenants).items.map((t) => t.id)).not.toContain("doomed-co")
      expect(yield* adminQuery("SELECT 1 FROM pg_database WHERE datname = $1", [database])).toEqual([])
      expect(yield* countAccounts).toBe(accountsBefore - 2)
      expectError(yield* get("/v1/notes", user), 403, "no_tenant")
      expectError(yield* get("/v1/me", machine), 403, "unknown_client")
      expectError(
        yield* get("/v1/me", yield* issuer.user("dewey", { email: "dewey@doomed.example" })),
        403,
        "no_tenant"
      )
      expectError(yield* get("/v1/admin/tenants/doomed-co/clients", admin), 404, "not_found")
      expectError(yield* del("/v1/admin/tenants/doomed-co", admin), 404, "not_found")
      expectError(yield* del("/v1/admin/tenants/never-was", admin), 404, "not_found")
      expectError(yield* del("/v1/admin/tenants/Not_An_Id", admin), 400, "bad_request")

      // The id can be taken again, and the new tenant starts empty.
      expect((yield* post("/v1/admin/tenants", admin, { id: "doomed-co", name: "Reborn" })).status).toBe(201)
      const reborn = yield* userToken("dora", "doomed-co")
      const list = yield* get("/v1/notes", reborn)
      expect(list.status, list.text).toBe(200)
      expect(list.body).toEqual({ items: [], nextCursor: null })
    }))
})
