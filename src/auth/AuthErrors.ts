import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"
import { errorCode } from "../tenancy/TenancyErrors.js"

/**
 * Authentication failures, one per row of API.md's table: each carries the
 * contract's `error` code and status; `wwwAuthenticate` gives the header the
 * response must carry (RFC 6750 §3).
 */
export class MissingToken extends Schema.TaggedError<MissingToken>()("MissingToken", {
  error: errorCode("missing_token"),
  message: Schema.String
}, HttpApiSchema.annotations({ status: 401 })) {}

export class InvalidToken extends Schema.TaggedError<InvalidToken>()("InvalidToken", {
  error: errorCode("invalid_token"),
  message: Schema.String
}, HttpApiSchema.annotations({ status: 401 })) {}

export class InsufficientScope extends Schema.TaggedError<InsufficientScope>()("InsufficientScope", {
  error: errorCode("insufficient_scope"),
  message: Schema.String,
  scope: Schema.String
}, HttpApiSchema.annotations({ status: 403 })) {}

export class UnknownClient extends Schema.TaggedError<UnknownClient>()("UnknownClient", {
  error: errorCode("unknown_client"),
  message: Schema.String
}, HttpApiSchema.annotations({ status: 403 })) {}

export class ClientDisabled extends Schema.TaggedError<ClientDisabled>()("ClientDisabled", {
  error: errorCode("client_disabled"),
  message: Schema.String
}, HttpApiSchema.annotations({ status: 403 })) {}

export class NoTenant extends Schema.TaggedError<NoTenant>()("NoTenant", {
  error: errorCode("no_tenant"),
  message: Schema.String
}, HttpApiSchema.annotations({ status: 403 })) {}

export class AccountDisabled extends Schema.TaggedError<AccountDisabled>()("AccountDisabled", {
  error: errorCode("account_disabled"),
  message: Schema.String
}, HttpApiSchema.annotations({ status: 403 })) {}

export class TenantMismatch extends Schema.TaggedError<TenantMismatch>()("TenantMismatch", {
  error: errorCode("tenant_mismatch"),
  message: Schema.String
}, HttpApiSchema.annotations({ status: 403 })) {}

const REALM = `Bearer realm="platform"`

/** RFC 6750 quoted-string: no quotes or backslashes, printable ASCII only. */
const quoted = (text: string) => `"${text.replace(/[^\x20-\x7e]|["\\]/g, " ")}"`

/** The `WWW-Authenticate` value a failure's response carries, if any. */
export const wwwAuthenticate = (error: { readonly _tag: string; readonly message: string }): string | undefined => {
  switch (error._tag) {
    case "MissingToken":
      return REALM
    case "InvalidToken":
      return `${REALM}, error="invalid_token", error_description=${quoted(error.message)}`
    case "InsufficientScope":
      return `${REALM}, error="insufficient_scope", scope=${quoted("scope" in error ? String(error.scope) : "")}`
    default:
      return undefined
  }
}
