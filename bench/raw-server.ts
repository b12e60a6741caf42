/**
 * The raw baseline: the same three routes (GET /v1/me, GET /v1/notes,
 * POST /v1/notes) as lean as they can honestly be written with node:http, jose
 * and pg, and no Effect. It does what the engine must do on the hot path:
 *
 * - verify the bearer JWT with jose against the issuer's remote JWKS
 *   (createRemoteJWKSet / jwtVerify: issuer, audience, algorithm allowlist,
 *   `exp` required, 30 s clock tolerance: the engine's defaults);
 * - classify user or machine as docs/API.md says, check the route's scope;
 * - find the account in the platform database: a user by (iss, sub), created
 *   on first sight in the tenant its `tenant` claim names; a machine by its
 *   registered client id. Kept in an in-memory Map for 60 s, like the engine's
 *   account cache (AuthConfig.accountCacheTtl is 1 minute in the server), but
 *   without its invalidation listener, size bound or LRU;
 * - refuse disabled accounts and clients, suspended tenants, a tenant claim
 *   that differs from the account's tenant;
 * - run the request in the tenant's database through a pg.Pool of that tenant
 *   alone, logged in as the tenant's role with the password the engine derives
 *   from TENANT_ROLE_SECRET (one pool per tenant, TENANT_POOL_MAX connections, made on
 *   first use and kept: no connection budget, no eviction);
 * - the same SQL and the same JSON shapes as the engine.
 *
 * Not done (the engine does them): x-request-id, request logging, body size
 * and media-type refusals, pre-verification token structure checks, claim
 * schema decoding, email-domain placement of new users, cursors beyond a
 * plain decode, graceful drain.
 *
 *   DATABASE_URL=... AUTH_ISSUER=... AUTH_JWKS_URL=... PORT=... npx tsx bench/raw-server.ts
 */
import { createRemoteJWKSet, type JWTPayload, jwtVerify } from "jose"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import Pg from "pg"
import { tenantLogins } from "./lib/tenantLogins.js"

const env = (name: string, fallback?: string): string => {
  const value = process.env[name] ?? fallback
  if (value === undefined) throw new Error(`${name} is required`)
  return value
}

const issuer = env("AUTH_ISSUER")
const audience = env("AUTH_AUDIENCE", "platform")
const algorithms = env("AUTH_ALGORITHMS", "RS256,PS256,ES256,EdDSA").split(",")
const port = Number(env("PORT", "3100"))
const tenantPoolMax = Number(env("TENANT_POOL_MAX", "4"))
const ACCOUNT_TTL_MS = 60_000

const jwks = createRemoteJWKSet(new URL(env("AUTH_JWKS_URL", `${issuer}/jwks`)))
const platform = new Pg.Pool({
  connectionString: env("DATABASE_URL"),
  max: Number(env("PLATFORM_POOL_MAX", "10")),
  application_name: "raw-baseline/platform"
})
platform.on("error", () => {})

// --- responses ---

class Refusal {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly message: string,
    readonly headers: Record<string, string> = {}
  ) {}
}

const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  const text = JSON.stringify(body)
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers })
  res.end(text)
}

const invalidToken = (message: string) =>
  new Refusal(401, "invalid_token", message, {
    "www-authenticate": `Bearer realm="platform", error="invalid_token", error_description="${message}"`
  })

// --- accounts ---

interface Entry {
  readonly account: {
    readonly id: string
    readonly tenantId: string
    readonly kind: "user" | "machine"
    readonly displayName?: string
    readonly createdAt: string
  }
  readonly tenant: { readonly id: string; readonly name: string; readonly status: string; readonly createdAt: string }
  readonly accountDisabled: boolean
  readonly clientDisabled: boolean
}

interface EntryRow {
  account_id: string
  tenant_id: string
  kind: "user" | "machine"
  display_name: string | null
  account_disabled_at: Date | null
  account_created_at: Date
  tenant_name: string
  tenant_status: string
  tenant_created_at: Date
  client_disabled_at: Date | null
}

const ENTRY_COLUMNS = `a.id AS account_id, a.tenant_id, a.kind, a.display_name, a.disabled_at AS account_disabled_at,
  a.created_at AS account_created_at, t.name AS tenant_name, t.status AS tenant_status, t.created_at AS tenant_created_at`

