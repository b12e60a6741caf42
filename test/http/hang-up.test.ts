import { HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer, NodeHttpServerRequest } from "@effect/platform-node"
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Layer } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as Net from "node:net"
import { countInFlight, Traffic } from "../../src/http/Traffic.js"

/**
 * A client that sends its end (a half-close) before the answer: the server
 * ends its side of the socket in turn, and a response written after that is
 * never finished by Node (the server's write waits for a callback that does
 * not come, uninterruptibly). The request must still end: its scope closes
 * and nothing of it stays behind. The app here answers at the moment that
 * matters, right after the server has ended the socket and before it is
 * destroyed (in the soak, a busy engine answered there about twice a second).
 */
it.live("a request whose client half-closed before the answer still ends", () =>
  Effect.gen(function*() {
    const ended = yield* Deferred.make<void>()
    // The socket as the app answers: [writable, destroyed].
    let answeredOn: ReadonlyArray<boolean> = []
    const app = Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      // The request's scope closes once the server has handled the response.
      yield* Effect.addFinalizer(() => Deferred.succeed(ended, undefined))
      const socket = NodeHttpServerRequest.toIncomingMessage(request).socket
      // The server's own listener has ended the socket by the time this one runs.
      yield* Effect.async<void>((resume) => {
        socket.once("end", () => resume(Effect.void))
      })
      answeredOn = [socket.writable, socket.destroyed]
      return HttpServerResponse.unsafeJson({ notes: ["a note"] })
    })
    const inFlight = yield* countInFlight
    const server = Http.createServer()
    yield* Layer.launch(HttpServer.serve(inFlight(app))).pipe(
      Effect.provide(NodeHttpServer.layer(() => server, { port: 0, host: "127.0.0.1" })),
      Effect.forkScoped
    )
    yield* Effect.async<void>((resume) => {
      if (server.listening) resume(Effect.void)
      else server.once("listening", () => resume(Effect.void))
    })
    const { port } = server.address() as AddressInfo

    const socket = Net.connect(port, "127.0.0.1")
    socket.on("error", () => {})
    socket.end("GET /notes HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")

    const outcome = yield* Deferred.await(ended).pipe(Effect.as("ended"), Effect.timeoutTo({
      duration: "5 seconds",
      onSuccess: (ended) => ended,
      onTimeout: () => "still waiting after 5 s"
    }))
    // Answered in the window that matters: ended by the server, not yet destroyed.
    expect(answeredOn).toEqual([false, false])
    expect(outcome).toBe("ended")
    expect((yield* Traffic).inFlight).toBe(0)
    socket.destroy()
  }).pipe(Effect.scoped, Effect.provide(Traffic.layer)))
