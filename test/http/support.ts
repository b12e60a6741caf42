import {
  FetchHttpClient,
  HttpApiClient,
  HttpClient,
  HttpClientRequest,
  type HttpClientResponse,
  HttpServer
} from "@effect/platform"
import { expect } from "@effect/vitest"
import { Duration, Effect } from "effect"
import * as Http from "node:http"
import Pg from "pg"
import { inject } from "vitest"
import { databaseOf } from "../../src/db/DatabaseUrl.js"
import { PlatformApi } from "../../src/http/Api.js"
import { PlatformConfig } from "../../src/platform/PlatformConfig.js"
import { PlatformDb } from "../../src/platform/PlatformDb.js"
import { TestIssuer } from "../../src/testing/TestIssuer.js"
import { TestPlatform, type TestPlatformOptions } from "../../src/testing/TestPlatform.js"
import { TenantAdmin } from "../../src/platform/TenantAdmin.js"
import { Bodies, bodyOf, isJsonObject } from "../bodies.js"
import { checkResponse, type ObservedResponse, type OpenApiDocument } from "./openapi.js"

/**
 * Helpers for the HTTP suite: requests go over a real socket (node:http, no
 * keep-alive) to the TestPlatform's server, so every header, status and byte
 * the client sees is what the server sent.
 */

export const adminUrl = inject("databaseUrl")

/** The whole platform on an ephemeral port, in a fresh namespace of the test server. */
export const platform = (options: Omit<TestPlatformOptions, "adminUrl"> = {}) =>
  TestPlatform({ adminUrl, ...options })

/** `http://127.0.0.1:<port>` of the server under test. */
export const serverUrl = Effect.flatMap(HttpServer.HttpServer, (server) =>
  server.address._tag === "TcpAddress"
    ? Effect.succeed(`http://127.0.0.1:${server.address.port}`)
    : Effect.dieMessage("the test server is not on TCP"))

export interface Reply {
  readonly status: number
  readonly headers: Http.IncomingHttpHeaders
  /** Every header line as sent: name, value, name, value... */
  readonly rawHeaders: ReadonlyArray<string>
  readonly text: string
  /** The body parsed as JSON; undefined when empty or not JSON. */
  readonly body: unknown
}

export interface SendOptions {
  /** Sent as `Authorization: Bearer <token>`. */
  readonly token?: string | undefined
  /** Serialised as the body, with `Content-Type: application/json`. */
  readonly json?: unknown
  /** A raw body (no content type added). */
  readonly body?: string | Buffer | undefined
  /** Extra headers; an array value sends the header once per element (raw duplicates). */
  readonly headers?: Readonly<Record<string, string | number | ReadonlyArray<string>>> | undefined
  /** Send the body chunked (no Content-Length). */
  readonly chunked?: boolean | undefined
}

