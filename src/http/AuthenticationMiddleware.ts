import { HttpServerRequest } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Context, Effect, Layer } from "effect"
import { Authentication } from "../auth/Authentication.js"
import { AdminAuthenticated, Authenticated } from "./Api.js"
import { type RequestLog, requestLogOf } from "./RequestLog.js"

/**
 * Every Authorization header the client sent. Node keeps only the first of
 * duplicates in `headers`, so they are read from the raw list: two headers are
 * an attack or a bug, and Authentication refuses them.
 */
const authorizationHeaders = (request: HttpServerRequest.HttpServerRequest): ReadonlyArray<string> => {
  const raw = NodeHttpServerRequest.toIncomingMessage(request).rawHeaders
  const values: Array<string> = []
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === "authorization") values.push(raw[i + 1]!)
  }
  return values
}

// The bearer token HttpApiSecurity decodes is ignored: it slices the header
// without checking the scheme. Authentication reads the headers itself.
// Both run on every request, so they read the request straight from the fiber
// and chain plainly (a generator here measured slower per request).

/** Runs `f` on the request's Authorization headers and its log record. */
const withRequest = <A, E>(f: (authorization: ReadonlyArray<string>, log: RequestLog | undefined) => Effect.Effect<A, E>) =>
  Effect.withFiberRuntime<A, E>((fiber) => {
    const request = Context.unsafeGet(fiber.currentContext, HttpServerRequest.HttpServerRequest)
    return f(authorizationHeaders(request), requestLogOf(request))
  })

export const AuthenticatedLive = Layer.effect(
  Authenticated,
  Effect.map(Authentication, (authentication) => ({
    bearer: () =>
      withRequest((authorization, log) =>
        Effect.tap(authentication.authenticate(authorization), (user) => {
          if (log !== undefined) {
            log.tenant = user.tenant.id
            log.accountKind = user.account.kind
          }
        })
      )
  }))
)

export const AdminAuthenticatedLive = Layer.effect(
  AdminAuthenticated,
  Effect.map(Authentication, (authentication) => ({
    bearer: () =>
      withRequest((authorization, log) =>
        Effect.tap(authentication.authenticateAdmin(authorization), () => {
          if (log !== undefined) log.accountKind = "admin"
        })
      )
  }))
)
