import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

// Tenant roles' passwords are no longer stored: they derive from the engine's
// TENANT_ROLE_SECRET, the server, the role and a version (rolePassword in
// src/tenancy/TenantPlacement.ts), and only the version is kept here:
// `tenants.credential_version` for a database tenant's role,
// `shared_databases.login_version` for a shared database's gateway role. A
// row that still has its password (made before this migration) is used as it
// is until `tenants rotate-credentials` converts it, setting the password to
// NULL: the migration cannot, as it has neither the secret nor the servers.
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    ALTER TABLE tenants
      ADD COLUMN credential_version integer NOT NULL DEFAULT 0,
      DROP CONSTRAINT tenants_placement_shape,
      ADD CONSTRAINT tenants_placement_shape CHECK (
        (db_strategy = 'database' AND db_schema IS NULL)
        OR (db_strategy = 'schema' AND db_schema IS NOT NULL AND db_password IS NULL))`
  yield* sql`
    ALTER TABLE shared_databases
      ADD COLUMN login_version integer NOT NULL DEFAULT 0,
      ALTER COLUMN login_password DROP NOT NULL`
  // A rotated role's password: every process reopens the tenant's context,
  // whose pool then logs in with the new one.
  yield* sql`DROP TRIGGER tenants_changed ON tenants`
  yield* sql`
    CREATE TRIGGER tenants_changed AFTER UPDATE ON tenants FOR EACH ROW
    WHEN ((OLD.status, OLD.name, OLD.migration_state, OLD.schema_version, OLD.moving_until,
           OLD.db_server, OLD.db_strategy, OLD.db_name, OLD.db_schema, OLD.db_role,
           OLD.db_password, OLD.credential_version)
          IS DISTINCT FROM
          (NEW.status, NEW.name, NEW.migration_state, NEW.schema_version, NEW.moving_until,
           NEW.db_server, NEW.db_strategy, NEW.db_name, NEW.db_schema, NEW.db_role,
           NEW.db_password, NEW.credential_version))
    EXECUTE FUNCTION platform_changed('tenant', 'id')`
  // A rotated gateway: a change of every schema tenant of that shared
  // database (the protocol of migration 0005), so that every process reopens
  // their contexts, which hand the new password to the shared pool.
  yield* sql`
    CREATE FUNCTION shared_login_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_notify('tenant_engine', json_build_object(
        'type', 'change', 'from', 'db', 'seq', txid_current(), 'kind', 'tenant', 'id', t.id)::text)
      FROM tenants t
      WHERE t.db_strategy = 'schema' AND t.db_server = NEW.server AND t.db_name = NEW.database;
      RETURN NULL;
    END
    $$`
  yield* sql`
    CREATE TRIGGER shared_databases_login_changed AFTER UPDATE ON shared_databases FOR EACH ROW
    WHEN ((OLD.login_role, OLD.login_password, OLD.login_version)
          IS DISTINCT FROM (NEW.login_role, NEW.login_password, NEW.login_version))
    EXECUTE FUNCTION shared_login_changed()`
})
