import type { HttpApp } from "@effect/platform"
import { Effect } from "effect"
import { errorResponse } from "../ApiError.js"
import { PayloadTooLarge, UnsupportedMediaType } from "./HttpErrors.js"
import { withRequest } from "./RequestLog.js"

/** Request bodies larger than this are refused with 413 before they are read. */
export const MAX_BODY_BYTES = 1024 * 1024

const tooLarge = errorResponse(PayloadTooLarge, new PayloadTooLarge({ message: "request bodies are limited to 1 MiB" }))
const notJson = errorResponse(
  UnsupportedMediaType,
  new UnsupportedMediaType({ message: "request bodies must be application/json" })
)

/**
 * Refuses, before reading them, bodies announced larger than 1 MiB (413) and
 * bodies that are not JSON (415). A chunked body's size is known only while
 * it is read: the server's MaxBodySize (HttpLive) cuts it off.
 */
export const bodyGuards = <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
  withRequest((request) => {
    const length = Number(request.headers["content-length"] ?? "0")
    if (length > MAX_BODY_BYTES) return Effect.succeed(tooLarge)
    const contentType = request.headers["content-type"]
    const hasBody = length > 0 || request.headers["transfer-encoding"] !== undefined
    // Only application/json itself: HttpApi parses no other type as JSON (a
    // `+json` type would reach the schema as raw bytes and fail confusingly).
    if (hasBody && contentType !== undefined && !/^application\/json\s*(;|$)/i.test(contentType)) {
      return Effect.succeed(notJson)
    }
    return app
  })
