import type { SqlError } from "@effect/sql/SqlError"

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
