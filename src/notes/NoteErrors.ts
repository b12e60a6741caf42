import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"
import { errorCode } from "../tenancy/TenancyErrors.js"

export class NoteNotFound extends Schema.TaggedError<NoteNotFound>()("NoteNotFound", {
  error: errorCode("not_found"),
  message: Schema.String
}, HttpApiSchema.annotations({ status: 404 })) {}

/** Input the note rules refuse; nothing was written. */
export class NoteValidationError extends Schema.TaggedError<NoteValidationError>()("NoteValidationError", {
  error: errorCode("bad_request"),
  message: Schema.String
}, HttpApiSchema.annotations({ status: 400 })) {}
