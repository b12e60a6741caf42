import { Layer } from "effect"
import { NoteRepo } from "../notes/NoteRepo.js"
import { NoteService } from "../notes/NoteService.js"
import { TenantSession } from "./TenantSession.js"

/**
 * Everything built per tenant on its TenantSession: repositories and services.
 * A new tenant-scoped resource adds its layers here (and its type to
 * TenantServices); TenantContexts builds this once per tenant.
 */
export type TenantServices = TenantSession | NoteRepo | NoteService

export const TenantServicesLive: Layer.Layer<Exclude<TenantServices, TenantSession>, never, TenantSession> =
  NoteService.layer.pipe(Layer.provideMerge(NoteRepo.layer))
