import { ApiError } from "../ApiError.js"

/** Failures of the server registry, each with the contract's `error` code and status (docs/API.md). */

export class ServerNotFound extends ApiError<ServerNotFound>()("ServerNotFound", { code: "not_found", status: 404 }) {}

export class ServerAlreadyExists extends ApiError<ServerAlreadyExists>()("ServerAlreadyExists", {
  code: "server_exists",
  status: 409
}) {}

/** A bad name, URL, weight or allowance; a server the engine cannot use (unreachable, not privileged). */
export class InvalidServer extends ApiError<InvalidServer>()("InvalidServer", { code: "bad_request", status: 400 }) {}

/** Removing a server that still holds tenants: move them first. */
export class ServerInUse extends ApiError<ServerInUse>()("ServerInUse", { code: "server_in_use", status: 409 }) {}
