import { Context, type Duration, type Redacted } from "effect"
import type { TenantStrategy } from "./Tenant.js"

/** Where tenant data lives and the bounds on connections and cached contexts. */
export class TenancyConfig extends Context.Tag("tenant-engine/TenancyConfig")<TenancyConfig, {
  /**
   * An administrative URL on the server that holds tenant data. Its
   * credentials must be allowed to create databases and roles; its database is
   * only used for those statements.
   */
  readonly adminUrl: Redacted.Redacted<string>
  /**
   * The secret tenant roles' passwords derive from (rolePassword): every
   * engine process and the CLI on one platform database must have the same.
   * The platform database keeps only each password's version.
   */
  readonly roleSecret: Redacted.Redacted<string>
  /** Prefix of tenant database, schema and role names: `tenant_` gives `tenant_acme`. */
  readonly databasePrefix: string
  /** The strategy of a new tenant when its creator names none. */
  readonly defaultStrategy: TenantStrategy
  /** Connections one database tenant's pool may open. */
  readonly maxConnectionsPerTenant: number
  /** Connections the server's shared pool (every schema tenant's) may open; part of the budget. */
  readonly sharedPoolConnections: number
  /** Connections all tenant pools together may open on the server. */
  readonly connectionBudget: number
  /** Cached contexts of schema tenants (they hold no connection): the least recently used idle one goes first. */
  readonly maxContexts: number
  /** An unused tenant context is closed after this long. */
  readonly idleTimeout: Duration.Duration
  /** How long a caller waits for room in the cache or for a connection. */
  readonly acquireTimeout: Duration.Duration
}>() {}
