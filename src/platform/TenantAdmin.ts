import { Context, Effect, Layer } from "effect"
import { AccountDirectory } from "../auth/AccountDirectory.js"
import { TenantContexts } from "../tenancy/TenantContexts.js"
import { TenantDatabases } from "../tenancy/TenantDatabases.js"
import type { TenantNotFound } from "../tenancy/TenancyErrors.js"
import type { TenantStatus } from "../tenancy/Tenant.js"

/**
 * The operator's operations on tenants, shared by the admin routes and the CLI
 * so that both have the same effects: a status change is seen by the very next
 * request (the directory's caches are dropped in every process), and a
 * suspended tenant's pool is closed as soon as no request holds it.
 */
export class TenantAdmin extends Context.Tag("tenant-engine/TenantAdmin")<TenantAdmin, {
  readonly create: TenantDatabases["Type"]["provision"]
  readonly list: TenantDatabases["Type"]["list"]
  readonly find: TenantDatabases["Type"]["find"]
  readonly setStatus: (id: string, status: TenantStatus) => ReturnType<TenantDatabases["Type"]["setStatus"]>
  readonly registerClient: AccountDirectory["Type"]["registerClient"]
  readonly listClients: AccountDirectory["Type"]["listClients"]
  readonly disableClient: AccountDirectory["Type"]["disableClient"]
  readonly addDomain: AccountDirectory["Type"]["addDomain"]
  readonly listDomains: AccountDirectory["Type"]["listDomains"]
  /** Suspends, drains in-flight requests (up to 10 s), drops the database or schema, accounts, clients and domains. */
  readonly remove: (id: string) => Effect.Effect<void, TenantNotFound>
}>() {
  static readonly layer = Layer.effect(
    TenantAdmin,
    Effect.gen(function*() {
      const databases = yield* TenantDatabases
      const directory = yield* AccountDirectory
      const contexts = yield* TenantContexts
      return TenantAdmin.of({
        create: databases.provision,
        list: databases.list,
        find: databases.find,
        setStatus: (id, status) =>
          databases.setStatus(id, status).pipe(
            Effect.tap(() => directory.invalidateTenant(id)),
            Effect.tap(() => status === "suspended" ? contexts.invalidate(id) : Effect.void)
          ),
        registerClient: directory.registerClient,
        listClients: directory.listClients,
        disableClient: directory.disableClient,
        addDomain: directory.addDomain,
        listDomains: directory.listDomains,
        remove: (id) =>
          databases.remove(id, contexts.drain(id, "10 seconds")).pipe(
            Effect.tap(() => directory.invalidateTenant(id))
          )
      })
    })
  )
}
