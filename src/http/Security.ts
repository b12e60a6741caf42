import { HttpApiMiddleware, HttpApiSecurity } from "@effect/platform"
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
import { type Principal, UserWithAccount } from "../auth/UserWithAccount.js"
import { TenantSuspended } from "../tenancy/TenancyErrors.js"
import { ServiceUnavailable } from "./HttpErrors.js"

/**
 * The API's bearer authentication, as the endpoints declare it (groups add
 * `.middleware(Authenticated)`); AuthenticationMiddleware.ts implements it.
 */

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
    TenantSuspended,
    // The caller must be looked up and the platform database does not answer (AccountDirectory).
    ServiceUnavailable
  ),
  security: { bearer: HttpApiSecurity.bearer }
}) {}

/** Bearer authentication of admin routes: a valid token with `platform:admin`, no account. */
export class AdminAuthenticated extends HttpApiMiddleware.Tag<AdminAuthenticated>()("AdminAuthenticated", {
  provides: AdminPrincipal,
  failure: Schema.Union(MissingToken, InvalidToken, InsufficientScope),
  security: { bearer: HttpApiSecurity.bearer }
}) {}
