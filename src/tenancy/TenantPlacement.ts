import { Redacted } from "effect"
import { createHmac } from "node:crypto"
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
  readonly login: {
    readonly user: string
    readonly password: Redacted.Redacted<string>
    /**
     * The password's version (RoleCredential; 0 for a password stored before
     * migration 0008). Versions only grow: a shared pool takes a login's
     * password only from a placement of a higher version than it has.
     */
    readonly version: number
  }
}

/** The URL a tenant's own pool (database strategy) connects with. */
export const tenantUrl = (placement: TenantPlacement) =>
  login(placement.host, {
    database: placement.database,
    user: placement.login.user,
    password: Redacted.value(placement.login.password)
  })

/** A login role the engine made on a server, at a version of its password. */
export interface RoleCredential {
  /** The registered server's name. */
  readonly server: string
  readonly role: string
  /** Bumped by every rotation: the platform database keeps this number, never the password. */
  readonly version: number
}

/**
 * The password of an engine-made login role (a database tenant's, or a
 * shared database's gateway): HMAC-SHA256 of the server, role and version
 * under the engine's TENANT_ROLE_SECRET, base64url (safe inside a SQL literal
 * and a URL). Nothing that logs in is stored: the platform database keeps the
 * version, and whoever holds the secret derives the password again; a new
 * version is a new password, unrelated to the old one without the secret.
 */
export const rolePassword = (secret: Redacted.Redacted<string>, credential: RoleCredential) =>
  Redacted.make(
    createHmac("sha256", Redacted.value(secret))
      .update(`${credential.server}/${credential.role}/${credential.version}`)
      .digest("base64url")
  )

/**
 * What tells one TENANT_ROLE_SECRET from another without giving it away: an
 * HMAC of a fixed text under it. The text has no `/<version>` at its end, so
 * it is never a role's password.
 */
export const secretFingerprint = (secret: Redacted.Redacted<string>) =>
  createHmac("sha256", Redacted.value(secret)).update("tenant-engine/role-secret-fingerprint").digest("base64url")
