import { ApiError } from "../ApiError.js"

export class NoteNotFound extends ApiError<NoteNotFound>()("NoteNotFound", { code: "not_found", status: 404 }) {}

/** Input the note rules refuse; nothing was written. */
export class NoteValidationError extends ApiError<NoteValidationError>()("NoteValidationError", {
  code: "bad_request",
  status: 400
}) {}
