import { PlatformDb } from "../../src/platform/PlatformDb.js"
import { Effect, Layer } from "effect"
import type { AuthConfig } from "../../src/auth/AuthConfig.js"
import { Authentication } from "../../src/auth/Authentication.js"
import { TenantDatabases } from "../../src/tenancy/TenantDatabases.js"
import { TestIssuer, type TestIssuerOptions } from "../../src/testing/TestIssuer.js"
import { TestTenancy } from "../../src/testing/TestDatabases.js"

/**
 * The whole authentication stack on a fresh platform database of the test
 * server, trusting one TestIssuer (by OIDC discovery, over HTTP).
 */
export const AuthStack = (options: {
  readonly adminUrl: string
  readonly issuer?: TestIssuerOptions
  readonly config?: Partial<AuthConfig["Type"]>
}) =>
  Authentication.layerWithDependencies.pipe(
    Layer.provideMerge(TestIssuer.authConfig(options.config)),
    Layer.provideMerge(TestIssuer.layer(options.issuer)),
    Layer.provideMerge(TestTenancy({ adminUrl: options.adminUrl }))
  )

/** Rows in the platform's accounts table: attacks must leave it unchanged. */
export const countAccounts = Effect.flatMap(PlatformDb, (sql) =>
  sql<{ n: number }>`SELECT count(*)::int AS n FROM accounts`.pipe(Effect.orDie, Effect.map((rows) => rows[0]!.n)))

export const authenticate = (token: string) =>
  Effect.flatMap(Authentication, (auth) => auth.authenticate([`Bearer ${token}`]))

/** A tenant with a database, unless it already exists in this file's namespace. */
export const ensureTenant = (id: string) =>
  Effect.flatMap(TenantDatabases, (databases) =>
    databases.find(id).pipe(Effect.catchTag("TenantNotFound", () => Effect.orDie(databases.provision(id, id)))))