const toEntry = (row: EntryRow): Entry => ({
  account: {
    id: row.account_id,
    tenantId: row.tenant_id,
    kind: row.kind,
    ...(row.display_name !== null ? { displayName: row.display_name } : {}),
    createdAt: row.account_created_at.toISOString()
  },
  tenant: {
    id: row.tenant_id,
    name: row.tenant_name,
    status: row.tenant_status === "suspended" ? "suspended" : "active",
    createdAt: row.tenant_created_at.toISOString()
  },
  accountDisabled: row.account_disabled_at !== null,
  clientDisabled: row.client_disabled_at !== null
})

const accounts = new Map<string, { readonly entry: Entry; readonly expires: number }>()

const cached = async (key: string, lookup: () => Promise<Entry>): Promise<Entry> => {
  const now = Date.now()
  const hit = accounts.get(key)
  if (hit !== undefined && hit.expires > now) return hit.entry
  const entry = await lookup()
  accounts.set(key, { entry, expires: now + ACCOUNT_TTL_MS })
  return entry
}

const findUser = async (iss: string, sub: string) => {
  const { rows } = await platform.query<EntryRow>(
    `SELECT ${ENTRY_COLUMNS}, NULL AS client_disabled_at FROM accounts a JOIN tenants t ON t.id = a.tenant_id
     WHERE a.kind = 'user' AND a.issuer = $1 AND a.subject = $2`,
    [iss, sub]
  )
  return rows[0] === undefined ? undefined : toEntry(rows[0])
}

const userEntry = (claims: JWTPayload & Record<string, unknown>, tenantClaim: string | undefined) =>
  cached(`user\u0000${claims.iss}\u0000${claims.sub}`, async () => {
    const found = await findUser(claims.iss!, claims.sub!)
    if (found !== undefined) return found
    if (tenantClaim === undefined) throw new Refusal(403, "no_tenant", "the token names no tenant")
    const { rows } = await platform.query<{ id: string; status: string }>(
      "SELECT id, status FROM tenants WHERE id = $1 AND status IN ('active', 'suspended')",
      [tenantClaim]
    )
    if (rows[0] === undefined) throw new Refusal(403, "no_tenant", "the tenant the token names does not exist")
    if (rows[0].status !== "active") throw new Refusal(403, "tenant_suspended", "the tenant is suspended")
    const email = typeof claims["email"] === "string" ? claims["email"] : null
    const name = typeof claims["name"] === "string" ? claims["name"] : null
    await platform.query(
      `INSERT INTO accounts (tenant_id, kind, issuer, subject, email, display_name) VALUES ($1, 'user', $2, $3, $4, $5)
       ON CONFLICT (issuer, subject) WHERE kind = 'user' DO NOTHING`,
      [tenantClaim, claims.iss, claims.sub, email, name]
    )
    const created = await findUser(claims.iss!, claims.sub!)
    if (created === undefined) throw new Refusal(403, "no_tenant", "the tenant the token names does not exist")
    return created
  })

const clientEntry = (clientId: string) =>
  cached(`client\u0000${clientId}`, async () => {
    const { rows } = await platform.query<EntryRow>(
      `SELECT ${ENTRY_COLUMNS}, c.disabled_at AS client_disabled_at
       FROM service_clients c JOIN accounts a ON a.id = c.account_id JOIN tenants t ON t.id = c.tenant_id
       WHERE c.client_id = $1`,
      [clientId]
    )
    if (rows[0] === undefined) throw new Refusal(403, "unknown_client", "this service client is not registered")
    return toEntry(rows[0])
  })

// --- tenant pools ---

const pools = new Map<string, Promise<Pg.Pool>>()

const tenantPool = (tenantId: string): Promise<Pg.Pool> => {
  let pool = pools.get(tenantId)
  if (pool === undefined) {
    pool = (async () => {
      const [login] = await tenantLogins(platform, tenantId)
      if (login === undefined) throw new Refusal(404, "tenant_not_found", `no tenant ${tenantId}`)
      const made = new Pg.Pool({
        connectionString: login.url,
        max: tenantPoolMax,
        idleTimeoutMillis: 30_000,
        statement_timeout: 30_000,
        application_name: `raw-baseline/${tenantId}`
      })
      made.on("error", () => {})
      return made
    })()
    pool.catch(() => pools.delete(tenantId))
    pools.set(tenantId, pool)
  }
  return pool
}

