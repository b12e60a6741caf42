import { Clock, Context, Duration, Effect, Either, FiberRef, Layer, ParseResult, Runtime, Schema } from "effect"
import { errors, type JWTVerifyGetKey, jwtVerify, type JWTVerifyOptions } from "jose"
import { readFile } from "node:fs/promises"
import { tokenCacheHits, tokenCacheMisses } from "../observability/Metrics.js"
import { AuthConfig, PUBLIC_KEY_ALGORITHMS, type TrustedIssuer } from "./AuthConfig.js"
import { InvalidToken } from "./AuthErrors.js"
import {
  discoverJwksUrl,
  type IssuerKeys,
  KeysUnavailable,
  localIssuerKeys,
  remoteIssuerKeys
} from "./IssuerKeys.js"

/** How many verified tokens are remembered (the oldest goes first). */
const VERIFIED_CACHE_CAPACITY = 10_000

/** Tokens longer than this are refused unread: no real access token comes near it. */
export const MAX_TOKEN_LENGTH = 16 * 1024

const optionalString = Schema.optional(Schema.String)
/**
 * The claims of a verified token, typed. Claims we rely on must have their
 * registered types or the token is refused; other claims are kept as they
 * are (the tenant claim is configurable, so it is read from here).
 */
export const VerifiedClaims = Schema.Struct(
  {
    iss: Schema.String,
    sub: optionalString,
    aud: Schema.Union(Schema.String, Schema.Array(Schema.String)),
    exp: Schema.Number,
    nbf: Schema.optional(Schema.Number),
    iat: Schema.optional(Schema.Number),
    scope: optionalString,
    scp: Schema.optional(Schema.Union(Schema.String, Schema.Array(Schema.String))),
    client_id: optionalString,
    azp: optionalString,
    gty: optionalString
  },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
)
export type VerifiedClaims = typeof VerifiedClaims.Type

/** A token whose signature, issuer, audience and times have been checked. */
export interface VerifiedToken {
  readonly header: { readonly alg: string; readonly kid?: string | undefined; readonly typ?: string | undefined }
  readonly claims: VerifiedClaims
}

/** The configuration cannot work: a start-up failure, with the reason. */
export class InvalidAuthConfig extends Schema.TaggedError<InvalidAuthConfig>()("InvalidAuthConfig", {
  message: Schema.String
}) {}

/**
 * Verifies bearer JWTs against the trusted issuers. Structure is checked
 * before any key is fetched or any signature computed; then jose verifies the
 * signature with the key set of the issuer the token names, and the claims.
 */
export class TokenVerifier extends Context.Tag("tenant-engine/TokenVerifier")<TokenVerifier, {
  readonly verify: (token: string) => Effect.Effect<VerifiedToken, InvalidToken>
}>() {
  /** Builds every issuer's key set once; remote keys are fetched on first use. */
  static readonly layer: Layer.Layer<TokenVerifier, InvalidAuthConfig, AuthConfig> = Layer.effect(
    TokenVerifier,
    Effect.suspend(() => make)
  )
}

const invalid = (message: string) => new InvalidToken({ message })

const BASE64URL_SEGMENT = /^[A-Za-z0-9_-]+$/

/**
 * Base64url as RFC 7515 requires it: no padding, no other characters, and
 * canonical (the unused low bits of the last character are zero; a length of
 * 1 mod 4 encodes nothing). Non-canonical forms decode to the same bytes, so
 * accepting them would let one signed token be presented under many spellings.
 */
const decodeSegment = (segment: string): Buffer | undefined => {
  if (!BASE64URL_SEGMENT.test(segment) || segment.length % 4 === 1) return undefined
  const bytes = Buffer.from(segment, "base64url")
  return bytes.toString("base64url") === segment ? bytes : undefined
}

const parseJsonObject = (bytes: Buffer): Record<string, unknown> | undefined => {
  try {
    const value: unknown = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes))
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return { ...value }
  } catch {
    // Not UTF-8 or not JSON: the caller says which segment.
  }
  return undefined
}

/** Header parameters that would let the token choose its own key: never honoured, so refused. */
const KEY_POINTING_HEADERS = ["jwk", "jku", "x5u", "x5c"]

