import { Context, Effect, Layer } from "effect"
import { AccountDirectory } from "../auth/AccountDirectory.js"
import { TenantContexts } from "../tenancy/TenantContexts.js"
import { TenantDatabases } from "../tenancy/TenantDatabases.js"
import { ServerRegistry } from "../servers/ServerRegistry.js"
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
  /** Moves a tenant's data to another server or strategy, draining this process's requests of it first. */
  readonly move: (
    id: string,
    options: Parameters<TenantDatabases["Type"]["move"]>[1],
    onProgress: Parameters<TenantDatabases["Type"]["move"]>[3]
  ) => ReturnType<TenantDatabases["Type"]["move"]>
  /**
   * A new password for the login a tenant's sessions use (its own role, or
   * for a schema tenant its server's gateway); every process reopens the
   * contexts concerned and logs in with it.
   */
  readonly rotateCredentials: TenantDatabases["Type"]["rotateCredentials"]
  /** Every database tenant's role and every gateway; failures are reported, not stopped at. */
  readonly rotateAllCredentials: TenantDatabases["Type"]["rotateAllCredentials"]
  readonly listServers: ServerRegistry["Type"]["list"]
  readonly addServer: ServerRegistry["Type"]["add"]
  readonly drainServer: ServerRegistry["Type"]["drain"]
  readonly removeServer: ServerRegistry["Type"]["remove"]
}>() {
  static readonly layer = Layer.effect(
    TenantAdmin,
    Effect.gen(function*() {
      const databases = yield* TenantDatabases
      const directory = yield* AccountDirectory
      const contexts = yield* TenantContexts
      const servers = yield* ServerRegistry
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
          ),
        move: (id, options, onProgress) => databases.move(id, options, contexts.drain(id, "10 seconds"), onProgress),
        // The platform's triggers tell every process (this one too); this
        // process's own context is dropped at once rather than a moment later.
        rotateCredentials: (id) =>
          databases.rotateCredentials(id).pipe(
            Effect.tap((rotation) => rotation.kind === "role" ? contexts.invalidate(id) : Effect.void)
          ),
        rotateAllCredentials: databases.rotateAllCredentials,
        listServers: servers.list,
        addServer: servers.add,
        drainServer: servers.drain,
        removeServer: servers.remove
      })
    })
  )
}
