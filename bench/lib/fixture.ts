/**
 * The data a benchmark runs on: tenants (database or schema) provisioned
 * through the engine's admin API, a service client each (or none), notes
 * written straight into the tenants' data, and tokens from a TestIssuer run
 * in this process.
 */
import { Effect, Exit, Scope } from "effect"
import Pg from "pg"
import { TestIssuer, type TestIssuerService } from "../../src/testing/TestIssuer.js"

export const SCOPES = ["notes:read", "notes:write"]
/** Long enough for the slowest full run. */
const TOKEN_LIFETIME = "4 hours"

export interface Issuer {
  readonly service: TestIssuerService
  readonly close: () => Promise<void>
}

export const startIssuer = async (): Promise<Issuer> => {
  const scope = Effect.runSync(Scope.make())
  const service = await Effect.runPromise(Scope.extend(TestIssuer.make({ alg: "RS256" }), scope))
  return { service, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

export const mint = <A>(effect: Effect.Effect<A>) => Effect.runPromise(effect)

export const adminToken = (issuer: Issuer) => mint(issuer.service.admin("bench-operator", { lifetime: TOKEN_LIFETIME }))

export const userToken = (issuer: Issuer, tenant: string, subject: string) =>
  mint(issuer.service.user(subject, { tenant, scopes: SCOPES, name: `Bench ${subject}`, lifetime: TOKEN_LIFETIME }))

export const machineToken = (issuer: Issuer, clientId: string) =>
  mint(issuer.service.machine(clientId, { scopes: SCOPES, lifetime: TOKEN_LIFETIME }))

export const tenantIdOf = (i: number) => `tn-${String(i).padStart(4, "0")}`
/** Schema tenants: up to 99,999 of them. */
export const schemaTenantIdOf = (i: number) => `sc-${String(i).padStart(5, "0")}`
export const clientIdOf = (tenant: string) => `${tenant}-svc`

/** Who wrote the seeded notes of a tenant provisioned without a service client. */
const SEED_AUTHOR = "00000000-0000-4000-8000-00000000be9c"

export type Strategy = "database" | "schema"

const api = async (baseUrl: string, token: string, method: string, path: string, body?: unknown) => {
  const response = await fetch(baseUrl + path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {})
  })
  const text = await response.text()
  return { status: response.status, body: text === "" ? undefined : JSON.parse(text) as unknown }
}

/** Runs `f` over `items`, at most `concurrency` at once. */
export const forEachLimited = async <T>(items: ReadonlyArray<T>, concurrency: number, f: (item: T, index: number) => Promise<void>) => {
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const index = next++
      await f(items[index]!, index)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker))
}

export interface ProvisionedTenant {
  readonly id: string
  readonly strategy: Strategy
  /** Its service client, when one was registered. */
  readonly clientId: string | undefined
  /** The client's account (the author of the seeded notes), when a client was registered. */
  readonly machineAccountId: string | undefined
  /** The server it was placed on, as the engine answered (several servers: bench/servers.ts). */
  readonly server?: string
}

export interface ProvisionOptions {
  /** Sent as the request's `strategy`; the response's placement must say the same. */
  readonly strategy: Strategy
  /** Register a service client per tenant (machine tokens); default true. */
  readonly clients?: boolean
  /** Sent as the request's `server` when given; otherwise the engine places the tenant. */
  readonly server?: string
  readonly onProgress?: (done: number) => void
}

/** POST /v1/admin/tenants (and POST /v1/admin/tenants/{id}/clients) for each id. */
export const provisionTenants = async (
  baseUrl: string,
  admin: string,
  ids: ReadonlyArray<string>,
  concurrency: number,
  options: ProvisionOptions
): Promise<Array<ProvisionedTenant>> => {
  const out: Array<ProvisionedTenant> = []
  let done = 0
  await forEachLimited(ids, concurrency, async (id) => {
    const created = await api(baseUrl, admin, "POST", "/v1/admin/tenants", {
      id,
      name: `Bench tenant ${id}`,
      strategy: options.strategy,
      ...(options.server !== undefined ? { server: options.server } : {})
    })
    if (created.status !== 201) throw new Error(`creating tenant ${id}: ${created.status} ${JSON.stringify(created.body)}`)
    const placement = (created.body as { placement?: { strategy?: unknown; server?: unknown } } | undefined)?.placement
    if (placement?.strategy !== options.strategy) {
      throw new Error(`tenant ${id} was made with placement ${JSON.stringify(placement)}, not ${options.strategy}`)
    }
    if (options.server !== undefined && placement.server !== options.server) {
      throw new Error(`tenant ${id} was placed on ${JSON.stringify(placement.server)}, not ${options.server}`)
    }
    const server = typeof placement.server === "string" ? { server: placement.server } : {}
    if (options.clients === false) {
      out.push({ id, strategy: options.strategy, clientId: undefined, machineAccountId: undefined, ...server })
    } else {
      const clientId = clientIdOf(id)
      const client = await api(baseUrl, admin, "POST", `/v1/admin/tenants/${id}/clients`, {
        clientId,
        displayName: `Bench client of ${id}`
      })
      if (client.status !== 201) throw new Error(`registering ${clientId}: ${client.status} ${JSON.stringify(client.body)}`)
      const accountId = (client.body as { accountId?: unknown }).accountId
      if (typeof accountId !== "string") throw new Error(`registering ${clientId}: no accountId in ${JSON.stringify(client.body)}`)
      out.push({ id, strategy: options.strategy, clientId, machineAccountId: accountId, ...server })
    }
    options.onProgress?.(++done)
  })
  return out
}