/** Everything that can be refused without keys or crypto; then the named issuer's keys. */
const inspect = <K>(
  token: string,
  allowed: ReadonlySet<string>,
  trusted: ReadonlyMap<string, K>
): Either.Either<{ readonly issuer: string; readonly keys: K }, InvalidToken> => {
  if (token.length > MAX_TOKEN_LENGTH) return Either.left(invalid("the token is too long"))
  const segments = token.split(".")
  if (segments.length !== 3) return Either.left(invalid("the token is not a compact JWS (three segments)"))
  const [rawHeader, rawPayload, rawSignature] = segments.map(decodeSegment)
  if (rawHeader === undefined || rawPayload === undefined || rawSignature === undefined) {
    return Either.left(invalid("the token is not canonical base64url"))
  }
  const header = parseJsonObject(rawHeader)
  if (header === undefined) return Either.left(invalid("the token header is not a JSON object"))
  const alg = header["alg"]
  if (typeof alg !== "string" || !allowed.has(alg)) {
    return Either.left(invalid(`the algorithm ${JSON.stringify(alg ?? null).slice(0, 32)} is not allowed`))
  }
  const pointing = KEY_POINTING_HEADERS.find((name) => name in header)
  if (pointing !== undefined) return Either.left(invalid(`the header parameter ${pointing} is not accepted`))
  // We understand no JWS extension, so any critical one must be refused (RFC 7515 §4.1.11).
  if ("crit" in header) return Either.left(invalid("the token has critical header parameters we do not support"))
  if ("kid" in header && (typeof header["kid"] !== "string" || header["kid"].length > 256)) {
    return Either.left(invalid("the token's kid is not a short string"))
  }
  if ("b64" in header) return Either.left(invalid("the token header parameter b64 is not accepted"))
  const payload = parseJsonObject(rawPayload)
  if (payload === undefined) return Either.left(invalid("the token payload is not a JSON object"))
  const issuer = payload["iss"]
  if (typeof issuer !== "string") return Either.left(invalid("the token has no issuer"))
  const keys = trusted.get(issuer)
  if (keys === undefined) return Either.left(invalid("the token's issuer is not trusted"))
  return Either.right({ issuer, keys })
}

/** jose's failures, in words a client may read (they end up in WWW-Authenticate). */
const describe = (error: unknown): string => {
  if (error instanceof errors.JWTExpired) return "the token has expired"
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.reason === "missing") return `the token has no ${error.claim} claim`
    switch (error.claim) {
      case "nbf":
        return "the token is not valid yet"
      case "iss":
        return "the token's issuer is not trusted"
      case "aud":
        return "the token is not meant for this audience"
      default:
        return `the token's ${error.claim} claim is not acceptable`
    }
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) return "the token's signature is not valid"
  if (error instanceof errors.JWKSNoMatchingKey) return "no key of the issuer matches the token"
  if (error instanceof errors.JOSEAlgNotAllowed) return "the token's algorithm is not allowed"
  if (error instanceof errors.JOSENotSupported) return "the token's algorithm or key is not supported"
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid) return "the token is malformed"
  if (error instanceof KeysUnavailable || error instanceof errors.JWKSTimeout) return "the issuer's keys could not be fetched"
  if (error instanceof errors.JWKSInvalid) return "the issuer's key set is not valid"
  return "the token could not be verified"
}

const readJwksFile = (trusted: TrustedIssuer, file: string) =>
  Effect.tryPromise({
    try: async () => localIssuerKeys(JSON.parse(await readFile(file, "utf8"))),
    catch: (cause) =>
      new InvalidAuthConfig({
        message: `the key set ${file} of issuer ${trusted.issuer} cannot be read: ${
          cause instanceof Error ? cause.message : String(cause)
        }`
      })
  })

