import * as OtelMetrics from "@effect/opentelemetry/Metrics"
import * as OtelResource from "@effect/opentelemetry/Resource"
import { PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import { Effect } from "effect"

/**
 * Effect's metric registry in the Prometheus text format: @effect/opentelemetry
 * reads the registry as OpenTelemetry metric data, and the Prometheus
 * exporter's serializer writes it (counters end in `_total`, histograms get
 * `_bucket`, `_sum`, `_count`). Loaded on the first scrape only: neither
 * package is on the start-up path.
 */
export const makeExposition = Effect.gen(function*() {
  const producer = yield* OtelMetrics.makeProducer.pipe(Effect.provide(OtelResource.layerEmpty))
  // No prefix, no timestamps, no resource labels; no target_info and no
  // otel_scope_name label on every series (Prometheus has job and instance).
  const serializer = new PrometheusSerializer(undefined, false, undefined, true, true)
  return Effect.map(
    Effect.promise(() => producer.collect()),
    ({ resourceMetrics }) => serializer.serialize(resourceMetrics)
  )
})
