import { Clock, Duration, Effect } from "effect"
import {
  calculateJwkThumbprint,
  type CryptoKey,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JSONWebKeySet,
  type JWK,
  type JWTHeaderParameters,
  SignJWT
} from "jose"
import { randomUUID } from "node:crypto"

/**
 * Token minting shared by the development issuer (keys on disk) and the test
 * issuer (keys in memory, served over HTTP): a signing key, its public JWK,
 * and tokens of the three kinds the platform knows.
 */

export const SIGNING_ALGORITHMS = ["RS256", "PS256", "ES256", "EdDSA"] as const
export type SigningAlgorithm = typeof SIGNING_ALGORITHMS[number]

const isSigningAlgorithm = (alg: unknown): alg is SigningAlgorithm => SIGNING_ALGORITHMS.some((known) => known === alg)

export interface SigningKey {
  readonly alg: SigningAlgorithm
  readonly kid: string
  readonly privateKey: CryptoKey
  /** What the JWKS publishes: the public half with kid, alg and use. */
  readonly publicJwk: JWK
}

/** The members RFC 7518 lists as public, for each key type. */
const PUBLIC_MEMBERS: Record<string, ReadonlyArray<keyof JWK>> = {
  RSA: ["kty", "n", "e"],
  EC: ["kty", "crv", "x", "y"],
  OKP: ["kty", "crv", "x"]
}

/** The public JWK of a key pair (from either half), with a kid and alg, for the JWKS. */
const publicJwkOf = async (alg: SigningAlgorithm, jwk: JWK, kid?: string): Promise<JWK> => {
  const members = PUBLIC_MEMBERS[jwk.kty ?? ""] ?? []
  const publicJwk: JWK = Object.fromEntries(members.map((name) => [name, jwk[name]]))
  // The RFC 7638 thumbprint: a kid that is stable for the key and says nothing else.
  return { ...publicJwk, kid: kid ?? (await calculateJwkThumbprint(publicJwk)), alg, use: "sig" }
}

/** A fresh key pair; `extractable` when the private key is to be saved. */
export const generateSigningKey = (alg: SigningAlgorithm = "RS256", options: { readonly extractable?: boolean } = {}) =>
  Effect.promise(async (): Promise<SigningKey> => {
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: options.extractable ?? false })
    const publicJwk = await publicJwkOf(alg, await exportJWK(publicKey))
    return { alg, kid: publicJwk.kid!, privateKey, publicJwk }
  })

/** The private JWK to keep on disk (with kid and alg, so it is enough to load the key again). */
export const exportSigningKey = (key: SigningKey) =>
  Effect.promise(async (): Promise<JWK> => ({ ...(await exportJWK(key.privateKey)), kid: key.kid, alg: key.alg }))

/** Loads a key saved by exportSigningKey. */
export const importSigningKey = (jwk: JWK): Effect.Effect<SigningKey, Error> =>
  Effect.tryPromise({
    try: async () => {
      const alg = jwk.alg
      if (!isSigningAlgorithm(alg)) throw new Error(`unsupported signing key algorithm ${String(alg)}`)
      const privateKey = await importJWK(jwk, alg)
      if (!("type" in privateKey) || privateKey.type !== "private") throw new Error("the saved key is not a private key")
      const publicJwk = await publicJwkOf(alg, jwk, jwk.kid)
      return { alg, kid: publicJwk.kid!, privateKey, publicJwk }
    },
    catch: (cause) => cause instanceof Error ? cause : new Error(String(cause))
  })

export const jwksOf = (keys: ReadonlyArray<SigningKey>): JSONWebKeySet => ({ keys: keys.map((key) => key.publicJwk) })

/** The OpenID Connect discovery document of an issuer that only publishes keys. */
export const discoveryDocument = (issuer: string, jwksUri: string) => ({
  issuer,
  jwks_uri: jwksUri,
  id_token_signing_alg_values_supported: SIGNING_ALGORITHMS,
  response_types_supported: ["token"],
  subject_types_supported: ["public"],
  grant_types_supported: ["client_credentials"]
})

export interface MintOptions {
  /** Claims added to (or replacing) the defaults; `undefined` removes a default claim. */
  readonly claims?: Readonly<Record<string, unknown>>
  /** Header parameters added to (or replacing) alg, kid and typ. */
  readonly header?: Readonly<Record<string, unknown>>
  /** Default 15 minutes. */
  readonly lifetime?: Duration.DurationInput
  readonly scopes?: ReadonlyArray<string>
  /** Sign with this key instead of the issuer's current one. */
  readonly key?: SigningKey
}

