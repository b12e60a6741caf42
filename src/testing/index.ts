/**
 * The testing kit: what users of this project need to test their own
 * tenant-scoped code against a real PostgreSQL.
 */
export * from "./TestDatabases.js"
export * from "./TestPlatform.js"
export * from "./TestUser.js"
export * from "./TestIssuer.js"
export * from "./PgBouncer.js"
