import { expect, layer } from "@effect/vitest"
import { Context, Effect, Layer, Schema } from "effect"
import { exportJWK, generateKeyPair } from "jose"
import { createServer } from "node:http"
import Provider from "oidc-provider"
import { inject } from "vitest"
import { AccountDirectory } from "../../src/auth/AccountDirectory.js"
import { AuthConfig, makeAuthConfig } from "../../src/auth/AuthConfig.js"
import { Authentication } from "../../src/auth/Authentication.js"
import { TestTenancy } from "../../src/testing/TestDatabases.js"
import { ensureTenant } from "./support.js"

// A real OpenID provider (the oidc-provider package) as the trusted issuer:
// discovery, JWKS and a client-credentials access token in JWT form for the
// resource `urn:platform`, whose audience is `platform`.

const CLIENT_ID = "reporting-service"
const CLIENT_SECRET = "a-long-enough-client-secret-for-tests"

const TokenResponse = Schema.Struct({ access_token: Schema.String, token_type: Schema.String, scope: Schema.String })

/** Starts the provider on 127.0.0.1 (a random port); stops it with the scope. */
const startProvider = Effect.gen(function*() {
  const { privateKey } = yield* Effect.promise(() => generateKeyPair("RS256", { extractable: true }))
  const signingKey = { ...(yield* Effect.promise(() => exportJWK(privateKey))), kid: "op-key-1", alg: "RS256", use: "sig" }
  const server = createServer()
  const port = yield* Effect.acquireRelease(
    Effect.async<number>((resume) => {
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        resume(typeof address === "object" && address !== null ? Effect.succeed(address.port) : Effect.die("no port"))
      })
    }),
    () =>
      Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
        server.closeAllConnections()
      })
  )
  const issuer = `http://127.0.0.1:${port}`
  const provider = new Provider(issuer, {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      grant_types: ["client_credentials"],
      redirect_uris: [],
      response_types: []
    }],
    jwks: { keys: [signingKey] },
    ttl: { ClientCredentials: 300 },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => "urn:platform",
        useGrantedResource: () => true,
        getResourceServerInfo: (_context: unknown, resource: string) => ({
          scope: "notes:read notes:write",
          audience: resource === "urn:platform" ? "platform" : "elsewhere",
          accessTokenFormat: "jwt",
          accessTokenTTL: 300,
          jwt: { sign: { alg: "RS256" } }
        })
      }
    }
  })
  server.on("request", provider.callback())
  return issuer
})

const clientCredentialsToken = (issuer: string, resource: string, scope: string) =>
  Effect.promise(async () => {
    const response = await fetch(`${issuer}/token`, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        authorization: `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString("base64")}`
      },
      body: new URLSearchParams({ grant_type: "client_credentials", resource, scope })
    })
    return { status: response.status, body: await response.json() }
  }).pipe(
    Effect.tap(({ status, body }) => expect(status, JSON.stringify(body)).toBe(200)),
    Effect.flatMap(({ body }) => Schema.decodeUnknown(TokenResponse)(body)),
    Effect.orDie,
    Effect.map((response) => response.access_token)
  )

layer(TestTenancy({ adminUrl: inject("databaseUrl") }), { excludeTestServices: true })("oidc-provider", (it) => {
  it.scoped("a client-credentials token from a real OpenID provider authenticates its registered service client", () =>
    Effect.gen(function*() {
      const issuer = yield* startProvider
      const context = yield* Layer.build(
        Authentication.layerWithDependencies.pipe(
          Layer.provide(Layer.succeed(AuthConfig, makeAuthConfig({ issuers: [{ issuer }], audience: "platform" })))
        )
      )
      const authentication = Context.get(context, Authentication)
      const directory = Context.get(context, AccountDirectory)
      yield* ensureTenant("acme")
      const token = yield* clientCredentialsToken(issuer, "urn:platform", "notes:read")

      // Not registered yet: a valid token, but no client.
      const unknown = yield* Effect.flip(authentication.authenticate([`Bearer ${token}`]))
      expect(unknown._tag).toBe("UnknownClient")

      const client = yield* directory.registerClient("acme", CLIENT_ID, "Reporting service")
      const caller = yield* authentication.authenticate([`Bearer ${token}`])
      expect(caller.principal).toMatchObject({ kind: "machine", issuer, subject: CLIENT_ID, clientId: CLIENT_ID })
      expect(caller.principal.scopes).toEqual(["notes:read"])
      expect(caller.account.id).toBe(client.accountId)
      expect(caller.tenant.id).toBe("acme")

      // A token for another resource carries another audience.
      const elsewhere = yield* clientCredentialsToken(issuer, "urn:elsewhere", "notes:read")
      const wrongAudience = yield* Effect.flip(authentication.authenticate([`Bearer ${elsewhere}`]))
      expect(wrongAudience).toMatchObject({ _tag: "InvalidToken", message: "the token is not meant for this audience" })

      yield* directory.disableClient("acme", CLIENT_ID)
      expect((yield* Effect.flip(authentication.authenticate([`Bearer ${token}`])))._tag).toBe("ClientDisabled")
    }))
})