/** The tenant's database URL for a superuser (the admin URL, another database). */
const onDatabase = (adminUrl: string, database: string) => {
  const url = new URL(adminUrl)
  url.pathname = "/" + encodeURIComponent(database)
  return url.toString()
}

const SEED = (table: string) =>
  `INSERT INTO ${table} (title, body, created_by, created_at, updated_at)
   SELECT 'Note ' || g, repeat('Lorem ipsum dolor sit amet. ', 6) || g, $1::uuid,
          date_trunc('milliseconds', now()) - g * interval '1 second',
          date_trunc('milliseconds', now()) - g * interval '1 second'
   FROM generate_series(1, $2::int) g`

/**
 * `count` notes per tenant, written as the superuser straight into each
 * tenant's data (where the platform's `tenants` row places it: its own
 * database, or its schema in the shared database), one statement per tenant,
 * newest a second apart, created by the tenant's machine account. With
 * several servers, `adminUrlOf` gives the superuser URL of each (by the name
 * in the tenant's `db_server`); otherwise every tenant is on `adminUrl`'s.
 */
export const seedNotes = async (
  adminUrl: string,
  platformDatabase: string,
  tenants: ReadonlyArray<ProvisionedTenant>,
  count: number,
  concurrency: number,
  adminUrlOf: (server: string) => string = () => adminUrl
) => {
  const platform = new Pg.Client({ connectionString: onDatabase(adminUrl, platformDatabase) })
  await platform.connect()
  const { rows } = await platform.query<
    { id: string; db_server: string; db_strategy: Strategy; db_name: string; db_schema: string | null }
  >("SELECT id, db_server, db_strategy, db_name, db_schema FROM tenants")
  await platform.end()
  const placements = new Map(rows.map((row) => [row.id, row]))
  const placementOf = (tenant: ProvisionedTenant) => {
    const placement = placements.get(tenant.id)
    if (placement === undefined) throw new Error(`tenant ${tenant.id} is not in the platform database`)
    if (placement.db_strategy !== tenant.strategy) throw new Error(`tenant ${tenant.id} is a ${placement.db_strategy} tenant`)
    return placement
  }
  const author = (tenant: ProvisionedTenant) => tenant.machineAccountId ?? SEED_AUTHOR
  // Database tenants: a connection to each database.
  await forEachLimited(tenants.filter((t) => t.strategy === "database"), concurrency, async (tenant) => {
    const placement = placementOf(tenant)
    const client = new Pg.Client({ connectionString: onDatabase(adminUrlOf(placement.db_server), placement.db_name) })
    await client.connect()
    try {
      await client.query(SEED("notes"), [author(tenant), count])
    } finally {
      await client.end()
    }
  })
  // Schema tenants: a few connections to their shared database, a statement per schema.
  const bySchema = tenants.filter((t) => t.strategy === "schema")
  // Keyed by the shared database's URL (its server and name).
  const byDatabase = new Map<string, Array<{ tenant: ProvisionedTenant; schema: string }>>()
  for (const tenant of bySchema) {
    const placement = placementOf(tenant)
    if (placement.db_schema === null) throw new Error(`schema tenant ${tenant.id} has no schema`)
    const url = onDatabase(adminUrlOf(placement.db_server), placement.db_name)
    byDatabase.set(url, [...(byDatabase.get(url) ?? []), { tenant, schema: placement.db_schema }])
  }
  for (const [url, items] of byDatabase) {
    const clients = await Promise.all(
      Array.from({ length: Math.min(concurrency, items.length) }, async () => {
        const client = new Pg.Client({ connectionString: url })
        await client.connect()
        return client
      })
    )
    try {
      let next = 0
      await Promise.all(clients.map(async (client) => {
        while (next < items.length) {
          const { schema, tenant } = items[next++]!
          await client.query(SEED(`${client.escapeIdentifier(schema)}.notes`), [author(tenant), count])
        }
      }))
    } finally {
      await Promise.all(clients.map((client) => client.end()))
    }
  }
}
