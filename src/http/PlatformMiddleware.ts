import {
  HttpApp,
  HttpServerError,
  HttpServerRequest,
  HttpServerResponse
} from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Cause, Chunk, Context, Effect, FiberRef, LogLevel, Option } from "effect"
import { randomUUID } from "node:crypto"
import { wwwAuthenticate } from "../auth/AuthErrors.js"
import { startRequestLog } from "./RequestLog.js"
import { Traffic } from "./Traffic.js"

/** Request bodies larger than this are refused with 413 before they are read. */
export const MAX_BODY_BYTES = 1024 * 1024

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

const json = (status: number, body: Record<string, unknown>) =>
  HttpServerResponse.unsafeJson(body, { status })

/**
 * Everything every response shares, around the HttpApi app:
 * - `x-request-id`, echoed when the client sent a sane one, made otherwise;
 * - 413 for bodies over 1 MiB and 415 for bodies that are not JSON, before reading them;
 * - error bodies in the contract's shape (`{"error","message"}`, no `_tag`),
 *   with `WWW-Authenticate` and `Retry-After` where API.md asks for them;
 * - a defect becomes 500 `{"error":"internal","requestId"}` and is logged with
 *   its cause — never a stack trace or SQL in the body;
 * - one log line per request: method, route, status, duration, tenant, account kind, request id.
 *
 * It wraps the app itself (see `HttpLive`), not the server's handling of it, so
 * it gets the app's response, or its failure, before anything is sent: no
 * pre-response handler to install on every request.
 */
export const platformMiddleware = <E, R>(app: HttpApp.Default<E, R>) =>
  // One fiber-runtime read instead of a chain of service lookups: this runs on every request.
  Effect.withFiberRuntime<
    HttpServerResponse.HttpServerResponse,
    never,
    R | HttpServerRequest.HttpServerRequest | Traffic
  >((fiber) => {
    const request = Context.unsafeGet(fiber.currentContext, HttpServerRequest.HttpServerRequest)
    const traffic = Context.unsafeGet(fiber.currentContext, Traffic)
    const minimumLogLevel = fiber.getFiberRef(FiberRef.currentMinimumLogLevel)
    const draining = traffic.draining
    traffic.inFlight++
    const started = performance.now()
    const incoming = request.headers["x-request-id"]
    const requestId = incoming !== undefined && REQUEST_ID.test(incoming) ? incoming : randomUUID()
    const log = startRequestLog(request, requestId)
    let status = 0
    const finish = (response: HttpServerResponse.HttpServerResponse) => {
      // The connection is gone (the client hung up, or the body reader destroyed
      // it on an oversized chunked body): nothing can be sent, and Node never
      // completes a write to a destroyed response, so a body here would leave
      // this request waiting forever (and in flight, holding up a drain).
      if (connectionGone(request)) {
        status = 499
        return HttpServerResponse.empty({ status: response.status })
      }
      const shaped = HttpServerResponse.setHeader(shapeError(response, requestId), "x-request-id", requestId)
      status = shaped.status
      // While draining, each connection closes after its response.
      return draining ? HttpServerResponse.setHeader(shaped, "connection", "close") : shaped
    }
    const logLine = Effect.suspend(() => {
      traffic.inFlight--
      const level = status >= 500 ? LogLevel.Warning : LogLevel.Info
      // Below the minimum level the line is not even made.
      if (LogLevel.lessThan(level, minimumLogLevel)) return Effect.void
      const line = `${request.method} ${request.url.split("?")[0]} ${status || 499} ${
        (performance.now() - started).toFixed(1)
      }ms`
      return Effect.logWithLevel(level, line).pipe(
        Effect.annotateLogs({
          requestId,
          ...(log.tenant ? { tenant: log.tenant } : {}),
          ...(log.accountKind ? { accountKind: log.accountKind } : {})
        })
      )
    })
    const refused = refuseBody(request)
    if (Option.isSome(refused)) return Effect.ensuring(Effect.succeed(finish(refused.value)), logLine)
    return Effect.matchCauseEffect(app, {
      onSuccess: (response) => Effect.succeed(finish(response)),
      // What the app could not answer (an unknown route, an unreadable body, a
      // defect) gets the response the server would have made of it, shaped.
      onFailure: (cause) =>
        Effect.flatMap(HttpServerError.causeResponse(cause), ([response]) =>
          isExpected(cause)
            ? Effect.succeed(finish(response))
            : Effect.as(
              Effect.logError("unexpected failure", cause).pipe(Effect.annotateLogs({ requestId })),
              finish(response)
            ))
    }).pipe(Effect.ensuring(logLine))
  })

