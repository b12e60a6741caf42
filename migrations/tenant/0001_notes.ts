import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

// created_at is kept to the millisecond so that a cursor carrying it as a
// JavaScript date compares exactly with the stored value.
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE notes (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      title text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
      body text NOT NULL CHECK (length(body) <= 10000),
      created_by uuid NOT NULL,
      created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
      updated_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now())
    )`
  yield* sql`CREATE INDEX notes_newest_first ON notes (created_at DESC, id DESC)`
})
