import type { HttpApp } from "@effect/platform"
import { HttpServerRequest } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Context, Effect, type Fiber, FiberRef, HashMap, LogLevel } from "effect"

/**
 * One log line per request: method, path, status, duration, with the
 * request's log annotations (its id, and the tenant and account kind
 * authentication found). A 5xx is a warning; below the minimum log level the
 * line is not even made (nor timed, when no line could be). It logs what is
 * answered: the app must answer everything (see answerFailures).
 */
export const accessLog = <R>(app: HttpApp.Default<never, R>): HttpApp.Default<never, R> =>
  withRequest((request, fiber) => {
    const minimum = fiber.getFiberRef(FiberRef.currentMinimumLogLevel)
    if (LogLevel.lessThan(LogLevel.Warning, minimum)) return app
    const started = performance.now()
    return Effect.flatMap(app, (response) => {
      const status = connectionGone(request) ? 499 : response.status
      const level = status >= 500 ? LogLevel.Warning : LogLevel.Info
      if (LogLevel.lessThan(level, minimum)) return Effect.succeed(response)
      const line = `${request.method} ${request.url.split("?")[0]} ${status} ${(performance.now() - started).toFixed(1)}ms`
      return Effect.as(Effect.logWithLevel(level, line), response)
    })
  })

/**
 * Runs `f` with the request and the fiber answering it. The type declares the
 * request as a requirement; it is read from the fiber's context, in one step
 * rather than a tag's look-up and a flatMap, since every middleware does it on
 * every request.
 */
export const withRequest = <A, E, R>(
  f: (request: HttpServerRequest.HttpServerRequest, fiber: Fiber.RuntimeFiber<A, E>) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R | HttpServerRequest.HttpServerRequest> =>
  Effect.withFiberRuntime<A, E, R | HttpServerRequest.HttpServerRequest>((fiber) =>
    f(Context.unsafeGet(fiber.currentContext, HttpServerRequest.HttpServerRequest), fiber)
  )

/**
 * Adds to the log annotations of the request: everything it logs from then on
 * carries them. Not scoped to an effect: each request runs in a fiber of its
 * own, and they end with it (cheaper than `Effect.annotateLogs`, on every request).
 */
export const annotateRequest = (annotations: Readonly<Record<string, string>>) =>
  FiberRef.update(FiberRef.currentLogAnnotations, (current) => {
    let out = current
    for (const key in annotations) out = HashMap.set(out, key, annotations[key])
    return out
  })

/**
 * Whether the response can no longer be sent: its socket is destroyed (the
 * client hung up, or the body reader destroyed it on an oversized chunked
 * body); the response learns of it later.
 */
export const connectionGone = (request: HttpServerRequest.HttpServerRequest) =>
  NodeHttpServerRequest.toServerResponse(request).destroyed ||
  NodeHttpServerRequest.toIncomingMessage(request).socket.destroyed
