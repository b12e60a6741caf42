import { expect, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { TenantId } from "../../src/tenancy/Tenant.js"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { TestIssuer } from "../../src/testing/TestIssuer.js"
import {
  adminQuery,
  adminToken,
  apiClient,
  breakAccountsTable,
  makeTenant,
  platform,
  READ_WRITE,
  refusePlatformConnections,
  RFC3339,
  userToken,
  UUID
} from "./support.js"

/**
 * Every route through a client made from the API definition
 * (HttpApiClient.make(PlatformApi)), as a generated client would use it:
 * success values and typed errors are what the client decodes from the wire.
 * Its responses are checked against /openapi.json too (support.ts).
 *
 * The wire carries an error's status and code, not its class: the client
 * decodes a body as the first error declared for the status that it matches.
 * So a NoteValidationError arrives as BadRequest (declared for every route),
 * and an unknown client of DELETE .../clients/{clientId} as TenantNotFound
 * (declared for every admin route before the endpoint's ClientNotFound).
 */

const tenantId = Schema.decodeSync(TenantId)
const missingNote = "00000000-0000-4000-8000-000000000000"

layer(platform(), { excludeTestServices: true })("the API through its typed client", (it) => {
  it.effect("health and /v1/me: decoded values, and MissingToken, InvalidToken, NoTenant", () =>
    Effect.gen(function*() {
      yield* makeTenant("client-me", "Client Me")
      const anonymous = yield* apiClient()
      expect(yield* anonymous.health.healthz()).toEqual({ status: "ok" })
      expect(yield* anonymous.health.readyz()).toEqual({ status: "ready" })

      const user = yield* apiClient(yield* userToken("cora", "client-me"))
      const me = yield* user.me.me()
      expect(me.principal).toMatchObject({ kind: "user", subject: "cora", scopes: READ_WRITE })
      expect(me.account).toMatchObject({ id: expect.stringMatching(UUID), tenantId: "client-me", kind: "user" })
      expect(me.account.createdAt).toBeInstanceOf(Date)
      expect(me.tenant).toMatchObject({ id: "client-me", name: "Client Me", status: "active" })

      expect(yield* Effect.flip(anonymous.me.me())).toMatchObject({
        _tag: "MissingToken",
        error: "missing_token",
        message: expect.any(String)
      })
      expect(yield* Effect.flip((yield* apiClient("not-a-jwt")).me.me())).toMatchObject({
        _tag: "InvalidToken",
        error: "invalid_token"
      })
      const homeless = yield* (yield* TestIssuer).user("nomad", { email: "nomad@nowhere.example" })
      expect(yield* Effect.flip((yield* apiClient(homeless)).me.me())).toMatchObject({ _tag: "NoTenant", error: "no_tenant" })
    }))

  it.effect("notes: list, create, get, update, remove, and their typed errors", () =>
    Effect.gen(function*() {
      yield* makeTenant("client-notes")
      const writer = yield* apiClient(yield* userToken("nell", "client-notes"))
      const reader = yield* apiClient(yield* userToken("rhea", "client-notes", ["notes:read"]))

      const note = yield* writer.notes.create({ payload: { title: "typed", body: "hello" } })
      expect(note).toEqual({
        id: expect.stringMatching(UUID),
        title: "typed",
        body: "hello",
        createdBy: expect.stringMatching(UUID),
        createdAt: expect.stringMatching(RFC3339),
        updatedAt: expect.stringMatching(RFC3339)
      })
      expect(yield* reader.notes.list({ urlParams: { limit: 10 } })).toEqual({ items: [note], nextCursor: null })
      expect(yield* reader.notes.get({ path: { id: note.id } })).toEqual(note)
      const updated = yield* writer.notes.update({ path: { id: note.id }, payload: { title: "retitled" } })
      expect(updated).toMatchObject({ id: note.id, title: "retitled", body: "hello" })

      expect(yield* Effect.flip(reader.notes.create({ payload: { title: "no", body: "" } }))).toMatchObject({
        _tag: "InsufficientScope",
        error: "insufficient_scope",
        scope: "notes:write"
      })
      expect(yield* Effect.flip(reader.notes.list({ urlParams: { cursor: "not-a-cursor" } }))).toMatchObject({
        _tag: "BadRequest",
        error: "bad_request",
        message: "cursor is not a valid page cursor"
      })
      for (const attempt of [
        reader.notes.get({ path: { id: missingNote } }),
        writer.notes.update({ path: { id: missingNote }, payload: { body: "x" } }),
        writer.notes.remove({ path: { id: missingNote } })
      ]) {
        expect(yield* Effect.flip(attempt)).toMatchObject({ _tag: "NoteNotFound", error: "not_found" })
      }

      yield* writer.notes.remove({ path: { id: note.id } })
      expect(yield* Effect.flip(reader.notes.get({ path: { id: note.id } }))).toMatchObject({ _tag: "NoteNotFound" })
    }))

  it.effect("a tenant whose database is gone: TenantUnavailable, without the Retry-After seconds the body does not carry", () =>
    Effect.gen(function*() {
      yield* makeTenant("client-gone")
      const client = yield* apiClient(yield* userToken("gus", "client-gone"))
      yield* client.notes.create({ payload: { title: "soon gone", body: "" } })
      yield* adminQuery(`DROP DATABASE ${(yield* TenantDatabases).databaseName("client-gone")} WITH (FORCE)`)
      const error = yield* Effect.flip(client.notes.list({ urlParams: {} }))
      expect(error).toMatchObject({ _tag: "TenantUnavailable", error: "tenant_unavailable", message: expect.any(String) })
      expect(error).not.toHaveProperty("retryAfterSeconds")
    }))

  it.effect("admin: every route, decoded, and its typed errors", () =>
    Effect.gen(function*() {
      const admin = yield* apiClient(yield* adminToken)
      const id = tenantId("client-admin")
      const missing = tenantId("client-missing")

      const created = yield* admin.admin.createTenant({ payload: { id, name: "Client Admin", strategy: "schema" } })
      expect(created).toMatchObject({ id, name: "Client Admin", status: "active", placement: { strategy: "schema" } })
      expect(created.createdAt).toBeInstanceOf(Date)
      expect(yield* Effect.flip(admin.admin.createTenant({ payload: { id, name: "Again" } }))).toMatchObject({
        _tag: "TenantAlreadyExists",
        error: "tenant_exists"
      })
      expect((yield* admin.admin.listTenants()).items.map((t) => t.id)).toContain(id)
      expect(yield* admin.admin.getTenant({ path: { id } })).toEqual(created)
      expect(yield* admin.admin.updateTenant({ path: { id }, payload: { status: "suspended" } })).toMatchObject({
        id,
        status: "suspended"
      })
      yield* admin.admin.updateTenant({ path: { id }, payload: { status: "active" } })

      const client = yield* admin.admin.addClient({ path: { id }, payload: { clientId: "typed-svc", displayName: "Typed" } })
      expect(client).toMatchObject({ clientId: "typed-svc", tenantId: id, displayName: "Typed", disabled: false })
      expect(
        yield* Effect.flip(admin.admin.addClient({ path: { id }, payload: { clientId: "typed-svc", displayName: "Again" } }))
      ).toMatchObject({ _tag: "ClientAlreadyExists", error: "client_exists" })
      expect((yield* admin.admin.listClients({ path: { id } })).items).toEqual([client])
      yield* admin.admin.disableClient({ path: { id, clientId: "typed-svc" } })
      expect(yield* Effect.flip(admin.admin.disableClient({ path: { id, clientId: "nobody" } }))).toMatchObject({
        _tag: "TenantNotFound",
        error: "not_found"
      })

      const domain = yield* admin.admin.addDomain({ path: { id }, payload: { domain: "typed.example" } })
      expect(domain).toMatchObject({ domain: "typed.example", tenantId: id })
      expect(yield* Effect.flip(admin.admin.addDomain({ path: { id }, payload: { domain: "typed.example" } }))).toMatchObject({
        _tag: "DomainAlreadyExists",
        error: "domain_exists"
      })
      expect((yield* admin.admin.listDomains({ path: { id } })).items).toEqual([domain])

      // Servers: names and numbers, never a URL.
      const servers = (yield* admin.admin.listServers()).items
      expect(servers).toContainEqual(expect.objectContaining({ name: "default", status: "active", weight: 1 }))
      expect(servers.find((s) => s.name === "default")!.tenants).toBeGreaterThan(0)
      expect(JSON.stringify(servers)).not.toMatch(/postgres(ql)?:\/\//)
      expect(yield* Effect.flip(admin.admin.createTenant({ payload: { id: missing, name: "M", server: "nowhere" } })))
        .toMatchObject({ error: "bad_request", message: 'no server named "nowhere"' })

      for (
        const attempt of [
          admin.admin.getTenant({ path: { id: missing } }),
          admin.admin.updateTenant({ path: { id: missing }, payload: { status: "active" } }),
          admin.admin.listClients({ path: { id: missing } }),
          admin.admin.listDomains({ path: { id: missing } }),
          admin.admin.deleteTenant({ path: { id: missing } })
        ]
      ) {
        expect(yield* Effect.flip(attempt)).toMatchObject({ _tag: "TenantNotFound", error: "not_found" })
      }
      const user = yield* apiClient(yield* userToken("ursula", id))
      expect(yield* Effect.flip(user.admin.listTenants())).toMatchObject({
        _tag: "InsufficientScope",
        error: "insufficient_scope",
        scope: "platform:admin"
      })

      yield* admin.admin.deleteTenant({ path: { id } })
      expect(yield* Effect.flip(admin.admin.getTenant({ path: { id } }))).toMatchObject({ _tag: "TenantNotFound" })
    }))

  it.effect("the platform database refusing connections: NotReady, and ServiceUnavailable for a caller it must look up", () =>
    Effect.gen(function*() {
      yield* makeTenant("client-down")
      const user = yield* apiClient(yield* userToken("dana", "client-down"))
      const { accept } = yield* refusePlatformConnections
      expect(yield* Effect.flip((yield* apiClient()).health.readyz())).toMatchObject({ _tag: "NotReady", error: "not_ready" })
      // A user the directory must look up: 503, come back later.
      const fresh = yield* apiClient(yield* userToken("dora", "client-down"))
      expect(yield* Effect.flip(fresh.me.me())).toMatchObject({ _tag: "ServiceUnavailable", error: "service_unavailable" })
      yield* accept
      expect(yield* user.health.readyz()).toEqual({ status: "ready" })
    }).pipe(Effect.scoped))

  it.effect("a defect: InternalError with the request id", () =>
    Effect.gen(function*() {
      yield* makeTenant("client-defect")
      yield* breakAccountsTable
      const fresh = yield* apiClient(yield* userToken("dora", "client-defect"))
      expect(yield* Effect.flip(fresh.me.me())).toMatchObject({
        _tag: "InternalError",
        error: "internal",
        requestId: expect.stringMatching(UUID)
      })
    }).pipe(Effect.scoped))
})
