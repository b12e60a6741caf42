import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

// Tenants are placed on registered servers. Every tenant made before lives on
// the one server of the configuration, now called `default`: its row is kept
// without a URL until the engine starts with that configuration and fills it
// in (ServerRegistry), so the tenants' foreign key holds from here on.
// `moving_until`: a move holds the tenant while it copies its data; past that
// time (the mover died) the tenant serves from where it was again.
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE servers (
      name text PRIMARY KEY,
      admin_url text,
      weight integer NOT NULL DEFAULT 1 CHECK (weight > 0),
      max_connections integer NOT NULL DEFAULT 80 CHECK (max_connections > 0),
      status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'draining')),
      created_at timestamptz NOT NULL DEFAULT now()
    )`
  yield* sql`INSERT INTO servers (name) VALUES ('default')`
  yield* sql`UPDATE tenants SET db_server = 'default'`
  yield* sql`UPDATE shared_databases SET server = 'default'`
  yield* sql`ALTER TABLE tenants ADD CONSTRAINT tenants_server FOREIGN KEY (db_server) REFERENCES servers (name)`
  yield* sql`
    ALTER TABLE shared_databases
      ADD CONSTRAINT shared_databases_server FOREIGN KEY (server) REFERENCES servers (name) ON DELETE CASCADE`
  yield* sql`ALTER TABLE tenants ADD COLUMN moving_until timestamptz`
  // A move's two copies: before its switch the new one is partial, after it
  // the old one is left to drop. Either way a rerun (or a delete) knows what to drop.
  yield* sql`
    CREATE TABLE tenant_moves (
      tenant_id text PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
      phase text NOT NULL CHECK (phase IN ('copying', 'switched')),
      from_server text NOT NULL,
      from_strategy text NOT NULL,
      from_database text NOT NULL,
      from_schema text,
      from_role text NOT NULL,
      to_server text NOT NULL,
      to_strategy text NOT NULL,
      to_database text NOT NULL,
      to_schema text,
      to_role text NOT NULL,
      started_at timestamptz NOT NULL DEFAULT now()
    )`
  // A move that starts or ends is a change of the tenant for every process.
  yield* sql`DROP TRIGGER tenants_changed ON tenants`
  yield* sql`
    CREATE TRIGGER tenants_changed AFTER UPDATE ON tenants FOR EACH ROW
    WHEN ((OLD.status, OLD.name, OLD.migration_state, OLD.schema_version, OLD.moving_until,
           OLD.db_server, OLD.db_strategy, OLD.db_name, OLD.db_schema, OLD.db_role)
          IS DISTINCT FROM
          (NEW.status, NEW.name, NEW.migration_state, NEW.schema_version, NEW.moving_until,
           NEW.db_server, NEW.db_strategy, NEW.db_name, NEW.db_schema, NEW.db_role))
    EXECUTE FUNCTION platform_changed('tenant', 'id')`
})
