/**
 * The data a benchmark runs on: tenants provisioned through the engine's
 * admin API, a service client each, notes written straight into the tenant
 * databases, and tokens from a TestIssuer run in this process.
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
export const clientIdOf = (tenant: string) => `${tenant}-svc`

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
  readonly clientId: string
  readonly machineAccountId: string
}

/** POST /v1/admin/tenants and POST /v1/admin/tenants/{id}/clients for each id. */
export const provisionTenants = async (
  baseUrl: string,
  admin: string,
  ids: ReadonlyArray<string>,
  concurrency: number,
  onProgress?: (done: number) => void
): Promise<Array<ProvisionedTenant>> => {
  const out: Array<ProvisionedTenant> = []
  let done = 0
  await forEachLimited(ids, concurrency, async (id) => {
    const created = await api(baseUrl, admin, "POST", "/v1/admin/tenants", { id, name: `Bench tenant ${id}` })
    if (created.status !== 201) throw new Error(`creating tenant ${id}: ${created.status} ${JSON.stringify(created.body)}`)
    const clientId = clientIdOf(id)
    const client = await api(baseUrl, admin, "POST", `/v1/admin/tenants/${id}/clients`, {
      clientId,
      displayName: `Bench client of ${id}`
    })
    if (client.status !== 201) throw new Error(`registering ${clientId}: ${client.status} ${JSON.stringify(client.body)}`)
    const accountId = (client.body as { accountId?: unknown }).accountId
    if (typeof accountId !== "string") throw new Error(`registering ${clientId}: no accountId in ${JSON.stringify(client.body)}`)
    out.push({ id, clientId, machineAccountId: accountId })
    onProgress?.(++done)
  })
  return out
}

/** The tenant's database URL for a superuser (the admin URL, another database). */
const onDatabase = (adminUrl: string, database: string) => {
  const url = new URL(adminUrl)
  url.pathname = "/" + encodeURIComponent(database)
  return url.toString()
}

/**
 * `count` notes per tenant, written as the superuser straight into each
 * tenant's database (named by the platform's `tenants` row), one statement per
 * tenant, newest a second apart, created by the tenant's machine account.
 */
export const seedNotes = async (
  adminUrl: string,
  platformDatabase: string,
  tenants: ReadonlyArray<ProvisionedTenant>,
  count: number,
  concurrency: number
) => {
  const platform = new Pg.Client({ connectionString: onDatabase(adminUrl, platformDatabase) })
  await platform.connect()
  const { rows } = await platform.query<{ id: string; db_name: string }>("SELECT id, db_name FROM tenants")
  await platform.end()
  const dbNames = new Map(rows.map((row) => [row.id, row.db_name]))
  await forEachLimited(tenants, concurrency, async (tenant) => {
    const dbName = dbNames.get(tenant.id)
    if (dbName === undefined) throw new Error(`tenant ${tenant.id} is not in the platform database`)
    const client = new Pg.Client({ connectionString: onDatabase(adminUrl, dbName) })
    await client.connect()
    try {
      await client.query(
        `INSERT INTO notes (title, body, created_by, created_at, updated_at)
         SELECT 'Note ' || g, repeat('Lorem ipsum dolor sit amet. ', 6) || g, $1::uuid,
                date_trunc('milliseconds', now()) - g * interval '1 second',
                date_trunc('milliseconds', now()) - g * interval '1 second'
         FROM generate_series(1, $2::int) g`,
        [tenant.machineAccountId, count]
      )
    } finally {
      await client.end()
    }
  })
  return dbNames
}
