import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

// Which TENANT_ROLE_SECRET the tenant roles' passwords derive from, as a
// fingerprint: an HMAC of a fixed text under the secret (secretFingerprint in
// src/tenancy/TenantPlacement.ts), which logs in as nothing and does not give
// the secret back. A process given another secret sees that it differs and
// says so, rather than failing each login; `tenants rotate-credentials --all`
// adopts a new secret and records its fingerprint.
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE role_secret (
      id boolean PRIMARY KEY DEFAULT true CHECK (id),
      fingerprint text NOT NULL,
      recorded_at timestamptz NOT NULL DEFAULT now()
    )`
})
