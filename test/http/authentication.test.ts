import { Bodies, bodyOf } from "../bodies.js"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { createHmac } from "node:crypto"
import { AccountDirectory } from "../../src/auth/AccountDirectory.js"
import { TenantAdmin } from "../../src/platform/TenantAdmin.js"
import { TenantContexts } from "../../src/tenancy/TenantContexts.js"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { TestIssuer } from "../../src/testing/TestIssuer.js"
import {
  adminQuery,
  countAccounts,
  createNote,
  expectError,
  get,
  INVALID_TOKEN_CHALLENGE,
  makeTenant,
  platform,
  READ_WRITE,
  REALM,
  type Reply,
  send,
  userToken
} from "./support.js"

/** Every row of docs/API.md's authentication table, through HTTP, headers included. */

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url")

/** Only the contract's fields: error and message. */
const expectPlainBody = (reply: Reply) => expect(Object.keys(bodyOf(reply, Bodies.object)).sort()).toEqual(["error", "message"])

const expectMissingToken = (reply: Reply) => {
  expectError(reply, 401, "missing_token")
  expectPlainBody(reply)
  expect(reply.headers["www-authenticate"]).toBe(REALM)
}

const expectInvalidToken = (reply: Reply, description?: RegExp) => {
  expectError(reply, 401, "invalid_token")
  expectPlainBody(reply)
  const challenge = reply.headers["www-authenticate"]
  expect(challenge).toMatch(INVALID_TOKEN_CHALLENGE)
  if (description !== undefined) expect(challenge).toMatch(description)
}

const expectForbidden = (reply: Reply, code: string) => {
  expectError(reply, 403, code)
  expectPlainBody(reply)
  expect(reply.headers["www-authenticate"]).toBeUndefined()
}

