import { Context, Effect, Either, Layer } from "effect"
import type { ServiceUnavailable } from "../http/HttpErrors.js"
import type { TenantSuspended } from "../tenancy/TenancyErrors.js"
import { AccountDirectory, type DirectoryEntry } from "./AccountDirectory.js"
import { AuthConfig } from "./AuthConfig.js"
import type { AccountDisabled, ClientDisabled, NoTenant, TenantMismatch, UnknownClient } from "./AuthErrors.js"
import { InsufficientScope, InvalidToken, MissingToken } from "./AuthErrors.js"
import { TokenVerifier, type VerifiedClaims } from "./TokenVerifier.js"
import { Principal, UserWithAccount } from "./UserWithAccount.js"

export type TokenError = MissingToken | InvalidToken
export type AuthenticationError =
  | TokenError
  | UnknownClient
  | ClientDisabled
  | NoTenant
  | AccountDisabled
  | TenantMismatch
  | TenantSuspended
  | ServiceUnavailable

/**
 * One request's bearer token → its caller. The seed design's `validate_token`:
 * verify the JWT, classify user or machine, find (or, for a user, create) the
 * account, and check account, client and tenant are allowed in.
 */
export class Authentication extends Context.Tag("tenant-engine/Authentication")<Authentication, {
  /** From the request's Authorization header values (none, one, or several). */
  readonly authenticate: (
    authorization: ReadonlyArray<string>
  ) => Effect.Effect<UserWithAccount["Type"], AuthenticationError>
  /** An operator: a valid token carrying `platform:admin`. Needs no account and creates none. */
  readonly authenticateAdmin: (
    authorization: ReadonlyArray<string>
  ) => Effect.Effect<Principal, TokenError | InsufficientScope>
}>() {
  static readonly layer: Layer.Layer<Authentication, never, TokenVerifier | AccountDirectory | AuthConfig> = Layer
    .effect(Authentication, Effect.suspend(() => make))

  /** Authentication with the TokenVerifier and AccountDirectory it uses, all three provided. */
  static readonly layerWithDependencies = Authentication.layer.pipe(
    Layer.provideMerge(Layer.merge(TokenVerifier.layer, AccountDirectory.layer))
  )
}

/** How many tokens' callers are remembered (as many as the verifier remembers tokens). */
const CALLER_CACHE_CAPACITY = 10_000

/** The scope an operator's token must carry for the admin routes. */
export const ADMIN_SCOPE = "platform:admin"

/**
 * The bearer token of the request's Authorization headers. No header, or one
 * of another scheme, is a request without a token (RFC 6750 §3.1: no error
 * code); a Bearer header that is empty, or two headers, are malformed.
 */
export const bearerToken = (authorization: ReadonlyArray<string>): Effect.Effect<string, TokenError> => {
  if (authorization.length === 0) return Effect.fail(new MissingToken({ message: "no Authorization header" }))
  if (authorization.length > 1) {
    return Effect.fail(new InvalidToken({ message: "more than one Authorization header" }))
  }
  const match = /^([^ \t]+)(?:[ \t]+(.*))?$/s.exec(authorization[0]!.trim())
  if (match === null || match[1]!.toLowerCase() !== "bearer") {
    return Effect.fail(new MissingToken({ message: "the Authorization header is not a Bearer one" }))
  }
  const token = (match[2] ?? "").trim()
  return token === ""
    ? Effect.fail(new InvalidToken({ message: "the bearer token is empty" }))
    : Effect.succeed(token)
}

const stringClaim = (claims: VerifiedClaims, name: string): string | undefined => {
  const value = claims[name]
  return typeof value === "string" ? value : undefined
}

/**
 * Whether a token is a client-credentials (machine) token, by the marks
 * identity providers put on them: Auth0's `gty` and `@clients` subject,
 * RFC 9068's `sub` equal to `client_id`, Keycloak's service-account user.
 */
export const isMachineToken = (claims: VerifiedClaims): boolean =>
  claims.gty === "client-credentials" ||
  (claims.sub !== undefined && claims.sub === claims.client_id) ||
  (claims.sub?.endsWith("@clients") ?? false) ||
  (stringClaim(claims, "preferred_username")?.startsWith("service-account-") ?? false)

/** `scope` (space-separated), else `scp` (an array, or a space-separated string). */
export const scopesOf = (claims: VerifiedClaims): ReadonlyArray<string> => {
  const scopes = claims.scope ?? claims.scp ?? []
  return typeof scopes === "string" ? scopes.split(/\s+/).filter((scope) => scope !== "") : scopes
}

