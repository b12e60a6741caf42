import { expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { inject } from "vitest"
import { AccountDirectory } from "../../src/auth/AccountDirectory.js"
import { Authentication, requireScope } from "../../src/auth/Authentication.js"
import { wwwAuthenticate } from "../../src/auth/AuthErrors.js"
import { UserWithAccount } from "../../src/auth/UserWithAccount.js"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { TestIssuer } from "../../src/testing/TestIssuer.js"
import { authenticate, AuthStack, countAccounts, ensureTenant } from "./support.js"

const withHeaders = (headers: ReadonlyArray<string>) =>
  Effect.flatMap(Authentication, (auth) => auth.authenticate(headers))

const refusal = <R>(
  effect: Effect.Effect<unknown, { readonly _tag: string; readonly error: string; readonly message: string }, R>
) =>
  Effect.map(Effect.flip(effect), (error) => ({ tag: error._tag, code: error.error, header: wwwAuthenticate(error) }))

layer(AuthStack({ adminUrl: inject("databaseUrl") }), { excludeTestServices: true })("authentication", (it) => {
  it.effect("setup: tenants", () =>
    Effect.gen(function*() {
      yield* ensureTenant("acme")
      yield* ensureTenant("globex")
      const directory = yield* AccountDirectory
      yield* directory.addDomain("acme", "Acme.Example")
    }))

  it.effect("no Authorization header, or not a Bearer one: missing_token without an error attribute", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const token = yield* issuer.user("u-missing", { tenant: "acme" })
      for (const headers of [[], ["Basic dXNlcjpwYXNz"], [`Token ${token}`], [""], [token], [`Bearerx ${token}`]]) {
        const result = yield* refusal(withHeaders(headers))
        expect(result).toEqual({ tag: "MissingToken", code: "missing_token", header: `Bearer realm="platform"` })
      }
    }))

  it.effect("the scheme is case-insensitive; an empty token or two headers are invalid_token", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const token = yield* issuer.user("u-scheme", { tenant: "acme" })
      for (const header of [`bearer ${token}`, `BEARER ${token}`, `Bearer   ${token} `]) {
        const user = yield* withHeaders([header])
        expect(user.principal.subject).toBe("u-scheme")
      }
      for (const headers of [["Bearer "], ["Bearer"], [`Bearer ${token}`, `Bearer ${token}`]]) {
        const result = yield* refusal(withHeaders(headers))
        expect(result.tag).toBe("InvalidToken")
        expect(result.code).toBe("invalid_token")
        expect(result.header).toMatch(/^Bearer realm="platform", error="invalid_token", error_description="[^"]+"$/)
      }
    }))

  it.effect("a user joins the tenant its tenant claim names, once", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const token = yield* issuer.user("u-claim", { tenant: "acme", email: "u@elsewhere.example", name: "U. Claim" })
      const before = yield* countAccounts
      const first = yield* authenticate(token)
      const again = yield* authenticate(yield* issuer.user("u-claim", { tenant: "acme" }))
      expect(yield* countAccounts).toBe(before + 1)
      expect(first.account.id).toBe(again.account.id)
      expect(first.principal).toMatchObject({ kind: "user", issuer: issuer.issuer, subject: "u-claim" })
      expect(first.account).toMatchObject({ kind: "user", tenantId: "acme", displayName: "U. Claim" })
      expect(first.tenant).toMatchObject({ id: "acme", status: "active" })
      // Without the claim later, the account still holds its tenant.
      const unclaimed = yield* authenticate(yield* issuer.user("u-claim"))
      expect(unclaimed.tenant.id).toBe("acme")
    }))

  it.effect("a user joins by verified email domain; email_verified false is no_tenant", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const verified = yield* authenticate(yield* issuer.user("u-mail", { email: "Jo@ACME.example", emailVerified: true }))
      expect(verified.tenant.id).toBe("acme")
      expect(verified.principal.email).toBe("Jo@ACME.example")
      // Absent email_verified is "not false".
      const unstated = yield* authenticate(yield* issuer.user("u-mail-2", { email: "kim@acme.example" }))
      expect(unstated.tenant.id).toBe("acme")
      const before = yield* countAccounts
      for (const emailVerified of [false, "false"]) {
        const token = yield* issuer.user("u-unverified", {
          email: "mallory@acme.example",
          claims: { email_verified: emailVerified }
        })
        expect(yield* refusal(authenticate(token))).toMatchObject({ tag: "NoTenant", code: "no_tenant" })
      }
      const unknownDomain = yield* issuer.user("u-nodomain", { email: "x@unknown.example", emailVerified: true })
      expect(yield* refusal(authenticate(unknownDomain))).toMatchObject({ tag: "NoTenant", header: undefined })
      const nothing = yield* issuer.user("u-nothing")
      expect((yield* refusal(authenticate(nothing))).tag).toBe("NoTenant")
      const unknownTenant = yield* issuer.user("u-unknown-tenant", { tenant: "no-such-tenant" })
      expect((yield* refusal(authenticate(unknownTenant))).tag).toBe("NoTenant")
      expect(yield* countAccounts).toBe(before)
    }))

  it.effect("50 concurrent first requests of one new user: one account, no errors", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const before = yield* countAccounts
      const tokens = yield* Effect.all(Array.from({ length: 50 }, () => issuer.user("u-crowd", { tenant: "acme" })))
      const users = yield* Effect.all(tokens.map(authenticate), { concurrency: "unbounded" })
      expect(new Set(users.map((user) => user.account.id)).size).toBe(1)
      expect(yield* countAccounts).toBe(before + 1)
    }))

  it.effect("machine tokens in all four forms", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const directory = yield* AccountDirectory
      const client = yield* directory.registerClient("acme", "billing-job", "Billing job")
      const before = yield* countAccounts
      for (const form of ["client_id", "gty", "auth0", "keycloak"] as const) {
        const caller = yield* authenticate(yield* issuer.machine("billing-job", { form, scopes: ["notes:read"] }))
        expect(caller.principal.kind).toBe("machine")
        expect(caller.principal.clientId).toBe("billing-job")
        expect(caller.principal.scopes).toEqual(["notes:read"])
        expect(caller.account.id).toBe(client.accountId)
        expect(caller.account.kind).toBe("machine")
        expect(caller.tenant.id).toBe("acme")
      }
      // client_id wins over azp.
      const both = yield* issuer.token({
        claims: { sub: "billing-job", client_id: "billing-job", azp: "someone-else", scp: ["a", "b"] }
      })
      const caller = yield* authenticate(both)
      expect(caller.principal.clientId).toBe("billing-job")
      expect(caller.principal.scopes).toEqual(["a", "b"])
      expect(yield* countAccounts).toBe(before)
    }))

  it.effect("machine tokens of unregistered or disabled clients; never created on the fly", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const directory = yield* AccountDirectory
      const before = yield* countAccounts
      for (const form of ["client_id", "gty", "auth0", "keycloak"] as const) {
        const result = yield* refusal(authenticate(yield* issuer.machine("ghost", { form })))
        expect(result).toEqual({ tag: "UnknownClient", code: "unknown_client", header: undefined })
      }
      expect(yield* countAccounts).toBe(before)
      yield* directory.registerClient("acme", "retired-job", "Retired")
      const token = yield* issuer.machine("retired-job")
      yield* authenticate(token)
      yield* directory.disableClient("acme", "retired-job")
      expect(yield* refusal(authenticate(token))).toMatchObject({ tag: "ClientDisabled", code: "client_disabled" })
      const noClientId = yield* issuer.token({ claims: { sub: "x@clients" } })
      expect((yield* refusal(authenticate(noClientId))).tag).toBe("InvalidToken")
    }))

  it.effect("a disabled account is refused", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const directory = yield* AccountDirectory
      const token = yield* issuer.user("u-disabled", { tenant: "acme" })
      const user = yield* authenticate(token)
      yield* directory.disableAccount(user.account.id)
      expect(yield* refusal(authenticate(token))).toMatchObject({ tag: "AccountDisabled", code: "account_disabled" })
      const client = yield* directory.registerClient("acme", "machine-disabled", "M")
      yield* directory.disableAccount(client.accountId)
      const machine = yield* issuer.machine("machine-disabled")
      expect((yield* refusal(authenticate(machine))).tag).toBe("AccountDisabled")
    }))

  it.effect("a tenant claim other than the account's tenant is tenant_mismatch", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      yield* authenticate(yield* issuer.user("u-mismatch", { tenant: "acme" }))
      const other = yield* issuer.user("u-mismatch", { tenant: "globex" })
      const result = yield* refusal(authenticate(other))
      expect(result).toMatchObject({ tag: "TenantMismatch", code: "tenant_mismatch" })
      expect((yield* Effect.flip(authenticate(other))).message).not.toMatch(/acme/)
      const unknown = yield* issuer.user("u-mismatch", { tenant: "no-such-tenant" })
      expect((yield* refusal(authenticate(unknown))).tag).toBe("TenantMismatch")
      const machine = yield* issuer.machine("billing-job", { tenant: "globex" })
      expect((yield* refusal(authenticate(machine))).tag).toBe("TenantMismatch")
    }))

  it.effect("a suspended tenant admits nobody, and nobody new", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const directory = yield* AccountDirectory
      const databases = yield* TenantDatabases
      yield* ensureTenant("initech")
      yield* directory.registerClient("initech", "initech-job", "Job")
      const user = yield* issuer.user("u-initech", { tenant: "initech" })
      const machine = yield* issuer.machine("initech-job")
      yield* authenticate(user)
      yield* authenticate(machine)
      yield* databases.setStatus("initech", "suspended")
      yield* directory.invalidateTenant("initech")
      const before = yield* countAccounts
      for (const token of [user, machine, yield* issuer.user("u-initech-new", { tenant: "initech" })]) {
        expect(yield* refusal(authenticate(token))).toMatchObject({ tag: "TenantSuspended", code: "tenant_suspended" })
      }
      expect(yield* countAccounts).toBe(before)
      yield* databases.setStatus("initech", "active")
      yield* directory.invalidateTenant("initech")
      expect((yield* authenticate(user)).tenant.status).toBe("active")
    }))

  it.effect("a valid token without a required scope is insufficient_scope", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const user = yield* authenticate(yield* issuer.user("u-scopes", { tenant: "acme", scopes: ["notes:read"] }))
      const check = (scope: string) => requireScope(scope).pipe(Effect.provide(Layer.succeed(UserWithAccount, user)))
      yield* check("notes:read")
      const result = yield* refusal(check("notes:write"))
      expect(result).toEqual({
        tag: "InsufficientScope",
        code: "insufficient_scope",
        header: `Bearer realm="platform", error="insufficient_scope", scope="notes:write"`
      })
    }))

  it.effect("admin: platform:admin needed; no account or tenant looked up or created", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const auth = yield* Authentication
      const before = yield* countAccounts
      const principal = yield* auth.authenticateAdmin([`Bearer ${yield* issuer.admin("root")}`])
      expect(principal).toMatchObject({ kind: "user", subject: "root" })
      expect(principal.scopes).toContain("platform:admin")
      // A machine operator, with scp.
      const machine = yield* issuer.token({ claims: { sub: "ops", client_id: "ops", scp: "platform:admin other" } })
      expect((yield* auth.authenticateAdmin([`Bearer ${machine}`])).kind).toBe("machine")
      const plain = yield* issuer.user("not-admin", { tenant: "acme", scopes: ["notes:read"] })
      expect(yield* refusal(auth.authenticateAdmin([`Bearer ${plain}`]))).toEqual({
        tag: "InsufficientScope",
        code: "insufficient_scope",
        header: `Bearer realm="platform", error="insufficient_scope", scope="platform:admin"`
      })
      expect((yield* refusal(auth.authenticateAdmin([]))).tag).toBe("MissingToken")
      const past = Math.floor(Date.now() / 1000) - 3600
      const expired = yield* issuer.admin("root", { claims: { iat: past - 60, exp: past } })
      expect((yield* refusal(auth.authenticateAdmin([`Bearer ${expired}`]))).tag).toBe("InvalidToken")
      expect(yield* countAccounts).toBe(before)
    }))
})
