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
