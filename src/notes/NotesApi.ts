import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"
import { InsufficientScope } from "../auth/AuthErrors.js"
import { Authenticated } from "../http/Security.js"
import { TenantNotFound, TenantUnavailable } from "../tenancy/TenancyErrors.js"
import { NewNote, Note, NoteId, NotePage, NotePatch } from "./Note.js"
import { NoteNotFound, NoteValidationError } from "./NoteErrors.js"

const noteId = HttpApiSchema.param("id", NoteId)

/**
 * The notes endpoints (docs/API.md, Routes) and every error they can answer
 * with. Each runs in the caller's tenant; scopes are checked by the handlers
 * (NotesHandlers.ts): notes:read to read, notes:write to write.
 */
export class NotesApi extends HttpApiGroup.make("notes")
  .add(
    HttpApiEndpoint.get("list", "/v1/notes")
      .setUrlParams(Schema.Struct({
        limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 100))),
        cursor: Schema.optional(Schema.String)
      }))
      .addSuccess(NotePage)
  )
  .add(
    HttpApiEndpoint.post("create", "/v1/notes")
      .setPayload(NewNote)
      .addSuccess(Note, { status: 201 })
  )
  .add(HttpApiEndpoint.get("get")`/v1/notes/${noteId}`.addSuccess(Note))
  .add(
    HttpApiEndpoint.patch("update")`/v1/notes/${noteId}`
      .setPayload(NotePatch)
      .addSuccess(Note)
  )
  .add(HttpApiEndpoint.del("remove")`/v1/notes/${noteId}`.addSuccess(HttpApiSchema.NoContent))
  .addError(NoteNotFound)
  .addError(NoteValidationError)
  .addError(InsufficientScope)
  .addError(TenantUnavailable)
  .addError(TenantNotFound)
  .middleware(Authenticated)
{}
