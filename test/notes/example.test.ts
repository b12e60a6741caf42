// The README's examples of testing a tenant-scoped resource ("Adding a
// tenant-scoped resource", "Testing your own service"), run by `npm test`.
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { inject } from "vitest"
import { NoteService } from "../../src/notes/NoteService.js"
import { withTenant } from "../../src/tenancy/TenantContexts.js"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { TestTenancy, TestUser } from "../../src/testing/index.js"
import { apiClient, makeTenant, platform, userToken } from "../http/support.js"

// The service, in a fresh tenant database, with a stand-in for Authentication.
layer(TestTenancy({ adminUrl: inject("databaseUrl") }), { excludeTestServices: true })("my service", (it) => {
  it.effect("works in a fresh tenant database", () =>
    Effect.gen(function*() {
      const tenant = yield* Effect.flatMap(TenantDatabases, (d) => d.provision("t1", "Tenant 1"))
      const note = yield* Effect.flatMap(NoteService, (s) => s.create({ title: "hi", body: "" })).pipe(
        withTenant(tenant.id),
        Effect.provide(TestUser(tenant))
      )
      expect(note).toMatchObject({ title: "hi", body: "" })
    }))
})

// The endpoints, over HTTP on the whole platform, through a client made from
// the API definition (each response is also checked against /openapi.json).
layer(platform(), { excludeTestServices: true })("my endpoints", (it) => {
  it.effect("answer as the API declares", () =>
    Effect.gen(function*() {
      yield* makeTenant("t1")
      const client = yield* apiClient(yield* userToken("ann", "t1", ["notes:read", "notes:write"]))
      const note = yield* client.notes.create({ payload: { title: "hi", body: "" } })
      expect(yield* client.notes.get({ path: { id: note.id } })).toEqual(note)
      const reader = yield* apiClient(yield* userToken("rob", "t1", ["notes:read"]))
      expect(yield* Effect.flip(reader.notes.remove({ path: { id: note.id } }))).toMatchObject({
        _tag: "InsufficientScope",
        scope: "notes:write"
      })
    }))
})
