import { Context, Effect, Layer, Schema } from "effect"
import type { JSONWebKeySet, JWK } from "jose"
import { randomBytes } from "node:crypto"
import { chmod, link, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises"
import { join, resolve } from "node:path"
import type { TrustedIssuer } from "./AuthConfig.js"
import {
  discoveryDocument,
  exportSigningKey,
  generateSigningKey,
  importSigningKey,
  jwksOf,
  type SigningAlgorithm,
  type TokenMinter,
  makeTokenMinter
} from "./TokenMinter.js"

export interface DevIssuerOptions {
  /** Where the key lives; default `.data/issuer`. */
  readonly directory?: string
  /** The `iss` of its tokens; default `urn:tenant-engine:dev-issuer`. */
  readonly issuer?: string
  readonly audience?: string
  /** Used when the key is first created; default ES256. */
  readonly alg?: SigningAlgorithm
}

/**
 * The development issuer: what `npm start` trusts when no issuer is
 * configured. Its key pair is created on first use and kept on disk (the
 * private key readable by its owner only), so tokens it printed stay valid
 * across restarts. The platform verifies its tokens through the public key
 * set written beside it (`jwksFile`), or an HTTP server may serve `jwks` and
 * `discovery` for it.
 */
export class DevIssuer extends Context.Tag("tenant-engine/DevIssuer")<DevIssuer, TokenMinter & {
  readonly jwks: JSONWebKeySet
  /** The public key set as a file, for the `jwksFile` option. */
  readonly jwksFile: string
  /** How to trust it: `issuers: [devIssuer.trustedIssuer]`. */
  readonly trustedIssuer: TrustedIssuer
  /** The OpenID discovery document, given where its JWKS is served. */
  readonly discovery: (jwksUri: string) => ReturnType<typeof discoveryDocument>
}>() {
  static readonly layer = (options: DevIssuerOptions = {}) => Layer.effect(DevIssuer, make(options))
}

/** The issuer's key could not be read or written. */
export class DevIssuerError extends Schema.TaggedError<DevIssuerError>()("DevIssuerError", {
  message: Schema.String
}) {}

const failure = (what: string) => (cause: unknown) =>
  new DevIssuerError({ message: `${what}: ${cause instanceof Error ? cause.message : String(cause)}` })

const attempt = <A>(what: string, run: () => Promise<A>) => Effect.tryPromise({ try: run, catch: failure(what) })

const loadOrCreateKey = (file: string, alg: SigningAlgorithm) =>
  Effect.gen(function*() {
    const saved = yield* attempt(`reading ${file}`, () => readJwk(file))
    if (saved !== undefined) return yield* Effect.mapError(importSigningKey(saved), failure(`loading ${file}`))
    const fresh = yield* generateSigningKey(alg, { extractable: true })
    const jwk = yield* exportSigningKey(fresh)
    if (yield* attempt(`writing ${file}`, () => saveOnce(file, jwk))) return fresh
    // Another process saved its key first: use that one, so that both agree.
    const theirs = yield* attempt(`reading ${file}`, () => readJwk(file))
    if (theirs === undefined) return yield* new DevIssuerError({ message: `${file} vanished while starting` })
    return yield* Effect.mapError(importSigningKey(theirs), failure(`loading ${file}`))
  })

const make = (options: DevIssuerOptions) =>
  Effect.gen(function*() {
    const directory = resolve(options.directory ?? join(".data", "issuer"))
    const issuer = options.issuer ?? "urn:tenant-engine:dev-issuer"
    const jwksFile = join(directory, "jwks.json")
    yield* attempt(`creating ${directory}`, () => mkdir(directory, { recursive: true, mode: 0o700 }))
    const key = yield* loadOrCreateKey(join(directory, "signing-key.jwk.json"), options.alg ?? "ES256")
    const jwks = jwksOf([key])
    // Renamed into place: a process reading it meanwhile sees the old file or the new, never half of one.
    yield* attempt(`writing ${jwksFile}`, async () => {
      const temporary = `${jwksFile}.${randomBytes(6).toString("hex")}.tmp`
      await writeFile(temporary, JSON.stringify(jwks, null, 2) + "\n")
      await rename(temporary, jwksFile)
    })
    const minter = makeTokenMinter({ issuer, audience: options.audience ?? "platform", currentKey: () => key })
    return DevIssuer.of({
      ...minter,
      jwks,
      jwksFile,
      trustedIssuer: { issuer, jwksFile },
      discovery: (jwksUri) => discoveryDocument(issuer, jwksUri)
    })
  })

const readJwk = async (file: string): Promise<JWK | undefined> => {
  try {
    return JSON.parse(await readFile(file, "utf8"))
  } catch (error) {
    if (error instanceof Error && "code" in error && error.code === "ENOENT") return undefined
    throw error
  }
}

/**
 * Writes the key to a private temporary file, then links it into place: the
 * link fails if the file exists, so of two processes starting together exactly
 * one key wins and nobody reads a half-written file. False when another won.
 */
const saveOnce = async (file: string, jwk: JWK): Promise<boolean> => {
  const temporary = `${file}.${randomBytes(6).toString("hex")}.tmp`
  await writeFile(temporary, JSON.stringify(jwk) + "\n", { mode: 0o600, flag: "wx" })
  // writeFile's mode is filtered by the umask; make sure it is owner-only.
  await chmod(temporary, 0o600)
  try {
    await link(temporary, file)
    return true
  } catch (error) {
    if (error instanceof Error && "code" in error && error.code === "EEXIST") return false
    throw error
  } finally {
    await rm(temporary, { force: true })
  }
}
