import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"
import { errorCode } from "../tenancy/TenancyErrors.js"

/**
 * Failures of the account directory's operator operations (service clients,
 * email domains, accounts). Each carries the contract's `error` code and
 * status, so the encoded error is the response body.
 */

export class ClientAlreadyExists extends Schema.TaggedError<ClientAlreadyExists>()("ClientAlreadyExists", {
  error: errorCode("client_exists"),
  message: Schema.String
}, HttpApiSchema.annotations({ status: 409 })) {}

export class ClientNotFound extends Schema.TaggedError<ClientNotFound>()("ClientNotFound", {
  error: errorCode("not_found"),
  message: Schema.String
}, HttpApiSchema.annotations({ status: 404 })) {}

/** A client id or display name the platform cannot store. */
export class InvalidServiceClient extends Schema.TaggedError<InvalidServiceClient>()("InvalidServiceClient", {
  error: errorCode("bad_request"),
  message: Schema.String
}, HttpApiSchema.annotations({ status: 400 })) {}

export class DomainAlreadyExists extends Schema.TaggedError<DomainAlreadyExists>()("DomainAlreadyExists", {
  error: errorCode("domain_exists"),
  message: Schema.String
}, HttpApiSchema.annotations({ status: 409 })) {}

export class InvalidDomain extends Schema.TaggedError<InvalidDomain>()("InvalidDomain", {
  error: errorCode("bad_request"),
  message: Schema.String
}, HttpApiSchema.annotations({ status: 400 })) {}

export class AccountNotFound extends Schema.TaggedError<AccountNotFound>()("AccountNotFound", {
  error: errorCode("not_found"),
  message: Schema.String
}, HttpApiSchema.annotations({ status: 404 })) {}
