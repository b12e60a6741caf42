import { Schema } from "effect"
import { boundedText } from "../tenancy/Tenant.js"

export const NoteId = Schema.UUID
export const NoteTitle = boundedText(1, 200)
export const NoteBody = boundedText(0, 10_000)

/**
 * An instant as the API writes it: ISO 8601 in UTC with milliseconds
 * (`Date#toISOString`), so that it sorts as it compares.
 */
export const Timestamp = Schema.String.annotations({
  identifier: "Timestamp",
  description: "ISO 8601 in UTC with milliseconds",
  jsonSchema: { type: "string", format: "date-time" }
})

/**
 * Plain structs, not classes: a page of notes is made and encoded on every
 * request, and each Date or class instance on the way costs more than the query.
 * Timestamps arrive as text, written by PostgreSQL (see NoteRepo).
 */
export const Note = Schema.Struct({
  id: Schema.String,
  title: Schema.String,
  body: Schema.String,
  createdBy: Schema.String,
  createdAt: Timestamp,
  updatedAt: Timestamp
}).annotations({ identifier: "Note" })
export type Note = typeof Note.Type

/** Input refuses fields it does not declare (a misspelt field is an error, not a no-op). */
export const strict = { parseOptions: { onExcessProperty: "error" } } as const

export const NewNote = Schema.Struct({ title: NoteTitle, body: NoteBody }).annotations(strict)
export type NewNote = typeof NewNote.Type

export const NotePatch = Schema.Struct({
  title: Schema.optional(NoteTitle),
  body: Schema.optional(NoteBody)
}).annotations(strict)
export type NotePatch = typeof NotePatch.Type

export const PageLimit = Schema.Int.pipe(Schema.between(1, 100))

export const NotePage = Schema.Struct({
  items: Schema.Array(Note),
  nextCursor: Schema.NullOr(Schema.String)
}).annotations({ identifier: "NotePage" })
export type NotePage = typeof NotePage.Type

/**
 * The opaque keyset cursor: the last item's (createdAt, id), as base64url JSON.
 * Decoding a tampered cursor fails the schema, never a query.
 */
export const Cursor = Schema.compose(
  Schema.StringFromBase64Url,
  Schema.parseJson(Schema.Tuple(
    // JavaScript dates reach far past what timestamptz holds (4713 BC to 294276 AD);
    // a date outside it would fail the query, so the cursor refuses it.
    Schema.Date.pipe(Schema.betweenDate(new Date("0001-01-01T00:00:00.000Z"), new Date("9999-12-31T23:59:59.999Z"))),
    NoteId
  ))
)

/**
 * The cursor after a note: what encoding `Cursor` gives (its createdAt is
 * already the ISO text the schema's Date encodes to), without a Date and a
 * schema pass per page. The pagination tests decode what this makes.
 */
export const cursorAfter = (note: Note): string =>
  Buffer.from(JSON.stringify([note.createdAt, note.id]), "utf8").toString("base64url")