const make = Effect.gen(function*() {
  const config = yield* AuthConfig
  const runtime = yield* Effect.runtime<never>()
  const refused = config.algorithms.filter((alg) => !PUBLIC_KEY_ALGORITHMS.includes(alg))
  if (refused.length > 0 || config.algorithms.length === 0) {
    return yield* new InvalidAuthConfig({
      message: `allowed algorithms must be public-key JWS algorithms (${
        PUBLIC_KEY_ALGORITHMS.join(", ")
      }); not ${refused.join(", ") || "an empty list"}`
    })
  }
  if (config.issuers.length === 0) return yield* new InvalidAuthConfig({ message: "no trusted issuer is configured" })
  const allowed = new Set(config.algorithms)
  const cooldownMillis = Duration.toMillis(config.jwksCooldown)
  const clockTolerance = Duration.toSeconds(config.clockTolerance)

  const keySets = new Map<string, IssuerKeys>()
  for (const trusted of config.issuers) {
    if (keySets.has(trusted.issuer)) {
      return yield* new InvalidAuthConfig({ message: `issuer ${trusted.issuer} is configured twice` })
    }
    const { jwksFile, jwksUrl } = trusted
    if (jwksUrl !== undefined && !URL.canParse(jwksUrl)) {
      return yield* new InvalidAuthConfig({ message: `the JWKS URL of issuer ${trusted.issuer} is not a URL` })
    }
    const keys: IssuerKeys = jwksFile !== undefined
      ? yield* readJwksFile(trusted, jwksFile)
      : remoteIssuerKeys({
        locate: jwksUrl !== undefined
          ? () => Promise.resolve(new URL(jwksUrl))
          : discoverJwksUrl(trusted.issuer, 5_000),
        cooldownMillis,
        maxAgeMillis: Duration.toMillis(config.jwksMaxAge ?? Duration.minutes(10)),
        timeoutMillis: 5_000,
        onFetchError: (error, background) =>
          Runtime.runFork(runtime)(
            Effect.logWarning(
              background
                ? `refreshing the keys of issuer ${trusted.issuer} failed; the known keys stay in use`
                : `fetching the keys of issuer ${trusted.issuer} failed`,
              error
            )
          )
      })
    keySets.set(trusted.issuer, keys)
  }

  const verifyWith = async (token: string, getKey: JWTVerifyGetKey, options: JWTVerifyOptions) => {
    try {
      return await jwtVerify(token, getKey, options)
    } catch (error) {
      // A token without kid may match several keys: jose hands them over to try in turn.
      if (!(error instanceof errors.JWKSMultipleMatchingKeys)) throw error
      for await (const key of error) {
        try {
          return await jwtVerify(token, key, options)
        } catch {
          // try the next key
        }
      }
      throw new errors.JWSSignatureVerificationFailed()
    }
  }

  const verifyUncached = (token: string): Effect.Effect<VerifiedToken, InvalidToken> =>
    Effect.gen(function*() {
      const { issuer, keys } = yield* inspect(token, allowed, keySets)
      const now = yield* Clock.currentTimeMillis
      const verified = yield* Effect.tryPromise({
        try: () =>
          verifyWith(token, keys.getKey, {
            issuer,
            audience: config.audience,
            algorithms: [...config.algorithms],
            clockTolerance,
            requiredClaims: ["exp"],
            currentDate: new Date(now)
          }),
        catch: (error) => error
      }).pipe(
        Effect.catchAll((error) =>
          Effect.zipRight(
            // jose's refusals are the token's fault; anything else is ours to look at.
            error instanceof errors.JOSEError || error instanceof KeysUnavailable
              ? Effect.void
              : Effect.logWarning("token verification failed unexpectedly", error),
            Effect.fail(invalid(describe(error)))
          )
        )
      )
      // jose checks iat only together with maxTokenAge; a token from the future is refused here.
      const iat = verified.payload.iat
      if (iat !== undefined && iat > now / 1000 + clockTolerance) {
        return yield* invalid("the token was issued in the future")
      }
      const claims = yield* Schema.decodeUnknown(VerifiedClaims)(verified.payload).pipe(
        Effect.mapError((error) => {
          const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
          return invalid(`the token's ${issue?.path.join(".") ?? "claims"} claim has the wrong type`)
        })
      )
      const { alg, kid, typ } = verified.protectedHeader
      return { header: { alg: alg ?? "", kid, typ }, claims }
    })

  // Verified tokens, by the token itself (Authentication keeps its callers by
  // the token too; a hash of each would cost a sha256 per request): a repeated
  // token skips the signature, but its times are checked on every use, and an
  // entry verified under keys that have since changed is verified again.
  const verified = new Map<string, { readonly token: VerifiedToken; readonly keys: IssuerKeys; readonly version: number }>()
  const remember = (jwt: string, token: VerifiedToken) => {
    const keys = keySets.get(token.claims.iss)
    if (keys === undefined) return
    if (verified.size >= VERIFIED_CACHE_CAPACITY) verified.delete(verified.keys().next().value!)
    verified.set(jwt, { token, keys, version: keys.version() })
  }

  const verify = (token: string): Effect.Effect<VerifiedToken, InvalidToken> =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      if (token.length > MAX_TOKEN_LENGTH) return Effect.fail(invalid("the token is too long"))
      const hit = verified.get(token)
      hit?.keys.refreshIfStale()
      if (hit !== undefined && hit.version === hit.keys.version()) {
        tokenCacheHits.increment()
        const { exp, nbf } = hit.token.claims
        const seconds = now / 1000
        if (seconds - clockTolerance >= exp) {
          verified.delete(token)
          return Effect.fail(invalid("the token has expired"))
        }
        if (nbf !== undefined && seconds + clockTolerance < nbf) return Effect.fail(invalid("the token is not valid yet"))
        return Effect.succeed(hit.token)
      }
      tokenCacheMisses.increment()
      return Effect.tap(verifyUncached(token), (result) => Effect.sync(() => remember(token, result)))
    })

  // A span of its own only where spans are exported: with the tracer off
  // (no OTLP endpoint) even a span that is dropped costs on every request.
  const traced = yield* FiberRef.get(FiberRef.currentTracerEnabled)
  return TokenVerifier.of({
    verify: traced ? (token) => Effect.withSpan(verify(token), "TokenVerifier.verify", { kind: "internal" }) : verify
  })
})
