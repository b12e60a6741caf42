import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { CompactSign, exportSPKI, generateKeyPair, importJWK, SignJWT } from "jose"
import { randomUUID } from "node:crypto"
import { createServer } from "node:http"
import { inject } from "vitest"
import { wwwAuthenticate } from "../../src/auth/AuthErrors.js"
import { TestIssuer } from "../../src/testing/TestIssuer.js"
import { authenticate, AuthStack, countAccounts, ensureTenant } from "./support.js"

// Forged and broken tokens, each a real token on the wire (nothing of jose is
// mocked). Every one must be refused as invalid_token and write nothing: each
// carries a fresh subject and a valid tenant claim, so a token that got
// through would create an account.

const b64 = (value: unknown) =>
  Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url")

const now = () => Math.floor(Date.now() / 1000)

/** Claims that would be accepted if well signed: a new user of tenant acme. */
const goodClaims = (issuer: string, overrides: Record<string, unknown> = {}) => ({
  iss: issuer,
  aud: "platform",
  sub: `mallory-${randomUUID()}`,
  tenant: "acme",
  iat: now(),
  exp: now() + 600,
  ...overrides
})

const expectRefused = (token: string, message?: RegExp) =>
  Effect.gen(function*() {
    const before = yield* countAccounts
    const error = yield* Effect.flip(authenticate(token))
    expect(error._tag).toBe("InvalidToken")
    expect(error.error).toBe("invalid_token")
    if (message !== undefined) expect(error.message).toMatch(message)
    expect(wwwAuthenticate(error)).toMatch(/^Bearer realm="platform", error="invalid_token", error_description="[^"]+"$/)
    expect(yield* countAccounts).toBe(before)
  })

/** A listener that must never be contacted. */
const tripwire = Effect.acquireRelease(
  Effect.async<{ readonly url: string; readonly hits: () => number; readonly close: () => void }>((resume) => {
    let hits = 0
    const server = createServer((_, response) => {
      hits++
      response.writeHead(200, { "content-type": "application/json" }).end("{\"keys\":[]}")
    })
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      resume(Effect.succeed({
        url: `http://127.0.0.1:${port}`,
        hits: () => hits,
        close: () => {
          server.close()
          server.closeAllConnections()
        }
      }))
    })
  }),
  (wire) => Effect.sync(() => wire.close())
)

