import { Context, Effect, Layer } from "effect"
import { createServer } from "node:http"
import { AuthConfig, makeAuthConfig, type TrustedIssuer } from "../auth/AuthConfig.js"
import {
  discoveryDocument,
  generateSigningKey,
  jwksOf,
  makeTokenMinter,
  type SigningAlgorithm,
  type SigningKey,
  type TokenMinter
} from "../auth/TokenMinter.js"

export interface TestIssuerOptions {
  /** The first signing key's algorithm; default RS256. */
  readonly alg?: SigningAlgorithm
  readonly audience?: string
}

/**
 * A real token issuer for tests: an in-memory key pair whose OpenID discovery
 * document and JWKS are served over HTTP on 127.0.0.1 (a random port), so the
 * platform verifies its tokens exactly as it would a production issuer's.
 * Keys can be rotated, withheld from the JWKS, and the endpoint taken down.
 */
export interface TestIssuerService extends TokenMinter {
  /** `http://127.0.0.1:<port>`: the `iss` of its tokens and the base of discovery. */
  readonly issuer: string
  readonly jwksUrl: string
  readonly discoveryUrl: string
  /** The key tokens are signed with unless a mint option names another. */
  readonly currentKey: Effect.Effect<SigningKey>
  /** A new key, published and used from now on; earlier keys stay published. */
  readonly rotate: (alg?: SigningAlgorithm) => Effect.Effect<SigningKey>
  /** A new key that is not published (sign with it through the `key` mint option). */
  readonly generateKey: (alg?: SigningAlgorithm) => Effect.Effect<SigningKey>
  readonly publish: (key: SigningKey) => Effect.Effect<void>
  readonly unpublish: (kid: string) => Effect.Effect<void>
  /** While false, discovery and JWKS answer 503. */
  readonly setAvailable: (available: boolean) => Effect.Effect<void>
  /** Requests served so far, per endpoint. */
  readonly requests: Effect.Effect<{ readonly jwks: number; readonly discovery: number }>
  /** Trust by OIDC discovery (no jwksUrl): the path production issuers take. */
  readonly trustedIssuer: TrustedIssuer
  /** An AuthConfig trusting this issuer alone, with test-friendly defaults. */
  readonly authConfig: (overrides?: Partial<AuthConfig["Type"]>) => AuthConfig["Type"]
}

export class TestIssuer extends Context.Tag("tenant-engine/TestIssuer")<TestIssuer, TestIssuerService>() {
  /** Starts the issuer; its HTTP server closes with the scope. */
  static readonly make = (options: TestIssuerOptions = {}) => make(options)
  static readonly layer = (options: TestIssuerOptions = {}) => Layer.scoped(TestIssuer, make(options))
  /** AuthConfig trusting the TestIssuer in context. */
  static readonly authConfig = (overrides: Partial<AuthConfig["Type"]> = {}) =>
    Layer.effect(AuthConfig, Effect.map(TestIssuer, (issuer) => issuer.authConfig(overrides)))
}

const make = (options: TestIssuerOptions) =>
  Effect.gen(function*() {
    const first = yield* generateSigningKey(options.alg ?? "RS256")
    let current = first
    let published: ReadonlyArray<SigningKey> = [first]
    let available = true
    const requests = { jwks: 0, discovery: 0 }
    let issuer = ""

    const server = createServer((request, response) => {
      const path = new URL(request.url ?? "/", "http://127.0.0.1").pathname
      const answer = (status: number, body: unknown) => {
        response.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" })
        response.end(JSON.stringify(body))
      }
      if (path === "/.well-known/openid-configuration") {
        requests.discovery++
        return available ? answer(200, discoveryDocument(issuer, `${issuer}/jwks`)) : answer(503, {})
      }
      if (path === "/jwks") {
        requests.jwks++
        return available ? answer(200, jwksOf(published)) : answer(503, {})
      }
      answer(404, {})
    })
    const port = yield* Effect.acquireRelease(
      Effect.async<number>((resume) => {
        server.listen(0, "127.0.0.1", () => {
          const address = server.address()
          resume(
            typeof address === "object" && address !== null
              ? Effect.succeed(address.port)
              : Effect.dieMessage("the test issuer is not listening on a TCP port")
          )
        })
      }),
      () =>
        Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
          // Keep-alive connections of fetch would hold close() open.
          server.closeAllConnections()
        })
    )
    issuer = `http://127.0.0.1:${port}`
    const audience = options.audience ?? "platform"
    const trustedIssuer: TrustedIssuer = { issuer }

    const minter = makeTokenMinter({ issuer, audience, currentKey: () => current })
    return TestIssuer.of({
      ...minter,
      issuer,
      jwksUrl: `${issuer}/jwks`,
      discoveryUrl: `${issuer}/.well-known/openid-configuration`,
      currentKey: Effect.sync(() => current),
      rotate: (alg) =>
        Effect.tap(generateSigningKey(alg ?? current.alg), (key) =>
          Effect.sync(() => {
            published = [...published, key]
            current = key
          })),
      generateKey: (alg) => generateSigningKey(alg ?? current.alg),
      publish: (key) =>
        Effect.sync(() => {
          published = [...published.filter((k) => k.kid !== key.kid), key]
        }),
      unpublish: (kid) =>
        Effect.sync(() => {
          published = published.filter((k) => k.kid !== kid)
        }),
      setAvailable: (up) =>
        Effect.sync(() => {
          available = up
        }),
      requests: Effect.sync(() => ({ ...requests })),
      trustedIssuer,
      authConfig: (overrides = {}) => makeAuthConfig({ issuers: [trustedIssuer], audience, ...overrides })
    })
  })
