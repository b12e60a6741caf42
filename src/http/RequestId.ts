import type { HttpApp } from "@effect/platform"
import { HttpServerResponse } from "@effect/platform"
import { Effect, FiberRef } from "effect"
import { randomUUID } from "node:crypto"
import { currentRequest, withRequest } from "./RequestLog.js"

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/**
 * Each request's id: the client's `x-request-id` when it is a sane one (no
 * value that could forge a log line), a new UUID otherwise. It is a log
 * annotation of everything the request logs, and the `x-request-id` of its
 * response.
 */
export const requestId = <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
  withRequest((request) => {
    const incoming = request.headers["x-request-id"]
    const id = incoming !== undefined && REQUEST_ID.test(incoming) ? incoming : randomUUID()
    return Effect.zipRight(
      FiberRef.set(currentRequest, { requestId: id }),
      Effect.map(app, (response) => HttpServerResponse.setHeader(response, "x-request-id", id))
    )
  })

/** The id of the request being answered. */
export const currentRequestId: Effect.Effect<string> = Effect.map(
  FiberRef.get(currentRequest),
  (record) => record?.requestId ?? ""
)