/** Who the verified token says is calling. */
export const principalOf = (claims: VerifiedClaims): Either.Either<Principal, InvalidToken> => {
  const email = stringClaim(claims, "email")
  const common = { issuer: claims.iss, scopes: scopesOf(claims), ...(email !== undefined ? { email } : {}) }
  if (isMachineToken(claims)) {
    const clientId = claims.client_id ?? claims.azp
    if (clientId === undefined) {
      return Either.left(new InvalidToken({ message: "a client-credentials token must carry client_id or azp" }))
    }
    return Either.right(new Principal({ ...common, kind: "machine", subject: claims.sub ?? clientId, clientId }, true))
  }
  if (claims.sub === undefined) return Either.left(new InvalidToken({ message: "the token has no sub claim" }))
  return Either.right(new Principal({ ...common, kind: "user", subject: claims.sub }, true))
}

const make = Effect.gen(function*() {
  const verifier = yield* TokenVerifier
  const directory = yield* AccountDirectory
  const config = yield* AuthConfig

  /** The token's tenant claim; a claim of another type is a malformed token, not a missing one. */
  const tenantClaimOf = (claims: VerifiedClaims): Either.Either<string | undefined, InvalidToken> => {
    const value = claims[config.tenantClaim]
    if (value === undefined || typeof value === "string") return Either.right(value)
    return Either.left(new InvalidToken({ message: `the token's ${config.tenantClaim} claim is not a string` }))
  }

  const emailVerifiedOf = (claims: VerifiedClaims): boolean | undefined => {
    const value = claims["email_verified"]
    // Some providers (Cognito) send the flag as a string.
    if (value === false || value === "false") return false
    if (value === true || value === "true") return true
    return undefined
  }

  /**
   * The caller the claims name: the principal, then (on every run) its account
   * and tenant from the directory, which answers known callers from its cache.
   */
  const callerOf = (claims: VerifiedClaims): Effect.Effect<UserWithAccount["Type"], AuthenticationError> => {
    const principalOrError = principalOf(claims)
    if (Either.isLeft(principalOrError)) return Effect.fail(principalOrError.left)
    const tenantOrError = tenantClaimOf(claims)
    if (Either.isLeft(tenantOrError)) return Effect.fail(tenantOrError.left)
    const principal = principalOrError.right
    const tenant = tenantOrError.right
    const lookup: Effect.Effect<DirectoryEntry, AuthenticationError> = principal.kind === "machine"
      ? directory.machine({ clientId: principal.clientId ?? principal.subject, tenant })
      : directory.user({
        issuer: principal.issuer,
        subject: principal.subject,
        email: principal.email,
        emailVerified: emailVerifiedOf(claims),
        displayName: stringClaim(claims, "name") ?? stringClaim(claims, "preferred_username"),
        tenant
      })
    return Effect.map(lookup, ({ account, tenant }) => ({ principal, account, tenant }))
  }

  // What a token's claims say (the principal, the directory look-up to run)
  // is worked out once per token, not per request: the claims are a function
  // of the token, which the verifier checks again (times, keys) on every use.
  // Bounded like the verifier's own cache, the oldest going first.
  const callers = new Map<string, Effect.Effect<UserWithAccount["Type"], AuthenticationError>>()
  const callerOfToken = (token: string, claims: VerifiedClaims) => {
    let caller = callers.get(token)
    if (caller === undefined) {
      caller = callerOf(claims)
      if (callers.size >= CALLER_CACHE_CAPACITY) callers.delete(callers.keys().next().value!)
      callers.set(token, caller)
    }
    return caller
  }

  const verifiedClaims = (token: string) => Effect.map(verifier.verify(token), ({ claims }) => claims)

  const authenticate = (authorization: ReadonlyArray<string>) =>
    Effect.flatMap(
      bearerToken(authorization),
      (token) => Effect.flatMap(verifiedClaims(token), (claims) => callerOfToken(token, claims))
    )

  const authenticateAdmin = (authorization: ReadonlyArray<string>) =>
    Effect.gen(function*() {
      const principal = yield* Effect.flatMap(Effect.flatMap(bearerToken(authorization), verifiedClaims), principalOf)
      if (!principal.scopes.includes(ADMIN_SCOPE)) {
        return yield* new InsufficientScope({ message: `this needs the scope ${ADMIN_SCOPE}`, scope: ADMIN_SCOPE })
      }
      return principal
    })

  return Authentication.of({ authenticate, authenticateAdmin })
})

/** Fails with InsufficientScope unless the caller's token carries the scope. */
export const requireScope = (scope: string) =>
  Effect.flatMap(UserWithAccount, ({ principal }) =>
    principal.scopes.includes(scope)
      ? Effect.void
      : Effect.fail(new InsufficientScope({ message: `this needs the scope ${scope}`, scope })))
