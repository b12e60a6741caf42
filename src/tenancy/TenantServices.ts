import { Layer } from "effect"
import { NoteService } from "../notes/NoteService.js"
import type { TenantSession } from "./TenantSession.js"

/**
 * Everything built per tenant on its TenantSession: each tenant-scoped
 * resource's layers, one line per resource (README, "Adding a tenant-scoped
 * resource"). TenantContexts builds this once per tenant.
 */
export const TenantServicesLive = Layer.mergeAll(
  NoteService.layerWithDependencies
) satisfies Layer.Layer<never, never, TenantSession>

/** What a tenant's built context holds. */
export type TenantServices = TenantSession | Layer.Layer.Success<typeof TenantServicesLive>
