import { describe, expect, it } from "@effect/vitest"
import { Context, Duration, Effect, Layer, TestClock } from "effect"
import { mkdtemp, rm, stat } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { AuthConfig, makeAuthConfig } from "../../src/auth/AuthConfig.js"
import { DevIssuer } from "../../src/auth/DevIssuer.js"
import { TokenVerifier } from "../../src/auth/TokenVerifier.js"
import { TestIssuer, type TestIssuerOptions } from "../../src/testing/TestIssuer.js"

// Where keys come from and how they change: discovery, JWKS URL, local file;
// rotation, the refetch cooldown, outages. No database needed.

const verifierFor = (config: AuthConfig["Type"]) =>
  Effect.map(
    Layer.build(TokenVerifier.layer.pipe(Layer.provide(Layer.succeed(AuthConfig, config)))),
    (context) => Context.get(context, TokenVerifier)
  )

// ES256 unless the algorithm matters: its keys are generated in a blink, RSA's are not.
const issuerWith = (options: TestIssuerOptions = {}) => TestIssuer.make({ alg: "ES256", ...options })

const tag = <A, E extends { readonly _tag: string }, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.either(effect), (either) => (either._tag === "Right" ? "ok" : either.left._tag))

describe("issuer keys", () => {
  it.scoped("RS256, PS256, ES256 and EdDSA issuers, found by OIDC discovery", () =>
    Effect.gen(function*() {
      for (const alg of ["RS256", "PS256", "ES256", "EdDSA"] as const) {
        const issuer = yield* issuerWith({ alg })
        const verifier = yield* verifierFor(issuer.authConfig())
        const { claims, header } = yield* verifier.verify(yield* issuer.user("alice", { scopes: ["a", "b"] }))
        expect(header.alg).toBe(alg)
        expect(claims).toMatchObject({ iss: issuer.issuer, sub: "alice", aud: "platform", scope: "a b" })
        expect(yield* issuer.requests).toEqual({ discovery: 1, jwks: 1 })
      }
    }))

  it.scoped("an explicit JWKS URL skips discovery; a discovery document for another issuer is refused", () =>
    Effect.gen(function*() {
      const issuer = yield* issuerWith()
      const direct = yield* verifierFor(makeAuthConfig({ issuers: [{ issuer: issuer.issuer, jwksUrl: issuer.jwksUrl }] }))
      yield* direct.verify(yield* issuer.user("alice"))
      expect(yield* issuer.requests).toEqual({ discovery: 0, jwks: 1 })
      // Trusting `<issuer>/` finds the same document, which names `<issuer>`: not the issuer we trust.
      const lookalike = `${issuer.issuer}/`
      const confused = yield* verifierFor(makeAuthConfig({ issuers: [{ issuer: lookalike }] }))
      const error = yield* Effect.flip(confused.verify(yield* issuer.user("alice", { claims: { iss: lookalike } })))
      expect(error).toMatchObject({ _tag: "InvalidToken", message: "the issuer's keys could not be fetched" })
      expect((yield* issuer.requests).jwks).toBe(1)
    }))

  it.scoped("several trusted issuers: each token is checked with its own issuer's keys", () =>
    Effect.gen(function*() {
      const a = yield* issuerWith()
      const b = yield* issuerWith({ alg: "EdDSA" })
      const verifier = yield* verifierFor(makeAuthConfig({ issuers: [a.trustedIssuer, b.trustedIssuer] }))
      yield* verifier.verify(yield* a.user("x"))
      yield* verifier.verify(yield* b.user("y"))
      // Signed by b's key, claiming to be a.
      const forged = yield* b.user("x", { claims: { iss: a.issuer } })
      expect(yield* tag(verifier.verify(forged))).toBe("InvalidToken")
    }))

  it.live("a rotated-in key is picked up on its unknown kid once the cooldown has passed", () =>
    Effect.gen(function*() {
      const issuer = yield* issuerWith()
      const verifier = yield* verifierFor(issuer.authConfig({ jwksCooldown: Duration.millis(200) }))
      yield* verifier.verify(yield* issuer.user("alice"))
      const old = yield* issuer.user("alice")
      yield* issuer.rotate()
      yield* Effect.sleep("250 millis")
      yield* verifier.verify(yield* issuer.user("alice"))
      expect((yield* issuer.requests).jwks).toBe(2)
      // Keys fetched earlier keep verifying.
      yield* verifier.verify(old)
      // Without a kid both published keys match: each is tried.
      yield* verifier.verify(yield* issuer.user("alice", { header: { kid: undefined } }))
      expect((yield* issuer.requests).jwks).toBe(2)
    }).pipe(Effect.scoped))

  it.live("a flood of unknown kids refetches at most once per cooldown", () =>
    Effect.gen(function*() {
      const issuer = yield* issuerWith()
      const verifier = yield* verifierFor(issuer.authConfig({ jwksCooldown: Duration.millis(600) }))
      const stranger = yield* issuer.generateKey()
      const next = yield* issuer.generateKey()
      const flood = yield* Effect.all(
        Array.from({ length: 200 }, (_, i) => issuer.user("mallory", { key: stranger, header: { kid: `kid-${i}` } }))
      )
      yield* verifier.verify(yield* issuer.user("alice"))
      expect((yield* issuer.requests).jwks).toBe(1)
      // Within the cooldown of the first fetch: no refetch at all.
      const early = yield* Effect.all(flood.slice(0, 100).map((t) => tag(verifier.verify(t))), { concurrency: 20 })
      expect(new Set(early)).toEqual(new Set(["InvalidToken"]))
      expect((yield* issuer.requests).jwks).toBe(1)
      yield* Effect.sleep("650 millis")
      // After it: one refetch for the whole flood, concurrent and sequential.
      yield* Effect.all(flood.slice(100, 150).map((t) => tag(verifier.verify(t))), { concurrency: "unbounded" })
      for (const token of flood.slice(150)) yield* tag(verifier.verify(token))
      expect((yield* issuer.requests).jwks).toBe(2)
      // A genuinely new key published inside that cooldown waits for the next one.
      yield* issuer.publish(next)
      const fresh = yield* issuer.user("alice", { key: next })
      expect(yield* tag(verifier.verify(fresh))).toBe("InvalidToken")
      yield* Effect.sleep("650 millis")
      expect(yield* tag(verifier.verify(fresh))).toBe("ok")
      expect((yield* issuer.requests).jwks).toBe(3)
    }).pipe(Effect.scoped))

  it.live("known keys keep working while the JWKS endpoint is down, even once they are due for refresh", () =>
    Effect.gen(function*() {
      const issuer = yield* issuerWith()
      const verifier = yield* verifierFor(
        issuer.authConfig({ jwksCooldown: Duration.millis(100), jwksMaxAge: Duration.millis(150) })
      )
      const token = yield* issuer.user("alice")
      yield* verifier.verify(token)
      yield* issuer.setAvailable(false)
      yield* Effect.sleep("200 millis")
      for (let i = 0; i < 5; i++) yield* verifier.verify(token)
      // A background refresh was tried (and failed) without failing anyone. A
      // repeated token is served from the verified-token cache, which starts the
      // refresh without waiting for it: give its request time to arrive.
      yield* Effect.sleep("100 millis")
      expect((yield* issuer.requests).jwks).toBeGreaterThanOrEqual(2)
      const rotated = yield* issuer.rotate()
      const fresh = yield* issuer.user("alice")
      expect(yield* tag(verifier.verify(fresh))).toBe("InvalidToken")
      yield* issuer.setAvailable(true)
      yield* Effect.sleep("150 millis")
      const { header } = yield* verifier.verify(fresh)
      expect(header.kid).toBe(rotated.kid)
      yield* verifier.verify(token)
    }).pipe(Effect.scoped))

  it.live("a removed key stops verifying after the next refresh", () =>
    Effect.gen(function*() {
      const issuer = yield* issuerWith()
      const verifier = yield* verifierFor(
        issuer.authConfig({ jwksCooldown: Duration.millis(50), jwksMaxAge: Duration.millis(100) })
      )
      const old = yield* issuer.currentKey
      const token = yield* issuer.user("alice")
      yield* verifier.verify(token)
      yield* issuer.rotate()
      yield* issuer.unpublish(old.kid)
      yield* Effect.sleep("150 millis")
      // This call starts the background refresh and is still served by the old set.
      yield* Effect.either(verifier.verify(token))
      yield* Effect.sleep("100 millis")
      expect(yield* tag(verifier.verify(token))).toBe("InvalidToken")
    }).pipe(Effect.scoped))

  it.scoped("a repeated token skips verification but not its times: it expires in the cache too", () =>
    Effect.gen(function*() {
      const issuer = yield* issuerWith()
      const verifier = yield* verifierFor(issuer.authConfig({ clockTolerance: Duration.seconds(5) }))
      const token = yield* issuer.user("alice", { lifetime: Duration.minutes(1) })
      const jwks = (yield* issuer.requests).jwks
      expect(yield* tag(verifier.verify(token))).toBe("ok")
      expect(yield* tag(verifier.verify(token))).toBe("ok")
      // Taking the issuer down proves the second and later uses were served from the cache.
      yield* issuer.setAvailable(false)
      expect(yield* tag(verifier.verify(token))).toBe("ok")
      expect((yield* issuer.requests).jwks).toBe(jwks + 1)
      yield* TestClock.adjust(Duration.seconds(70))
      const expired = yield* Effect.flip(verifier.verify(token))
      expect(expired.message).toBe("the token has expired")
    }))

  it.scoped("an issuer whose keys cannot be fetched fails its tokens, not start-up", () =>
    Effect.gen(function*() {
      const issuer = yield* issuerWith()
      yield* issuer.setAvailable(false)
      const verifier = yield* verifierFor(issuer.authConfig())
      const error = yield* Effect.flip(verifier.verify(yield* issuer.user("alice")))
      expect(error.message).toBe("the issuer's keys could not be fetched")
    }))

  it.scoped("configurations that cannot be safe are refused at start-up", () =>
    Effect.gen(function*() {
      const issuer = yield* issuerWith()
      for (const algorithms of [["HS256"], ["none"], ["RS256", "HS512"], []]) {
        const error = yield* Effect.flip(verifierFor(issuer.authConfig({ algorithms })))
        expect(error._tag).toBe("InvalidAuthConfig")
      }
      expect((yield* Effect.flip(verifierFor(issuer.authConfig({ issuers: [] }))))._tag).toBe("InvalidAuthConfig")
      const missing = makeAuthConfig({ issuers: [{ issuer: "x", jwksFile: "/nonexistent/jwks.json" }] })
      expect((yield* Effect.flip(verifierFor(missing))).message).toMatch(/jwks\.json/)
    }))

  it.scoped("an algorithm outside the allowlist is refused even when the key is genuine", () =>
    Effect.gen(function*() {
      const issuer = yield* issuerWith()
      const verifier = yield* verifierFor(issuer.authConfig({ algorithms: ["RS256"] }))
      const error = yield* Effect.flip(verifier.verify(yield* issuer.user("alice")))
      expect(error.message).toMatch(/algorithm/)
    }))
})

