import type { SqlError } from "@effect/sql/SqlError"
import { Cause, Context, Duration, Effect, Exit, FiberRef, Layer, Option, Schema } from "effect"
import { domainToASCII } from "node:url"
import { FOREIGN_KEY_VIOLATION, isSqlError, isUnavailable, orDie, sqlState } from "../db/SqlErrors.js"
import { platformUnavailable, type ServiceUnavailable } from "../http/HttpErrors.js"
import { accountCacheHits, accountCacheMisses } from "../observability/Metrics.js"
import { PlatformDb } from "../platform/PlatformDb.js"
import { PlatformNotifications } from "../platform/PlatformNotifications.js"
import { TenantNotFound, TenantSuspended } from "../tenancy/TenancyErrors.js"
import { boundedText, type Tenant, tenantFromRow, type TenantRowStatus } from "../tenancy/Tenant.js"
import { AuthConfig } from "./AuthConfig.js"
import { AccountDisabled, ClientDisabled, NoTenant, TenantMismatch, UnknownClient } from "./AuthErrors.js"
import {
  AccountNotFound,
  ClientAlreadyExists,
  ClientNotFound,
  DomainAlreadyExists,
  InvalidDomain,
  InvalidServiceClient
} from "./DirectoryErrors.js"
import { ServiceClient, TenantDomain } from "./ServiceClient.js"
import { Account } from "./UserWithAccount.js"

/** A person as a verified user token names them. */
export interface UserIdentity {
  readonly issuer: string
  readonly subject: string
  readonly email?: string | undefined
  /** The `email_verified` claim; only `false` stops the email domain from placing the user. */
  readonly emailVerified?: boolean | undefined
  readonly displayName?: string | undefined
  /** The token's tenant claim, when it carries one. */
  readonly tenant?: string | undefined
}

/** A service client as a verified machine token names it. */
export interface MachineIdentity {
  readonly clientId: string
  readonly tenant?: string | undefined
}

/** An admitted caller's account and tenant. */
export interface DirectoryEntry {
  readonly account: Account
  readonly tenant: Tenant
}

export interface DirectoryStats {
  /** Look-ups answered from the cache (no platform query). */
  readonly hits: number
  /**
   * Of those, look-ups answered from the cache because the platform database
   * did not answer the re-read, within the staleness bound.
   */
  readonly outageHits: number
  /** Look-ups that queried the platform database. */
  readonly misses: number
  readonly size: number
  /** Whether invalidations from other processes are being received (the cache is used only then). */
  readonly listening: boolean
}

export type UserLookupError = NoTenant | AccountDisabled | TenantMismatch | TenantSuspended | ServiceUnavailable
export type MachineLookupError =
  | UnknownClient
  | ClientDisabled
  | AccountDisabled
  | TenantMismatch
  | TenantSuspended
  | ServiceUnavailable

/**
 * The platform's accounts: who a verified caller is, in which tenant, and
 * whether they may come in; and the operator's operations on service clients,
 * email domains and accounts.
 *
 * Look-ups are cached (bounded, with a time to live). A change made through
 * any directory, in any process, returns only when every directory has
 * dropped what it changed; changes made around the directories (a tenant
 * suspended through TenantDatabases, plain SQL) reach them through the
 * platform tables' triggers, within milliseconds (PlatformNotifications).
 *
 * The staleness bound (`accountCacheStaleness`, 1 second by default): an
 * entry answers from memory only while every change committed up to one
 * bound ago is known to have been applied (`deliveredUpTo`, advanced by the
 * notification connection's pings every 250 ms). When that is not so (the
 * connection lost, its pings late, the platform database down), the caller
 * is re-read; if the platform database does not answer the re-read, the
 * cached entry still serves until the bound has passed since `deliveredUpTo`,
 * and then the caller is refused with 503 service_unavailable. A caller not
 * cached at all (first login, unknown client, evicted) needs the platform
 * database: 503 service_unavailable at once when it does not answer.
 *
 * So a change (a client disabled, an account disabled, a tenant suspended)
 * takes effect within the bound beyond the moment this process last heard
 * everything, whatever happened to the connection; and a platform outage
 * shorter than the bound goes unseen by known callers. Why not serve known
 * callers for the whole outage: from here, a platform database that is down
 * cannot be told from one this process alone cannot reach while others still
 * change accounts in it (a revoked client would be served on); failing closed
 * after a short bound is what a service trusted with tenants' data does.
 */
