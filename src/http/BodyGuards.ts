import { type HttpApp, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Effect, Stream } from "effect"
import type * as Http from "node:http"
import { errorResponse } from "../ApiError.js"
import { BadRequest, PayloadTooLarge, UnsupportedMediaType } from "./HttpErrors.js"
import { withRequest } from "./RequestLog.js"

/** Request bodies larger than this are refused with 413. */
export const MAX_BODY_BYTES = 1024 * 1024

/**
 * A refused body is still read, and dropped, up to this much more and for at
 * most DRAIN_MILLIS, before the 413 goes out: a client that sends its whole
 * body before it reads the answer then gets it, and the connection closes
 * with nothing left unread (a close with unread bytes is a reset, which can
 * take the answer with it). Past either, the answer goes out at once.
 */
const DRAIN_BYTES = 4 * MAX_BODY_BYTES
const DRAIN_MILLIS = 5_000

// `Connection: close`: after a refusal the connection is not worth keeping.
const tooLarge = HttpServerResponse.setHeader(
  errorResponse(PayloadTooLarge, new PayloadTooLarge({ message: "request bodies are limited to 1 MiB" })),
  "connection",
  "close"
)
// As the API answers a body its reader could not read (ApiFailures.ts); the client is most likely gone.
const unreadable = errorResponse(BadRequest, new BadRequest({ message: "the request body could not be read" }))
const notJson = errorResponse(
  UnsupportedMediaType,
  new UnsupportedMediaType({ message: "request bodies must be application/json" })
)

/**
 * Body limits, before any handler runs:
 * - a body that is not JSON: 415;
 * - a body over 1 MiB: 413, whether its length is announced (Content-Length)
 *   or found while reading (Transfer-Encoding: chunked). A chunked body is
 *   read here, counting; within the limit the request goes on with the bytes
 *   read (`withBody`). Left to the server's reader (MaxBodySize, HttpLive),
 *   an oversized chunked body would destroy the connection with no answer.
 *
 * A refused body is drained first (DRAIN_BYTES, DRAIN_MILLIS), then the 413
 * goes out with `Connection: close`. Nothing of it was decoded, so nothing is
 * written.
 */
export const bodyGuards = <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
  withRequest((request) => {
    const declared = request.headers["content-length"]
    const length = Number(declared ?? "0")
    const unannounced = declared === undefined && request.headers["transfer-encoding"] !== undefined
    if (length > MAX_BODY_BYTES) {
      // Announced so large that reading it is not worth it: refused on the headers.
      if (length > MAX_BODY_BYTES + DRAIN_BYTES) return Effect.succeed(tooLarge)
      return readBody(request, Effect.succeed(tooLarge), () => Effect.succeed(tooLarge))
    }
    const contentType = request.headers["content-type"]
    const hasBody = length > 0 || unannounced
    // Only application/json itself: HttpApi parses no other type as JSON (a
    // `+json` type would reach the schema as raw bytes and fail confusingly).
    if (hasBody && contentType !== undefined && !/^application\/json\s*(;|$)/i.test(contentType)) {
      return Effect.succeed(notJson)
    }
    if (!unannounced) return app
    return readBody(
      request,
      Effect.succeed(tooLarge),
      (body) => Effect.provideService(app, HttpServerRequest.HttpServerRequest, withBody(request, body))
    )
  })

/** Reads the body here (at most MAX_BODY_BYTES kept): `over` when it is larger, `within` with it otherwise. */
const readBody = <E, R>(
  request: HttpServerRequest.HttpServerRequest,
  over: Effect.Effect<HttpServerResponse.HttpServerResponse>,
  within: (body: Buffer) => Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
) =>
  Effect.matchEffect(readAtMost(NodeHttpServerRequest.toIncomingMessage(request), MAX_BODY_BYTES), {
    onFailure: () => Effect.succeed(unreadable),
    onSuccess: (body) => (body === undefined ? over : within(body))
  })

/**
 * The whole body, or undefined when it is over `limit` bytes: then what was
 * kept is dropped and the rest is read into nothing until it ends, or
 * DRAIN_BYTES more have come, or DRAIN_MILLIS have passed. Fails as the
 * request does (the client went away), like the server's own reader.
 */
const readAtMost = (source: Http.IncomingMessage, limit: number) =>
  Effect.async<Buffer | undefined, Error>((resume) => {
    let chunks: Array<Buffer> = []
    let size = 0
    let dropped = -1
    let timer: ReturnType<typeof setTimeout> | undefined
    const finish = (result: Effect.Effect<Buffer | undefined, Error>) => {
      stop()
      resume(result)
    }
    const onData = (chunk: Buffer) => {
      if (dropped < 0) {
        size += chunk.length
        if (size <= limit) {
          chunks.push(chunk)
          return
        }
        chunks = []
        dropped = 0
        timer = setTimeout(() => finish(Effect.succeed(undefined)), DRAIN_MILLIS)
      }
      dropped += chunk.length
      if (dropped > DRAIN_BYTES) finish(Effect.succeed(undefined))
    }
    const onEnd = () => finish(Effect.succeed(dropped < 0 ? Buffer.concat(chunks, size) : undefined))
    const onError = (error: Error) => finish(Effect.fail(error))
    const stop = () => {
      clearTimeout(timer)
      source.off("data", onData)
      source.off("end", onEnd)
      source.off("error", onError)
    }
    source.on("data", onData)
    source.on("end", onEnd)
    source.on("error", onError)
    // Interrupted (the client went away): stop listening; the server closes the request.
    return Effect.sync(stop)
  })

/**
 * The request as the app sees it once its body has been read here: the same
 * request (headers, url, the Node request and response behind it) whose body
 * accessors answer with the bytes read instead of reading the stream again.
 * `json` and `urlParamsBody` go through `text`.
 */
const withBody = (
  request: HttpServerRequest.HttpServerRequest,
  body: Buffer
): HttpServerRequest.HttpServerRequest =>
  Object.create(request, {
    text: { value: Effect.succeed(body.toString("utf8")) },
    arrayBuffer: { value: Effect.succeed(Uint8Array.from(body).buffer) },
    stream: { value: Stream.succeed(new Uint8Array(body)) }
  })
