import { Context, Effect, Layer, ParseResult, Schema } from "effect"
import { UserWithAccount } from "../auth/UserWithAccount.js"
import type { TenantUnavailable } from "../tenancy/TenancyErrors.js"
import { Cursor, cursorAfter, NewNote, type Note, NoteId, type NotePage, NotePatch, PageLimit } from "./Note.js"
import { NoteNotFound, NoteValidationError } from "./NoteErrors.js"
import { NoteRepo } from "./NoteRepo.js"

/**
 * The rules for notes in the caller's tenant. Inputs are `unknown` at this
 * boundary and validated here, so a caller that skipped HTTP validation (a
 * CLI, a job, a test) still cannot write a bad note.
 */
export class NoteService extends Context.Tag("tenant-engine/NoteService")<NoteService, {
  readonly create: (input: unknown) => Effect.Effect<Note, NoteValidationError | TenantUnavailable, UserWithAccount>
  readonly list: (options?: {
    readonly limit?: number | undefined
    readonly cursor?: string | undefined
  }) => Effect.Effect<NotePage, NoteValidationError | TenantUnavailable>
  readonly get: (id: string) => Effect.Effect<Note, NoteNotFound | TenantUnavailable>
  readonly update: (id: string, patch: unknown) => Effect.Effect<Note, NoteNotFound | NoteValidationError | TenantUnavailable>
  readonly remove: (id: string) => Effect.Effect<void, NoteNotFound | TenantUnavailable>
}>() {
  static readonly layer = Layer.effect(
    NoteService,
    Effect.gen(function*() {
      const repo = yield* NoteRepo
      const notFound = (id: string) => new NoteNotFound({ message: `no note ${id}` })
      // A malformed id cannot name a note here; answering NotFound keeps it
      // away from the database and tells nothing about other tenants.
      const isNoteId = Schema.is(NoteId)
      const found = (id: string) => (note: Note | undefined) =>
        note === undefined ? Effect.fail(notFound(id)) : Effect.succeed(note)

      return NoteService.of({
        create: (input) =>
          Effect.gen(function*() {
            const note = yield* validate(NewNote, input)
            const { account } = yield* UserWithAccount
            return yield* repo.insert({ ...note, createdBy: account.id })
          }),
        list: (options = {}) =>
          Effect.gen(function*() {
            const limit = yield* validate(PageLimit, options.limit ?? 20)
            const after = options.cursor === undefined || options.cursor === ""
              ? undefined
              : yield* Schema.decode(Cursor)(options.cursor).pipe(
                Effect.mapError(() => new NoteValidationError({ message: "cursor is not a valid page cursor" }))
              )
            // One more than asked tells whether another page follows.
            const rows = yield* repo.page(limit + 1, after)
            const items = rows.slice(0, limit)
            const last = items[items.length - 1]
            const nextCursor = rows.length > limit && last ? cursorAfter(last) : null
            return { items, nextCursor }
          }),
        get: (id) => isNoteId(id) ? Effect.flatMap(repo.find(id), found(id)) : Effect.fail(notFound(id)),
        update: (id, input) =>
          Effect.gen(function*() {
            const patch = yield* validate(NotePatch, input)
            if (!isNoteId(id)) return yield* notFound(id)
            return yield* Effect.flatMap(repo.update(id, patch), found(id))
          }),
        remove: (id) =>
          isNoteId(id)
            ? Effect.flatMap(repo.remove(id), (removed) => removed ? Effect.void : Effect.fail(notFound(id)))
            : Effect.fail(notFound(id))
      })
    })
  )
}

const validate = <A, I>(schema: Schema.Schema<A, I>, input: unknown) =>
  Schema.decodeUnknown(schema, { onExcessProperty: "error" })(input).pipe(
    Effect.mapError((error) =>
      new NoteValidationError({ message: ParseResult.TreeFormatter.formatErrorSync(error) })
    )
  )
