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

/**
 * SQLSTATE classes that say the database, not the statement, is the problem:
 * connection (08), resources (53), operator intervention (57: shutting down,
 * the session terminated), no such database (3D), authorization (28), and
 * 55000 (the database does not allow connections).
 */
const UNAVAILABLE_STATES = /^(08|53|57|3D|28)|^55000$/

/**
 * Whether a SqlError says the database could not be reached or could not
 * serve (as opposed to a statement it refused): no SQLSTATE at all (a refused
 * or reset socket, a connect timeout, a pool that could not hand out a
 * connection) or one of the classes above.
 */
export const isUnavailable = (error: SqlError): boolean => {
  const state = sqlState(error)
  return state === undefined || !/^[0-9A-Z]{5}$/.test(state) || UNAVAILABLE_STATES.test(state)
}

/** Statements the platform's own code writes are correct or it is a bug: their failure is a defect. */
export const orDie = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.catchIf(effect, isSqlError, Effect.die)
