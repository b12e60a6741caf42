import {
  FileSystem,
  type HttpApp,
  HttpApiBuilder,
  HttpApiSwagger,
  HttpIncomingMessage,
  HttpMiddleware,
  HttpRouter,
  HttpServer
} from "@effect/platform"
import type * as Respondable from "@effect/platform/HttpServerRespondable"
import { Context, Effect, Layer, Option, Tracer } from "effect"
import { constTrue } from "effect/Function"
import { NotesHandlers } from "../notes/NotesHandlers.js"
import { recordRequest } from "../observability/Metrics.js"
import { Observability } from "../observability/Observability.js"
import { MetricsRoute } from "../observability/Scrape.js"
import { AdminHandlers } from "./AdminHandlers.js"
import { answerFailures, ApiFailuresLive } from "./ApiFailures.js"
import { PlatformApi } from "./Api.js"
import { AdminAuthenticatedLive, AuthenticatedLive } from "./AuthenticationMiddleware.js"
import { bodyGuards, MAX_BODY_BYTES } from "./BodyGuards.js"
import { HealthHandlers } from "./HealthHandlers.js"
import { MeHandlers } from "./MeHandlers.js"
import { requestId } from "./RequestId.js"
import { accessLog, currentRequest, type RequestObserver } from "./RequestLog.js"
import { countInFlight } from "./Traffic.js"

/**
 * Each route's handler first writes the route's template into the request's
 * record (for the request metrics, which see the response outside the router).
 */
const recordingRoutes = <E, R>(router: HttpRouter.HttpRouter<E, R>) =>
  HttpRouter.transform(router, (handler) =>
    Effect.withFiberRuntime<Respondable.Respondable, E, Effect.Effect.Context<typeof handler>>((fiber) => {
      const record = fiber.getFiberRef(currentRequest)
      if (record !== undefined) record.route = Context.unsafeGet(fiber.currentContext, HttpRouter.RouteContext).route.path
      return handler
    }))

/** The request histogram's update: one per answered request. */
const requestMetrics = (tenantLabel: boolean): RequestObserver => (request, record, status, millis) =>
  recordRequest(
    record?.route ?? "",
    request.method,
    status,
    tenantLabel ? record?.tenant ?? "" : undefined,
    millis / 1000
  )

/**
 * With tracing: the request's span gets the caller's tenant and account once
 * the app has answered (authentication learns them inside it).
 */
const traceCaller = <R>(app: HttpApp.Default<never, R>): HttpApp.Default<never, R> =>
  Effect.withFiberRuntime((fiber) => {
    const span = Context.getOption(fiber.currentContext, Tracer.ParentSpan)
    if (Option.isNone(span) || span.value._tag !== "Span") return app
    const requestSpan = span.value
    return Effect.map(app, (response) => {
      const record = fiber.getFiberRef(currentRequest)
      if (record?.tenant !== undefined) requestSpan.attribute("tenant.id", record.tenant)
      if (record?.account !== undefined) requestSpan.attribute("enduser.id", record.account)
      return response
    })
  })

/**
 * What `HttpApiBuilder.serve(middleware)` does, with the platform's
 * middlewares around the app rather than around the server's handling of it
 * (there they would see each response only after it was sent), outermost
 * first: requests in flight (drain), request id, the span's caller (tracing
 * only), access log and request metrics, body limits, then answers for what
 * the API did not answer.
 */
const serveApi = Effect.gen(function*() {
  const observability = yield* Observability
  // Path parameters of any length reach their schema (a bad id is a 400):
  // find-my-way would not match a parameter over 100 characters (a 404).
  const app = yield* HttpApiBuilder.httpApp.pipe(
    HttpRouter.withRouterConfig({ maxParamLength: Number.MAX_SAFE_INTEGER }),
    (httpApp) =>
      observability.metrics
        ? Effect.updateService(httpApp, HttpApiBuilder.Router, (service) => ({
          ...service,
          router: Effect.map(service.router, recordingRoutes)
        }))
        : httpApp
  )
  const inFlight = yield* countInFlight
  const logged = accessLog(
    bodyGuards(answerFailures(app)),
    observability.metrics ? requestMetrics(observability.metricsTenantLabel) : undefined
  )
  const traced = Option.isSome(observability.otlpTracesEndpoint) ? traceCaller(logged) : logged
  return HttpServer.serve(inFlight(requestId(traced)))
}).pipe(
  Layer.unwrapEffect,
  Layer.provide([HttpApiBuilder.Router.Live, HttpApiBuilder.Middleware.layer])
)

/** GET /metrics, unless METRICS=off. */
const metricsRoute = Layer.unwrapEffect(
  Effect.map(
    Observability,
    (observability): Layer.Layer<never, never, Layer.Layer.Context<typeof MetricsRoute>> =>
      observability.metrics ? MetricsRoute : Layer.empty
  )
)

/**
 * The platform router: every route of docs/API.md, /openapi.json and /docs,
 * and /metrics (Observability says). Needs an HttpServer and Traffic.
 */
export const HttpLive = serveApi.pipe(
  Layer.provide(metricsRoute),
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
 * headers. With an endpoint, `withTracing` provides a tracer instead.
 */
export const withoutTracing = <A, E, R>(layer: Layer.Layer<A, E, R>) =>
  layer.pipe(HttpMiddleware.withTracerDisabledWhen(constTrue), Layer.provide(Layer.setTracerEnabled(false)))

/**
 * Spans to the OTLP endpoint when there is one (the tracer is provided to
 * the whole platform, so its services see it when they are built), and
 * `withoutTracing` otherwise: then no tracer and no span at all. The
 * OpenTelemetry packages are loaded only with an endpoint.
 */
export const withTracing = (endpoint: Option.Option<string>) =>
<A, E, R>(layer: Layer.Layer<A, E, R>): Layer.Layer<A, E, R> =>
  Option.match(endpoint, {
    onNone: () => withoutTracing(layer),
    onSome: (url) => {
      const tracing = Layer.unwrapEffect(
        Effect.map(Effect.promise(() => import("../observability/Tracing.js")), ({ tracingLayer }) =>
          tracingLayer(url))
      )
      // Unmatched requests keep the method alone as their name; matched ones are renamed for their route.
      const named = HttpMiddleware.withSpanNameGenerator(layer, (request) => request.method)
      return Layer.provide(named, tracing)
    }
  })