const parse = (text: string): unknown => {
  if (text === "") return undefined
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** The OpenAPI document each server under test serves, fetched once per server. */
const documents = new Map<string, Promise<OpenApiDocument>>()

const fetchDocument = (base: string) =>
  new Promise<OpenApiDocument>((resolve, reject) => {
    Http.get(new URL("/openapi.json", base), { agent: false }, (response) => {
      const chunks: Array<Buffer> = []
      response.on("data", (chunk: Buffer) => chunks.push(chunk))
      response.on("end", () => resolve(JSON.parse(Buffer.concat(chunks).toString("utf8"))))
      response.on("error", reject)
    }).on("error", reject)
  })

/** The document the server under test serves. */
const documentOf = Effect.flatMap(serverUrl, (base) => {
  let document = documents.get(base)
  if (document === undefined) {
    document = fetchDocument(base)
    documents.set(base, document)
  }
  return Effect.promise(() => document)
})

const check = (document: OpenApiDocument, observed: ObservedResponse) =>
  expect(checkResponse(document, observed), `${observed.method} ${observed.path}: ${observed.text.slice(0, 300)}`)
    .toEqual([])

/**
 * Fails the test unless the response is what the server's own /openapi.json
 * declares for its route: a declared status, a body of the declared schema
 * and content type, the declared required headers (see openapi.ts). Every
 * reply `send` and `apiClient` get is checked; responses to routes the
 * document does not have (unknown routes, /openapi.json, /docs) are not.
 */
export const expectDocumented = (observed: ObservedResponse) =>
  Effect.map(documentOf, (document) => check(document, observed))

/**
 * A client of the API made from its definition (HttpApiClient), with a bearer
 * token when given, over real HTTP (fetch) to the server under test; every
 * response it gets is checked against the document as well.
 */
export const apiClient = (token?: string) =>
  Effect.gen(function*() {
    const document = yield* documentOf
    const documented = (response: HttpClientResponse.HttpClientResponse) =>
      // The body is read as the client reads it (arrayBuffer, cached), so it can still decode it.
      Effect.map(response.arrayBuffer, (body) => {
        const url = new URL(response.request.url)
        check(document, {
          method: response.request.method,
          path: url.pathname,
          status: response.status,
          headers: response.headers,
          text: new TextDecoder().decode(body)
        })
      })
    return yield* HttpApiClient.make(PlatformApi, {
      baseUrl: yield* serverUrl,
      transformClient: (client) =>
        HttpClient.tap(
          token === undefined ? client : HttpClient.mapRequest(client, HttpClientRequest.bearerToken(token)),
          documented
        )
    })
  }).pipe(Effect.provide(FetchHttpClient.layer))

/**
 * One HTTP request to the server under test, on a connection of its own;
 * fails with the network error when the connection ends without a response.
 * The reply is checked against the server's OpenAPI document.
 */
export const sendOrHangUp = (method: string, path: string, options: SendOptions = {}) =>
  Effect.tap(sendUnchecked(method, path, options), (reply) => expectDocumented({ method, path, ...reply }))

const sendUnchecked = (method: string, path: string, options: SendOptions) =>
  Effect.flatMap(serverUrl, (base) =>
    Effect.async<Reply, Error>((resume) => {
      const headers: Record<string, string | number | ReadonlyArray<string>> = {}
      let body: string | Buffer | undefined = options.body
      if (options.json !== undefined) {
        headers["content-type"] = "application/json"
        body = JSON.stringify(options.json)
      }
      if (options.token !== undefined) headers["authorization"] = `Bearer ${options.token}`
      Object.assign(headers, options.headers)
      if (body !== undefined && !options.chunked && headers["content-length"] === undefined) {
        headers["content-length"] = Buffer.byteLength(body)
      }
      const request = Http.request(new URL(path, base), { method, agent: false }, (response) => {
        const chunks: Array<Buffer> = []
        response.on("data", (chunk: Buffer) => chunks.push(chunk))
        response.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8")
          resume(Effect.succeed({
            status: response.statusCode ?? 0,
            headers: response.headers,
            rawHeaders: response.rawHeaders,
            text,
            body: parse(text)
          }))
        })
        response.on("error", (error) => resume(Effect.fail(error)))
      })
      request.on("error", (error) => resume(Effect.fail(error)))
      for (const [name, value] of Object.entries(headers)) request.setHeader(name, value)
      if (body !== undefined) request.write(body)
      request.end()
      return Effect.sync(() => request.destroy())
    }))

/** One HTTP request to the server under test, on a connection of its own. */
export const send = (method: string, path: string, options: SendOptions = {}) =>
  Effect.orDie(sendOrHangUp(method, path, options))

export const get = (path: string, token?: string, options: SendOptions = {}) =>
  send("GET", path, { ...options, token })
export const post = (path: string, token: string | undefined, json: unknown) => send("POST", path, { token, json })
export const patch = (path: string, token: string | undefined, json: unknown) => send("PATCH", path, { token, json })
export const del = (path: string, token?: string) => send("DELETE", path, { token })

/** Text an error body must never contain: internals, stack frames, SQL. */
const LEAKS = [
  /_tag/,
  /\bstack\b/i,
  /\n\s+at /,
  /\.ts:\d+/,
  /\bSELECT\b/,
  /\bINSERT INTO\b/,
  /\bUPDATE\b.*\bSET\b/,
  /\bDELETE FROM\b/,
  /\bpg_/,
  /SqlError|ParseError|HttpApiDecodeError|FiberFailure/
]

/**
 * The reply is the contract's error: the status, a JSON body whose `error` is
 * the code and `message` a string, no `_tag`, no stack trace, no SQL, and none
 * of the strings in `mustNotMention` (another tenant's identifiers).
 */
export const expectError = (
  reply: Reply,
  status: number,
  code: string,
  mustNotMention: ReadonlyArray<string> = []
) => {
  const body = isJsonObject(reply.body) ? reply.body : {}
  expect({ status: reply.status, error: body["error"] }, reply.text).toEqual({ status, error: code })
  expect(reply.headers["content-type"]).toMatch(/^application\/json/)
  expect(typeof body["message"]).toBe("string")
  expect(Object.keys(body)).not.toContain("_tag")
  for (const leak of LEAKS) expect(reply.text).not.toMatch(leak)
  for (const id of mustNotMention) expect(reply.text).not.toContain(id)
}

export const REALM = `Bearer realm="platform"`

/** `WWW-Authenticate` of an invalid_token 401: the realm, the code and a description. */
export const INVALID_TOKEN_CHALLENGE = /^Bearer realm="platform", error="invalid_token", error_description="[^"\\]+"$/