describe("development issuer", () => {
  const temporaryDirectory = Effect.acquireRelease(
    Effect.promise(() => mkdtemp(join(tmpdir(), "dev-issuer-"))),
    (directory) => Effect.promise(() => rm(directory, { recursive: true, force: true }))
  )
  const devIssuer = (directory: string) =>
    Effect.map(Layer.build(DevIssuer.layer({ directory: join(directory, "issuer") })), (c) => Context.get(c, DevIssuer))

  it.scoped("keeps its key (owner-only) across restarts; verified through its JWKS file", () =>
    Effect.gen(function*() {
      const directory = yield* temporaryDirectory
      // Two processes starting at once agree on one key.
      const [first, racer] = yield* Effect.all([devIssuer(directory), devIssuer(directory)], { concurrency: 2 })
      expect(racer.jwks).toEqual(first.jwks)
      const keyFile = join(directory, "issuer", "signing-key.jwk.json")
      expect((yield* Effect.promise(() => stat(keyFile))).mode & 0o777).toBe(0o600)
      const token = yield* first.user("dev-user", { tenant: "demo" })
      const restarted = yield* devIssuer(directory)
      expect(restarted.jwks).toEqual(first.jwks)
      const verifier = yield* verifierFor(makeAuthConfig({ issuers: [restarted.trustedIssuer] }))
      for (const t of [token, yield* restarted.machine("svc"), yield* restarted.admin()]) yield* verifier.verify(t)
      const admin = yield* verifier.verify(yield* restarted.admin())
      expect(admin.claims.scope).toBe("platform:admin")
      expect(restarted.discovery("http://127.0.0.1:3000/jwks")).toMatchObject({
        issuer: restarted.issuer,
        jwks_uri: "http://127.0.0.1:3000/jwks"
      })
      expect(restarted.jwks.keys[0]).not.toHaveProperty("d")
    }))
})
