import { Schema } from "effect"

/** A server's name: how tenants' placements and operators refer to it. */
export const ServerName = Schema.String.pipe(
  Schema.pattern(/^[a-z][a-z0-9-]{0,62}$/, {
    message: () => "a server name is 1 to 63 characters: a lowercase letter, then lowercase letters, digits or '-'"
  })
)

/** `draining`: serves its tenants, takes no new ones (moves take them off it). */
export const ServerStatus = Schema.Literal("active", "draining")
export type ServerStatus = typeof ServerStatus.Type

/** A registered server as operators see it (docs/API.md, "Placement"): never its URL. */
export class ServerView extends Schema.Class<ServerView>("ServerView")({
  name: Schema.String,
  status: ServerStatus,
  weight: Schema.Number,
  maxConnections: Schema.Number,
  tenants: Schema.Number
}) {}

/** The server a configuration without registered servers uses: TENANT_DATABASE_URL's (or DATABASE_URL's). */
export const DEFAULT_SERVER = "default"
