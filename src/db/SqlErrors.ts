import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"

/** The SQLSTATE of a failed statement, when PostgreSQL gave one. */
export const sqlState = (error: SqlError): string | undefined => {
  const cause: unknown = error.cause
  if (typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string") {
    return cause.code
  }
  return undefined
}

export const UNIQUE_VIOLATION = "23505"
export const FOREIGN_KEY_VIOLATION = "23503"
export const INVALID_CATALOG_NAME = "3D000"
export const DUPLICATE_DATABASE = "42P04"
export const DUPLICATE_OBJECT = "42710"
export const OBJECT_IN_USE = "55006"

export const isSqlError = <E>(error: E): error is Extract<E, SqlError> =>
  typeof error === "object" && error !== null && "_tag" in error && error._tag === "SqlError"

/** Statements the platform's own code writes are correct or it is a bug: their failure is a defect. */
export const orDie = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.catchIf(effect, isSqlError, Effect.die)
