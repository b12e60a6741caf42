import type { HttpServerRequest } from "@effect/platform"
import { HttpServerRequest as Request } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { Authentication } from "../auth/Authentication.js"
import { AdminAuthenticated, Authenticated } from "./Api.js"
import { requestLogOf } from "./RequestLog.js"

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

export const AuthenticatedLive = Layer.effect(
  Authenticated,
  Effect.map(Authentication, (authentication) => ({
    bearer: () =>
      Effect.gen(function*() {
        const request = yield* Request.HttpServerRequest
        const user = yield* authentication.authenticate(authorizationHeaders(request))
        const log = requestLogOf(request)
        if (log !== undefined) {
          log.tenant = user.tenant.id
          log.accountKind = user.account.kind
        }
        return user
      })
  }))
)

export const AdminAuthenticatedLive = Layer.effect(
  AdminAuthenticated,
  Effect.map(Authentication, (authentication) => ({
    bearer: () =>
      Effect.gen(function*() {
        const request = yield* Request.HttpServerRequest
        const principal = yield* authentication.authenticateAdmin(authorizationHeaders(request))
        const log = requestLogOf(request)
        if (log !== undefined) log.accountKind = "admin"
        return principal
      })
  }))
)
