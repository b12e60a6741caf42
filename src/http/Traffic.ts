import type { HttpApp } from "@effect/platform"
import { HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Context, Effect, Layer } from "effect"
import type { Server } from "node:http"
import { connectionGone, withRequest } from "./RequestLog.js"

/**
 * Requests in flight, for a graceful shutdown: stop accepting, let what is
 * running finish (closing each connection after its response), then go.
 */
export class Traffic extends Context.Tag("tenant-engine/Traffic")<Traffic, {
  inFlight: number
  draining: boolean
}>() {
  static readonly layer = Layer.sync(Traffic, () => ({ inFlight: 0, draining: false }))
}

/**
 * Counts the requests in flight; while draining, each connection closes after
 * its response. A response whose connection is gone is ended here, so that
 * the server does not write it: it writes with `end(body, callback)` and
 * waits for the callback, uninterruptibly, and Node never calls it for a
 * connection that is gone or closing. The request's fiber would wait for
 * good, keeping the request, the response and the socket (the soak's RSS
 * growth), and holding up a drain.
 */
export const countInFlight = Effect.map(Traffic, (traffic) =>
<E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
  withRequest((request) => {
    traffic.inFlight++
    return Effect.ensuring(
      Effect.map(app, (response) => {
        if (connectionGone(request)) NodeHttpServerRequest.toServerResponse(request).end()
        else if (traffic.draining) return HttpServerResponse.setHeader(response, "connection", "close")
        return response
      }),
      Effect.sync(() => traffic.inFlight--)
    )
  }))

/** Stops accepting connections and waits until no request is in flight, at most `timeoutMs`. */
export const drain = (server: Server, timeoutMs: number) =>
  Effect.flatMap(Traffic, (traffic) =>
    Effect.async<void>((resume) => {
      traffic.draining = true
      server.close()
      const deadline = Date.now() + timeoutMs
      const poll = setInterval(() => {
        server.closeIdleConnections()
        if (traffic.inFlight === 0 || Date.now() >= deadline) {
          clearInterval(poll)
          server.closeAllConnections()
          resume(Effect.void)
        }
      }, 20)
      return Effect.sync(() => clearInterval(poll))
    }))
