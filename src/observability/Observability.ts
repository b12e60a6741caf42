import { Context, Layer, Option } from "effect"
import type { Settings } from "../AppConfig.js"

/** What the HTTP layer exposes of the process: metrics, and where spans go. */
export interface ObservabilityOptions {
  /** GET /metrics is served, and requests are counted into the duration histogram. */
  readonly metrics: boolean
  /** The request histogram carries a `tenant` label (one series per tenant: off by default). */
  readonly metricsTenantLabel: boolean
  /** The OTLP/HTTP URL spans are sent to; none: no tracer and no span at all. */
  readonly otlpTracesEndpoint: Option.Option<string>
}

/**
 * A reference with the server's defaults (metrics on, no tenant label, no
 * tracing), so that whoever composes HttpLive without saying (tests, the CLI's
 * tests) gets what `npm start` gets with nothing configured.
 */
export class Observability extends Context.Reference<Observability>()("tenant-engine/Observability", {
  defaultValue: (): ObservabilityOptions => ({ metrics: true, metricsTenantLabel: false, otlpTracesEndpoint: Option.none() })
}) {
  static readonly fromSettings = (settings: Settings) =>
    Layer.succeed(Observability, {
      metrics: settings.metrics,
      metricsTenantLabel: settings.metricsTenantLabel,
      otlpTracesEndpoint: settings.otlpTracesEndpoint
    })
}