export class AccountDirectory extends Context.Tag("tenant-engine/AccountDirectory")<AccountDirectory, {
  /** The user's account; created on first sight in the tenant the token or the email domain names. */
  readonly user: (identity: UserIdentity) => Effect.Effect<DirectoryEntry, UserLookupError>
  /** The registered service client's account; never created here. */
  readonly machine: (identity: MachineIdentity) => Effect.Effect<DirectoryEntry, MachineLookupError>
  /** Creates the client and its machine account, in one transaction. */
  readonly registerClient: (
    tenantId: string,
    clientId: string,
    displayName: string
  ) => Effect.Effect<ServiceClient, InvalidServiceClient | TenantNotFound | ClientAlreadyExists>
  readonly listClients: (tenantId: string) => Effect.Effect<ReadonlyArray<ServiceClient>, TenantNotFound>
  /** Its next request is refused (client_disabled), in every process. */
  readonly disableClient: (
    tenantId: string,
    clientId: string
  ) => Effect.Effect<ServiceClient, TenantNotFound | ClientNotFound>
  /** Users whose verified email is in the domain join the tenant on first sight. */
  readonly addDomain: (
    tenantId: string,
    domain: string
  ) => Effect.Effect<TenantDomain, InvalidDomain | TenantNotFound | DomainAlreadyExists>
  readonly listDomains: (tenantId: string) => Effect.Effect<ReadonlyArray<TenantDomain>, TenantNotFound>
  readonly disableAccount: (accountId: string) => Effect.Effect<void, AccountNotFound>
  /**
   * Drops what every directory knows of a tenant, and returns when they all
   * have: call it after suspending, resuming or deleting the tenant, so that
   * the change is in force everywhere once the operation returns.
   */
  readonly invalidateTenant: (tenantId: string) => Effect.Effect<void>
  readonly stats: Effect.Effect<DirectoryStats>
}>() {
  static readonly layer: Layer.Layer<AccountDirectory, never, PlatformDb | PlatformNotifications | AuthConfig> = Layer.scoped(
    AccountDirectory,
    Effect.suspend(() => make)
  )
}

interface EntryRow {
  readonly account_id: string
  readonly tenant_id: string
  readonly kind: "user" | "machine"
  readonly display_name: string | null
  readonly account_disabled_at: Date | null
  readonly account_created_at: Date
  readonly tenant_name: string
  readonly tenant_status: TenantRowStatus
  readonly tenant_created_at: Date
  readonly client_disabled_at: Date | null
}

interface ClientRow {
  readonly client_id: string
  readonly tenant_id: string
  readonly account_id: string
  readonly display_name: string
  readonly disabled_at: Date | null
  readonly created_at: Date
}

interface DomainRow {
  readonly domain: string
  readonly tenant_id: string
  readonly created_at: Date
}

/** What the cache keeps: enough to admit or refuse without a query. */
interface Entry extends DirectoryEntry {
  readonly tenantStatus: TenantRowStatus
  readonly accountDisabled: boolean
  readonly clientDisabled: boolean
}

const toEntry = (row: EntryRow): Entry => ({
  account: new Account({
    id: row.account_id,
    tenantId: row.tenant_id,
    kind: row.kind,
    ...(row.display_name !== null ? { displayName: row.display_name } : {}),
    createdAt: row.account_created_at
  }, true),
  tenant: tenantFromRow({
    id: row.tenant_id,
    name: row.tenant_name,
    status: row.tenant_status,
    created_at: row.tenant_created_at
  }),
  tenantStatus: row.tenant_status,
  accountDisabled: row.account_disabled_at !== null,
  clientDisabled: row.client_disabled_at !== null
})

const toServiceClient = (row: ClientRow) =>
  new ServiceClient({
    clientId: row.client_id,
    tenantId: row.tenant_id,
    displayName: row.display_name,
    accountId: row.account_id,
    disabled: row.disabled_at !== null,
    createdAt: row.created_at
  }, true)

const toDomain = (row: DomainRow) =>
  new TenantDomain({ domain: row.domain, tenantId: row.tenant_id, createdAt: row.created_at }, true)

/** Whether an invalidation covers a cached entry. */
type Covers = (key: string, entry: Entry) => boolean

/**
 * A bounded LRU map with a time to live. Every look-up in flight collects the
 * invalidations that arrive while it runs, so that it does not store an
 * answer one of them may have made stale; an unrelated change does not stop
 * it from being cached.
 */
class EntryCache {
  private readonly entries = new Map<string, { readonly entry: Entry; readonly expiresAt: number }>()
  private readonly inFlight = new Set<Array<Covers>>()
  constructor(private readonly capacity: number, private readonly ttlMillis: number) {}

