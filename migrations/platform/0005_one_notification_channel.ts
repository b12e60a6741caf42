import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

// Every process listens on one channel, `tenant_engine` (CHANNEL in
// src/platform/PlatformNotifications.ts, where the protocol is written down),
// for JSON messages. Changes made around the engine's own operations (a
// tenant suspended through SQL, a fleet migration's state, a placement that
// changes) are announced there by these triggers, as `change` messages from
// `db`, at commit. They replace the two channels and text payloads of
// migrations 0002 and 0003: processes of an older version no longer hear
// changes once this has run, so replace them together.
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`DROP TRIGGER tenants_invalidate_accounts ON tenants`
  yield* sql`DROP TRIGGER tenants_deleted_invalidate_accounts ON tenants`
  yield* sql`DROP TRIGGER tenants_changed ON tenants`
  yield* sql`DROP TRIGGER tenants_deleted ON tenants`
  yield* sql`DROP TRIGGER accounts_invalidate ON accounts`
  yield* sql`DROP TRIGGER accounts_deleted_invalidate ON accounts`
  yield* sql`DROP TRIGGER service_clients_invalidate ON service_clients`
  yield* sql`DROP TRIGGER service_clients_deleted_invalidate ON service_clients`
  yield* sql`DROP FUNCTION account_invalidation()`
  yield* sql`DROP FUNCTION tenant_changed()`
  yield* sql`
    CREATE FUNCTION platform_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      -- TG_ARGV: the kind of thing that changed, and the column holding its id.
      PERFORM pg_notify('tenant_engine', json_build_object(
        'type', 'change', 'from', 'db', 'seq', txid_current(),
        'kind', TG_ARGV[0], 'id', to_jsonb(OLD) ->> TG_ARGV[1])::text);
      RETURN NULL;
    END
    $$`
  yield* sql`
    CREATE TRIGGER tenants_changed AFTER UPDATE ON tenants FOR EACH ROW
    WHEN ((OLD.status, OLD.name, OLD.migration_state, OLD.schema_version,
           OLD.db_server, OLD.db_strategy, OLD.db_name, OLD.db_schema, OLD.db_role)
          IS DISTINCT FROM
          (NEW.status, NEW.name, NEW.migration_state, NEW.schema_version,
           NEW.db_server, NEW.db_strategy, NEW.db_name, NEW.db_schema, NEW.db_role))
    EXECUTE FUNCTION platform_changed('tenant', 'id')`
  yield* sql`
    CREATE TRIGGER tenants_deleted AFTER DELETE ON tenants FOR EACH ROW
    EXECUTE FUNCTION platform_changed('tenant', 'id')`
  yield* sql`
    CREATE TRIGGER accounts_changed AFTER UPDATE ON accounts FOR EACH ROW
    WHEN ((OLD.disabled_at, OLD.tenant_id, OLD.display_name) IS DISTINCT FROM
          (NEW.disabled_at, NEW.tenant_id, NEW.display_name))
    EXECUTE FUNCTION platform_changed('account', 'id')`
  yield* sql`
    CREATE TRIGGER accounts_deleted AFTER DELETE ON accounts FOR EACH ROW
    EXECUTE FUNCTION platform_changed('account', 'id')`
  yield* sql`
    CREATE TRIGGER service_clients_changed AFTER UPDATE ON service_clients FOR EACH ROW
    WHEN ((OLD.disabled_at, OLD.account_id, OLD.tenant_id) IS DISTINCT FROM
          (NEW.disabled_at, NEW.account_id, NEW.tenant_id))
    EXECUTE FUNCTION platform_changed('client', 'client_id')`
  yield* sql`
    CREATE TRIGGER service_clients_deleted AFTER DELETE ON service_clients FOR EACH ROW
    EXECUTE FUNCTION platform_changed('client', 'client_id')`
})
