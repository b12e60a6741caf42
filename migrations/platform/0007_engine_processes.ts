import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

// Engine processes on one platform database share each server's connection
// allowance: every process heartbeats here with what it claims of each server
// (ConnectionShares); one silent for 10 seconds is counted gone.
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE engine_processes (
      id uuid PRIMARY KEY,
      host text NOT NULL,
      pid integer NOT NULL,
      claims jsonb NOT NULL DEFAULT '{}',
      started_at timestamptz NOT NULL DEFAULT now(),
      seen_at timestamptz NOT NULL DEFAULT now()
    )`
})
