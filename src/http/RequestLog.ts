import type { HttpApp } from "@effect/platform"
import { HttpServerRequest } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Effect, Exit, FiberRef, HashMap, LogLevel } from "effect"

/**
 * One log line per request: method, path, status, duration, with the
 * request's log annotations (its id, and the tenant and account kind
 * authentication found). A 5xx is a warning; below the minimum log level the
 * line is not even made.
 */
export const accessLog = <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const started = performance.now()
    return Effect.onExit(app, (exit) =>
      Effect.withFiberRuntime((fiber) => {
        const status = Exit.isSuccess(exit) && !connectionGone(request) ? exit.value.status : 499
        const level = status >= 500 ? LogLevel.Warning : LogLevel.Info
        if (LogLevel.lessThan(level, fiber.getFiberRef(FiberRef.currentMinimumLogLevel))) return Effect.void
        return Effect.logWithLevel(
          level,
          `${request.method} ${request.url.split("?")[0]} ${status} ${(performance.now() - started).toFixed(1)}ms`
        )
      }))
  })

/**
 * Records who the request is for in its log annotations (the access log line
 * and anything else it logs carry them). Not scoped to an effect: it holds
 * for the rest of the request, whose outermost annotation (the request id)
 * ends it.
 */
export const annotateCaller = (caller: { readonly tenant?: string; readonly accountKind: string }) =>
  FiberRef.update(FiberRef.currentLogAnnotations, (annotations) => {
    const withKind = HashMap.set(annotations, "accountKind", caller.accountKind)
    return caller.tenant === undefined ? withKind : HashMap.set(withKind, "tenant", caller.tenant)
  })

/**
 * Whether the response can no longer be sent: its socket is destroyed (the
 * client hung up, or the body reader destroyed it on an oversized chunked
 * body); the response learns of it later.
 */
export const connectionGone = (request: HttpServerRequest.HttpServerRequest) =>
  NodeHttpServerRequest.toServerResponse(request).destroyed ||
  NodeHttpServerRequest.toIncomingMessage(request).socket.destroyed
