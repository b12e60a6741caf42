import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

// Dense tenancy: a tenant is placed under a strategy. `database` tenants have
// a database and a login role of their own (db_password is that role's).
// `schema` tenants have a schema and a NOLOGIN role of their own inside the
// server's shared database, reached through the server's shared pool, which
// logs in as the shared database's gateway role (shared_databases).
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    ALTER TABLE tenants
      ADD COLUMN db_strategy text NOT NULL DEFAULT 'database' CHECK (db_strategy IN ('database', 'schema')),
      ADD COLUMN db_schema text,
      ALTER COLUMN db_password DROP NOT NULL,
      DROP CONSTRAINT tenants_db_name_key,
      ADD CONSTRAINT tenants_placement_shape CHECK (
        (db_strategy = 'database' AND db_schema IS NULL AND db_password IS NOT NULL)
        OR (db_strategy = 'schema' AND db_schema IS NOT NULL AND db_password IS NULL))`
  // Schema tenants share their database: a placement is unique by database,
  // or by schema within the shared database.
  yield* sql`CREATE UNIQUE INDEX tenants_database_placement ON tenants (db_server, db_name) WHERE db_strategy = 'database'`
  yield* sql`CREATE UNIQUE INDEX tenants_schema_placement ON tenants (db_server, db_name, db_schema) WHERE db_strategy = 'schema'`
  yield* sql`
    CREATE TABLE shared_databases (
      server text NOT NULL,
      database text NOT NULL,
      login_role text NOT NULL,
      login_password text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (server, database)
    )`
  // A placement that changes (a later move) drops every process's cached context too.
  yield* sql`DROP TRIGGER tenants_changed ON tenants`
  yield* sql`
    CREATE TRIGGER tenants_changed AFTER UPDATE ON tenants FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.migration_state IS DISTINCT FROM NEW.migration_state
          OR OLD.schema_version IS DISTINCT FROM NEW.schema_version
          OR (OLD.db_server, OLD.db_strategy, OLD.db_name, OLD.db_schema, OLD.db_role)
             IS DISTINCT FROM (NEW.db_server, NEW.db_strategy, NEW.db_name, NEW.db_schema, NEW.db_role))
    EXECUTE FUNCTION tenant_changed()`
})
