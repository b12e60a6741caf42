import { Context, Effect, Layer } from "effect"
import type { Server } from "node:http"

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
