import { Context, Schema } from "effect"
import { Tenant } from "../tenancy/Tenant.js"

export const PrincipalKind = Schema.Literal("user", "machine")
export type PrincipalKind = typeof PrincipalKind.Type

/** Who the verified token says is calling. */
export class Principal extends Schema.Class<Principal>("Principal")({
  kind: PrincipalKind,
  issuer: Schema.String,
  subject: Schema.String,
  clientId: Schema.optional(Schema.String),
  email: Schema.optional(Schema.String),
  scopes: Schema.Array(Schema.String)
}) {}

/** The platform account the principal maps to; it holds the tenant. */
export class Account extends Schema.Class<Account>("Account")({
  id: Schema.String,
  tenantId: Schema.String,
  kind: PrincipalKind,
  displayName: Schema.optional(Schema.String),
  createdAt: Schema.Date
}) {}

/** The authenticated caller of one request: principal, account and tenant. */
export class UserWithAccount extends Context.Tag("tenant-engine/UserWithAccount")<UserWithAccount, {
  readonly principal: Principal
  readonly account: Account
  readonly tenant: Tenant
}>() {}
