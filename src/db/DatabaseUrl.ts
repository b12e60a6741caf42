import { Redacted } from "effect"

/**
 * PostgreSQL connection URLs. Tenant pools log in to one database with the
 * tenant's own role, so URLs are rewritten here rather than concatenated.
 */

const parse = (url: Redacted.Redacted<string> | string): URL =>
  new URL(typeof url === "string" ? url : Redacted.value(url))

/** The database a URL names (`postgres` when it names none, as libpq does). */
export const databaseOf = (url: Redacted.Redacted<string> | string): string => {
  const name = decodeURIComponent(parse(url).pathname.replace(/^\//, ""))
  return name === "" ? "postgres" : name
}

/** The same server and credentials, another database. */
export const withDatabase = (url: Redacted.Redacted<string>, database: string): Redacted.Redacted<string> => {
  const u = parse(url)
  u.pathname = "/" + encodeURIComponent(database)
  return Redacted.make(u.toString())
}

/** The server alone (no credentials, no database): what a tenant's placement records. */
export const serverOf = (url: Redacted.Redacted<string>): string => {
  const u = parse(url)
  u.username = ""
  u.password = ""
  u.pathname = "/"
  return u.toString()
}

/** A login on a recorded server: the URL a tenant's pool connects with. */
export const login = (
  server: string,
  options: { readonly database: string; readonly user: string; readonly password: string }
): Redacted.Redacted<string> => {
  const u = parse(server)
  u.username = encodeURIComponent(options.user)
  u.password = encodeURIComponent(options.password)
  u.pathname = "/" + encodeURIComponent(options.database)
  return Redacted.make(u.toString())
}
