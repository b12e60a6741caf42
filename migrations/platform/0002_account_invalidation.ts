import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

// Account directories cache who may come in. Changes made through the
// directory notify every process itself (and wait for them); these triggers
// are the safety net for every other way the same rows change (a tenant
// suspended through TenantDatabases, an operator's SQL): the change is
// announced on the directories' channel at commit. The payload is
// `db.<transaction> <kind>:<id>`, the directories' message format with a
// sender that expects no acknowledgement. The channel name is the value of
// INVALIDATION_CHANNEL in src/auth/AccountDirectory.ts at the time of writing;
// a later rename needs a migration of its own.
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE FUNCTION account_invalidation() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      -- TG_ARGV: the kind of entry, and the column holding its key.
      PERFORM pg_notify('tenant_engine_accounts',
        'db.' || txid_current() || ' ' || TG_ARGV[0] || ':' || (to_jsonb(OLD) ->> TG_ARGV[1]));
      RETURN NULL;
    END
    $$`
  yield* sql`
    CREATE TRIGGER tenants_invalidate_accounts AFTER UPDATE ON tenants FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.name IS DISTINCT FROM NEW.name)
    EXECUTE FUNCTION account_invalidation('tenant', 'id')`
  yield* sql`
    CREATE TRIGGER tenants_deleted_invalidate_accounts AFTER DELETE ON tenants FOR EACH ROW
    EXECUTE FUNCTION account_invalidation('tenant', 'id')`
  yield* sql`
    CREATE TRIGGER accounts_invalidate AFTER UPDATE ON accounts FOR EACH ROW
    WHEN (OLD.disabled_at IS DISTINCT FROM NEW.disabled_at OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id
          OR OLD.display_name IS DISTINCT FROM NEW.display_name)
    EXECUTE FUNCTION account_invalidation('account', 'id')`
  yield* sql`
    CREATE TRIGGER accounts_deleted_invalidate AFTER DELETE ON accounts FOR EACH ROW
    EXECUTE FUNCTION account_invalidation('account', 'id')`
  yield* sql`
    CREATE TRIGGER service_clients_invalidate AFTER UPDATE ON service_clients FOR EACH ROW
    WHEN (OLD.disabled_at IS DISTINCT FROM NEW.disabled_at OR OLD.account_id IS DISTINCT FROM NEW.account_id
          OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id)
    EXECUTE FUNCTION account_invalidation('client', 'client_id')`
  yield* sql`
    CREATE TRIGGER service_clients_deleted_invalidate AFTER DELETE ON service_clients FOR EACH ROW
    EXECUTE FUNCTION account_invalidation('client', 'client_id')`
})
