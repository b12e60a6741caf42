import { Schema } from "effect"

/** A tenant id: also the suffix of its database name, so kept to a safe alphabet. */
export const TenantId = Schema.String.pipe(
  Schema.pattern(/^[a-z][a-z0-9-]{1,62}$/, {
    message: () => "a tenant id is 2 to 63 characters: a lowercase letter, then lowercase letters, digits or '-'"
  }),
  Schema.brand("TenantId")
)
export type TenantId = typeof TenantId.Type

/** Text of 1..200 characters counted as PostgreSQL counts them (code points), without NUL. */
export const boundedText = (min: number, max: number) =>
  Schema.String.pipe(
    Schema.filter((s) => {
      if (s.includes("\u0000")) return "must not contain NUL characters"
      const length = [...s].length
      return (length >= min && length <= max) || `must be ${min} to ${max} characters long`
    }),
    Schema.annotations({ jsonSchema: { type: "string", minLength: min, maxLength: max } })
  )

export const TenantName = boundedText(1, 200)

export const TenantStatus = Schema.Literal("active", "suspended")
export type TenantStatus = typeof TenantStatus.Type

/** `database`: a database and a login role of its own; `schema`: a schema and a role of its own in a shared database. */
export const TenantStrategy = Schema.Literal("database", "schema")
export type TenantStrategy = typeof TenantStrategy.Type

export class Tenant extends Schema.Class<Tenant>("Tenant")({
  id: Schema.String,
  name: Schema.String,
  status: TenantStatus,
  createdAt: Schema.Date
}) {}

/** A tenant's status in the platform database, where it may also be half made or half gone. */
export type TenantRowStatus = "provisioning" | "active" | "suspended" | "deleting"

/** A tenant as the platform's `tenants` row has it. Provisioning and deleting tenants admit nobody: they show as suspended. */
export const tenantFromRow = (row: {
  readonly id: string
  readonly name: string
  readonly status: TenantRowStatus
  readonly created_at: Date
}) =>
  new Tenant({
    id: row.id,
    name: row.name,
    status: row.status === "active" ? "active" : "suspended",
    createdAt: row.created_at
  }, true)

/** Where a tenant's data lives, as operators see it: names only, never a URL or a credential. */
export class Placement extends Schema.Class<Placement>("Placement")({
  server: Schema.String,
  strategy: TenantStrategy,
  database: Schema.String,
  schema: Schema.NullOr(Schema.String),
  role: Schema.String
}) {}

/** A tenant as the admin routes and the CLI show it: with its placement (never shown to tenants). */
export class ManagedTenant extends Schema.Class<ManagedTenant>("ManagedTenant")({
  ...Tenant.fields,
  placement: Placement
}) {}
