import type * as Migrator from "@effect/sql/Migrator"
import { Context, Layer } from "effect"
import { fromFolder, tenantMigrations } from "../db/Migrations.js"

/** The migrations every tenant database runs: migrations/tenant by default. */
export class TenantMigrations extends Context.Tag("tenant-engine/TenantMigrations")<
  TenantMigrations,
  Migrator.Loader
>() {
  static readonly layer = Layer.succeed(TenantMigrations, fromFolder(tenantMigrations))
}
