import { Data } from "effect"
import { createLocalJWKSet, errors, type JSONWebKeySet, type JWTVerifyGetKey } from "jose"

/**
 * The verification keys of one trusted issuer, as a jose key getter.
 *
 * Remote key sets are fetched here rather than with jose's createRemoteJWKSet
 * because two of our rules differ from its behaviour: its cooldown counts from
 * the last *successful* fetch, so while the endpoint is down every unknown kid
 * fetches again; and once its cache is older than `cacheMaxAge` it refetches
 * before verifying and fails if that fetch fails, so keys already known stop
 * working during an outage. Here every fetch attempt starts the cooldown, and
 * stale keys keep verifying while a refresh runs in the background. Key
 * selection and import stay jose's (createLocalJWKSet).
 */
export interface IssuerKeys {
  readonly getKey: JWTVerifyGetKey
  /** Changes whenever the published keys change: what was verified before may no longer be. */
  readonly version: () => number
  /** Starts a background refresh when the keys are due for one (a cached verification still counts as use). */
  readonly refreshIfStale: () => void
}

/** A fixed key set (a local JWKS file). */
export const localIssuerKeys = (jwks: JSONWebKeySet): IssuerKeys => {
  const getKey = createLocalJWKSet(jwks)
  return { getKey, version: () => 0, refreshIfStale: () => {} }
}

export interface RemoteKeysOptions {
  /** Where the JWKS is; called again only until it has once succeeded (discovery). */
  readonly locate: () => Promise<URL>
  /** The least time between two fetches started by unknown kids. */
  readonly cooldownMillis: number
  /** Keys older than this are refreshed in the background. */
  readonly maxAgeMillis: number
  readonly timeoutMillis: number
  /** Reports a failed fetch: the reason is for the operator, not for the token's bearer. */
  readonly onFetchError: (error: unknown, background: boolean) => void
}

/** The key set could not be fetched (or, after a failure, not yet again: the cooldown). */
export class KeysUnavailable extends Data.TaggedError("KeysUnavailable")<{
  readonly message: string
  readonly cause?: unknown
}> {}

export const remoteIssuerKeys = (options: RemoteKeysOptions): IssuerKeys => {
  let keys: ReturnType<typeof createLocalJWKSet> | undefined
  let fetchedAt = Number.NEGATIVE_INFINITY
  let attemptedAt = Number.NEGATIVE_INFINITY
  let pending: Promise<void> | undefined
  let located: URL | undefined
  let version = 0
  let published = ""

  const refresh = (): Promise<void> => {
    // Concurrent callers share one fetch.
    if (pending) return pending
    attemptedAt = Date.now()
    const background = keys !== undefined
    const run = async () => {
      try {
        located ??= await options.locate()
        const jwks = await fetchJson(located, options.timeoutMillis, "JSON Web Key Set")
        // A validating boundary: createLocalJWKSet checks the shape and throws
        // on a bad answer, which keeps the old keys.
        keys = createLocalJWKSet(jwks as JSONWebKeySet)
        fetchedAt = Date.now()
        const text = JSON.stringify(jwks)
        if (text !== published) {
          published = text
          version++
        }
      } catch (cause) {
        options.onFetchError(cause, background)
        throw new KeysUnavailable({ message: "the issuer's keys could not be fetched", cause })
      }
    }
    const current = run().finally(() => {
      if (pending === current) pending = undefined
    })
    pending = current
    return current
  }

  const coolingDown = () => Date.now() - attemptedAt < options.cooldownMillis

  const refreshIfStale = () => {
    if (keys !== undefined && Date.now() - fetchedAt > options.maxAgeMillis && !pending && !coolingDown()) {
      // Already reported through onFetchError; the known keys stay in use.
      refresh().catch(() => undefined)
    }
  }

  const getKey: JWTVerifyGetKey = async (header, token) => {
    if (keys === undefined) {
      if (pending) await pending
      else if (coolingDown()) throw new KeysUnavailable({ message: "the issuer's keys could not be fetched" })
      else await refresh()
    } else {
      refreshIfStale()
    }
    const known = keys
    if (known === undefined) throw new KeysUnavailable({ message: "the issuer's keys could not be fetched" })
    try {
      return await known(header, token)
    } catch (error) {
      if (!(error instanceof errors.JWKSNoMatchingKey)) throw error
      // A kid we do not know may be a rotated-in key: look again, at most once per cooldown.
      if (pending) await pending.catch(() => undefined)
      else if (!coolingDown()) await refresh()
      else throw error
      const latest = keys
      if (latest === undefined || latest === known) throw error
      return await latest(header, token)
    }
  }

  return { getKey, version: () => version, refreshIfStale }
}

/** Finds the JWKS URL by OIDC discovery; the document must name the same issuer. */
export const discoverJwksUrl = (issuer: string, timeoutMillis: number) => async (): Promise<URL> => {
  const url = new URL(`${issuer.replace(/\/+$/, "")}/.well-known/openid-configuration`)
  const document = await fetchJson(url, timeoutMillis, "OpenID configuration")
  if (typeof document !== "object" || document === null || Array.isArray(document)) {
    throw new Error(`${url} is not a JSON object`)
  }
  const named = "issuer" in document ? document.issuer : undefined
  const jwksUri = "jwks_uri" in document ? document.jwks_uri : undefined
  // OpenID Connect Discovery §4.3: the document must be for exactly this issuer.
  if (named !== issuer) throw new Error(`${url} names issuer ${String(named)}, not ${issuer}`)
  if (typeof jwksUri !== "string") throw new Error(`${url} has no jwks_uri`)
  return new URL(jwksUri)
}

const fetchJson = async (url: URL, timeoutMillis: number, what: string): Promise<unknown> => {
  const response = await fetch(url, {
    signal: AbortSignal.timeout(timeoutMillis),
    // A redirect is not followed: the configured location is the trusted one.
    redirect: "manual",
    headers: { accept: "application/json, application/jwk-set+json" }
  })
  if (response.status !== 200) {
    await response.body?.cancel()
    throw new Error(`${what} at ${url}: HTTP ${response.status}`)
  }
  return await response.json()
}
