import { Schema } from "effect"
import { ApiError, responseHeaders } from "../ApiError.js"

/**
 * Authentication failures, one per row of docs/API.md's table, each with the
 * contract's `error` code and status. The 401s and insufficient_scope carry
 * their RFC 6750 §3 `WWW-Authenticate` challenge.
 */

const REALM = `Bearer realm="platform"`

/** RFC 6750 quoted-string: no quotes or backslashes, printable ASCII only. */
const quoted = (text: string) => `"${text.replace(/[^\x20-\x7e]|["\\]/g, " ")}"`

export class MissingToken extends ApiError<MissingToken>()("MissingToken", {
  code: "missing_token",
  status: 401,
  // No error attribute: the request carried no token at all (RFC 6750 §3.1).
  headers: { "WWW-Authenticate": () => REALM }
}) {}

export class InvalidToken extends ApiError<InvalidToken>()("InvalidToken", {
  code: "invalid_token",
  status: 401,
  headers: {
    "WWW-Authenticate": ({ message }) => `${REALM}, error="invalid_token", error_description=${quoted(message)}`
  }
}) {}

export class InsufficientScope extends ApiError<InsufficientScope>()("InsufficientScope", {
  code: "insufficient_scope",
  status: 403,
  fields: { scope: Schema.String },
  headers: { "WWW-Authenticate": ({ scope }) => `${REALM}, error="insufficient_scope", scope=${quoted(scope)}` }
}) {}

export class UnknownClient extends ApiError<UnknownClient>()("UnknownClient", { code: "unknown_client", status: 403 }) {}

export class ClientDisabled extends ApiError<ClientDisabled>()("ClientDisabled", { code: "client_disabled", status: 403 }) {}

export class NoTenant extends ApiError<NoTenant>()("NoTenant", { code: "no_tenant", status: 403 }) {}

export class AccountDisabled extends ApiError<AccountDisabled>()("AccountDisabled", {
  code: "account_disabled",
  status: 403
}) {}

export class TenantMismatch extends ApiError<TenantMismatch>()("TenantMismatch", {
  code: "tenant_mismatch",
  status: 403
}) {}

/** The `WWW-Authenticate` value a failure's response carries, if any. */
export const wwwAuthenticate = (error: { readonly _tag: string; readonly message: string }): string | undefined =>
  responseHeaders(error)?.["WWW-Authenticate"]
