import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

// The control plane: who the tenants are, where their databases live, and which
// accounts, service clients and email domains belong to each.
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE tenants (
      id text PRIMARY KEY CHECK (id ~ '^[a-z][a-z0-9-]{1,62}$'),
      name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
      status text NOT NULL DEFAULT 'provisioning'
        CHECK (status IN ('provisioning', 'active', 'suspended', 'deleting')),
      db_server text NOT NULL,
      db_name text NOT NULL UNIQUE,
      db_role text NOT NULL UNIQUE,
      db_password text NOT NULL,
      schema_version integer NOT NULL DEFAULT 0,
      migration_state text NOT NULL DEFAULT 'current'
        CHECK (migration_state IN ('current', 'migrating', 'failed')),
      migration_error text,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    )`
  yield* sql`
    CREATE TABLE accounts (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
      kind text NOT NULL CHECK (kind IN ('user', 'machine')),
      issuer text,
      subject text,
      email text,
      display_name text,
      disabled_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (id, tenant_id),
      CHECK (kind <> 'user' OR (issuer IS NOT NULL AND subject IS NOT NULL))
    )`
  yield* sql`CREATE UNIQUE INDEX accounts_user_identity ON accounts (issuer, subject) WHERE kind = 'user'`
  yield* sql`CREATE INDEX accounts_tenant ON accounts (tenant_id)`
  // The composite key ties a client to a machine account of the same tenant.
  yield* sql`
    CREATE TABLE service_clients (
      client_id text PRIMARY KEY CHECK (length(client_id) BETWEEN 1 AND 200),
      tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
      account_id uuid NOT NULL UNIQUE,
      display_name text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
      disabled_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      FOREIGN KEY (account_id, tenant_id) REFERENCES accounts (id, tenant_id) ON DELETE CASCADE
    )`
  yield* sql`CREATE INDEX service_clients_tenant ON service_clients (tenant_id)`
  yield* sql`
    CREATE TABLE tenant_domains (
      domain text PRIMARY KEY CHECK (domain = lower(domain) AND length(domain) BETWEEN 1 AND 253),
      tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
      created_at timestamptz NOT NULL DEFAULT now()
    )`
  yield* sql`CREATE INDEX tenant_domains_tenant ON tenant_domains (tenant_id)`
  yield* sql`CREATE INDEX tenants_migration ON tenants (migration_state, schema_version)`
})
