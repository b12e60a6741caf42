import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { type Attributes, type Context as OtelContext, type Link, SpanKind, trace } from "@opentelemetry/api"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type Sampler,
  SamplingDecision,
  type SamplingResult,
  type Span,
  type SpanProcessor,
  TraceIdRatioBasedSampler
} from "@opentelemetry/sdk-trace-base"
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
 * themselves (headers, timeout, compression, OTEL_BSP_* batching,
 * OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES); the sampler is read here, to
 * keep only traces that begin with a request (RequestsOnly).
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

/** The sampler OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG name, as the SDK reads them (default parentbased_always_on). */
const samplerNamed = (name: string, arg: string): Sampler => {
  const given = Number(arg)
  const ratio = arg.trim() !== "" && given >= 0 && given <= 1 ? given : 1
  switch (name.trim().toLowerCase()) {
    case "always_on":
      return new AlwaysOnSampler()
    case "always_off":
      return new AlwaysOffSampler()
    case "traceidratio":
      return new TraceIdRatioBasedSampler(ratio)
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() })
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) })
    default:
      return new ParentBasedSampler({ root: new AlwaysOnSampler() })
  }
}

/**
 * Traces begin with a request: a span with no parent that is not a server's
 * (the connection-share heartbeat and the notifications' pings run a few
 * statements every second, an idle context closing) is not recorded, nor
 * are its children (a local parent not recorded). The rest is the
 * configured sampler's decision.
 */
class RequestsOnly implements Sampler {
  constructor(private readonly configured: Sampler) {}

  shouldSample(
    context: OtelContext,
    traceId: string,
    name: string,
    kind: SpanKind,
    attributes: Attributes,
    links: Array<Link>
  ): SamplingResult {
    const parent = trace.getSpanContext(context)
    if (parent === undefined ? kind !== SpanKind.SERVER : parent.isRemote !== true && (parent.traceFlags & 1) === 0) {
      return { decision: SamplingDecision.NOT_RECORD }
    }
    return this.configured.shouldSample(context, traceId, name, kind, attributes, links)
  }

  toString(): string {
    return `RequestsOnly{${this.configured.toString()}}`
  }
}

const sampler = Effect.map(
  Effect.all([
    Config.withDefault(Config.string("OTEL_TRACES_SAMPLER"), "parentbased_always_on"),
    Config.withDefault(Config.string("OTEL_TRACES_SAMPLER_ARG"), "")
  ]),
  ([name, arg]) => new RequestsOnly(samplerNamed(name, arg))
).pipe(Effect.orElseSucceed(() => new RequestsOnly(samplerNamed("", ""))))

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
    NodeSdk.layer(Effect.map(Effect.all([serviceNamed, sampler]), ([named, sampler]) => ({
      tracerConfig: { sampler },
      spanProcessor: [
        new Conventions(),
        // Batching as OTEL_BSP_* say (5 s between exports by default).
        new BatchSpanProcessor(new OTLPTraceExporter({ url }))
      ],
      ...(named ? {} : { resource: { serviceName: "tenant-engine" } })
    }))),
    logTraceIds
  )
