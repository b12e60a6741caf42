import { Context, type Duration, type Redacted } from "effect"

/** Where tenant databases live and the bounds on their connections. */
export class TenancyConfig extends Context.Tag("tenant-engine/TenancyConfig")<TenancyConfig, {
  /**
   * An administrative URL on the server that holds tenant databases. Its
   * credentials must be allowed to create databases and roles; its database is
   * only used for those statements.
   */
  readonly adminUrl: Redacted.Redacted<string>
  /** Prefix of tenant database and role names: `tenant_` gives `tenant_acme`. */
  readonly databasePrefix: string
  /** Connections one tenant's pool may open. */
  readonly maxConnectionsPerTenant: number
  /** Connections all tenant pools together may open. */
  readonly connectionBudget: number
  /** An unused tenant context is closed after this long. */
  readonly idleTimeout: Duration.Duration
  /** How long a caller waits for room in the cache or for a connection. */
  readonly acquireTimeout: Duration.Duration
}>() {}
