import { Schema } from "effect"
import { boundedText } from "../tenancy/Tenant.js"

export const NoteId = Schema.UUID
export const NoteTitle = boundedText(1, 200)
export const NoteBody = boundedText(0, 10_000)

export class Note extends Schema.Class<Note>("Note")({
  id: Schema.String,
  title: Schema.String,
  body: Schema.String,
  createdBy: Schema.String,
  createdAt: Schema.Date,
  updatedAt: Schema.Date
}) {}

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

export class NotePage extends Schema.Class<NotePage>("NotePage")({
  items: Schema.Array(Note),
  nextCursor: Schema.NullOr(Schema.String)
}) {}

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
