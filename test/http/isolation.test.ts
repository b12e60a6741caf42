import { Bodies, bodyOf } from "../bodies.js"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { TenantAdmin } from "../../src/platform/TenantAdmin.js"
import { TestIssuer } from "../../src/testing/TestIssuer.js"
import { STRATEGIES, tenantData } from "../strategies.js"
import {
  adminQuery,
  allNotes,
  createNote,
  del,
  expectError,
  get,
  makeTenant,
  patch,
  platform,
  READ_WRITE,
  send,
  userToken
} from "./support.js"

/** One tenant's ids name nothing in another's: 404, and nothing changes. */

for (const strategy of STRATEGIES) {
  layer(platform({ defaultStrategy: strategy }), { excludeTestServices: true })(
    `tenant isolation over HTTP (${strategy} tenants)`,
    (it) => {
      it.effect("another tenant's note ids: get, patch and delete are 404 and the owner's notes are unchanged", () =>
        Effect.gen(function*() {
          yield* makeTenant("alpha")
          yield* makeTenant("beta")
          const issuer = yield* TestIssuer
          yield* Effect.orDie((yield* TenantAdmin).registerClient("beta", "beta-svc", "Beta service"))
          const owner = yield* userToken("olivia", "alpha")
          const ownerAccount = bodyOf(yield* get("/v1/me", owner), Bodies.me).account.id
          const notes = [
            yield* createNote(owner, "alpha secret 1", "classified"),
            yield* createNote(owner, "alpha secret 2", "also classified")
          ]
          const intruders = [
            yield* userToken("ben", "beta"),
            yield* issuer.machine("beta-svc", { scopes: READ_WRITE })
          ]
          const secrets = ["alpha", "olivia", "classified", ownerAccount]
          for (const intruder of intruders) {
            yield* createNote(intruder, "beta's own")
            for (const note of notes) {
              expectError(yield* get(`/v1/notes/${note.id}`, intruder), 404, "not_found", secrets)
              expectError(yield* patch(`/v1/notes/${note.id}`, intruder, { title: "pwned", body: "" }), 404, "not_found", secrets)
              expectError(yield* del(`/v1/notes/${note.id}`, intruder), 404, "not_found", secrets)
              // A tenant named anywhere but the account changes nothing.
              const steered = yield* get(`/v1/notes/${note.id}?tenant=alpha`, intruder, {
                headers: { "x-tenant-id": "alpha", "x-tenant": "alpha", tenant: "alpha" }
              })
              expectError(steered, 404, "not_found", secrets)
            }
            const listed = yield* allNotes(intruder)
            expect(listed.map((n) => n.title)).not.toContain("alpha secret 1")
            expect(JSON.stringify(listed)).not.toContain("classified")
            // A payload naming the other tenant is refused, not routed.
            expectError(
              yield* send("POST", "/v1/notes", { token: intruder, json: { title: "t", body: "", tenant: "alpha" } }),
              400,
              "bad_request",
              secrets
            )
          }
          // The owner sees exactly what was written, untouched.
          const after = yield* allNotes(owner)
          expect(after).toEqual([...notes].reverse())
          for (const note of notes) expect((yield* get(`/v1/notes/${note.id}`, owner)).body).toEqual(note)
          // Beta has its two notes (user and machine), alpha none of them.
          const betaNotes = yield* allNotes(intruders[0]!)
          expect(betaNotes.map((n) => n.title)).toEqual(["beta's own", "beta's own"])
          for (const note of betaNotes) expectError(yield* get(`/v1/notes/${note.id}`, owner), 404, "not_found", ["beta"])

          // And in PostgreSQL itself: each note lives in its tenant's database (or schema) only.
          const notesIn = (tenant: string) =>
            Effect.flatMap(tenantData(tenant, strategy), ({ database, notes }) =>
              adminQuery<{ id: string }>(`SELECT id FROM ${notes} ORDER BY id`, [], database))
          const inAlpha = yield* notesIn("alpha")
          const inBeta = yield* notesIn("beta")
          expect(inAlpha.map((r) => r.id)).toEqual(notes.map((n) => n.id).sort())
          expect(inBeta.map((r) => r.id)).toEqual(betaNotes.map((n) => n.id).sort())
        }))

      it.effect("another tenant's cursor pages only the caller's own notes", () =>
        Effect.gen(function*() {
          yield* makeTenant("gamma")
          yield* makeTenant("delta")
          const gamma = yield* userToken("gwen", "gamma")
          const delta = yield* userToken("dan", "delta")
          for (let i = 0; i < 3; i++) yield* createNote(delta, `delta ${i}`)
          for (let i = 0; i < 3; i++) yield* createNote(gamma, `gamma ${i}`)
          const page = yield* get("/v1/notes?limit=1", gamma)
          const cursor = bodyOf(page, Bodies.notes).nextCursor!
          const borrowed = yield* get(`/v1/notes?limit=100&cursor=${encodeURIComponent(cursor)}`, delta)
          expect(borrowed.status).toBe(200)
          for (const note of bodyOf(borrowed, Bodies.notes).items) expect(note.title).toMatch(/^delta /)
        }))
    }
  )
}
