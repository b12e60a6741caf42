import { Context, Duration } from "effect"

/** One trusted token issuer and where its keys come from. */
export interface TrustedIssuer {
  /** The exact `iss` value. */
  readonly issuer: string
  /** JWKS URL; when unset (and no file), found by OIDC discovery from the issuer. */
  readonly jwksUrl?: string | undefined
  /** A local JWKS file (offline use, the development issuer). */
  readonly jwksFile?: string | undefined
}

export class AuthConfig extends Context.Tag("tenant-engine/AuthConfig")<AuthConfig, {
  readonly issuers: ReadonlyArray<TrustedIssuer>
  /** Our audience: `aud` must contain it. */
  readonly audience: string
  /** Allowed signature algorithms (public-key only). */
  readonly algorithms: ReadonlyArray<string>
  readonly clockTolerance: Duration.Duration
  /** The claim naming a new user's tenant. */
  readonly tenantClaim: string
  /** Accounts looked up are kept this long and at most this many. */
  readonly accountCacheTtl: Duration.Duration
  readonly accountCacheCapacity: number
  /**
   * How stale a cached account may be when it is used: no older than this
   * beyond the last moment every change was known to have been heard
   * (AccountDirectory; default 1 second). It is also how long known callers
   * are still served once the platform database stops answering.
   */
  readonly accountCacheStaleness?: Duration.Duration | undefined
  /** An unknown kid refetches the JWKS at most once per this period. */
  readonly jwksCooldown: Duration.Duration
  /**
   * Remote keys older than this are refreshed in the background while the
   * known ones stay in use (default 10 minutes).
   */
  readonly jwksMaxAge?: Duration.Duration | undefined
}>() {}

/** Public-key JWS algorithms; symmetric ones (HS*) and `none` can never be allowed. */
export const PUBLIC_KEY_ALGORITHMS: ReadonlyArray<string> = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519"
]

export const DEFAULT_ALGORITHMS: ReadonlyArray<string> = ["RS256", "PS256", "ES256", "EdDSA"]

/** An AuthConfig with the documented defaults for everything not given. */
export const makeAuthConfig = (
  options: Partial<AuthConfig["Type"]> & Pick<AuthConfig["Type"], "issuers">
): AuthConfig["Type"] => ({
  audience: "platform",
  algorithms: DEFAULT_ALGORITHMS,
  clockTolerance: Duration.seconds(30),
  tenantClaim: "tenant",
  accountCacheTtl: Duration.minutes(5),
  accountCacheCapacity: 10_000,
  jwksCooldown: Duration.seconds(30),
  ...options
})
