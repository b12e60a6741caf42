import { Layer } from "effect"
import { randomUUID } from "node:crypto"
import { Account, Principal, UserWithAccount } from "../auth/UserWithAccount.js"
import type { Tenant } from "../tenancy/Tenant.js"

/**
 * Stands in for Authentication: a UserWithAccount of the given tenant, for
 * testing tenant-scoped services without tokens.
 */
export const TestUser = (
  tenant: Tenant,
  options: { readonly accountId?: string; readonly kind?: "user" | "machine"; readonly scopes?: ReadonlyArray<string> } = {}
) =>
  Layer.succeed(UserWithAccount, {
    principal: new Principal({
      kind: options.kind ?? "user",
      issuer: "https://test.invalid",
      subject: options.accountId ?? "test-user",
      scopes: options.scopes ?? []
    }),
    account: new Account({
      id: options.accountId ?? randomUUID(),
      tenantId: tenant.id,
      kind: options.kind ?? "user",
      createdAt: new Date()
    }),
    tenant
  })
