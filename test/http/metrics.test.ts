import { describe, expect, it, layer } from "@effect/vitest"
import { ConfigProvider, Effect, Either } from "effect"
import { describeConfigError, settingsConfig } from "../../src/AppConfig.js"
import { TenantAdmin } from "../../src/platform/TenantAdmin.js"
import { TenancyConfig } from "../../src/tenancy/TenancyConfig.js"
import { createNote, eventually, get, makeTenant, platform, type Reply, userToken } from "./support.js"

/**
 * GET /metrics (docs/API.md "Operations"): the Prometheus text format, every
 * family the contract names, values that follow the requests made. Effect's
 * metric registry is one per process, so counts are compared before and
 * after the requests of each test.
 */

/** Families docs/API.md requires, with their Prometheus type. */
const REQUIRED: ReadonlyArray<readonly [string, string]> = [
  ["http_server_request_duration_seconds", "histogram"],
  ["tenant_engine_tenant_contexts_open", "gauge"],
  ["tenant_engine_tenant_contexts_opened_total", "counter"],
  ["tenant_engine_tenant_contexts_evicted_total", "counter"],
  ["tenant_engine_db_connections", "gauge"],
  ["tenant_engine_db_connection_waits_total", "counter"],
  ["tenant_engine_token_cache_hits_total", "counter"],
  ["tenant_engine_token_cache_misses_total", "counter"],
  ["tenant_engine_account_cache_hits_total", "counter"],
  ["tenant_engine_account_cache_misses_total", "counter"],
  ["tenant_engine_tenants", "gauge"]
]

interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

interface Exposition {
  readonly types: ReadonlyMap<string, string>
  readonly samples: ReadonlyArray<Sample>
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g

/** The text format, read strictly: every line is a comment, a TYPE or HELP line, or a sample. */
const parse = (text: string): Exposition => {
  const types = new Map<string, string>()
  const samples: Array<Sample> = []
  for (const line of text.split("\n")) {
    if (line === "") continue
    const type = /^# TYPE (\S+) (\S+)$/.exec(line)
    if (type !== null) {
      types.set(type[1]!, type[2]!)
      continue
    }
    if (line.startsWith("#")) continue
    const sample = SAMPLE.exec(line)
    expect(sample, `not a sample line: ${line}`).not.toBeNull()
    const labels: Record<string, string> = {}
    for (const [, name, value] of (sample![2] ?? "").matchAll(LABEL)) labels[name!] = value!
    const value = sample![3] === "+Inf" ? Infinity : Number(sample![3])
    expect(Number.isNaN(value), line).toBe(false)
    samples.push({ name: sample![1]!, labels, value })
  }
  return { types, samples }
}

const scrape = Effect.map(get("/metrics"), (reply: Reply) => {
  expect(reply.status, reply.text).toBe(200)
  expect(reply.headers["content-type"]).toMatch(/^text\/plain; version=0\.0\.4/)
  return parse(reply.text)
})

/** The one sample of `name` whose labels include `labels` (0 when there is none yet). */
const valueOf = (exposition: Exposition, name: string, labels: Record<string, string> = {}) => {
  const found = exposition.samples.filter((sample) =>
    sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value)
  )
  expect(found.length, `${name} ${JSON.stringify(labels)}`).toBeLessThanOrEqual(1)
  return found[0]?.value ?? 0
}

const NOTES_200 = { http_route: "/v1/notes", http_request_method: "GET", http_response_status_code: "200" }

