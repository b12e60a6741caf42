import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiMiddleware, HttpApiSchema, HttpApiSecurity, OpenApi } from "@effect/platform"
import { Context, Schema } from "effect"
import {
  AccountDisabled,
  ClientDisabled,
  InsufficientScope,
  InvalidToken,
  MissingToken,
  NoTenant,
  TenantMismatch,
  UnknownClient
} from "../auth/AuthErrors.js"
import { Account, Principal, UserWithAccount } from "../auth/UserWithAccount.js"
import { ClientAlreadyExists, ClientNotFound, DomainAlreadyExists, InvalidDomain, InvalidServiceClient } from "../auth/DirectoryErrors.js"
import { ServiceClient, TenantDomain } from "../auth/ServiceClient.js"
import { NewNote, Note, NoteId, NotePage, NotePatch, strict } from "../notes/Note.js"
import { NoteNotFound, NoteValidationError } from "../notes/NoteErrors.js"
import {
  errorCode,
  InvalidTenant,
  ProvisioningFailed,
  TenantAlreadyExists,
  TenantNotFound,
  TenantSuspended,
  TenantUnavailable
} from "../tenancy/TenancyErrors.js"
import { ManagedTenant, Tenant, TenantId, TenantStatus, TenantStrategy } from "../tenancy/Tenant.js"

/** The platform database does not answer. */
export class NotReady extends Schema.TaggedError<NotReady>()("NotReady", {
  error: errorCode("not_ready"),
  message: Schema.String
}, HttpApiSchema.annotations({ status: 503 })) {}

/** The admin caller of an admin route: a principal with `platform:admin`. */
export class AdminPrincipal extends Context.Tag("tenant-engine/AdminPrincipal")<AdminPrincipal, Principal>() {}

/** Bearer authentication of tenant routes: provides the caller (UserWithAccount). */
export class Authenticated extends HttpApiMiddleware.Tag<Authenticated>()("Authenticated", {
  provides: UserWithAccount,
  failure: Schema.Union(
    MissingToken,
    InvalidToken,
    UnknownClient,
    ClientDisabled,
    NoTenant,
    AccountDisabled,
    TenantMismatch,
    TenantSuspended
  ),
  security: { bearer: HttpApiSecurity.bearer }
}) {}

/** Bearer authentication of admin routes: a valid token with `platform:admin`, no account. */
export class AdminAuthenticated extends HttpApiMiddleware.Tag<AdminAuthenticated>()("AdminAuthenticated", {
  provides: AdminPrincipal,
  failure: Schema.Union(MissingToken, InvalidToken, InsufficientScope),
  security: { bearer: HttpApiSecurity.bearer }
}) {}

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

const noteId = HttpApiSchema.param("id", NoteId)

export class Notes extends HttpApiGroup.make("notes")
  .add(
    HttpApiEndpoint.get("list", "/v1/notes")
      .setUrlParams(Schema.Struct({
        limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 100))),
        cursor: Schema.optional(Schema.String)
      }))
      .addSuccess(NotePage)
  )
  .add(
    HttpApiEndpoint.post("create", "/v1/notes")
      .setPayload(NewNote)
      .addSuccess(Note, { status: 201 })
  )
  .add(HttpApiEndpoint.get("get")`/v1/notes/${noteId}`.addSuccess(Note))
  .add(
    HttpApiEndpoint.patch("update")`/v1/notes/${noteId}`
      .setPayload(NotePatch)
      .addSuccess(Note)
  )
  .add(HttpApiEndpoint.del("remove")`/v1/notes/${noteId}`.addSuccess(HttpApiSchema.NoContent))
  .addError(NoteNotFound)
  .addError(NoteValidationError)
  .addError(InsufficientScope)
  .addError(TenantUnavailable)
  .addError(TenantNotFound)
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
  .addError(TenantNotFound)
  .middleware(AdminAuthenticated)
{}

export class PlatformApi extends HttpApi.make("tenant-engine")
  .add(Health)
  .add(Me)
  .add(Notes)
  .add(Admin)
  .annotate(OpenApi.Title, "Tenant engine")
  .annotate(OpenApi.Description, "A multi-tenant platform API: every request works in its tenant's own database.")
{}
