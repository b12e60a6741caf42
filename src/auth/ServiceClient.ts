import { Schema } from "effect"

/** A registered machine caller of one tenant (docs/API.md's ServiceClient shape). */
export class ServiceClient extends Schema.Class<ServiceClient>("ServiceClient")({
  clientId: Schema.String,
  tenantId: Schema.String,
  displayName: Schema.String,
  accountId: Schema.String,
  disabled: Schema.Boolean,
  createdAt: Schema.Date
}) {}

/** An email domain whose verified users join a tenant on first sight. */
export class TenantDomain extends Schema.Class<TenantDomain>("TenantDomain")({
  domain: Schema.String,
  tenantId: Schema.String,
  createdAt: Schema.Date
}) {}
