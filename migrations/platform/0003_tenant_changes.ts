import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

// Every process caches built tenant contexts (pools). A tenant whose status
// or migration state changes, or which is deleted, is announced on a channel
// at commit, by whatever made the change (an admin route, the CLI, a fleet
// migration, an operator's SQL), so every server drops its context at once
// and the next request sees the new state. The channel name is TENANT_CHANGES
// in src/tenancy/TenantContexts.ts.
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE FUNCTION tenant_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_notify('tenant_engine_tenants', OLD.id);
      RETURN NULL;
    END
    $$`
  yield* sql`
    CREATE TRIGGER tenants_changed AFTER UPDATE ON tenants FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.migration_state IS DISTINCT FROM NEW.migration_state
          OR OLD.schema_version IS DISTINCT FROM NEW.schema_version)
    EXECUTE FUNCTION tenant_changed()`
  yield* sql`
    CREATE TRIGGER tenants_deleted AFTER DELETE ON tenants FOR EACH ROW
    EXECUTE FUNCTION tenant_changed()`
  // Tenant roles may use their own database only; the platform database is not theirs to enter.
  yield* sql`
    DO $$
    BEGIN
      IF EXISTS (SELECT 1 FROM pg_database WHERE datname = current_database()
                 AND pg_get_userbyid(datdba) = current_user)
         OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
        EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), current_user);
      END IF;
    END
    $$`
})
