import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { TenantAdmin } from "../platform/TenantAdmin.js"
import { PlatformApi } from "./Api.js"

export const AdminHandlers = HttpApiBuilder.group(PlatformApi, "admin", (handlers) =>
  Effect.map(TenantAdmin, (admin) =>
    handlers
      .handle("createTenant", ({ payload }) =>
        admin.create(payload.id, payload.name, { strategy: payload.strategy, server: payload.server }))
      .handle("listTenants", () => Effect.map(admin.list, (items) => ({ items })))
      .handle("getTenant", ({ path }) => admin.find(path.id))
      .handle("updateTenant", ({ path, payload }) => admin.setStatus(path.id, payload.status))
      .handle("deleteTenant", ({ path }) => admin.remove(path.id))
      .handle("addClient", ({ path, payload }) => admin.registerClient(path.id, payload.clientId, payload.displayName))
      .handle("listClients", ({ path }) => Effect.map(admin.listClients(path.id), (items) => ({ items })))
      .handle("disableClient", ({ path }) => Effect.asVoid(admin.disableClient(path.id, path.clientId)))
      .handle("addDomain", ({ path, payload }) => admin.addDomain(path.id, payload.domain))
      .handle("listDomains", ({ path }) => Effect.map(admin.listDomains(path.id), (items) => ({ items })))
      .handle("listServers", () => Effect.map(admin.listServers, (items) => ({ items })))))
