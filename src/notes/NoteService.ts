import { Context, Effect, Either, Layer, ParseResult, Schema } from "effect"
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

      // create and list run on every request: plain chains, not generators (cheaper per call).
      return NoteService.of({
        create: (input) =>
          Effect.flatMap(validate(NewNote, input), (note) =>
            Effect.flatMap(UserWithAccount, ({ account }) => repo.insert({ ...note, createdBy: account.id }))),
        list: (options = {}) =>
          Effect.flatMap(validate(PageLimit, options.limit ?? 20), (limit) =>
            Effect.flatMap(pageCursor(options.cursor), (after) =>
              // One more than asked tells whether another page follows.
              Effect.map(repo.page(limit + 1, after), (rows): NotePage => {
                const items = rows.slice(0, limit)
                const last = items[items.length - 1]
                return { items, nextCursor: rows.length > limit && last ? cursorAfter(last) : null }
              }))),
        get: (id) => isNoteId(id) ? Effect.flatMap(repo.find(id), found(id)) : Effect.fail(notFound(id)),
        update: (id, input) =>
          Effect.flatMap(
            validate(NotePatch, input),
            (patch) => isNoteId(id) ? Effect.flatMap(repo.update(id, patch), found(id)) : Effect.fail(notFound(id))
          ),
        remove: (id) =>
          isNoteId(id)
            ? Effect.flatMap(repo.remove(id), (removed) => removed ? Effect.void : Effect.fail(notFound(id)))
            : Effect.fail(notFound(id))
      })
    })
  )

  /** The service with the repository it uses, both provided: the notes' line in TenantServices. */
  static readonly layerWithDependencies = NoteService.layer.pipe(Layer.provideMerge(NoteRepo.layer))
}

/** Decodes `input` synchronously (an Either is an Effect), refusing undeclared fields. */
const validate = <A, I>(schema: Schema.Schema<A, I>, input: unknown): Either.Either<A, NoteValidationError> =>
  Either.mapLeft(
    Schema.decodeUnknownEither(schema, { onExcessProperty: "error" })(input),
    (error) => new NoteValidationError({ message: ParseResult.TreeFormatter.formatErrorSync(error) })
  )

const decodeCursor = Schema.decodeEither(Cursor)

/** The position after which a page starts: none for the first page. */
const pageCursor = (cursor: string | undefined): Either.Either<readonly [Date, string] | undefined, NoteValidationError> =>
  cursor === undefined || cursor === ""
    ? Either.right(undefined)
    : Either.mapLeft(decodeCursor(cursor), () => new NoteValidationError({ message: "cursor is not a valid page cursor" }))
