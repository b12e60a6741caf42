import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { SpanKind } from "@opentelemetry/api"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { BatchSpanProcessor, type Span, type SpanProcessor } from "@opentelemetry/sdk-trace-base"
import {
  Config,
  Context,
  Effect,
  FiberRef,
  FiberRefs,
  HashMap,
  HashSet,
  Layer,
  Logger,
  Option,
  Tracer
} from "effect"

/**
 * Tracing, for a server with an OTLP endpoint (loaded only then: none of
 * these packages is on the start-up path otherwise). Every request is a span
 * of the HTTP server (@effect/platform's tracer middleware), child spans come
 * from token verification, account look-up and each SQL statement
 * (@effect/sql), and the OpenTelemetry SDK batches them to the endpoint over
 * OTLP/HTTP. The SDK and the exporter read the standard OTEL_* variables
 * themselves (headers, timeout, compression, OTEL_BSP_* batching, sampler,
 * OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES).
 */

/** A password literal in SQL (CREATE or ALTER ROLE ... PASSWORD '...'). */
const PASSWORD_LITERAL = /\bPASSWORD\s+'(?:[^']|'')*'/gi

/**
 * Touches made to each span as it ends, before it is exported: the request
 * span is named for its route (`GET /v1/notes/:id`: the route is known only
 * once the router has matched, after the span began); SQL spans get
 * `db.system` beside @effect/sql's newer `db.system.name`, and no password
 * a role statement carries as a literal leaves the process in their text.
 */
class Conventions implements SpanProcessor {
  onStart(): void {}

  onEnding(span: Span): void {
    const system = span.attributes["db.system.name"]
    if (system !== undefined && span.attributes["db.system"] === undefined) span.setAttribute("db.system", system)
    const text = span.attributes["db.query.text"]
    if (typeof text === "string" && /password/i.test(text)) {
      span.setAttribute("db.query.text", text.replace(PASSWORD_LITERAL, "PASSWORD '[REDACTED]'"))
    }
    if (span.kind === SpanKind.SERVER) {
      const route = span.attributes["http.route"]
      const method = span.attributes["http.request.method"]
      if (typeof route === "string" && typeof method === "string") span.updateName(`${method} ${route}`)
    }
  }

  onEnd(): void {}

  forceFlush(): Promise<void> {
    return Promise.resolve()
  }

  shutdown(): Promise<void> {
    return Promise.resolve()
  }
}

/** `tenant-engine`, unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES names the service. */
const serviceNamed = Effect.map(
  Effect.all([
    Config.option(Config.string("OTEL_SERVICE_NAME")),
    Config.withDefault(Config.string("OTEL_RESOURCE_ATTRIBUTES"), "")
  ]),
  ([name, attributes]) => Option.isSome(name) || /(^|,)\s*service\.name\s*=/.test(attributes)
).pipe(Effect.orElseSucceed(() => false))

/**
 * Adds the request's trace and span ids to every log line written inside a
 * span, in whatever format the logger has (annotations `traceId`, `spanId`).
 * It wraps the loggers in place when the layer is built, so it must be built
 * after the logger is set (as the server and the tests do).
 */
const logTraceIds = Layer.scopedDiscard(
  Effect.locallyScopedWith(
    FiberRef.currentLoggers,
    HashSet.map((logger: Logger.Logger<unknown, unknown>) =>
      Logger.mapInputOptions(logger, (options: Logger.Logger.Options<unknown>) => {
        const span = Context.getOption(FiberRefs.getOrDefault(options.context, FiberRef.currentContext), Tracer.ParentSpan)
        if (Option.isNone(span)) return options
        return {
          ...options,
          annotations: HashMap.set<string, unknown>(
            HashMap.set<string, unknown>(options.annotations, "traceId", span.value.traceId),
            "spanId",
            span.value.spanId
          )
        }
      })
    )
  )
)

/** The tracer, exporting to `url` (OTLP/HTTP, JSON), and trace ids in log lines. Flushes when its scope closes. */
export const tracingLayer = (url: string) =>
  Layer.merge(
    NodeSdk.layer(Effect.map(serviceNamed, (named) => ({
      spanProcessor: [
        new Conventions(),
        // Batching as OTEL_BSP_* say (5 s between exports by default).
        new BatchSpanProcessor(new OTLPTraceExporter({ url }))
      ],
      ...(named ? {} : { resource: { serviceName: "tenant-engine" } })
    }))),
    logTraceIds
  )