export const insufficientScope = (scope: string) =>
  `Bearer realm="platform", error="insufficient_scope", scope="${scope}"`

export const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

export const READ_WRITE = ["notes:read", "notes:write"]

/** A user token of the tenant with read and write scopes. */
export const userToken = (subject: string, tenant: string, scopes: ReadonlyArray<string> = READ_WRITE) =>
  Effect.flatMap(TestIssuer, (issuer) => issuer.user(subject, { tenant, scopes }))

export const adminToken = Effect.flatMap(TestIssuer, (issuer) => issuer.admin())

/** A tenant with its database, made through the operator's service (not under test here). */
export const makeTenant = (id: string, name = `Tenant ${id}`) =>
  Effect.flatMap(TenantAdmin, (admin) => Effect.orDie(admin.create(id, name)))

/** A note written over HTTP; fails the test unless it is created. */
export const createNote = (token: string, title: string, body = "") =>
  Effect.map(post("/v1/notes", token, { title, body }), (reply) => {
    expect(reply.status, reply.text).toBe(201)
    return bodyOf(reply, Bodies.note)
  })

/** Every note the token's tenant has, following cursors. */
export const allNotes = (token: string) =>
  Effect.gen(function*() {
    const items: Array<typeof Bodies.note.Type> = []
    let cursor: string | null = null
    do {
      const reply: Reply = yield* get(`/v1/notes?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`, token)
      expect(reply.status, reply.text).toBe(200)
      const page = bodyOf(reply, Bodies.notes)
      items.push(...page.items)
      cursor = page.nextCursor
    } while (cursor !== null)
    return items
  })

/**
 * Waits until `check` gives true, polling; fails the test with `what` when it
 * has not after `within` (a bound against hanging, not a timing assertion).
 */
export const eventually = <E, R>(
  what: string,
  check: Effect.Effect<boolean, E, R>,
  within: Duration.DurationInput = "20 seconds"
) =>
  Effect.gen(function*() {
    const deadline = Date.now() + Duration.toMillis(within)
    while (!(yield* check)) {
      if (Date.now() > deadline) return yield* Effect.dieMessage(`gave up waiting: ${what}`)
      yield* Effect.sleep("10 millis")
    }
  })

/** A plain pg client on the test server (optionally another database), closed with the scope. */
export const pgClient = (database?: string, applicationName = "http-test") =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const url = new URL(adminUrl)
      if (database !== undefined) url.pathname = "/" + encodeURIComponent(database)
      const client = new Pg.Client({ connectionString: url.toString(), application_name: applicationName })
      await client.connect()
      return client
    }),
    (client) => Effect.promise(() => client.end().catch(() => undefined))
  )

/** One statement on a fresh admin connection. */
export const adminQuery = <R extends Pg.QueryResultRow = Pg.QueryResultRow>(
  text: string,
  values: ReadonlyArray<unknown> = [],
  database?: string
) => Effect.scoped(Effect.flatMap(pgClient(database), (client) => Effect.promise(() => client.query<R>(text, [...values])))).pipe(
  Effect.map((result) => result.rows)
)

/** The accounts in the platform database. */
export const countAccounts = Effect.flatMap(PlatformDb, (sql) =>
  sql<{ n: number }>`SELECT count(*)::int AS n FROM accounts`.pipe(Effect.orDie, Effect.map((rows) => rows[0]!.n)))

/**
 * The platform database refuses connections (its open ones are ended) until
 * `accept` runs or the scope closes. Gives the database's name.
 */
export const refusePlatformConnections = Effect.gen(function*() {
  const database = databaseOf((yield* PlatformConfig).url)
  const allow = (allowed: boolean) =>
    adminQuery(`ALTER DATABASE ${database} WITH ALLOW_CONNECTIONS ${allowed}`).pipe(
      Effect.zipRight(allowed ? Effect.void : adminQuery(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        [database]
      ))
    )
  yield* Effect.acquireRelease(allow(false), () => allow(true))
  return { database, accept: allow(true) }
})

/**
 * A defect on demand: the platform's accounts table is renamed until the
 * scope closes, so a look-up of a caller not cached fails with a statement
 * error (relation does not exist): a bug as far as the engine can tell, which
 * it answers 500 `internal` (unlike the database not answering, a 503).
 */
export const breakAccountsTable = Effect.gen(function*() {
  const sql = yield* PlatformDb
  yield* Effect.acquireRelease(
    Effect.orDie(sql`ALTER TABLE accounts RENAME TO accounts_renamed_by_test`),
    () => Effect.orDie(sql`ALTER TABLE accounts_renamed_by_test RENAME TO accounts`)
  )
})
