import { Layer } from "effect"
import { Authentication } from "./auth/Authentication.js"
import { PlatformDb } from "./platform/PlatformDb.js"
import { TenantAdmin } from "./platform/TenantAdmin.js"
import { TenantContexts } from "./tenancy/TenantContexts.js"
import { TenantDatabases } from "./tenancy/TenantDatabases.js"
import { TenantMigrations } from "./tenancy/TenantMigrations.js"
import { TenantMigrator } from "./tenancy/TenantMigrator.js"

/**
 * Every process-lifetime service of the platform, built once: the platform
 * database, tenant databases and their context cache, the account directory
 * and token verification, and the operator's operations. Needs PlatformConfig,
 * TenancyConfig and AuthConfig. The server, the CLI and tests all start here.
 */
export const PlatformLive = TenantAdmin.layer.pipe(
  Layer.provideMerge(Layer.mergeAll(TenantContexts.layer, TenantMigrator.layer, Authentication.layerWithDependencies)),
  Layer.provideMerge(TenantDatabases.layer),
  Layer.provideMerge(Layer.merge(PlatformDb.layer, TenantMigrations.layer))
)
