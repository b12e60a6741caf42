import { ApiError } from "../ApiError.js"

/**
 * Failures of the account directory's operator operations (service clients,
 * email domains, accounts), each with the contract's `error` code and status.
 */

export class ClientAlreadyExists extends ApiError<ClientAlreadyExists>()("ClientAlreadyExists", {
  code: "client_exists",
  status: 409
}) {}

export class ClientNotFound extends ApiError<ClientNotFound>()("ClientNotFound", { code: "not_found", status: 404 }) {}

/** A client id or display name the platform cannot store. */
export class InvalidServiceClient extends ApiError<InvalidServiceClient>()("InvalidServiceClient", {
  code: "bad_request",
  status: 400
}) {}

export class DomainAlreadyExists extends ApiError<DomainAlreadyExists>()("DomainAlreadyExists", {
  code: "domain_exists",
  status: 409
}) {}

export class InvalidDomain extends ApiError<InvalidDomain>()("InvalidDomain", { code: "bad_request", status: 400 }) {}

export class AccountNotFound extends ApiError<AccountNotFound>()("AccountNotFound", { code: "not_found", status: 404 }) {}
