import { Duration, Effect, Layer, Redacted } from "effect"
import Pg from "pg"
import { createHmac, randomBytes } from "node:crypto"
import { withDatabase } from "../db/DatabaseUrl.js"
import { PlatformConfig } from "../platform/PlatformConfig.js"
import { PlatformDb } from "../platform/PlatformDb.js"
import { PlatformNotifications } from "../platform/PlatformNotifications.js"
import { TenancyConfig } from "../tenancy/TenancyConfig.js"
import { TenantContexts } from "../tenancy/TenantContexts.js"
import { TenantDatabases } from "../tenancy/TenantDatabases.js"
import { TenantMigrations } from "../tenancy/TenantMigrations.js"
import type { TenantStrategy } from "../tenancy/Tenant.js"

export interface TestDatabasesOptions {
  /** A superuser URL on the test server. */
  readonly adminUrl: string
  /** The strategy of tenants provisioned without one; default `database`. */
  readonly defaultStrategy?: TenantStrategy
  readonly maxConnectionsPerTenant?: number
  /** Default: half the budget. */
  readonly sharedPoolConnections?: number
  readonly connectionBudget?: number
  readonly maxContexts?: number
  readonly idleTimeout?: Duration.DurationInput
  readonly acquireTimeout?: Duration.DurationInput
  /** How often the notification connection proves it delivers (default 250 ms). */
  readonly notificationHeartbeat?: Duration.DurationInput
  /** TENANT_ROLE_SECRET; default `testRoleSecret(namespace)`. */
  readonly roleSecret?: string
}

/** Made once per test process: the test role secrets cannot be guessed from a namespace. */
const testSecretKey = randomBytes(32)

/**
 * The tenant roles' secret testConfig gives a namespace: the same for every
 * layer on the namespace in this process (two "engine processes" in a test
 * must agree), and what a CLI child on it must be given as TENANT_ROLE_SECRET.
 */
export const testRoleSecret = (namespace: string) =>
  createHmac("sha256", testSecretKey).update(namespace).digest("base64url")

/**
 * A namespace of databases and roles on a test server, all under one random
 * prefix, dropped (databases and roles) when the layer is released. Test files
 * that each take one run in parallel on one server, and reruns start clean.
 */
export const makeNamespace = () => `te${randomBytes(4).toString("hex")}`

/** Drops every database and role whose name starts with the prefix. */
export const dropNamespace = (adminUrl: string, prefix: string) =>
  Effect.promise(async () => {
    const client = new Pg.Client({ connectionString: adminUrl })
    await client.connect()
    try {
      const dbs = await client.query<{ datname: string }>(
        "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
        [prefix]
      )
      for (const { datname } of dbs.rows) {
        await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(datname)} WITH (FORCE)`)
      }
      const roles = await client.query<{ rolname: string }>(
        "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY rolname DESC",
        [prefix]
      )
      for (const { rolname } of roles.rows) {
        await client.query(`DROP ROLE IF EXISTS ${client.escapeIdentifier(rolname)}`)
      }
    } finally {
      await client.end()
    }
  })

/** PlatformConfig and TenancyConfig for a fresh namespace on a test server. */
export const testConfig = (options: TestDatabasesOptions, namespace = makeNamespace()) => {
  const adminUrl = Redacted.make(options.adminUrl)
  const connectionBudget = options.connectionBudget ?? 20
  return Layer.mergeAll(
    Layer.succeed(PlatformConfig, {
      url: withDatabase(adminUrl, `${namespace}_platform`),
      maxConnections: 10,
      ...(options.notificationHeartbeat !== undefined
        ? { notificationHeartbeat: Duration.decode(options.notificationHeartbeat) }
        : {})
    }),
    Layer.succeed(TenancyConfig, {
      adminUrl,
      roleSecret: Redacted.make(options.roleSecret ?? testRoleSecret(namespace)),
      databasePrefix: `${namespace}_t_`,
      defaultStrategy: options.defaultStrategy ?? "database",
      maxConnectionsPerTenant: options.maxConnectionsPerTenant ?? 2,
      sharedPoolConnections: options.sharedPoolConnections ?? Math.max(1, Math.floor(connectionBudget / 2)),
      connectionBudget,
      maxContexts: options.maxContexts ?? 10_000,
      idleTimeout: Duration.decode(options.idleTimeout ?? "1 minute"),
      acquireTimeout: Duration.decode(options.acquireTimeout ?? "10 seconds")
    }),
    // Released after everything built on it: the databases are gone last.
    Layer.scopedDiscard(Effect.addFinalizer(() => dropNamespace(options.adminUrl, namespace)))
  )
}

/**
 * The platform database (and its notifications), TenantDatabases and the TenantContexts cache in a
 * fresh namespace of a test server: what a test of tenant-scoped code needs.
 */
export const TestTenancy = (options: TestDatabasesOptions) => {
  const base = TenantDatabases.layer.pipe(
    Layer.provideMerge(PlatformNotifications.layer),
    Layer.provideMerge(PlatformDb.layer),
    Layer.provideMerge(TenantMigrations.layer)
  )
  return TenantContexts.layer.pipe(
    Layer.provideMerge(base),
    Layer.provideMerge(testConfig(options))
  )
}
