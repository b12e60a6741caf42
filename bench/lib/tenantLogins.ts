import { Redacted } from "effect"
import type Pg from "pg"
import { rolePassword } from "../../src/tenancy/TenantPlacement.js"

/**
 * The baselines log in to a database tenant's database as the engine does:
 * as its own role, on its server's host, with the password derived from
 * TENANT_ROLE_SECRET (or the one a row from before derived passwords stores).
 */
export interface TenantLogin {
  readonly id: string
  readonly url: string
}

interface Row {
  readonly id: string
  readonly admin_url: string
  readonly db_server: string
  readonly db_name: string
  readonly db_role: string
  readonly db_password: string | null
  readonly credential_version: number
}

/** Active database tenants' logins (all, or the one named). */
export const tenantLogins = async (platform: Pg.ClientBase | Pg.Pool, id?: string): Promise<ReadonlyArray<TenantLogin>> => {
  const secret = process.env["TENANT_ROLE_SECRET"]
  if (secret === undefined) throw new Error("TENANT_ROLE_SECRET is not set: the bench gives every server of a run the same one")
  const { rows } = await platform.query<Row>(
    `SELECT t.id, v.admin_url, t.db_server, t.db_name, t.db_role, t.db_password, t.credential_version
     FROM tenants t JOIN servers v ON v.name = t.db_server
     WHERE t.status = 'active' AND t.db_strategy = 'database' AND ($1::text IS NULL OR t.id = $1)
     ORDER BY t.id`,
    [id ?? null]
  )
  return rows.map((row) => {
    const url = new URL(row.admin_url)
    url.username = encodeURIComponent(row.db_role)
    url.password = encodeURIComponent(
      row.db_password ??
        Redacted.value(rolePassword(Redacted.make(secret), {
          server: row.db_server,
          role: row.db_role,
          version: row.credential_version
        }))
    )
    url.pathname = "/" + encodeURIComponent(row.db_name)
    url.search = ""
    return { id: row.id, url: url.toString() }
  })
}
