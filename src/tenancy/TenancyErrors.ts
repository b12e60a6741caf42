import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"

/**
 * Failures of the tenancy layer. Each carries the contract's `error` code
 * (API.md) as a field, so the encoded error is the response body.
 */
export const errorCode = <C extends string>(code: C) =>
  Schema.Literal(code).pipe(Schema.propertySignature, Schema.withConstructorDefault(() => code))

export class TenantNotFound extends Schema.TaggedError<TenantNotFound>()("TenantNotFound", {
  error: errorCode("not_found"),
  message: Schema.String
}, HttpApiSchema.annotations({ status: 404 })) {}

export class TenantSuspended extends Schema.TaggedError<TenantSuspended>()("TenantSuspended", {
  error: errorCode("tenant_suspended"),
  message: Schema.String
}, HttpApiSchema.annotations({ status: 403 })) {}

/** The tenant's database cannot serve now: unreachable, busy, or being migrated. */
export class TenantUnavailable extends Schema.TaggedError<TenantUnavailable>()("TenantUnavailable", {
  error: errorCode("tenant_unavailable"),
  message: Schema.String,
  retryAfterSeconds: Schema.Number
}, HttpApiSchema.annotations({ status: 503 })) {}

export class TenantAlreadyExists extends Schema.TaggedError<TenantAlreadyExists>()("TenantAlreadyExists", {
  error: errorCode("tenant_exists"),
  message: Schema.String
}, HttpApiSchema.annotations({ status: 409 })) {}

export class InvalidTenant extends Schema.TaggedError<InvalidTenant>()("InvalidTenant", {
  error: errorCode("bad_request"),
  message: Schema.String
}, HttpApiSchema.annotations({ status: 400 })) {}

/** Creating a tenant's database failed; everything it had done was undone. */
export class ProvisioningFailed extends Schema.TaggedError<ProvisioningFailed>()("ProvisioningFailed", {
  error: errorCode("provisioning_failed"),
  message: Schema.String
}, HttpApiSchema.annotations({ status: 500 })) {}