layer(AuthStack({ adminUrl: inject("databaseUrl") }), { excludeTestServices: true })("forged tokens", (it) => {
  it.effect("control: the same claims, properly signed, are accepted and create the account", () =>
    Effect.gen(function*() {
      yield* ensureTenant("acme")
      const issuer = yield* TestIssuer
      const before = yield* countAccounts
      const user = yield* authenticate(yield* issuer.token({ claims: goodClaims(issuer.issuer) }))
      expect(user.tenant.id).toBe("acme")
      expect(yield* countAccounts).toBe(before + 1)
    }))

  it.effect("alg none, in several casings, with and without a signature", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const real = (yield* issuer.user("someone", { tenant: "acme" })).split(".")[2]!
      for (const alg of ["none", "None", "NONE", "nOnE"]) {
        const unsigned = `${b64({ alg, typ: "JWT" })}.${b64(goodClaims(issuer.issuer))}`
        yield* expectRefused(`${unsigned}.`)
        yield* expectRefused(`${unsigned}.${real}`, /algorithm/)
        yield* expectRefused(unsigned)
      }
    }))

  it.effect("HS256 signed with the issuer's public key as the secret", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const key = yield* issuer.currentKey
      const publicKey = yield* Effect.promise(() => importJWK(key.publicJwk, "RS256", { extractable: true }))
      if (!("type" in publicKey)) throw new Error("expected a key object")
      const pem = yield* Effect.promise(() => exportSPKI(publicKey))
      for (const secret of [pem, pem.trim(), JSON.stringify(key.publicJwk)]) {
        const token = yield* Effect.promise(() =>
          new SignJWT(goodClaims(issuer.issuer)).setProtectedHeader({ alg: "HS256", kid: key.kid }).sign(
            new TextEncoder().encode(secret)
          )
        )
        yield* expectRefused(token, /algorithm/)
      }
    }))

  it.effect("unknown kid, and kids holding a path or SQL", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      for (const kid of ["no-such-key", "../../../../etc/passwd", "' OR 1=1; DROP TABLE accounts; --", "\u0000"]) {
        yield* expectRefused(yield* issuer.token({ claims: goodClaims(issuer.issuer), header: { kid } }))
      }
      yield* expectRefused(yield* issuer.token({ claims: goodClaims(issuer.issuer), header: { kid: 42 } }), /kid/)
    }))

  it.effect("an embedded jwk header with the attacker's own key", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const attacker = yield* issuer.generateKey()
      yield* expectRefused(
        yield* issuer.token({ claims: goodClaims(issuer.issuer), key: attacker, header: { jwk: attacker.publicJwk } }),
        /jwk/
      )
      // Without a kid, so that no key of the issuer is even looked up by name.
      yield* expectRefused(
        yield* issuer.token({
          claims: goodClaims(issuer.issuer),
          key: attacker,
          header: { kid: undefined, jwk: attacker.publicJwk }
        })
      )
    }))

  it.scoped("jku, x5u and x5c headers are refused and never followed", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const wire = yield* tripwire
      const attacker = yield* issuer.generateKey()
      for (const key of [attacker, yield* issuer.currentKey]) {
        yield* expectRefused(
          yield* issuer.token({ claims: goodClaims(issuer.issuer), key, header: { jku: `${wire.url}/jwks` } }),
          /jku/
        )
        yield* expectRefused(
          yield* issuer.token({ claims: goodClaims(issuer.issuer), key, header: { x5u: `${wire.url}/cert.pem` } }),
          /x5u/
        )
        yield* expectRefused(
          yield* issuer.token({ claims: goodClaims(issuer.issuer), key, header: { x5c: ["MIIB"] } }),
          /x5c/
        )
      }
      expect(wire.hits()).toBe(0)
    }))

  it.effect("expired, not yet valid, issued in the future, without exp", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const t = now()
      yield* expectRefused(
        yield* issuer.token({ claims: goodClaims(issuer.issuer, { iat: t - 7200, exp: t - 3600 }) }),
        /expired/
      )
      yield* expectRefused(yield* issuer.token({ claims: goodClaims(issuer.issuer, { nbf: t + 3600 }) }), /not valid yet/)
      yield* expectRefused(
        yield* issuer.token({ claims: goodClaims(issuer.issuer, { iat: t + 3600, exp: t + 7200 }) }),
        /future/
      )
      yield* expectRefused(yield* issuer.token({ claims: goodClaims(issuer.issuer, { exp: undefined }) }), /exp/)
      yield* expectRefused(yield* issuer.token({ claims: goodClaims(issuer.issuer, { exp: "tomorrow" }) }))
    }))

  it.effect("wrong issuer, wrong audience", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      yield* expectRefused(
        yield* issuer.token({ claims: goodClaims(issuer.issuer, { iss: "https://evil.example" }) }),
        /issuer/
      )
      yield* expectRefused(yield* issuer.token({ claims: goodClaims(issuer.issuer, { iss: undefined }) }), /issuer/)
      yield* expectRefused(yield* issuer.token({ claims: goodClaims(issuer.issuer, { aud: "other" }) }), /audience/)
      yield* expectRefused(yield* issuer.token({ claims: goodClaims(issuer.issuer, { aud: undefined }) }), /aud/)
    }))

  it.effect("a tampered payload under the original signature", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const [header, , signature] = (yield* issuer.token({ claims: goodClaims(issuer.issuer) })).split(".")
      yield* expectRefused(`${header}.${b64(goodClaims(issuer.issuer, { scope: "platform:admin" }))}.${signature}`, /signature/)
    }))

  it.effect("stripped, padded and non-canonical signatures", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const token = yield* issuer.token({ claims: goodClaims(issuer.issuer) })
      const [header = "", payload = "", signature = ""] = token.split(".")
      yield* expectRefused(`${header}.${payload}.`)
      yield* expectRefused(`${header}.${payload}`)
      yield* expectRefused(`${header}.${payload}.${signature}==`)
      yield* expectRefused(`${header}.${payload}.${signature}=`)
      yield* expectRefused(`${header}.${payload}.${signature.replace(/-/g, "+").replace(/_/g, "/")}x+/`)
      // A 256-byte RSA signature ends in a character with 4 unused bits: setting
      // one decodes to the same bytes, and must still be refused.
      const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
      const last = alphabet.indexOf(signature.at(-1)!)
      const twin = `${signature.slice(0, -1)}${alphabet[last | 1]}`
      expect(Buffer.from(twin, "base64url")).toEqual(Buffer.from(signature, "base64url"))
      yield* expectRefused(`${header}.${payload}.${twin}`, /canonical/)
      yield* expectRefused(`${header}.${payload}.${signature}.${signature}`)
      yield* expectRefused(` ${token}x`)
      yield* expectRefused(token.replace(".", ". "))
    }))

  it.effect("an oversized token, even when well signed", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const token = yield* issuer.token({ claims: goodClaims(issuer.issuer, { padding: "x".repeat(17_000) }) })
      yield* expectRefused(token, /too long/)
    }))

  it.effect("header or payload that is not a JSON object, even when well signed", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const key = yield* issuer.currentKey
      for (const payload of ["[1,2]", "\"text\"", "123", "null", "not json", "{\"iss\":"]) {
        const token = yield* Effect.promise(() =>
          new CompactSign(new TextEncoder().encode(payload)).setProtectedHeader({ alg: key.alg, kid: key.kid }).sign(
            key.privateKey
          )
        )
        yield* expectRefused(token, /payload/)
      }
      const [, payload, signature] = (yield* issuer.token({ claims: goodClaims(issuer.issuer) })).split(".")
      for (const header of ["[]", "null", "\"RS256\"", "{"]) {
        yield* expectRefused(`${b64(header)}.${payload}.${signature}`, /header/)
      }
    }))

  it.effect("a token signed by a key absent from the JWKS, under its own or a published kid", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const stranger = yield* issuer.generateKey()
      const published = yield* issuer.currentKey
      yield* expectRefused(yield* issuer.token({ claims: goodClaims(issuer.issuer), key: stranger }), /no key/)
      yield* expectRefused(
        yield* issuer.token({ claims: goodClaims(issuer.issuer), key: stranger, header: { kid: published.kid } }),
        /signature/
      )
      // A key of another type under the published RSA kid: no key of that type matches.
      const { privateKey } = yield* Effect.promise(() => generateKeyPair("ES256"))
      const token = yield* Effect.promise(() =>
        new SignJWT(goodClaims(issuer.issuer)).setProtectedHeader({ alg: "ES256", kid: published.kid }).sign(privateKey)
      )
      yield* expectRefused(token)
    }))

  it.effect("critical header extensions and claims of the wrong type", () =>
    Effect.gen(function*() {
      const issuer = yield* TestIssuer
      const key = yield* issuer.currentKey
      // jose signs an unknown critical extension only when told it is understood.
      const critical = yield* Effect.promise(() =>
        new SignJWT(goodClaims(issuer.issuer))
          .setProtectedHeader({ alg: key.alg, kid: key.kid, crit: ["urn:example:policy"], "urn:example:policy": 1 })
          .sign(key.privateKey, { crit: { "urn:example:policy": true } })
      )
      yield* expectRefused(critical, /critical/)
      yield* expectRefused(yield* issuer.token({ claims: goodClaims(issuer.issuer, { sub: 42 }) }), /sub/)
      yield* expectRefused(yield* issuer.token({ claims: goodClaims(issuer.issuer, { scope: ["a"] }) }), /scope/)
      yield* expectRefused(yield* issuer.token({ claims: goodClaims(issuer.issuer, { tenant: ["acme"] }) }), /tenant/)
    }))
})
