import { Schema } from "effect"
import { ApiError } from "../ApiError.js"

/**
 * Errors of the HTTP layer itself, as opposed to a handler's: what is wrong
 * with the request before any handler runs, and what no handler answered.
 */

/** The request does not match its endpoint (path, query, body) or cannot be read. */
export class BadRequest extends ApiError<BadRequest>()("BadRequest", { code: "bad_request", status: 400 }) {}

export class PayloadTooLarge extends ApiError<PayloadTooLarge>()("PayloadTooLarge", {
  code: "payload_too_large",
  status: 413
}) {}

export class UnsupportedMediaType extends ApiError<UnsupportedMediaType>()("UnsupportedMediaType", {
  code: "unsupported_media_type",
  status: 415
}) {}

/** No route has this method and path (so the document has no operation to declare it on). */
export class UnknownRoute extends ApiError<UnknownRoute>()("UnknownRoute", { code: "not_found", status: 404 }) {}

/** A defect: what happened is logged under the request id, never sent. */
export class InternalError extends ApiError<InternalError>()("InternalError", {
  code: "internal",
  status: 500,
  fields: { requestId: Schema.String }
}) {}

/** The platform database does not answer. */
export class NotReady extends ApiError<NotReady>()("NotReady", { code: "not_ready", status: 503 }) {}

/**
 * The platform database is needed (a caller the account cache cannot vouch
 * for, an operator's operation) and does not answer (docs/API.md,
 * "Operations"). `retryAfterSeconds` travels as the `Retry-After` header, not
 * in the body: the engine reconnects by itself within seconds of the
 * database answering again.
 */
export class ServiceUnavailable extends ApiError<ServiceUnavailable>()("ServiceUnavailable", {
  code: "service_unavailable",
  status: 503,
  local: { retryAfterSeconds: Schema.optional(Schema.Number) },
  headers: { "Retry-After": ({ retryAfterSeconds }) => String(Math.max(1, Math.ceil(retryAfterSeconds ?? 2))) }
}) {}

/** The one answer for the platform database not answering: nothing of the cause (host, database, SQL) is told. */
export const platformUnavailable = () =>
  new ServiceUnavailable({ message: "the platform database is unavailable; retry later", retryAfterSeconds: 2 })
