import { Context, Effect, Layer } from "effect"
import type { TenantUnavailable } from "../tenancy/TenancyErrors.js"
import { orUnavailable, TenantSession } from "../tenancy/TenantSession.js"
import type { Note } from "./Note.js"

/**
 * A note's columns, the timestamps written by PostgreSQL as the API writes
 * them (ISO 8601 in UTC with milliseconds, all the column keeps): making a
 * Date of each only to turn it back into text cost more than the rest of
 * reading a page. The text columns keep the names created_at and updated_at,
 * so an ORDER BY must name the table's (`notes.created_at`): a bare name
 * would sort by the text, without the index.
 */
export const NOTE_COLUMNS = `id, title, body, created_by,
  to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS created_at,
  to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS updated_at`

export interface NoteRow {
  readonly id: string
  readonly title: string
  readonly body: string
  readonly created_by: string
  readonly created_at: string
  readonly updated_at: string
}

// Rows come from our own table, whose constraints already hold what the Note
// schema says: they are not validated again (which would cost more than the query).
export const toNote = (row: NoteRow): Note => ({
  id: row.id,
  title: row.title,
  body: row.body,
  createdBy: row.created_by,
  createdAt: row.created_at,
  updatedAt: row.updated_at
})

/** The notes table of one tenant's database. Rules live in NoteService. */
export class NoteRepo extends Context.Tag("tenant-engine/NoteRepo")<NoteRepo, {
  readonly insert: (note: { title: string; body: string; createdBy: string }) => Effect.Effect<Note, TenantUnavailable>
  /** Newest first, strictly after `after` (the previous page's last createdAt and id). */
  readonly page: (
    limit: number,
    after: readonly [Date, string] | undefined
  ) => Effect.Effect<ReadonlyArray<Note>, TenantUnavailable>
  readonly find: (id: string) => Effect.Effect<Note | undefined, TenantUnavailable>
  readonly update: (
    id: string,
    patch: { readonly title?: string | undefined; readonly body?: string | undefined }
  ) => Effect.Effect<Note | undefined, TenantUnavailable>
  readonly remove: (id: string) => Effect.Effect<boolean, TenantUnavailable>
}>() {
  static readonly layer = Layer.effect(
    NoteRepo,
    Effect.gen(function*() {
      const { sql, tenantId } = yield* TenantSession
      const query = orUnavailable(tenantId)
      const columns = sql.literal(NOTE_COLUMNS)
      return NoteRepo.of({
        insert: ({ body, createdBy, title }) =>
          sql<NoteRow>`INSERT INTO notes (title, body, created_by) VALUES (${title}, ${body}, ${createdBy}) RETURNING ${columns}`
            .pipe(query, Effect.map((rows) => toNote(rows[0]!))),
        page: (limit, after) =>
          (after === undefined
            ? sql<NoteRow>`SELECT ${columns} FROM notes ORDER BY notes.created_at DESC, notes.id DESC LIMIT ${limit}`
            : sql<NoteRow>`SELECT ${columns} FROM notes WHERE (created_at, id) < (${after[0]}, ${after[1]})
                           ORDER BY notes.created_at DESC, notes.id DESC LIMIT ${limit}`).pipe(
              query,
              Effect.map((rows) => rows.map(toNote))
            ),
        find: (id) =>
          sql<NoteRow>`SELECT ${columns} FROM notes WHERE id = ${id}`.pipe(
            query,
            Effect.map((rows) => rows[0] && toNote(rows[0]))
          ),
        update: (id, { body, title }) =>
          sql<NoteRow>`UPDATE notes SET title = coalesce(${title ?? null}, title), body = coalesce(${body ?? null}, body),
                       updated_at = date_trunc('milliseconds', clock_timestamp())
                       WHERE id = ${id} RETURNING ${columns}`.pipe(
            query,
            Effect.map((rows) => rows[0] && toNote(rows[0]))
          ),
        remove: (id) =>
          sql`DELETE FROM notes WHERE id = ${id} RETURNING id`.pipe(query, Effect.map((rows) => rows.length > 0))
      })
    })
  )
}
