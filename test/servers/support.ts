import { Effect, Layer } from "effect"
import Pg from "pg"
import { inject } from "vitest"
import { AccountDirectory } from "../../src/auth/AccountDirectory.js"
import { NoteService } from "../../src/notes/NoteService.js"
import { TenantAdmin } from "../../src/platform/TenantAdmin.js"
import { tenancyWith } from "../../src/PlatformLive.js"
import { withTenant } from "../../src/tenancy/TenantContexts.js"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { TenantMigrations } from "../../src/tenancy/TenantMigrations.js"
import { dropNamespace, makeNamespace, testConfig } from "../../src/testing/TestDatabases.js"
import { TestIssuer } from "../../src/testing/TestIssuer.js"
import { TestUser } from "../../src/testing/TestUser.js"

/** The two test servers (test/globalSetup.ts): the first, and an embedded one beside it. */
export const adminUrl = inject("databaseUrl")
export const secondUrl = inject("secondDatabaseUrl")

/**
 * The operator's services (TenantAdmin and what it is built on) on a fresh
 * namespace of the first server, whose databases and roles on the second
 * server go too when the layer is released.
 */
export const TwoServers = () => {
  const namespace = makeNamespace()
  return TenantAdmin.layer.pipe(
    Layer.provideMerge(AccountDirectory.layer),
    Layer.provideMerge(tenancyWith(TenantMigrations.layer)),
    Layer.provide(TestIssuer.authConfig()),
    Layer.provide(TestIssuer.layer()),
    Layer.provideMerge(testConfig({ adminUrl }, namespace)),
    Layer.provideMerge(Layer.scopedDiscard(Effect.addFinalizer(() => dropNamespace(secondUrl, namespace))))
  )
}

/** One statement on a server as its superuser, from outside the code under test. */
export const query = <R extends Pg.QueryResultRow>(
  url: string,
  text: string,
  values: ReadonlyArray<unknown> = [],
  database?: string
) =>
  Effect.promise(async () => {
    const target = new URL(url)
    if (database !== undefined) target.pathname = "/" + encodeURIComponent(database)
    const client = new Pg.Client({ connectionString: target.toString() })
    await client.connect()
    try {
      return (await client.query<R>(text, [...values])).rows
    } finally {
      await client.end()
    }
  })

/** A note written in the tenant's context, as one of its users. */
export const writeNote = (id: string, title: string) =>
  Effect.gen(function*() {
    const tenant = yield* (yield* TenantDatabases).find(id)
    return yield* Effect.flatMap(NoteService, (notes) => notes.create({ title, body: "" })).pipe(
      withTenant(id),
      Effect.provide(TestUser(tenant))
    )
  })

/** Every note's title, page after page, sorted. */
export const titles = (id: string) =>
  Effect.gen(function*() {
    const notes = yield* NoteService
    const all: Array<string> = []
    let cursor: string | undefined
    do {
      const page = yield* notes.list({ limit: 100, cursor })
      all.push(...page.items.map((note) => note.title))
      cursor = page.nextCursor ?? undefined
    } while (cursor !== undefined)
    return all.sort()
  }).pipe(withTenant(id))