  get size() {
    return this.entries.size
  }

  get(key: string, now: number): Entry | undefined {
    const found = this.entries.get(key)
    if (found === undefined) return undefined
    this.entries.delete(key)
    if (found.expiresAt <= now) return undefined
    // Re-inserted: Map keeps insertion order, so the oldest key is the least recently used.
    this.entries.set(key, found)
    return found.entry
  }

  set(key: string, entry: Entry, now: number) {
    if (this.capacity <= 0 || this.ttlMillis <= 0) return
    this.entries.delete(key)
    this.entries.set(key, { entry, expiresAt: now + this.ttlMillis })
    for (const oldest of this.entries.keys()) {
      if (this.entries.size <= this.capacity) break
      this.entries.delete(oldest)
    }
  }

  /** A look-up starts: the invalidations it must not outlive are collected from now on. */
  begin(): Array<Covers> {
    const seen: Array<Covers> = []
    this.inFlight.add(seen)
    return seen
  }

  /** A look-up ended: its answer is stored unless an invalidation since `begin` covers it. */
  end(seen: Array<Covers>, key: string, entry: Entry | undefined, now: number) {
    this.inFlight.delete(seen)
    if (entry !== undefined && !seen.some((covers) => covers(key, entry))) this.set(key, entry, now)
  }

  delete(key: string) {
    this.entries.delete(key)
  }

  deleteWhere(covers: Covers) {
    for (const seen of this.inFlight) seen.push(covers)
    for (const [key, { entry }] of this.entries) if (covers(key, entry)) this.entries.delete(key)
  }

  clear() {
    for (const seen of this.inFlight) seen.push(() => true)
    this.entries.clear()
  }
}

const userKey = (issuer: string, subject: string) => `u\u0000${issuer}\u0000${subject}`
const clientKey = (clientId: string) => `c\u0000${clientId}`

const ClientIdText = boundedText(1, 200).pipe(
  Schema.filter((s) => !/[\u0000-\u001f\u007f]/.test(s) || "must not contain control characters")
)
const DisplayNameText = boundedText(1, 200)

const DOMAIN = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/

/** A domain in the form it is stored and matched: lowercase ASCII (IDNA), no trailing dot. */
export const normalizeDomain = (domain: string): string | undefined => {
  const ascii = domainToASCII(domain.trim().toLowerCase())
  return DOMAIN.test(ascii) && /[a-z]/.test(ascii.slice(ascii.lastIndexOf(".") + 1)) ? ascii : undefined
}

