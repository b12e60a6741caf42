import {
  FileSystem,
  HttpApiBuilder,
  HttpApiSwagger,
  HttpIncomingMessage,
  HttpMiddleware,
  HttpRouter,
  HttpServer
} from "@effect/platform"
import { Effect, Layer, Option } from "effect"
import { constTrue } from "effect/Function"
import { NotesHandlers } from "../notes/NotesHandlers.js"
import { AdminHandlers } from "./AdminHandlers.js"
import { answerFailures, ApiFailuresLive } from "./ApiFailures.js"
import { PlatformApi } from "./Api.js"
import { AdminAuthenticatedLive, AuthenticatedLive } from "./AuthenticationMiddleware.js"
import { bodyGuards, MAX_BODY_BYTES } from "./BodyGuards.js"
import { HealthHandlers } from "./HealthHandlers.js"
import { MeHandlers } from "./MeHandlers.js"
import { requestId } from "./RequestId.js"
import { accessLog } from "./RequestLog.js"
import { countInFlight } from "./Traffic.js"

/**
 * What `HttpApiBuilder.serve(middleware)` does, with the platform's
 * middlewares around the app rather than around the server's handling of it
 * (there they would see each response only after it was sent), outermost
 * first: requests in flight (drain), request id, access log, body limits,
 * then answers for what the API did not answer.
 */
const serveApi = Effect.gen(function*() {
  // Path parameters of any length reach their schema (a bad id is a 400):
  // find-my-way would not match a parameter over 100 characters (a 404).
  const app = yield* HttpApiBuilder.httpApp.pipe(HttpRouter.withRouterConfig({ maxParamLength: Number.MAX_SAFE_INTEGER }))
  const inFlight = yield* countInFlight
  return HttpServer.serve(inFlight(requestId(accessLog(bodyGuards(answerFailures(app))))))
}).pipe(
  Layer.unwrapEffect,
  Layer.provide([HttpApiBuilder.Router.Live, HttpApiBuilder.Middleware.layer])
)

/** The platform router: every route of docs/API.md, /openapi.json and /docs. Needs an HttpServer and Traffic. */
export const HttpLive = serveApi.pipe(
  Layer.provide(ApiFailuresLive),
  // Set once for the server rather than per request.
  Layer.provide(Layer.succeed(HttpIncomingMessage.MaxBodySize, Option.some(FileSystem.Size(MAX_BODY_BYTES)))),
  Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
  Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
  Layer.provide(
    HttpApiBuilder.api(PlatformApi).pipe(
      // One line per resource (README, "Adding a tenant-scoped resource").
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