// --- notes ---

interface NoteRow {
  id: string
  title: string
  body: string
  created_by: string
  created_at: string
  updated_at: string
}

// The engine's SQL (src/notes/NoteRepo.ts, NOTE_COLUMNS), repeated rather than
// imported: the baseline uses nothing of the engine. PostgreSQL writes the
// timestamps as the API does.
const NOTE_COLUMNS = `id, title, body, created_by,
  to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS created_at,
  to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS updated_at`

const toNote = (row: NoteRow) => ({
  id: row.id,
  title: row.title,
  body: row.body,
  createdBy: row.created_by,
  createdAt: row.created_at,
  updatedAt: row.updated_at
})

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

const listNotes = async (tenantId: string, params: URLSearchParams) => {
  const limitText = params.get("limit")
  const limit = limitText === null ? 20 : Number(limitText)
  if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
    throw new Refusal(400, "bad_request", "limit must be an integer from 1 to 100")
  }
  const cursor = params.get("cursor")
  let after: [Date, string] | undefined
  if (cursor !== null && cursor !== "") {
    try {
      const [at, id]: unknown[] = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"))
      if (typeof at !== "string" || typeof id !== "string" || !UUID.test(id) || Number.isNaN(Date.parse(at))) throw 0
      after = [new Date(at), id]
    } catch {
      throw new Refusal(400, "bad_request", "cursor is not a valid page cursor")
    }
  }
  const pool = await tenantPool(tenantId)
  const { rows } = after === undefined
    ? await pool.query<NoteRow>(`SELECT ${NOTE_COLUMNS} FROM notes ORDER BY notes.created_at DESC, notes.id DESC LIMIT $1`, [limit + 1])
    : await pool.query<NoteRow>(
      `SELECT ${NOTE_COLUMNS} FROM notes WHERE (created_at, id) < ($1, $2) ORDER BY notes.created_at DESC, notes.id DESC LIMIT $3`,
      [after[0], after[1], limit + 1]
    )
  const items = rows.slice(0, limit).map(toNote)
  const last = items[items.length - 1]
  const nextCursor = rows.length > limit && last !== undefined
    ? Buffer.from(JSON.stringify([last.createdAt, last.id])).toString("base64url")
    : null
  return { items, nextCursor }
}

const readBody = (req: IncomingMessage): Promise<string> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")))
    req.on("error", reject)
  })

const textOf = (value: unknown, min: number, max: number) =>
  typeof value === "string" && !value.includes("\u0000") && [...value].length >= min && [...value].length <= max

const createNote = async (tenantId: string, accountId: string, req: IncomingMessage) => {
  let input: unknown
  try {
    input = JSON.parse(await readBody(req))
  } catch {
    throw new Refusal(400, "bad_request", "the request could not be read (malformed JSON?)")
  }
  if (
    typeof input !== "object" || input === null || Array.isArray(input) ||
    Object.keys(input).some((key) => key !== "title" && key !== "body") ||
    !("title" in input) || !textOf(input.title, 1, 200) || !("body" in input) || !textOf(input.body, 0, 10_000)
  ) {
    throw new Refusal(400, "bad_request", "invalid request: title is 1..200 characters, body 0..10000")
  }
  const pool = await tenantPool(tenantId)
  const { rows } = await pool.query<NoteRow>(
    `INSERT INTO notes (title, body, created_by) VALUES ($1, $2, $3) RETURNING ${NOTE_COLUMNS}`,
    [input.title, input.body, accountId]
  )
  return toNote(rows[0]!)
}

// --- requests ---

const scopesOf = (claims: Record<string, unknown>): Array<string> => {
  const scopes = claims["scope"] ?? claims["scp"] ?? []
  if (typeof scopes === "string") return scopes.split(/\s+/).filter((scope) => scope !== "")
  return Array.isArray(scopes) ? scopes.filter((scope): scope is string => typeof scope === "string") : []
}

const str = (claims: Record<string, unknown>, name: string) =>
  typeof claims[name] === "string" ? claims[name] : undefined

