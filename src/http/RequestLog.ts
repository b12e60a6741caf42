import type { HttpApp } from "@effect/platform"
import { HttpServerRequest } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Context, Effect, type Fiber, FiberRef, LogLevel } from "effect"

/**
 * What is known of the request a fiber answers: its id (RequestId), then the
 * caller authentication found. Set once per request; what is learned later is
 * written into the record, not set again: a FiberRef update copies every
 * FiberRef of the fiber, and log annotations cost a HashMap update each, on
 * every request, for lines that are mostly never written.
 */
export interface RequestRecord {
  readonly requestId: string
  tenant?: string
  accountKind?: string
  /** The account's id (the span's `enduser.id`). */
  account?: string
  /** The matched route's template, once the router has matched one (metrics and spans). */
  route?: string
}

/**
 * Told of each answered request, synchronously, after its response (the
 * request metrics): status 499 when the client had gone.
 */
export type RequestObserver = (
  request: HttpServerRequest.HttpServerRequest,
  record: RequestRecord | undefined,
  status: number,
  millis: number
) => void

export const currentRequest = FiberRef.unsafeMake<RequestRecord | undefined>(undefined)

/** Annotates a line about the request with its record (id, tenant, account kind). */
export const aboutRequest = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.flatMap(FiberRef.get(currentRequest), (record) => {
    if (record === undefined) return effect
    const annotations: Record<string, string> = { requestId: record.requestId }
    if (record.tenant !== undefined) annotations["tenant"] = record.tenant
    if (record.accountKind !== undefined) annotations["accountKind"] = record.accountKind
    return Effect.annotateLogs(effect, annotations)
  })

/**
 * One log line per request: method, path, status, duration, annotated with
 * the request's record. A 5xx is a warning; below the minimum log level the
 * line is not even made (nor timed, when no line could be and no observer
 * is given). It logs what is answered: the app must answer everything (see
 * answerFailures). The observer (the request metrics) shares its timing.
 */
export const accessLog = <R>(app: HttpApp.Default<never, R>, observe?: RequestObserver): HttpApp.Default<never, R> =>
  withRequest((request, fiber) => {
    const minimum = fiber.getFiberRef(FiberRef.currentMinimumLogLevel)
    const logging = !LogLevel.lessThan(LogLevel.Warning, minimum)
    if (!logging && observe === undefined) return app
    const started = performance.now()
    return Effect.flatMap(app, (response) => {
      const status = connectionGone(request) ? 499 : response.status
      const millis = performance.now() - started
      observe?.(request, fiber.getFiberRef(currentRequest), status, millis)
      const level = status >= 500 ? LogLevel.Warning : LogLevel.Info
      if (!logging || LogLevel.lessThan(level, minimum)) return Effect.succeed(response)
      const line = `${request.method} ${request.url.split("?")[0]} ${status} ${millis.toFixed(1)}ms`
      return Effect.as(aboutRequest(Effect.logWithLevel(level, line)), response)
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

/** Writes what authentication learned of the caller into the request's record. */
export const noteCaller = (
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  caller: Omit<RequestRecord, "requestId" | "route">
) => {
  const record = fiber.getFiberRef(currentRequest)
  if (record === undefined) return
  if (caller.tenant !== undefined) record.tenant = caller.tenant
  if (caller.accountKind !== undefined) record.accountKind = caller.accountKind
  if (caller.account !== undefined) record.account = caller.account
}

/**
 * Whether the response can no longer be sent: its socket is destroyed (the
 * client hung up), or no longer writable (the client sent its end first, and
 * the server ended the socket in turn); the response learns of either later.
 */
export const connectionGone = (request: HttpServerRequest.HttpServerRequest) => {
  const socket = NodeHttpServerRequest.toIncomingMessage(request).socket
  return NodeHttpServerRequest.toServerResponse(request).destroyed || socket.destroyed || !socket.writable
}