layer(platform())("GET /metrics", (it) => {
  it.effect("every family of docs/API.md, with values that follow the requests made", () =>
    Effect.gen(function*() {
      yield* makeTenant("metered")
      const token = yield* userToken("mia", "metered")
      const before = yield* scrape
      yield* createNote(token, "counted")
      const requests = 5
      for (let i = 0; i < requests; i++) expect((yield* get("/v1/notes", token)).status).toBe(200)
      expect((yield* get("/v1/no-such-route")).status).toBe(404)
      const after = yield* scrape

      for (const [family, type] of REQUIRED) expect(after.types.get(family), family).toBe(type)

      // The request histogram: a count per route, method and status, and its buckets.
      const count = (e: Exposition) => valueOf(e, "http_server_request_duration_seconds_count", NOTES_200)
      expect(count(after) - count(before)).toBe(requests)
      expect(valueOf(after, "http_server_request_duration_seconds_bucket", { ...NOTES_200, le: "+Inf" })).toBe(count(after))
      expect(valueOf(after, "http_server_request_duration_seconds_sum", NOTES_200)).toBeGreaterThan(0)
      expect(valueOf(after, "http_server_request_duration_seconds_count", {
        http_route: "/v1/notes",
        http_request_method: "POST",
        http_response_status_code: "201"
      })).toBeGreaterThanOrEqual(1)
      // An unknown path makes no series of its own: it counts under the empty route.
      expect(after.samples.some((sample) => sample.labels["http_route"]?.includes("no-such") === true)).toBe(false)
      expect(valueOf(after, "http_server_request_duration_seconds_count", {
        http_route: "",
        http_request_method: "GET",
        http_response_status_code: "404"
      })).toBeGreaterThanOrEqual(1)

      // Six requests with one token: verified once, then from the cache; the account read once, then cached.
      const delta = (name: string) => valueOf(after, name) - valueOf(before, name)
      expect(delta("tenant_engine_token_cache_misses_total")).toBe(1)
      expect(delta("tenant_engine_token_cache_hits_total")).toBe(requests)
      expect(delta("tenant_engine_account_cache_misses_total")).toBeGreaterThanOrEqual(1)
      expect(delta("tenant_engine_account_cache_hits_total")).toBeGreaterThanOrEqual(requests - 1)
      expect(delta("tenant_engine_account_cache_hits_total") + delta("tenant_engine_account_cache_misses_total"))
        .toBe(requests + 1)

      // The tenant's context: opened once and open; its pool's connections on the default server.
      expect(delta("tenant_engine_tenant_contexts_opened_total")).toBe(1)
      expect(valueOf(after, "tenant_engine_tenant_contexts_open")).toBeGreaterThanOrEqual(1)
      const connections = valueOf(after, "tenant_engine_db_connections", { server: "default", pool: "tenant" })
      expect(connections).toBeGreaterThanOrEqual(1)
      expect(connections).toBeLessThanOrEqual(4)
      expect(after.samples.some((sample) =>
        sample.name === "tenant_engine_db_connection_waits_total" && sample.labels["server"] === "default"
      )).toBe(true)
      expect(valueOf(after, "tenant_engine_db_connections_reserved", { server: "default" }))
        .toBe((yield* TenancyConfig).maxConnectionsPerTenant)

      // The fleet: this namespace's tenant is current.
      expect(valueOf(after, "tenant_engine_tenants", { migration_state: "current" })).toBeGreaterThanOrEqual(1)
      expect(valueOf(after, "tenant_engine_tenants", { migration_state: "failed" })).toBe(0)

      // No tenant id as a label by default.
      expect(after.samples.filter((sample) => "tenant" in sample.labels)).toEqual([])
    }))

  it.effect("a suspended tenant's context closes, and counts as closed", () =>
    Effect.gen(function*() {
      const before = yield* scrape
      yield* makeTenant("metered-gone")
      yield* createNote(yield* userToken("gus", "metered-gone"), "here")
      yield* Effect.orDie((yield* TenantAdmin).setStatus("metered-gone", "suspended"))
      yield* eventually(
        "the context closed",
        Effect.map(scrape, (after) =>
          valueOf(after, "tenant_engine_tenant_contexts_closed_total") -
              valueOf(before, "tenant_engine_tenant_contexts_closed_total") === 1)
      )
      const after = yield* scrape
      expect(valueOf(after, "tenant_engine_tenant_contexts_opened_total") -
        valueOf(before, "tenant_engine_tenant_contexts_opened_total")).toBe(1)
      expect(valueOf(after, "tenant_engine_tenant_contexts_evicted_total") -
        valueOf(before, "tenant_engine_tenant_contexts_evicted_total")).toBe(0)
    }))
})

// One database tenant's pool takes the whole budget: the next tenant's request evicts it.
layer(platform({ connectionBudget: 2, maxConnectionsPerTenant: 2 }))("GET /metrics under a full budget", (it) => {
  it.effect("an idle context closed for another tenant's room counts as evicted", () =>
    Effect.gen(function*() {
      yield* makeTenant("room-a")
      yield* makeTenant("room-b")
      const before = yield* scrape
      expect((yield* get("/v1/notes", yield* userToken("ann", "room-a"))).status).toBe(200)
      expect((yield* get("/v1/notes", yield* userToken("bob", "room-b"))).status).toBe(200)
      const after = yield* scrape
      const delta = (name: string) => valueOf(after, name) - valueOf(before, name)
      expect(delta("tenant_engine_tenant_contexts_opened_total")).toBe(2)
      expect(delta("tenant_engine_tenant_contexts_evicted_total")).toBe(1)
      expect(delta("tenant_engine_tenant_contexts_closed_total")).toBe(1)
      expect(valueOf(after, "tenant_engine_db_connections_reserved", { server: "default" })).toBe(2)
      expect(valueOf(after, "tenant_engine_db_connection_share", { server: "default" })).toBe(2)
    }))
})

layer(platform({ metricsTenantLabel: true }))("GET /metrics with METRICS_TENANT_LABEL=true", (it) => {
  it.effect("the request histogram has a series per tenant", () =>
    Effect.gen(function*() {
      yield* makeTenant("labelled")
      const token = yield* userToken("lea", "labelled")
      yield* get("/v1/notes", token)
      yield* get("/v1/notes", token)
      const exposition = yield* scrape
      expect(valueOf(exposition, "http_server_request_duration_seconds_count", { ...NOTES_200, tenant: "labelled" }))
        .toBe(2)
    }))
})

layer(platform({ metrics: false }))("METRICS=off", (it) => {
  it.effect("no /metrics route", () =>
    Effect.gen(function*() {
      expect((yield* get("/metrics")).status).toBe(404)
    }))
})

describe("metrics settings", () => {
  const settingsOf = (env: Record<string, string>) =>
    Effect.either(settingsConfig).pipe(
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))),
      Effect.map(Either.mapLeft(describeConfigError)),
      Effect.runSync
    )

  it("on, without a tenant label, by default; METRICS=off and METRICS_TENANT_LABEL=true", () => {
    expect(Either.getOrThrow(settingsOf({}))).toMatchObject({ metrics: true, metricsTenantLabel: false })
    expect(Either.getOrThrow(settingsOf({ METRICS: "off", METRICS_TENANT_LABEL: "true" })))
      .toMatchObject({ metrics: false, metricsTenantLabel: true })
  })

  it("a bad value names its variable", () => {
    expect(Either.flip(settingsOf({ METRICS: "sometimes" })).pipe(Either.getOrThrow)).toMatch(/^METRICS: /)
    expect(Either.flip(settingsOf({ METRICS_TENANT_LABEL: "2" })).pipe(Either.getOrThrow)).toMatch(/^METRICS_TENANT_LABEL: /)
  })
})