const authenticate = async (req: IncomingMessage) => {
  const header = req.headers.authorization
  const match = header === undefined ? null : /^Bearer[ \t]+(.+)$/i.exec(header.trim())
  if (match === null) {
    throw new Refusal(401, "missing_token", "no bearer token", { "www-authenticate": `Bearer realm="platform"` })
  }
  let claims: JWTPayload & Record<string, unknown>
  try {
    ;({ payload: claims } = await jwtVerify(match[1]!, jwks, {
      issuer,
      audience,
      algorithms,
      requiredClaims: ["exp"],
      clockTolerance: 30
    }))
  } catch {
    throw invalidToken("the token is not valid")
  }
  const scopes = scopesOf(claims)
  const email = str(claims, "email")
  const sub = claims.sub
  const clientIdClaim = str(claims, "client_id") ?? str(claims, "azp")
  const machine = claims["gty"] === "client-credentials" || (sub !== undefined && sub === claims["client_id"]) ||
    (sub?.endsWith("@clients") ?? false) || (str(claims, "preferred_username")?.startsWith("service-account-") ?? false)
  const tenantClaim = str(claims, "tenant")
  let entry: Entry
  let principal: Record<string, unknown>
  if (machine) {
    if (clientIdClaim === undefined) throw invalidToken("a client-credentials token must carry client_id or azp")
    entry = await clientEntry(clientIdClaim)
    if (entry.clientDisabled) throw new Refusal(403, "client_disabled", "this service client is disabled")
    principal = {
      kind: "machine",
      issuer: claims.iss,
      subject: sub ?? clientIdClaim,
      clientId: clientIdClaim,
      ...(email !== undefined ? { email } : {}),
      scopes
    }
  } else {
    if (sub === undefined) throw invalidToken("the token has no sub claim")
    entry = await userEntry(claims, tenantClaim)
    principal = { kind: "user", issuer: claims.iss, subject: sub, ...(email !== undefined ? { email } : {}), scopes }
  }
  if (entry.accountDisabled) throw new Refusal(403, "account_disabled", "this account is disabled")
  if (tenantClaim !== undefined && tenantClaim !== entry.tenant.id) {
    throw new Refusal(403, "tenant_mismatch", "the token's tenant is not the account's tenant")
  }
  if (entry.tenant.status !== "active") throw new Refusal(403, "tenant_suspended", "the tenant is suspended")
  return { principal, scopes, entry }
}

const requireScope = (scopes: ReadonlyArray<string>, scope: string) => {
  if (!scopes.includes(scope)) {
    throw new Refusal(403, "insufficient_scope", `this needs the scope ${scope}`, {
      "www-authenticate": `Bearer realm="platform", error="insufficient_scope", scope="${scope}"`
    })
  }
}

const handle = async (req: IncomingMessage, res: ServerResponse) => {
  const url = req.url ?? "/"
  const q = url.indexOf("?")
  const path = q === -1 ? url : url.slice(0, q)
  if (path === "/healthz" || path === "/readyz") {
    return send(res, 200, { status: path === "/healthz" ? "ok" : "ready" })
  }
  if (path !== "/v1/me" && path !== "/v1/notes") return send(res, 404, { error: "not_found", message: "no such route" })
  const { entry, principal, scopes } = await authenticate(req)
  if (path === "/v1/me" && req.method === "GET") {
    return send(res, 200, { principal, account: entry.account, tenant: entry.tenant })
  }
  if (req.method === "GET") {
    requireScope(scopes, "notes:read")
    return send(res, 200, await listNotes(entry.tenant.id, new URLSearchParams(q === -1 ? "" : url.slice(q + 1))))
  }
  if (req.method === "POST") {
    requireScope(scopes, "notes:write")
    return send(res, 201, await createNote(entry.tenant.id, entry.account.id, req))
  }
  send(res, 405, { error: "method_not_allowed", message: "method not allowed" })
}

const server = createServer((req, res) => {
  handle(req, res).catch((error: unknown) => {
    if (error instanceof Refusal) return send(res, error.status, { error: error.error, message: error.message }, error.headers)
    console.error("unexpected failure", error)
    send(res, 500, { error: "internal", message: "an unexpected error occurred" })
  })
})

server.listen(port, "127.0.0.1", () => console.log(`raw baseline listening on http://127.0.0.1:${port}`))

const stop = () => {
  server.close()
  server.closeAllConnections()
  Promise.all([platform.end(), ...[...pools.values()].map((p) => p.then((pool) => pool.end(), () => undefined))])
    .finally(() => process.exit(0))
}
process.once("SIGTERM", stop)
process.once("SIGINT", stop)