const emailDomain = (email: string | undefined): string | undefined => {
  if (email === undefined) return undefined
  const at = email.lastIndexOf("@")
  return at > 0 ? normalizeDomain(email.slice(at + 1)) : undefined
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** The staleness bound when AuthConfig gives none (see AccountDirectory). */
const DEFAULT_STALENESS = Duration.seconds(1)

const isServiceUnavailable = (error: unknown): boolean =>
  typeof error === "object" && error !== null && "_tag" in error && error._tag === "ServiceUnavailable"

/**
 * A look-up's statement failing: the platform database not answering is
 * ServiceUnavailable (503, the caller retries); any other failure of the
 * platform's own statements is a bug, so a defect.
 */
const orUnavailable = <A, E, R>(effect: Effect.Effect<A, E | SqlError, R>): Effect.Effect<A, Exclude<E, SqlError> | ServiceUnavailable, R> =>
  Effect.catchIf(effect, isSqlError, (error) => isUnavailable(error) ? Effect.fail(platformUnavailable()) : Effect.die(error))

const make = Effect.gen(function*() {
  const platform = yield* PlatformDb
  const config = yield* AuthConfig
  const cache = new EntryCache(config.accountCacheCapacity, Duration.toMillis(config.accountCacheTtl))
  const stalenessMillis = Duration.toMillis(config.accountCacheStaleness ?? DEFAULT_STALENESS)
  const counters = { hits: 0, misses: 0, outageHits: 0 }

  const notifications = yield* PlatformNotifications
  yield* notifications.subscribe({
    changed: (change) =>
      Effect.sync(() => {
        switch (change.kind) {
          case "tenant":
            return cache.deleteWhere((_, entry) => entry.tenant.id === change.id)
          case "account":
            return cache.deleteWhere((_, entry) => entry.account.id === change.id)
          case "client":
            return cache.deleteWhere((key) => key === clientKey(change.id))
        }
      }),
    // Changes may have been missed while no connection was listening: a new one is proven now.
    reset: Effect.sync(() => cache.clear())
  })
  const { change } = notifications

  // --- look-ups ---

  /** Whether what the cache holds is known true as of no longer than the bound ago. */
  const withinBound = () => Date.now() - notifications.deliveredUpTo() <= stalenessMillis

  const cached = <E>(
    key: string,
    lookup: Effect.Effect<Entry, E | ServiceUnavailable>
  ): Effect.Effect<Entry, E | ServiceUnavailable> =>
    Effect.suspend(() => {
      const now = Date.now()
      const hit = cache.get(key, now)
      // Changes are being applied, and the last proof they all were is recent.
      if (hit !== undefined && notifications.listening() && withinBound()) {
        counters.hits++
        accountCacheHits.increment()
        return Effect.succeed(hit)
      }
      counters.misses++
      accountCacheMisses.increment()
      const seen = cache.begin()
      return lookup.pipe(
        // What the database answered replaces what was cached, also while no
        // connection listens: the cache answers from memory then only as a
        // fallback (below), which must not be older than the last re-read, and
        // a connection proven again empties it anyway.
        Effect.onExit((exit) =>
          Effect.sync(() => {
            if (Exit.isSuccess(exit)) return cache.end(seen, key, exit.value, now)
            cache.end(seen, key, undefined, now)
            // Refused (unknown client, no tenant...) or a defect: no longer an entry to fall back on.
            if (!Option.exists(Cause.failureOption(exit.cause), isServiceUnavailable)) cache.delete(key)
          })
        ),
        Effect.catchIf(
          (error): error is ServiceUnavailable => isServiceUnavailable(error),
          (error) => {
            // The platform database does not answer: what was true no longer
            // than the bound ago still serves. The entry as it is now, not as
            // this call found it: a concurrent re-read may have replaced it,
            // or dropped it (then there is nothing to serve).
            const latest = cache.get(key, Date.now())
            if (latest === undefined || !withinBound()) return Effect.fail(error)
            counters.outageHits++
            return Effect.succeed(latest)
          }
        )
      )
    })

  const admit = (
    entry: Entry,
    tenantClaim: string | undefined
  ): Effect.Effect<DirectoryEntry, AccountDisabled | TenantMismatch | TenantSuspended> => {
    if (entry.accountDisabled) return Effect.fail(new AccountDisabled({ message: "this account is disabled" }))
    if (tenantClaim !== undefined && tenantClaim !== entry.tenant.id) {
      return Effect.fail(new TenantMismatch({ message: "the token's tenant is not the account's tenant" }))
    }
    if (entry.tenantStatus !== "active") {
      return Effect.fail(new TenantSuspended({ message: "the tenant is suspended" }))
    }
    return Effect.succeed({ account: entry.account, tenant: entry.tenant })
  }

  const entryColumns = platform`
    a.id AS account_id, a.tenant_id, a.kind, a.display_name, a.disabled_at AS account_disabled_at,
    a.created_at AS account_created_at, t.name AS tenant_name, t.status AS tenant_status,
    t.created_at AS tenant_created_at`

  const findUser = (issuer: string, subject: string) =>
    orUnavailable(platform<EntryRow>`
      SELECT ${entryColumns}, NULL AS client_disabled_at
      FROM accounts a JOIN tenants t ON t.id = a.tenant_id
      WHERE a.kind = 'user' AND a.issuer = ${issuer} AND a.subject = ${subject}`).pipe(
      Effect.map((rows) => (rows[0] === undefined ? undefined : toEntry(rows[0])))
    )

  interface TenantRow {
    readonly id: string
    readonly status: TenantRowStatus
  }

  /** The tenant a new user joins: the token's tenant claim, else the verified email's domain. */
  const tenantOf = (identity: UserIdentity): Effect.Effect<TenantRow, NoTenant | TenantSuspended | ServiceUnavailable> =>
    Effect.gen(function*() {
      let rows: ReadonlyArray<TenantRow>
      let none: string
      if (identity.tenant !== undefined) {
        rows = yield* orUnavailable(platform<TenantRow>`
          SELECT id, status FROM tenants WHERE id = ${identity.tenant} AND status IN ('active', 'suspended')`)
        none = "the tenant the token names does not exist"
      } else {
        const domain = identity.emailVerified === false ? undefined : emailDomain(identity.email)
        rows = domain === undefined ? [] : yield* orUnavailable(platform<TenantRow>`
          SELECT t.id, t.status FROM tenant_domains d JOIN tenants t ON t.id = d.tenant_id
          WHERE d.domain = ${domain} AND t.status IN ('active', 'suspended')`)
        none = identity.email === undefined
          ? "the token names no tenant and no email"
          : identity.emailVerified === false
          ? "the token names no tenant and its email is not verified"
          : "the token names no tenant and no tenant has its email domain"
      }
      const tenant = rows[0]
      if (tenant === undefined) return yield* new NoTenant({ message: none })
      // A refused first request leaves nothing behind.
      if (tenant.status !== "active") return yield* new TenantSuspended({ message: "the tenant is suspended" })
      return tenant
    })

  const lookupUser = (identity: UserIdentity) =>
    Effect.gen(function*() {
      const found = yield* findUser(identity.issuer, identity.subject)
      if (found !== undefined) return found
      const tenant = yield* tenantOf(identity)
      // Concurrent first requests of one user race here; the partial unique
      // index makes exactly one insert win and the others do nothing.
      yield* platform`
        INSERT INTO accounts (tenant_id, kind, issuer, subject, email, display_name)
        VALUES (${tenant.id}, 'user', ${identity.issuer}, ${identity.subject},
                ${identity.email ?? null}, ${identity.displayName ?? null})
        ON CONFLICT (issuer, subject) WHERE kind = 'user' DO NOTHING`.pipe(
        // The tenant was deleted in between.
        Effect.catchIf((error) => sqlState(error) === FOREIGN_KEY_VIOLATION, () =>
          Effect.fail(new NoTenant({ message: "the tenant the token names does not exist" }))),
        orUnavailable
      )
      const created = yield* findUser(identity.issuer, identity.subject)
      if (created === undefined) return yield* new NoTenant({ message: "the tenant the token names does not exist" })
      return created
    })

  const lookupClient = (clientId: string) =>
    orUnavailable(platform<EntryRow>`
      SELECT ${entryColumns}, c.disabled_at AS client_disabled_at
      FROM service_clients c JOIN accounts a ON a.id = c.account_id JOIN tenants t ON t.id = c.tenant_id
      WHERE c.client_id = ${clientId}`).pipe(
      Effect.flatMap((rows) =>
        rows[0] === undefined
          ? Effect.fail(new UnknownClient({ message: "this service client is not registered" }))
          : Effect.succeed(toEntry(rows[0]))
      )
    )

  // --- operator operations ---

  const requireTenant = (tenantId: string, lock = false) =>
    orDie(
      lock
        ? platform`SELECT 1 FROM tenants WHERE id = ${tenantId} AND status IN ('active', 'suspended') FOR SHARE`
        : platform`SELECT 1 FROM tenants WHERE id = ${tenantId} AND status IN ('active', 'suspended')`
    ).pipe(
      Effect.flatMap((rows) =>
        rows.length === 0 ? Effect.fail(new TenantNotFound({ message: `no tenant ${tenantId}` })) : Effect.void
      )
    )

  const validate = <A, I>(schema: Schema.Schema<A, I>, value: unknown, what: string) =>
    Schema.decodeUnknown(schema)(value).pipe(
      Effect.mapError(() => new InvalidServiceClient({ message: `${what} must be 1 to 200 characters of text` }))
    )

  const registerClient = Effect.fn("AccountDirectory.registerClient")(function*(
    tenantId: string,
    clientId: string,
    displayName: string
  ) {
    yield* validate(ClientIdText, clientId, "a client id")
    yield* validate(DisplayNameText, displayName, "a display name")
    const row = yield* change(
      (row: ClientRow) => ({ kind: "client", id: row.client_id }),
      Effect.gen(function*() {
        // Locked so that the tenant cannot be deleted under the new client.
        yield* requireTenant(tenantId, true)
        const [account] = yield* platform<{ id: string }>`
          INSERT INTO accounts (tenant_id, kind, subject, display_name)
          VALUES (${tenantId}, 'machine', ${clientId}, ${displayName}) RETURNING id`
        const inserted = yield* platform<ClientRow>`
          INSERT INTO service_clients (client_id, tenant_id, account_id, display_name)
          VALUES (${clientId}, ${tenantId}, ${account!.id}, ${displayName})
          ON CONFLICT (client_id) DO NOTHING RETURNING *`
        // Failing rolls the machine account back too.
        if (inserted[0] === undefined) {
          return yield* new ClientAlreadyExists({ message: `a service client ${clientId} is already registered` })
        }
        return inserted[0]
      })
    )
    return toServiceClient(row)
  })

  const listClients = (tenantId: string) =>
    Effect.zipRight(
      requireTenant(tenantId),
      orDie(platform<ClientRow>`
        SELECT * FROM service_clients WHERE tenant_id = ${tenantId} ORDER BY created_at, client_id`)
    ).pipe(Effect.map((rows) => rows.map(toServiceClient)))

  const disableClient = (tenantId: string, clientId: string) =>
    change(
      (row: ClientRow) => ({ kind: "client", id: row.client_id }),
      Effect.gen(function*() {
        const rows = yield* platform<ClientRow>`
          UPDATE service_clients SET disabled_at = coalesce(disabled_at, now())
          WHERE tenant_id = ${tenantId} AND client_id = ${clientId} RETURNING *`
        if (rows[0] !== undefined) return rows[0]
        yield* requireTenant(tenantId)
        return yield* new ClientNotFound({ message: `no service client ${clientId} in tenant ${tenantId}` })
      })
    ).pipe(Effect.map(toServiceClient))

  const addDomain = Effect.fn("AccountDirectory.addDomain")(function*(tenantId: string, domain: string) {
    const normalized = normalizeDomain(domain)
    if (normalized === undefined) {
      return yield* new InvalidDomain({ message: `${JSON.stringify(domain.slice(0, 260))} is not a domain name` })
    }
    const row = yield* change(
      (row: DomainRow) => ({ kind: "tenant", id: row.tenant_id }),
      Effect.gen(function*() {
        yield* requireTenant(tenantId, true)
        const rows = yield* platform<DomainRow>`
          INSERT INTO tenant_domains (domain, tenant_id) VALUES (${normalized}, ${tenantId})
          ON CONFLICT (domain) DO NOTHING RETURNING *`
        // Whose domain it is stays unsaid: it may be another tenant's.
        if (rows[0] === undefined) {
          return yield* new DomainAlreadyExists({ message: `the domain ${normalized} is already registered` })
        }
        return rows[0]
      })
    )
    return toDomain(row)
  })

  const listDomains = (tenantId: string) =>
    Effect.zipRight(
      requireTenant(tenantId),
      orDie(platform<DomainRow>`SELECT * FROM tenant_domains WHERE tenant_id = ${tenantId} ORDER BY domain`)
    ).pipe(Effect.map((rows) => rows.map(toDomain)))

  const disableAccount = (accountId: string) =>
    UUID.test(accountId)
      ? change(
        () => ({ kind: "account", id: accountId }),
        Effect.flatMap(
          platform`UPDATE accounts SET disabled_at = coalesce(disabled_at, now()) WHERE id = ${accountId} RETURNING id`,
          (rows) =>
            rows.length === 0 ? Effect.fail(new AccountNotFound({ message: `no account ${accountId}` })) : Effect.void
        )
      )
      : Effect.fail(new AccountNotFound({ message: `no account ${accountId}` }))

  const invalidateTenant = (tenantId: string) => change(() => ({ kind: "tenant", id: tenantId }), Effect.void)

  // A span of its own only where spans are exported (see TokenVerifier).
  const traced = yield* FiberRef.get(FiberRef.currentTracerEnabled)
  const lookupSpan = (kind: "user" | "machine") =>
  <A, E>(lookup: Effect.Effect<A, E>): Effect.Effect<A, E> =>
    traced
      ? Effect.withSpan(lookup, "AccountDirectory.lookup", { kind: "internal", attributes: { "enduser.kind": kind } })
      : lookup
  const userSpan = lookupSpan("user")
  const machineSpan = lookupSpan("machine")

  return AccountDirectory.of({
    user: (identity) =>
      userSpan(Effect.flatMap(
        cached(userKey(identity.issuer, identity.subject), lookupUser(identity)),
        (entry) => admit(entry, identity.tenant)
      )),
    machine: (identity) =>
      machineSpan(Effect.flatMap(
        cached(clientKey(identity.clientId), lookupClient(identity.clientId)),
        (entry): Effect.Effect<DirectoryEntry, MachineLookupError> =>
          entry.clientDisabled
            ? Effect.fail(new ClientDisabled({ message: "this service client is disabled" }))
            : admit(entry, identity.tenant)
      )),
    registerClient,
    listClients,
    disableClient,
    addDomain,
    listDomains,
    disableAccount,
    invalidateTenant,
    stats: Effect.sync(() => ({ ...counters, size: cache.size, listening: notifications.listening() }))
  })
})