layer(platform(), { excludeTestServices: true })("authentication over HTTP", (it) => {
  it.effect("no Authorization header, or another scheme: 401 missing_token with exactly the realm", () =>
    Effect.gen(function*() {
      yield* makeTenant("anon")
      const token = yield* userToken("ann", "anon")
      for (const path of ["/v1/me", "/v1/notes", "/v1/notes/00000000-0000-4000-8000-000000000000"]) {
        expectMissingToken(yield* get(path))
        expectMissingToken(yield* get(path, undefined, { headers: { authorization: "Basic dXNlcjpwYXNz" } }))
        expectMissingToken(yield* get(path, undefined, { headers: { authorization: `Token ${token}` } }))
        expectMissingToken(yield* get(path, undefined, { headers: { authorization: token } }))
        // A token anywhere but the Authorization header is no token.
        expectMissingToken(yield* get(`${path}?access_token=${token}`))
        expectMissingToken(yield* get(path, undefined, { headers: { cookie: `access_token=${token}` } }))
      }
      expectMissingToken(yield* send("POST", "/v1/notes", { json: { title: "anonymous", body: "" } }))
      expect(bodyOf(yield* get("/v1/notes", token), Bodies.notes).items).toEqual([])
    }))

  it.effect("malformed, forged, expired, foreign and keyless tokens: 401 invalid_token with a description", () =>
    Effect.gen(function*() {
      yield* makeTenant("forged")
      const issuer = yield* TestIssuer
      const current = yield* issuer.currentKey
      const stranger = yield* issuer.generateKey()
      const now = Math.floor(Date.now() / 1000)
      const accountsBefore = yield* countAccounts
      const valid = yield* issuer.user("victim", { tenant: "forged", scopes: READ_WRITE })
      const [h, p] = valid.split(".")
      const hs256Header = b64url({ alg: "HS256", typ: "JWT" })
      const hs256Payload = b64url({ iss: issuer.issuer, aud: "platform", sub: "victim", tenant: "forged", exp: now + 600 })
      const hs256 = `${hs256Header}.${hs256Payload}.${
        createHmac("sha256", "secret").update(`${hs256Header}.${hs256Payload}`).digest("base64url")
      }`
      const cases: ReadonlyArray<readonly [string, string, RegExp]> = [
        ["not a JWT", "not-a-jwt", /compact JWS/],
        ["three garbage segments", "a.b.c", /error_description=/],
        ["an empty bearer", "", /empty/],
        ["alg none", `${b64url({ alg: "none" })}.${p}.`, /error_description=/],
        ["an HMAC algorithm", hs256, /algorithm/],
        ["a bad signature (another key, the current kid)", yield* issuer.user("victim", {
          tenant: "forged",
          key: stranger,
          header: { kid: current.kid }
        }), /signature/],
        ["a payload swapped under a signature", `${h}.${b64url({ iss: issuer.issuer, aud: "platform", sub: "admin", tenant: "forged", exp: now + 600 })}.${valid.split(".")[2]}`, /signature/],
        ["an unknown kid", yield* issuer.user("victim", { tenant: "forged", key: stranger }), /key/],
        ["expired", yield* issuer.user("victim", {
          tenant: "forged",
          claims: { iat: now - 7200, exp: now - 3600 }
        }), /expired/],
        ["not yet valid", yield* issuer.user("victim", {
          tenant: "forged",
          claims: { nbf: now + 3600 }
        }), /not valid yet/],
        ["the wrong audience", yield* issuer.user("victim", { tenant: "forged", claims: { aud: "someone-else" } }), /audience/],
        ["an untrusted issuer", yield* issuer.user("victim", {
          tenant: "forged",
          claims: { iss: "http://127.0.0.1:1/evil" }
        }), /issuer/],
        ["no exp claim", yield* issuer.user("victim", { tenant: "forged", claims: { exp: undefined } }), /exp/],
        ["no sub claim", yield* issuer.token({ claims: { tenant: "forged" } }), /sub/]
      ]
      for (const [what, token, description] of cases) {
        const reply = yield* get("/v1/me", undefined, { headers: { authorization: `Bearer ${token}` } })
        expect.soft(reply.status, what).toBe(401)
        expectInvalidToken(reply, description)
        expectInvalidToken(yield* get("/v1/notes", undefined, { headers: { authorization: `Bearer ${token}` } }))
      }
      // None of them made an account.
      expect(yield* countAccounts).toBe(accountsBefore)
      // The real token still works.
      expect((yield* get("/v1/me", valid)).status).toBe(200)
    }))

  it.effect("the scheme is case-insensitive: `bearer` and `BEARER` are accepted", () =>
    Effect.gen(function*() {
      yield* makeTenant("cases")
      const token = yield* userToken("casey", "cases")
      for (const scheme of ["bearer", "BEARER", "Bearer", "bEaReR"]) {
        const reply = yield* get("/v1/me", undefined, { headers: { authorization: `${scheme} ${token}` } })
        expect(reply.status, `${scheme}: ${reply.text}`).toBe(200)
        expect(bodyOf(reply, Bodies.me).account.tenantId).toBe("cases")
      }
    }))

  it.effect("two Authorization headers are refused (401 invalid_token), even when both are valid", () =>
    Effect.gen(function*() {
      yield* makeTenant("doubled")
      const alice = yield* userToken("alice", "doubled")
      const admin = yield* (yield* TestIssuer).admin()
      const pairs = [[alice, alice], [alice, admin], ["", alice]]
      for (const [first, second] of pairs) {
        const headers = { authorization: [`Bearer ${first}`, `Bearer ${second}`] }
        expectInvalidToken(yield* get("/v1/me", undefined, { headers }), /more than one/)
        expectInvalidToken(yield* send("POST", "/v1/notes", { headers, json: { title: "twice", body: "" } }))
        expectInvalidToken(yield* get("/v1/admin/tenants", undefined, { headers }), /more than one/)
      }
      expect(bodyOf(yield* get("/v1/notes", alice), Bodies.notes).items).toEqual([])
    }))

  it.effect("403 unknown_client for a machine token of an unregistered client, in every form", () =>
    Effect.gen(function*() {
      yield* makeTenant("clientless")
      const issuer = yield* TestIssuer
      const accountsBefore = yield* countAccounts
      for (const form of ["client_id", "gty", "auth0", "keycloak"] as const) {
        const token = yield* issuer.machine("ghost", { form, tenant: "clientless", scopes: READ_WRITE })
        expectForbidden(yield* get("/v1/me", token), "unknown_client")
        expectForbidden(yield* send("POST", "/v1/notes", { token, json: { title: "boo", body: "" } }), "unknown_client")
      }
      expect(yield* countAccounts).toBe(accountsBefore)
    }))

  it.effect("403 client_disabled once the client is disabled", () =>
    Effect.gen(function*() {
      yield* makeTenant("disabling")
      const admin = yield* TenantAdmin
      const issuer = yield* TestIssuer
      yield* Effect.orDie(admin.registerClient("disabling", "cron", "Cron"))
      const token = yield* issuer.machine("cron", { scopes: READ_WRITE })
      expect((yield* get("/v1/notes", token)).status).toBe(200)
      yield* Effect.orDie(admin.disableClient("disabling", "cron"))
      expectForbidden(yield* get("/v1/notes", token), "client_disabled")
      expectForbidden(yield* get("/v1/me", token), "client_disabled")
    }))

  it.effect("403 no_tenant when neither a tenant claim nor a verified email domain places the user", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const accountsBefore = yield* countAccounts
      const tokens = [
        yield* issuer.user("drifter", { scopes: READ_WRITE }),
        yield* issuer.user("drifter", { email: "drifter@nowhere.example" }),
        yield* issuer.user("drifter", { tenant: "no-such-tenant" })
      ]
      for (const token of tokens) {
        expectForbidden(yield* get("/v1/me", token), "no_tenant")
        expectForbidden(yield* get("/v1/notes", token), "no_tenant")
      }
      expect(yield* countAccounts).toBe(accountsBefore)
    }))

  it.effect("403 account_disabled after AccountDirectory.disableAccount", () =>
    Effect.gen(function*() {
      yield* makeTenant("accounts")
      const token = yield* userToken("eve", "accounts")
      const me = yield* get("/v1/me", token)
      expect(me.status).toBe(200)
      const other = yield* userToken("frank", "accounts")
      yield* createNote(other, "frank's")
      const directory = yield* AccountDirectory
      yield* Effect.orDie(directory.disableAccount(bodyOf(me, Bodies.me).account.id))
      expectForbidden(yield* get("/v1/me", token), "account_disabled")
      expectForbidden(yield* get("/v1/notes", token), "account_disabled")
      expectForbidden(yield* send("POST", "/v1/notes", { token, json: { title: "no", body: "" } }), "account_disabled")
      // A fresh token of the same person is still that disabled account.
      expectForbidden(yield* get("/v1/me", yield* userToken("eve", "accounts")), "account_disabled")
      // Others in the tenant are not affected.
      expect(bodyOf(yield* get("/v1/notes", other), Bodies.notes).items).toHaveLength(1)
    }))

  it.effect("403 tenant_mismatch when the token's tenant claim is not the account's tenant", () =>
    Effect.gen(function*() {
      yield* makeTenant("home")
      yield* makeTenant("away")
      const issuer = yield* TestIssuer
      const home = yield* userToken("gus", "home")
      yield* createNote(home, "home note")
      const away = yield* userToken("gus", "away")
      const mismatch = yield* get("/v1/notes", away)
      expectForbidden(mismatch, "tenant_mismatch")
      expectForbidden(yield* get("/v1/me", away), "tenant_mismatch")
      yield* Effect.orDie((yield* TenantAdmin).registerClient("home", "home-svc", "Home service"))
      expectForbidden(
        yield* get("/v1/notes", yield* issuer.machine("home-svc", { tenant: "away", scopes: READ_WRITE })),
        "tenant_mismatch"
      )
      // Neither the away tenant's data nor the home tenant's was reachable.
      expect(bodyOf(yield* get("/v1/notes", home), Bodies.notes).items).toHaveLength(1)
    }))

  it.effect("403 tenant_suspended while the tenant is suspended", () =>
    Effect.gen(function*() {
      yield* makeTenant("paused")
      const admin = yield* TenantAdmin
      const issuer = yield* TestIssuer
      yield* Effect.orDie(admin.registerClient("paused", "paused-svc", "Paused service"))
      const user = yield* userToken("hal", "paused")
      const machine = yield* issuer.machine("paused-svc", { scopes: READ_WRITE })
      expect((yield* get("/v1/notes", user)).status).toBe(200)
      yield* Effect.orDie(admin.setStatus("paused", "suspended"))
      for (const token of [user, machine]) {
        expectForbidden(yield* get("/v1/notes", token), "tenant_suspended")
        expectForbidden(yield* get("/v1/me", token), "tenant_suspended")
      }
      yield* Effect.orDie(admin.setStatus("paused", "active"))
      expect((yield* get("/v1/notes", user)).status).toBe(200)
      expect((yield* get("/v1/notes", machine)).status).toBe(200)
    }))

  it.effect("503 tenant_unavailable with Retry-After when the tenant's database is gone", () =>
    Effect.gen(function*() {
      yield* makeTenant("doomed")
      yield* makeTenant("bystander")
      const doomed = yield* userToken("ivan", "doomed")
      const bystander = yield* userToken("judy", "bystander")
      yield* createNote(doomed, "soon gone")
      yield* createNote(bystander, "safe")
      const database = (yield* TenantDatabases).databaseName("doomed")
      const expectUnavailable = (reply: Reply) => {
        expectError(reply, 503, "tenant_unavailable", [database, "bystander"])
        expectPlainBody(reply)
        expect(reply.headers["retry-after"]).toMatch(/^[1-9]\d*$/)
      }

      // Dropped under a live context: its pool's next query fails.
      yield* adminQuery(`DROP DATABASE ${database} WITH (FORCE)`)
      expectUnavailable(yield* get("/v1/notes", doomed))
      expectUnavailable(yield* send("POST", "/v1/notes", { token: doomed, json: { title: "t", body: "" } }))

      // The context evicted: building it anew fails to open the pool.
      yield* (yield* TenantContexts).invalidate("doomed")
      expectUnavailable(yield* get("/v1/notes", doomed))
      expectUnavailable(yield* get(`/v1/notes/00000000-0000-4000-8000-000000000000`, doomed))

      // Authentication needs only the platform database; other tenants are unaffected.
      expect((yield* get("/v1/me", doomed)).status).toBe(200)
      const other = yield* get("/v1/notes", bystander)
      expect(other.status).toBe(200)
      expect(bodyOf(other, Bodies.notes).items).toHaveLength(1)
      expect((yield* (yield* TenantContexts).stats).references).toBe(0)
    }))

  // A failure to acquire a connection (here 55000, the database not accepting
  // connections) is the database's unavailability, not a bug: 503, not 500.
  it.effect("503 tenant_unavailable when the tenant's database refuses connections", () =>
    Effect.gen(function*() {
      yield* makeTenant("closed")
      const token = yield* userToken("kim", "closed")
      yield* createNote(token, "before the door closed")
      const database = (yield* TenantDatabases).databaseName("closed")
      const allow = (allowed: boolean) => adminQuery(`ALTER DATABASE ${database} WITH ALLOW_CONNECTIONS ${allowed}`)
      yield* Effect.acquireRelease(allow(false), () => allow(true))
      yield* adminQuery("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", [database])
      // The first request may still meet a pooled connection whose end the pool
      // has not noticed yet ("Connection terminated": 503); the next needs a new one.
      expect((yield* get("/v1/notes", token)).status).toBeGreaterThanOrEqual(500)
      const reply = yield* get("/v1/notes", token)
      expectError(reply, 503, "tenant_unavailable", [database])
      expect(reply.headers["retry-after"]).toMatch(/^[1-9]\d*$/)
    }).pipe(Effect.scoped))
})
