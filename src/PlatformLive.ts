import { Layer } from "effect"
import { Authentication } from "./auth/Authentication.js"
import { PlatformDb } from "./platform/PlatformDb.js"
import { PlatformNotifications } from "./platform/PlatformNotifications.js"
import { TenantAdmin } from "./platform/TenantAdmin.js"
import { TenantContexts } from "./tenancy/TenantContexts.js"
import { TenantDatabases } from "./tenancy/TenantDatabases.js"
import { TenantMigrations } from "./tenancy/TenantMigrations.js"
import { TenantMigrator } from "./tenancy/TenantMigrator.js"

/**
 * The tenancy services on the platform database and its notifications:
 * tenant databases, their context cache and fleet migrations, with the tenant
 * migrations given (tests and benchmarks give their own). Needs
 * PlatformConfig and TenancyConfig.
 */
export const tenancyWith = <E, R>(migrations: Layer.Layer<TenantMigrations, E, R>) =>
  Layer.merge(TenantContexts.layer, TenantMigrator.layer).pipe(
    Layer.provideMerge(TenantDatabases.layer),
    Layer.provideMerge(PlatformNotifications.layer),
    Layer.provideMerge(Layer.merge(PlatformDb.layer, migrations))
  )

/** Every process-lifetime service of the platform, with the tenant migrations given. */
export const platformWith = <E, R>(migrations: Layer.Layer<TenantMigrations, E, R>) =>
  TenantAdmin.layer.pipe(
    Layer.provideMerge(Authentication.layerWithDependencies),
    Layer.provideMerge(tenancyWith(migrations))
  )

/**
 * Every process-lifetime service of the platform, built once: the platform
 * database and its notifications, tenant databases and their context cache,
 * the account directory and token verification, and the operator's operations.
 * Needs PlatformConfig, TenancyConfig and AuthConfig. The server, the CLI and
 * tests all start here.
 */
export const PlatformLive = platformWith(TenantMigrations.layer)
