import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { ClientAlreadyExists, ClientNotFound, DomainAlreadyExists, InvalidDomain, InvalidServiceClient } from "../auth/DirectoryErrors.js"
import { ServiceClient, TenantDomain } from "../auth/ServiceClient.js"
import { Account, Principal } from "../auth/UserWithAccount.js"
import { strict } from "../notes/Note.js"
import { ServerView } from "../servers/Server.js"
import { NotesApi } from "../notes/NotesApi.js"
import { InvalidTenant, ProvisioningFailed, TenantAlreadyExists, TenantNotFound } from "../tenancy/TenancyErrors.js"
import { ManagedTenant, Tenant, TenantId, TenantStatus, TenantStrategy } from "../tenancy/Tenant.js"
import {
  BadRequest,
  InternalError,
  NotReady,
  PayloadTooLarge,
  ServiceUnavailable,
  UnsupportedMediaType
} from "./HttpErrors.js"
import { documentErrors } from "./OpenApiErrors.js"
import { AdminAuthenticated, Authenticated } from "./Security.js"

export class Health extends HttpApiGroup.make("health")
  .add(HttpApiEndpoint.get("healthz", "/healthz").addSuccess(Schema.Struct({ status: Schema.Literal("ok") })))
  .add(
    HttpApiEndpoint.get("readyz", "/readyz")
      .addSuccess(Schema.Struct({ status: Schema.Literal("ready") }))
      .addError(NotReady)
  )
{}

export const MeResponse = Schema.Struct({ principal: Principal, account: Account, tenant: Tenant })

export class Me extends HttpApiGroup.make("me")
  .add(HttpApiEndpoint.get("me", "/v1/me").addSuccess(MeResponse))
  .middleware(Authenticated)
{}

const tenantId = HttpApiSchema.param("id", TenantId)
const clientId = HttpApiSchema.param("clientId", Schema.String)

export class Admin extends HttpApiGroup.make("admin")
  .add(
    HttpApiEndpoint.post("createTenant", "/v1/admin/tenants")
      .setPayload(
        Schema.Struct({
          id: Schema.String,
          name: Schema.String,
          strategy: Schema.optional(TenantStrategy),
          server: Schema.optional(Schema.String)
        }).annotations(strict)
      )
      .addSuccess(ManagedTenant, { status: 201 })
      .addError(TenantAlreadyExists)
      .addError(InvalidTenant)
      .addError(ProvisioningFailed)
  )
  .add(
    HttpApiEndpoint.get("listTenants", "/v1/admin/tenants")
      .addSuccess(Schema.Struct({ items: Schema.Array(ManagedTenant) }))
  )
  .add(HttpApiEndpoint.get("getTenant")`/v1/admin/tenants/${tenantId}`.addSuccess(ManagedTenant))
  .add(
    HttpApiEndpoint.patch("updateTenant")`/v1/admin/tenants/${tenantId}`
      .setPayload(Schema.Struct({ status: TenantStatus }).annotations(strict))
      .addSuccess(ManagedTenant)
  )
  .add(
    HttpApiEndpoint.del("deleteTenant")`/v1/admin/tenants/${tenantId}`
      .addSuccess(HttpApiSchema.NoContent)
      .annotate(OpenApi.Description, "Suspends the tenant, drains in-flight requests, drops its database, accounts, clients and domains.")
  )
  .add(
    HttpApiEndpoint.post("addClient")`/v1/admin/tenants/${tenantId}/clients`
      .setPayload(Schema.Struct({ clientId: Schema.String, displayName: Schema.String }).annotations(strict))
      .addSuccess(ServiceClient, { status: 201 })
      .addError(ClientAlreadyExists)
      .addError(InvalidServiceClient)
  )
  .add(
    HttpApiEndpoint.get("listClients")`/v1/admin/tenants/${tenantId}/clients`
      .addSuccess(Schema.Struct({ items: Schema.Array(ServiceClient) }))
  )
  .add(
    HttpApiEndpoint.del("disableClient")`/v1/admin/tenants/${tenantId}/clients/${clientId}`
      .addSuccess(HttpApiSchema.NoContent)
      .addError(ClientNotFound)
  )
  .add(
    HttpApiEndpoint.post("addDomain")`/v1/admin/tenants/${tenantId}/domains`
      .setPayload(Schema.Struct({ domain: Schema.String }).annotations(strict))
      .addSuccess(TenantDomain, { status: 201 })
      .addError(DomainAlreadyExists)
      .addError(InvalidDomain)
  )
  .add(
    HttpApiEndpoint.get("listDomains")`/v1/admin/tenants/${tenantId}/domains`
      .addSuccess(Schema.Struct({ items: Schema.Array(TenantDomain) }))
  )
  .add(
    HttpApiEndpoint.get("listServers", "/v1/admin/servers")
      .addSuccess(Schema.Struct({ items: Schema.Array(ServerView) }))
  )
  .addError(TenantNotFound)
  .middleware(AdminAuthenticated)
{}

/**
 * Every route of docs/API.md. A tenant-scoped resource adds its group here
 * (one line, see README); errors every route can answer with are declared once
 * at the end. HttpApiDecodeError, which HttpApi.make declares, is never sent:
 * ApiFailures.ts turns it into BadRequest and documentErrors says so.
 */
const api = HttpApi.make("tenant-engine")
  .add(Health)
  .add(Me)
  .add(NotesApi)
  .add(Admin)
  .addError(BadRequest)
  .addError(PayloadTooLarge)
  .addError(UnsupportedMediaType)
  .addError(InternalError)
  // Any route that needs the platform database while it does not answer (src/http/ApiFailures.ts).
  .addError(ServiceUnavailable)
  .annotate(OpenApi.Title, "Tenant engine")
  .annotate(OpenApi.Description, "A multi-tenant platform API: every request works in its tenant's own database.")

export class PlatformApi extends api.annotate(OpenApi.Transform, documentErrors(api)) {}
