import { Schema } from "effect"
import { ServiceClient, TenantDomain } from "../src/auth/ServiceClient.js"
import { MeResponse } from "../src/http/Api.js"
import { Note, NotePage } from "../src/notes/Note.js"
import { ManagedTenant } from "../src/tenancy/Tenant.js"

/**
 * The contract's response bodies as they travel (JSON: timestamps as text),
 * for reading a reply's parsed body typed. Reading a body as one of these
 * checks it has that shape, so a test reads fields it knows are there.
 */
/** A tenant as the admin routes show it (with its placement). */
const tenant = Schema.encodedSchema(ManagedTenant)
const client = Schema.encodedSchema(ServiceClient)
const domain = Schema.encodedSchema(TenantDomain)
export const Bodies = {
  me: Schema.encodedSchema(MeResponse),
  note: Schema.encodedSchema(Note),
  notes: Schema.encodedSchema(NotePage),
  tenant,
  tenants: Schema.Struct({ items: Schema.Array(tenant) }),
  client,
  clients: Schema.Struct({ items: Schema.Array(client) }),
  domain,
  domains: Schema.Struct({ items: Schema.Array(domain) }),
  error: Schema.Struct({ error: Schema.String, message: Schema.String }),
  /** Any JSON object, read by its keys. */
  object: Schema.Record({ key: Schema.String, value: Schema.Unknown })
} as const

/**
 * A reply's parsed body as `schema` says; fails (throws, failing the test)
 * when it is not one. Members the schema does not name are kept, so
 * comparisons of the whole body still see everything the server sent.
 */
export const bodyOf = <A, I>(reply: { readonly body: unknown }, schema: Schema.Schema<A, I>): A =>
  Schema.decodeUnknownSync(schema, { onExcessProperty: "preserve" })(reply.body)

/** Whether a parsed body is a JSON object (not an array, a scalar, or nothing). */
export const isJsonObject = Schema.is(Bodies.object)

/** The `error` member of a reply's body, if it is an object with one, for comparing status and code together. */
export const errorOf = (reply: { readonly body: unknown }): unknown =>
  isJsonObject(reply.body) ? reply.body["error"] : undefined
