import { Metric, MetricBoundaries, MetricKey, MetricLabel } from "effect"

/**
 * The platform's metrics, on Effect's `Metric` (one registry per process).
 *
 * What happens on the request path is one histogram update and a few counter
 * updates, each made synchronously on a metric built once for its labels
 * (`unsafeUpdate` with no extra labels: Effect then finds the metric's state
 * without hashing its key). Whatever is a level rather than an event (contexts
 * open, connections, tenants by migration state) is a gauge set when
 * /metrics is scraped (Scrape.ts), never per request.
 */

const NO_LABELS: ReadonlyArray<MetricLabel.MetricLabel> = []

/** A counter shown from the start (at 0), so that every family is there before its first event. */
const counter = (name: string, description: string) => {
  const metric = Metric.fromMetricKey(MetricKey.counter(name, { description, incremental: true }))
  metric.unsafeUpdate(0, NO_LABELS)
  return { increment: () => metric.unsafeUpdate(1, NO_LABELS) }
}

/**
 * A family whose members differ by labels: each member is made once, the first
 * time its labels are seen, and kept by a key of its label values.
 */
const family = <M>(make: (labels: ReadonlyArray<MetricLabel.MetricLabel>) => M) => {
  const members = new Map<string, M>()
  return (labels: Readonly<Record<string, string>>): M => {
    const key = Object.values(labels).join("\u0000")
    let member = members.get(key)
    if (member === undefined) {
      member = make(Object.entries(labels).map(([name, value]) => MetricLabel.make(name, value)))
      members.set(key, member)
    }
    return member
  }
}

const gaugeFamily = (name: string, description: string) =>
  family((labels) => {
    const metric = Metric.fromMetricKey(MetricKey.taggedWithLabels(MetricKey.gauge(name, { description }), labels))
    return { set: (value: number) => metric.unsafeUpdate(value, NO_LABELS) }
  })

const counterFamily = (name: string, description: string) =>
  family((labels) => {
    const metric = Metric.fromMetricKey(
      MetricKey.taggedWithLabels(MetricKey.counter(name, { description, incremental: true }), labels)
    )
    metric.unsafeUpdate(0, NO_LABELS)
    return { increment: () => metric.unsafeUpdate(1, NO_LABELS) }
  })

const gauge = (name: string, description: string) => gaugeFamily(name, description)({})

// --- requests ---

/** OpenTelemetry's advice for http.server.request.duration, in seconds. */
const DURATION_BOUNDARIES = MetricBoundaries.fromIterable([
  0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10
])

const requestDurationKey = MetricKey.histogram(
  "http_server_request_duration_seconds",
  DURATION_BOUNDARIES,
  "Duration of HTTP requests, from the request's arrival to its response, by route, method and status"
)

const requestHistograms = new Map<string, Metric.Metric.Histogram<number>>()

/**
 * One request answered: `route` is the matched route's template ("" when no
 * route matched, so that unknown paths make no series of their own); `tenant`
 * only when METRICS_TENANT_LABEL asks for it.
 */
export const recordRequest = (
  route: string,
  method: string,
  status: number,
  tenant: string | undefined,
  seconds: number
) => {
  const key = tenant === undefined ? `${method} ${status} ${route}` : `${method} ${status} ${route} ${tenant}`
  let histogram = requestHistograms.get(key)
  if (histogram === undefined) {
    const labels = [
      MetricLabel.make("http_route", route),
      MetricLabel.make("http_request_method", method),
      MetricLabel.make("http_response_status_code", String(status))
    ]
    if (tenant !== undefined) labels.push(MetricLabel.make("tenant", tenant))
    histogram = Metric.fromMetricKey(MetricKey.taggedWithLabels(requestDurationKey, labels))
    requestHistograms.set(key, histogram)
  }
  histogram.unsafeUpdate(seconds, NO_LABELS)
}

// --- authentication ---

export const tokenCacheHits = counter(
  "tenant_engine_token_cache_hits_total",
  "Bearer tokens found verified in the verifier's cache (no signature checked)"
)
export const tokenCacheMisses = counter(
  "tenant_engine_token_cache_misses_total",
  "Bearer tokens verified in full (signature and claims)"
)
export const accountCacheHits = counter(
  "tenant_engine_account_cache_hits_total",
  "Caller look-ups answered from the account cache"
)
export const accountCacheMisses = counter(
  "tenant_engine_account_cache_misses_total",
  "Caller look-ups that read the platform database"
)
export const accountCacheEntries = gauge("tenant_engine_account_cache_entries", "Callers in the account cache")

// --- tenant contexts ---

export const contextsOpened = counter(
  "tenant_engine_tenant_contexts_opened_total",
  "Tenant contexts opened (a database tenant's opens its pool)"
)
export const contextsClosed = counter(
  "tenant_engine_tenant_contexts_closed_total",
  "Tenant contexts closed (idle, evicted, invalidated or at shutdown)"
)
export const contextsEvicted = counter(
  "tenant_engine_tenant_contexts_evicted_total",
  "Idle tenant contexts closed early because another tenant needed their room (connections or places)"
)
export const contextsOpen = gauge("tenant_engine_tenant_contexts_open", "Tenant contexts open now")
export const schemaContextsOpen = gauge(
  "tenant_engine_tenant_contexts_schema_open",
  "Of the tenant contexts open, schema tenants' (they hold no connection of their own)"
)
export const contextReferences = gauge(
  "tenant_engine_tenant_context_references",
  "References to tenant contexts held by work in progress"
)

// --- connections ---

export const dbConnections = gaugeFamily(
  "tenant_engine_db_connections",
  "Connections open in tenant pools, by server and pool (tenant: database tenants' own pools; shared: schema tenants')"
)
export const dbConnectionsIdle = gaugeFamily(
  "tenant_engine_db_connections_idle",
  "Of the connections open, those idle, by server and pool"
)
export const dbConnectionsWaiting = gaugeFamily(
  "tenant_engine_db_connections_waiting",
  "Statements waiting now for a free connection, by server and pool"
)
export const dbConnectionWaits = counterFamily(
  "tenant_engine_db_connection_waits_total",
  "Statements that found every connection of their pool in use and waited, by server and pool"
)
export const dbBudgetWaits = counterFamily(
  "tenant_engine_db_budget_waits_total",
  "Tenant contexts (or shared pools) that waited for room in a server's connection share"
)
export const dbShareReserved = gaugeFamily(
  "tenant_engine_db_connections_reserved",
  "Connections this process's pools may open on a server (permits held of its share), by server"
)
export const dbShare = gaugeFamily(
  "tenant_engine_db_connection_share",
  "This process's share of a server's connection allowance, by server"
)

// --- fleet ---

export const tenantsByMigrationState = gaugeFamily(
  "tenant_engine_tenants",
  "Active and suspended tenants by migration state (current, behind, migrating, failed)"
)