export interface UserTokenOptions extends MintOptions {
  /** The tenant claim's value (claim name `tenant` unless `tenantClaim` says otherwise). */
  readonly tenant?: string
  readonly tenantClaim?: string
  readonly email?: string
  readonly emailVerified?: boolean
  readonly name?: string
}

/** The four ways identity providers mark a client-credentials token (docs/API.md, Principals). */
export type MachineTokenForm = "client_id" | "gty" | "auth0" | "keycloak"

export interface MachineTokenOptions extends MintOptions {
  readonly form?: MachineTokenForm
  readonly tenant?: string
}

/** Mints signed access tokens for one issuer; times come from Effect's Clock. */
export interface TokenMinter {
  readonly issuer: string
  readonly audience: string
  /** Exactly these claims (plus iss, aud, iat, exp, jti defaults) and header. */
  readonly token: (options?: MintOptions) => Effect.Effect<string>
  /** A person: `sub`, optionally tenant and email claims. */
  readonly user: (subject: string, options?: UserTokenOptions) => Effect.Effect<string>
  /** A service client (client credentials), in one of the four recognised forms. */
  readonly machine: (clientId: string, options?: MachineTokenOptions) => Effect.Effect<string>
  /** An operator: scope `platform:admin` (plus any others given). */
  readonly admin: (subject?: string, options?: MintOptions) => Effect.Effect<string>
}

export const makeTokenMinter = (settings: {
  readonly issuer: string
  readonly audience: string
  readonly currentKey: () => SigningKey
}): TokenMinter => {
  const token = (options: MintOptions = {}) =>
    Effect.gen(function*() {
      const now = Math.floor((yield* Clock.currentTimeMillis) / 1000)
      const lifetime = Math.round(Duration.toSeconds(options.lifetime ?? Duration.minutes(15)))
      const key = options.key ?? settings.currentKey()
      const claims: Record<string, unknown> = {
        iss: settings.issuer,
        aud: settings.audience,
        iat: now,
        exp: now + lifetime,
        jti: randomUUID(),
        ...(options.scopes !== undefined ? { scope: options.scopes.join(" ") } : {}),
        ...options.claims
      }
      for (const name of Object.keys(claims)) if (claims[name] === undefined) delete claims[name]
      // Any header is allowed here (tests forge jku, jwk, crit...); `undefined` drops a member.
      const header: JWTHeaderParameters = Object.assign({ alg: key.alg, kid: key.kid, typ: "at+jwt" }, options.header)
      for (const name of Object.keys(header)) if (header[name] === undefined) delete header[name]
      return yield* Effect.promise(() => new SignJWT(claims).setProtectedHeader(header).sign(key.privateKey))
    })

  const user = (subject: string, options: UserTokenOptions = {}) =>
    token({
      ...options,
      claims: {
        sub: subject,
        ...(options.tenant !== undefined ? { [options.tenantClaim ?? "tenant"]: options.tenant } : {}),
        ...(options.email !== undefined ? { email: options.email } : {}),
        ...(options.emailVerified !== undefined ? { email_verified: options.emailVerified } : {}),
        ...(options.name !== undefined ? { name: options.name } : {}),
        ...options.claims
      }
    })

  const machineClaims = (clientId: string, form: MachineTokenForm): Record<string, unknown> => {
    switch (form) {
      case "client_id":
        return { sub: clientId, client_id: clientId }
      case "gty":
        return { sub: `svc-${clientId}`, azp: clientId, gty: "client-credentials" }
      case "auth0":
        return { sub: `${clientId}@clients`, azp: clientId }
      case "keycloak":
        return { sub: randomUUID(), azp: clientId, preferred_username: `service-account-${clientId}` }
    }
  }

  const machine = (clientId: string, options: MachineTokenOptions = {}) =>
    token({
      ...options,
      claims: {
        ...machineClaims(clientId, options.form ?? "client_id"),
        ...(options.tenant !== undefined ? { tenant: options.tenant } : {}),
        ...options.claims
      }
    })

  const admin = (subject = "operator", options: MintOptions = {}) =>
    token({ ...options, scopes: ["platform:admin", ...(options.scopes ?? [])], claims: { sub: subject, ...options.claims } })

  return { issuer: settings.issuer, audience: settings.audience, token, user, machine, admin }
}