/** Whether the response can no longer be sent: its socket is destroyed (the response learns of it later). */
const connectionGone = (request: HttpServerRequest.HttpServerRequest) => {
  const response = NodeHttpServerRequest.toServerResponse(request)
  return response.destroyed || NodeHttpServerRequest.toIncomingMessage(request).socket.destroyed
}

/** A request the client got wrong, already answered: an unknown route, an unreadable body, a 4xx. */
const isClientError = (error: unknown) =>
  (HttpServerError.isServerError(error) && (error._tag === "RouteNotFound" || error._tag === "RequestError")) ||
  (HttpServerResponse.isServerResponse(error) && error.status < 500)

/** Failures that are the client's doing, or a client that went away: not worth an error log line. */
const isExpected = (cause: Cause.Cause<unknown>) =>
  Cause.isInterruptedOnly(cause) ||
  (Chunk.every(Cause.failures(cause), isClientError) && Chunk.every(Cause.defects(cause), isClientError))

const refuseBody = (request: HttpServerRequest.HttpServerRequest): Option.Option<HttpServerResponse.HttpServerResponse> => {
    const length = Number(request.headers["content-length"] ?? "0")
    if (length > MAX_BODY_BYTES) {
      return Option.some(json(413, { error: "payload_too_large", message: "request bodies are limited to 1 MiB" }))
    }
    const contentType = request.headers["content-type"]
    const hasBody = length > 0 || request.headers["transfer-encoding"] !== undefined
    // Only application/json itself: HttpApi parses no other type as JSON (a
    // `+json` type would reach the schema as raw bytes and fail confusingly).
    if (hasBody && contentType !== undefined && !/^application\/json\s*(;|$)/i.test(contentType)) {
      return Option.some(json(415, { error: "unsupported_media_type", message: "request bodies must be application/json" }))
    }
    return Option.none()
}

const decodeBody = (response: HttpServerResponse.HttpServerResponse): unknown => {
  if (response.body._tag !== "Uint8Array") return undefined
  try {
    return JSON.parse(new TextDecoder().decode(response.body.body))
  } catch {
    return undefined
  }
}

const BODILESS: Record<number, { error: string; message: string }> = {
  400: { error: "bad_request", message: "the request could not be read (malformed JSON?)" },
  404: { error: "not_found", message: "no such route" },
  405: { error: "method_not_allowed", message: "method not allowed" },
  413: { error: "payload_too_large", message: "request bodies are limited to 1 MiB" }
}

/**
 * Rewrites an error response into the contract's shape: encoded tagged errors
 * lose their `_tag` and gain their headers; empty ones (unreadable bodies,
 * unknown routes, defects) get a body. A 500 never says more than its request id.
 */
const shapeError = (response: HttpServerResponse.HttpServerResponse, requestId: string) => {
  if (response.status < 400) return response
  if (response.status >= 500 && response.status !== 503) {
    return json(500, { error: "internal", message: "an unexpected error occurred", requestId })
  }
  const body = decodeBody(response)
  if (typeof body !== "object" || body === null || !("_tag" in body) || typeof body._tag !== "string") {
    const fallback = BODILESS[response.status]
    return body === undefined && fallback !== undefined ? json(response.status, fallback) : response
  }
  const { _tag, retryAfterSeconds, ...rest } = body as Record<string, unknown> & { _tag: string }
  const message = typeof rest["message"] === "string" ? rest["message"] : ""
  if (_tag === "HttpApiDecodeError") {
    return json(400, { error: "bad_request", message: `invalid request: ${message}`.trim() })
  }
  let shaped = json(response.status, rest)
  const challenge = wwwAuthenticate({ ...rest, _tag, message })
  if (challenge !== undefined) shaped = HttpServerResponse.setHeader(shaped, "www-authenticate", challenge)
  if (typeof retryAfterSeconds === "number") {
    shaped = HttpServerResponse.setHeader(shaped, "retry-after", String(retryAfterSeconds))
  }
  return shaped
}
