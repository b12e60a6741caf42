import { Schema } from "effect"
import { ApiError } from "../ApiError.js"

/** Failures of the tenancy layer, each with the contract's `error` code and status (docs/API.md). */

export class TenantNotFound extends ApiError<TenantNotFound>()("TenantNotFound", { code: "not_found", status: 404 }) {}

export class TenantSuspended extends ApiError<TenantSuspended>()("TenantSuspended", {
  code: "tenant_suspended",
  status: 403
}) {}

/**
 * The tenant's database cannot serve now: unreachable, busy, or being
 * migrated. `retryAfterSeconds` travels as the `Retry-After` header, not in the body.
 */
export class TenantUnavailable extends ApiError<TenantUnavailable>()("TenantUnavailable", {
  code: "tenant_unavailable",
  status: 503,
  local: { retryAfterSeconds: Schema.optional(Schema.Number) },
  headers: { "Retry-After": ({ retryAfterSeconds }) => String(Math.max(1, Math.ceil(retryAfterSeconds ?? 1))) }
}) {}

export class TenantAlreadyExists extends ApiError<TenantAlreadyExists>()("TenantAlreadyExists", {
  code: "tenant_exists",
  status: 409
}) {}

export class InvalidTenant extends ApiError<InvalidTenant>()("InvalidTenant", { code: "bad_request", status: 400 }) {}

/** Creating a tenant's database failed; everything it had done was undone. */
export class ProvisioningFailed extends ApiError<ProvisioningFailed>()("ProvisioningFailed", {
  code: "provisioning_failed",
  status: 500
}) {}

/** A move could not be completed; the tenant stays whole where it was (or, once switched, where it went). */
export class MoveFailed extends ApiError<MoveFailed>()("MoveFailed", { code: "move_failed", status: 500 }) {}
