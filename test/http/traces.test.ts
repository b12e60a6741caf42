import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, HashMap, Layer, Logger, LogLevel, Option } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { describeConfigError, settingsConfig } from "../../src/AppConfig.js"
import { TenancyConfig } from "../../src/tenancy/TenancyConfig.js"
import { Bodies, bodyOf } from "../bodies.js"
import { adminToken, createNote, get, platform, post, userToken } from "./support.js"

/**
 * Traces: the platform with an OTLP endpoint sends its spans to a real
 * OTLP/HTTP receiver started here (node:http, the JSON encoding the
 * OpenTelemetry HTTP exporter sends), and its log lines carry the trace id.
 */

interface OtlpValue {
  readonly stringValue?: string
  readonly intValue?: number | string
  readonly boolValue?: boolean
  readonly doubleValue?: number
}

interface OtlpSpan {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly name: string
  readonly kind: number
  readonly attributes: ReadonlyArray<{ readonly key: string; readonly value: OtlpValue }>
}

interface OtlpExport {
  readonly resourceSpans: ReadonlyArray<{
    readonly resource: { readonly attributes: OtlpSpan["attributes"] }
    readonly scopeSpans: ReadonlyArray<{ readonly spans: ReadonlyArray<OtlpSpan> }>
  }>
}

/** OTLP's span kinds. */
const SERVER = 2

/** A span with its attributes as plain values. */
interface Received {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId: string | undefined
  readonly name: string
  readonly kind: number
  readonly attributes: Readonly<Record<string, string | number | boolean | undefined>>
  readonly service: string | undefined
}

const plain = (value: OtlpValue) =>
  value.stringValue ?? (value.intValue !== undefined ? Number(value.intValue) : value.boolValue ?? value.doubleValue)

