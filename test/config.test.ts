import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either } from "effect"
import { describeConfigError, settingsConfig, sharedPoolConnections } from "../src/AppConfig.js"

/** The settings an environment gives, or the one line per problem that start-up would print. */
const settingsOf = (env: Record<string, string>) =>
  Effect.either(settingsConfig).pipe(
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))),
    Effect.map(Either.mapLeft(describeConfigError)),
    Effect.runSync
  )

describe("placement settings", () => {
  it("defaults: database tenants, half the budget for the shared pool, 10,000 schema contexts", () => {
    const settings = Either.getOrThrow(settingsOf({}))
    expect(settings.tenantDefaultStrategy).toBe("database")
    expect(settings.tenantContextMax).toBe(10_000)
    expect(sharedPoolConnections(settings)).toBe(40)
    expect(sharedPoolConnections(Either.getOrThrow(settingsOf({ TENANT_CONNECTION_BUDGET: "20" })))).toBe(10)
    expect(sharedPoolConnections(Either.getOrThrow(settingsOf({ TENANT_CONNECTION_BUDGET: "1", TENANT_POOL_MAX: "1" })))).toBe(1)
  })

  it("set: a strategy, a shared pool within the budget, a context count", () => {
    const settings = Either.getOrThrow(settingsOf({
      TENANT_DEFAULT_STRATEGY: "schema",
      TENANT_CONNECTION_BUDGET: "20",
      TENANT_SHARED_POOL_MAX: "20",
      TENANT_CONTEXT_MAX: "500"
    }))
    expect(settings.tenantDefaultStrategy).toBe("schema")
    expect(sharedPoolConnections(settings)).toBe(20)
    expect(settings.tenantContextMax).toBe(500)
  })

  it("bad values stop start-up, each naming its variable", () => {
    expect(Either.flip(settingsOf({ TENANT_DEFAULT_STRATEGY: "rows" })).pipe(Either.getOrThrow))
      .toMatch(/^TENANT_DEFAULT_STRATEGY: /)
    expect(Either.flip(settingsOf({ TENANT_SHARED_POOL_MAX: "0" })).pipe(Either.getOrThrow))
      .toBe("TENANT_SHARED_POOL_MAX: TENANT_SHARED_POOL_MAX: must be a positive integer")
    expect(Either.flip(settingsOf({ TENANT_SHARED_POOL_MAX: "81" })).pipe(Either.getOrThrow))
      .toBe("TENANT_SHARED_POOL_MAX: must be at most TENANT_CONNECTION_BUDGET")
    expect(Either.flip(settingsOf({ TENANT_CONTEXT_MAX: "-3" })).pipe(Either.getOrThrow))
      .toMatch(/TENANT_CONTEXT_MAX: must be a positive integer$/)
  })
})
