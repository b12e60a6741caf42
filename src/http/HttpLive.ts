import { FileSystem, HttpApiBuilder, HttpApiSwagger, HttpIncomingMessage, HttpMiddleware, HttpServer } from "@effect/platform"
import { Effect, Layer, Option } from "effect"
import { constTrue } from "effect/Function"
import { AdminHandlers } from "./AdminHandlers.js"
import { PlatformApi } from "./Api.js"
import { AdminAuthenticatedLive, AuthenticatedLive } from "./AuthenticationMiddleware.js"
import { HealthHandlers } from "./HealthHandlers.js"
import { MeHandlers } from "./MeHandlers.js"
import { NotesHandlers } from "./NotesHandlers.js"
import { MAX_BODY_BYTES, platformMiddleware } from "./PlatformMiddleware.js"

/**
 * What `HttpApiBuilder.serve(middleware)` does, with the platform middleware
 * around the app rather than around the server's handling of it: there it
 * would see each response only after it was sent, and have to install a
 * pre-response handler on every request to change it.
 */
const serveApi = HttpApiBuilder.httpApp.pipe(
  Effect.map((app) => HttpServer.serve(platformMiddleware(app))),
  Layer.unwrapEffect,
  Layer.provide([HttpApiBuilder.Router.Live, HttpApiBuilder.Middleware.layer])
)

/** The platform router: every route of API.md, /openapi.json and /docs. Needs an HttpServer. */
export const HttpLive = serveApi.pipe(
  // Set once for the server rather than per request.
  Layer.provide(Layer.succeed(HttpIncomingMessage.MaxBodySize, Option.some(FileSystem.Size(MAX_BODY_BYTES)))),
  Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
  Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
  Layer.provide(
    HttpApiBuilder.api(PlatformApi).pipe(
      Layer.provide([HealthHandlers, MeHandlers, NotesHandlers, AdminHandlers]),
      Layer.provide([AuthenticatedLive, AdminAuthenticatedLive])
    )
  )
)

/**
 * No trace exporter is configured, so no spans at all: Effect's (one per
 * request and per SQL statement) would be made only to be dropped, and the
 * HTTP server's tracer middleware would still parse each URL and redact its
 * headers. Wiring OpenTelemetry means providing a tracer instead of this.
 */
export const withoutTracing = <A, E, R>(layer: Layer.Layer<A, E, R>) =>
  layer.pipe(HttpMiddleware.withTracerDisabledWhen(constTrue), Layer.provide(Layer.setTracerEnabled(false)))
