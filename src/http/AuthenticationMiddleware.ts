import type { HttpServerRequest } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { Authentication } from "../auth/Authentication.js"
import { noteCaller, withRequest } from "./RequestLog.js"
import { AdminAuthenticated, Authenticated } from "./Security.js"

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
// Both run on every request: plain chains (a generator measured slower).

export const AuthenticatedLive = Layer.effect(
  Authenticated,
  Effect.map(Authentication, (authentication) => ({
    bearer: () =>
      withRequest((request, fiber) =>
        Effect.map(authentication.authenticate(authorizationHeaders(request)), (user) => {
          noteCaller(fiber, { tenant: user.tenant.id, accountKind: user.account.kind, account: user.account.id })
          return user
        }))
  }))
)

export const AdminAuthenticatedLive = Layer.effect(
  AdminAuthenticated,
  Effect.map(Authentication, (authentication) => ({
    bearer: () =>
      withRequest((request, fiber) =>
        Effect.map(authentication.authenticateAdmin(authorizationHeaders(request)), (principal) => {
          noteCaller(fiber, { accountKind: "admin" })
          return principal
        }))
  }))
)