/** An OTLP/HTTP receiver on a free port, for the scope: POST /v1/traces in JSON. */
const receiver = Effect.acquireRelease(
  Effect.async<{ readonly url: string; readonly spans: Array<Received>; readonly server: Http.Server }>((resume) => {
    const spans: Array<Received> = []
    const server = Http.createServer((request, response) => {
      const chunks: Array<Buffer> = []
      request.on("data", (chunk: Buffer) => chunks.push(chunk))
      request.on("end", () => {
        if (request.method !== "POST" || request.url !== "/v1/traces") {
          response.writeHead(404).end()
          return
        }
        expect(request.headers["content-type"]).toMatch(/^application\/json/)
        const body: OtlpExport = JSON.parse(Buffer.concat(chunks).toString("utf8"))
        for (const resourceSpans of body.resourceSpans) {
          const service = resourceSpans.resource.attributes.find((a) => a.key === "service.name")?.value.stringValue
          for (const scopeSpans of resourceSpans.scopeSpans) {
            for (const span of scopeSpans.spans) {
              spans.push({
                traceId: span.traceId,
                spanId: span.spanId,
                parentSpanId: span.parentSpanId === "" ? undefined : span.parentSpanId,
                name: span.name,
                kind: span.kind,
                attributes: Object.fromEntries(span.attributes.map((a) => [a.key, plain(a.value)])),
                service
              })
            }
          }
        }
        response.writeHead(200, { "content-type": "application/json" }).end("{}")
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resume(Effect.succeed({ url: `http://127.0.0.1:${port}/v1/traces`, spans, server }))
    })
  }),
  ({ server }) =>
    Effect.async<void>((resume) => {
      server.close(() => resume(Effect.void))
    })
)

interface Line {
  readonly message: string
  readonly annotations: Record<string, unknown>
}

describe("traces", () => {
  it.live("each request is a span named for its route, with its caller and the child spans of its work", () =>
    Effect.gen(function*() {
      const otlp = yield* receiver
      const lines: Array<Line> = []
      // In place of the default logger: what the platform logs is kept here, not printed.
      const capture = Logger.replace(Logger.defaultLogger, Logger.make(({ annotations, message }) => {
        lines.push({
          message: String(Array.isArray(message) ? message[0] : message),
          annotations: Object.fromEntries(HashMap.toEntries(annotations))
        })
      }))
      // The platform runs in a scope of its own: closing it flushes the spans to the receiver.
      const { account, database } = yield* Effect.scoped(
        Effect.gen(function*() {
          const context = yield* Layer.build(
            platform({ tracing: { url: otlp.url }, logLevel: LogLevel.Info }).pipe(Layer.provide(capture))
          )
          return yield* Effect.gen(function*() {
            // Through the admin API: its provisioning is a request's work, so it is traced.
            const created = yield* post("/v1/admin/tenants", yield* adminToken, { id: "traced", name: "Traced" })
            expect(created.status, created.text).toBe(201)
            const token = yield* userToken("tia", "traced")
            yield* createNote(token, "seen")
            const notes = yield* get("/v1/notes", token, { headers: { "x-request-id": "traced-notes" } })
            expect(notes.status).toBe(200)
            const me = bodyOf(yield* get("/v1/me", token), Bodies.me)
            expect((yield* get("/v1/no-such-route")).status).toBe(404)
            const prefix = (yield* TenancyConfig).databasePrefix
            return { account: me.account.id, database: `${prefix}traced` }
          }).pipe(Effect.provide(context))
        })
      )
      const spans = otlp.spans
      expect(spans.length).toBeGreaterThan(0)
      // Every trace begins with a request: background statements (heartbeats, pings) make none.
      expect(spans.filter((span) => span.parentSpanId === undefined).map((span) => [span.kind, span.name]))
        .toEqual(spans.filter((span) => span.parentSpanId === undefined).map((span) => [SERVER, span.name]))
      expect(new Set(spans.map((span) => span.service))).toEqual(new Set(["tenant-engine"]))

      // The request span: named for its route, with route, status, tenant and account.
      const requests = spans.filter((span) => span.kind === SERVER && span.name === "GET /v1/notes")
      expect(requests).toHaveLength(1)
      const request = requests[0]!
      expect(request.attributes).toMatchObject({
        "http.route": "/v1/notes",
        "http.request.method": "GET",
        "http.response.status_code": 200,
        "tenant.id": "traced",
        "enduser.id": account
      })
      expect(spans.filter((span) => span.kind === SERVER).map((span) => span.name)).toEqual(
        expect.arrayContaining(["POST /v1/notes", "GET /v1/me"])
      )
      // No route matched: the method alone, and no http.route.
      const unmatched = spans.filter((span) => span.kind === SERVER && span.attributes["url.path"] === "/v1/no-such-route")
      expect(unmatched.map((span) => [span.name, span.attributes["http.route"], span.attributes["http.response.status_code"]]))
        .toEqual([["GET", undefined, 404]])

      // Its work: spans of the same trace below it.
      const byId = new Map(spans.map((span) => [span.spanId, span]))
      const under = (span: Received): boolean => {
        let parent = span.parentSpanId === undefined ? undefined : byId.get(span.parentSpanId)
        while (parent !== undefined) {
          if (parent.spanId === request.spanId) return true
          parent = parent.parentSpanId === undefined ? undefined : byId.get(parent.parentSpanId)
        }
        return false
      }
      const children = spans.filter((span) => span.traceId === request.traceId && under(span))
      const names = children.map((span) => span.name)
      expect(names).toContain("TokenVerifier.verify")
      expect(names).toContain("AccountDirectory.lookup")
      const statements = children.filter((span) => span.name === "sql.execute")
      expect(statements.length).toBeGreaterThan(0)
      for (const statement of statements) {
        expect(statement.attributes).toMatchObject({ "db.system": "postgresql", "db.system.name": "postgresql" })
      }
      // The notes query ran in the tenant's own database.
      expect(statements.map((statement) => statement.attributes["db.namespace"])).toContain(database)

      // Provisioning the tenant set its role's password: its statement is there, the password is not.
      const roleStatements = spans.filter((span) => /ROLE .*PASSWORD/i.test(String(span.attributes["db.query.text"])))
      expect(roleStatements.length).toBeGreaterThan(0)
      for (const span of roleStatements) expect(span.attributes["db.query.text"]).toMatch(/PASSWORD '\[REDACTED\]'/)
      expect(JSON.stringify(spans)).not.toMatch(/PASSWORD\s+'(?!\[REDACTED\])/i)

      // The request's log lines carry its trace id.
      const access = lines.filter((line) => line.annotations["requestId"] === "traced-notes")
      expect(access.length).toBeGreaterThan(0)
      for (const line of access) expect(line.annotations["traceId"]).toBe(request.traceId)
    }).pipe(Effect.scoped))
})

describe("tracing settings", () => {
  const settingsOf = (env: Record<string, string>) =>
    Effect.either(settingsConfig).pipe(
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))),
      Effect.map(Either.mapLeft(describeConfigError)),
      Effect.runSync
    )
  const endpointOf = (env: Record<string, string>) => Either.getOrThrow(settingsOf(env)).otlpTracesEndpoint

  it("no endpoint: no tracing; the standard variables as the exporter reads them", () => {
    expect(endpointOf({})).toEqual(Option.none())
    expect(endpointOf({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" }))
      .toEqual(Option.some("http://collector:4318/v1/traces"))
    expect(endpointOf({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/otlp/" }))
      .toEqual(Option.some("http://collector:4318/otlp/v1/traces"))
    expect(endpointOf({
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318",
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "https://traces.example/in"
    })).toEqual(Option.some("https://traces.example/in"))
    expect(endpointOf({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318", OTEL_SDK_DISABLED: "true" }))
      .toEqual(Option.none())
    expect(endpointOf({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318", OTEL_TRACES_EXPORTER: "none" }))
      .toEqual(Option.none())
  })

  it("a bad value names its variable", () => {
    expect(Either.flip(settingsOf({ OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318" })).pipe(Either.getOrThrow))
      .toMatch(/OTEL_EXPORTER_OTLP_ENDPOINT/)
    expect(Either.flip(settingsOf({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "not a url" })).pipe(Either.getOrThrow))
      .toMatch(/^OTEL_EXPORTER_OTLP_TRACES_ENDPOINT/)
  })
})
