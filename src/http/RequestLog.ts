import { Context } from "effect"

/**
 * What one request learned about its caller, for its log line. The outer
 * middleware creates it; authentication fills it in. Mutable by design: it is
 * one request's private record, written before the response and read after.
 */
export class RequestLog extends Context.Tag("tenant-engine/RequestLog")<RequestLog, {
  readonly requestId: string
  tenant?: string
  accountKind?: string
}>() {}
