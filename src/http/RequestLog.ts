import type { HttpServerRequest } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import type { IncomingMessage } from "node:http"

/**
 * What one request learned about its caller, for its log line. The outer
 * middleware starts it; authentication fills it in. Mutable by design: it is
 * one request's private record, written before the response and read after.
 */
export interface RequestLog {
  readonly requestId: string
  tenant?: string
  accountKind?: string
}

// Kept beside the request's Node message rather than provided as a service:
// providing one more service per request copies the fiber's whole context.
const records = new WeakMap<IncomingMessage, RequestLog>()

/** The record of this request, made by the outer middleware. */
export const startRequestLog = (request: HttpServerRequest.HttpServerRequest, requestId: string): RequestLog => {
  const record: RequestLog = { requestId }
  records.set(NodeHttpServerRequest.toIncomingMessage(request), record)
  return record
}

/** The record of this request, if the outer middleware started one. */
export const requestLogOf = (request: HttpServerRequest.HttpServerRequest): RequestLog | undefined =>
  records.get(NodeHttpServerRequest.toIncomingMessage(request))
