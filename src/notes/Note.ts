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

export const NewNote = Schema.Struct({ title: NoteTitle, body: NoteBody })
export type NewNote = typeof NewNote.Type

export const NotePatch = Schema.Struct({
  title: Schema.optional(NoteTitle),
  body: Schema.optional(NoteBody)
})
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
  Schema.parseJson(Schema.Tuple(Schema.Date, NoteId))
)
