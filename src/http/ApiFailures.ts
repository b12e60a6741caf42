import {
  HttpApiBuilder,
  HttpApiError,
  HttpApp,
  HttpServerError,
  HttpServerRequest,
  HttpServerResponse
} from "@effect/platform"
import { SqlError } from "@effect/sql/SqlError"
import { Cause, Effect } from "effect"
import { errorResponse, responseHeaders } from "../ApiError.js"
import { isUnavailable } from "../db/SqlErrors.js"
import { PlatformApi } from "./Api.js"
import { BadRequest, InternalError, platformUnavailable, type ServiceUnavailable, UnknownRoute } from "./HttpErrors.js"
import { currentRequestId } from "./RequestId.js"
import { aboutRequest } from "./RequestLog.js"

/**
 * Failures of the API's handlers and middlewares, seen by a global HttpApi
 * middleware before HttpApiBuilder encodes them (with the API's error schema):
 * - a request HttpApi could not decode (HttpApiDecodeError, or a body that is
 *   not JSON) becomes the contract's BadRequest;
 * - a statement of the platform's own that died because its database did not
 *   answer (an operator's operation, a tenant's placement, while the platform
 *   database is down) becomes ServiceUnavailable (503 with Retry-After), not a
 *   500: nothing is wrong with the request or the code, and retrying will do.
 *   Tenants' own queries never get here as SqlErrors: TenantSession makes
 *   theirs TenantUnavailable;
 * - an error whose declaration gives headers (WWW-Authenticate, Retry-After)
 *   gets them on its response, through a pre-response handler registered only
 *   here, on the failure path.
 */
export const ApiFailuresLive = HttpApiBuilder.middleware(PlatformApi, (app) =>
  Effect.catchAllCause(app, (cause): Effect.Effect<never, BadRequest | ServiceUnavailable> => {
    const error = Cause.squash(cause)
    if (error instanceof HttpApiError.HttpApiDecodeError) {
      return Effect.fail(new BadRequest({ message: `invalid request: ${error.message}` }))
    }
    if (HttpServerError.isServerError(error) && error._tag === "RequestError") {
      return Effect.fail(new BadRequest({ message: "the request body could not be read (malformed JSON?)" }))
    }
    if (error instanceof SqlError && isUnavailable(error)) return failWithHeaders(Cause.fail(platformUnavailable()))
    return failWithHeaders(cause)
  }))

/** Fails with the cause, its error's declared headers (if any) set on the response. */
const failWithHeaders = <E>(cause: Cause.Cause<E>): Effect.Effect<never, E> => {
  const headers = responseHeaders(Cause.squash(cause))
  if (headers === undefined) return Effect.failCause(cause)
  return Effect.zipRight(
    HttpApp.appendPreResponseHandler((_, response) => Effect.succeed(HttpServerResponse.setHeaders(response, headers))),
    Effect.failCause(cause)
  )
}

const unknownRoute = errorResponse(UnknownRoute, new UnknownRoute({ message: "no such route" }))

/**
 * What the API did not answer, answered in the contract's shape: an unknown
 * route is 404; a defect (or a failure HttpApi could not encode) is logged
 * with its cause and answered 500 `internal` with the request id, never with
 * the cause itself. An interrupted request gets the server's empty answer
 * (499 when the client went away, 503 when the server is stopping).
 */
export const answerFailures = <E, R>(
  app: HttpApp.Default<E, R>
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, R | HttpServerRequest.HttpServerRequest> =>
  Effect.catchAllCause(app, (cause) => {
    if (Cause.isInterruptedOnly(cause)) return Effect.map(HttpServerError.causeResponse(cause), ([response]) => response)
    const error = Cause.squash(cause)
    if (HttpServerError.isServerError(error) && error._tag === "RouteNotFound") return Effect.succeed(unknownRoute)
    return Effect.flatMap(currentRequestId, (requestId) =>
      Effect.as(
        aboutRequest(Effect.logError("unexpected failure", cause)),
        errorResponse(InternalError, new InternalError({ message: "an unexpected error occurred", requestId }))
      ))
  })
