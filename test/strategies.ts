import { expect } from "@effect/vitest"
import { Effect } from "effect"
import Pg from "pg"
import { TenancyConfig } from "../src/tenancy/TenancyConfig.js"
import type { TenantStrategy } from "../src/tenancy/Tenant.js"
import { TenantDatabases } from "../src/tenancy/TenantDatabases.js"

/**
 * The placement strategies a suite runs on: the suites that prove isolation,
 * notes, concurrency and disconnects run every test once per strategy, each
 * in a namespace of its own whose tenants get that strategy by default.
 */
export const STRATEGIES: ReadonlyArray<TenantStrategy> = ["database", "schema"]

/** Where a tenant's notes are on the test server, as an administrator reads them. */
export interface TenantData {
  /** The database to connect to: the tenant's own, or the server's shared database. */
  readonly database: string
  /** The notes table, qualified as a statement in that database names it. */
  readonly notes: string
}

/**
 * Where a tenant's notes live, worked out from the naming rules rather than
 * asked of the code under test: `database` tenants have database
 * `databaseName(id)` with `notes` in it; `schema` tenants have schema
 * `databaseName(id)` in `<prefix>_shared`. Also checks that the tenant was
 * recorded with the strategy the suite runs on, so a suite cannot silently
 * test the other one.
 */
export const tenantData = (tenantId: string, strategy: TenantStrategy) =>
  Effect.gen(function*() {
    const databases = yield* TenantDatabases
    const { databasePrefix } = yield* TenancyConfig
    const tenant = yield* Effect.orDie(databases.find(tenantId))
    expect(tenant.placement.strategy, `the strategy of tenant ${tenantId}`).toBe(strategy)
    const name = databases.databaseName(tenantId)
    const where: Record<TenantStrategy, TenantData> = {
      database: { database: name, notes: "notes" },
      schema: { database: `${databasePrefix}_shared`, notes: `${Pg.escapeIdentifier(name)}.notes` }
    }
    return where[strategy]
  })
