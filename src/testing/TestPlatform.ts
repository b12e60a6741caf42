import { NodeHttpServer } from "@effect/platform-node"
import { Layer, Logger, LogLevel, Option } from "effect"
import type { AuthConfig } from "../auth/AuthConfig.js"
import { HttpLive, withTracing } from "../http/HttpLive.js"
import { Traffic } from "../http/Traffic.js"
import { Observability } from "../observability/Observability.js"
import { PlatformLive } from "../PlatformLive.js"
import { type TestDatabasesOptions, testConfig } from "./TestDatabases.js"
import { TestIssuer, type TestIssuerOptions } from "./TestIssuer.js"

export interface TestPlatformOptions extends TestDatabasesOptions {
  readonly issuer?: TestIssuerOptions
  readonly auth?: Partial<AuthConfig["Type"]>
  readonly logLevel?: LogLevel.LogLevel
  /** GET /metrics and the request metrics (default on, as the server); METRICS_TENANT_LABEL. */
  readonly metrics?: boolean
  readonly metricsTenantLabel?: boolean
  /** Spans to this OTLP/HTTP traces URL (default: no tracing, as the server without an endpoint). */
  readonly tracing?: { readonly url: string }
}

/**
 * The whole platform for a test: the HTTP server on 127.0.0.1 (an ephemeral
 * port) with an `HttpClient` aimed at it, every platform service, a TestIssuer
 * it trusts, and a fresh namespace of databases dropped at the end.
 */
export const TestPlatform = (options: TestPlatformOptions) =>
  HttpLive.pipe(
    Layer.provideMerge(NodeHttpServer.layerTest),
    Layer.provideMerge(PlatformLive),
    Layer.provideMerge(Traffic.layer),
    Layer.provideMerge(TestIssuer.authConfig(options.auth)),
    Layer.provideMerge(TestIssuer.layer(options.issuer)),
    Layer.provideMerge(testConfig(options)),
    // One line per request is noise in a test run; warnings and errors still show.
    Layer.provide(Logger.minimumLogLevel(options.logLevel ?? LogLevel.Warning)),
    Layer.provide(Layer.succeed(Observability, {
      metrics: options.metrics ?? true,
      metricsTenantLabel: options.metricsTenantLabel ?? false,
      otlpTracesEndpoint: Option.fromNullable(options.tracing?.url)
    })),
    // As the server runs it (src/Server.ts).
    withTracing(Option.fromNullable(options.tracing?.url))
  )
