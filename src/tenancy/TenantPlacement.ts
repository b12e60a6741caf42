import { Redacted } from "effect"
import { login } from "../db/DatabaseUrl.js"
import type { TenantStrategy } from "./Tenant.js"

/** Where a tenant's data lives and how its session logs in. */
export interface TenantPlacement {
  readonly tenantId: string
  /** The registered server's name. */
  readonly server: string
  /** That server's URL without credentials or database: where the tenant's pool connects. */
  readonly host: string
  readonly strategy: TenantStrategy
  /** The tenant's own database, or the server's shared database. */
  readonly database: string
  /** A schema tenant's schema; null for a database tenant (its tables are in `public`). */
  readonly schema: string | null
  /** The tenant's own role. */
  readonly role: string
  /** Who the pool logs in as: the tenant's role (database), or the shared database's gateway role (schema). */
  readonly login: { readonly user: string; readonly password: Redacted.Redacted<string> }
}

/** The URL a tenant's own pool (database strategy) connects with. */
export const tenantUrl = (placement: TenantPlacement) =>
  login(placement.host, {
    database: placement.database,
    user: placement.login.user,
    password: Redacted.value(placement.login.password)
  })
