import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { requireScope } from "../auth/Authentication.js"
import { UserWithAccount } from "../auth/UserWithAccount.js"
import { NoteService } from "../notes/NoteService.js"
import { withTenant } from "../tenancy/TenantContexts.js"
import { PlatformApi } from "./Api.js"

/** Runs a handler in the caller's tenant context after checking its scope. */
const inTenant = (scope: string) =>
<A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.zipRight(
    requireScope(scope),
    Effect.flatMap(UserWithAccount, (user) => withTenant(user.tenant.id)(effect))
  )

const notes = <A, E>(scope: string, f: (service: NoteService["Type"]) => Effect.Effect<A, E, UserWithAccount>) =>
  inTenant(scope)(Effect.flatMap(NoteService, f))

export const NotesHandlers = HttpApiBuilder.group(PlatformApi, "notes", (handlers) =>
  handlers
    .handle("list", ({ urlParams }) => notes("notes:read", (s) => s.list(urlParams)))
    .handle("create", ({ payload }) => notes("notes:write", (s) => s.create(payload)))
    .handle("get", ({ path }) => notes("notes:read", (s) => s.get(path.id)))
    .handle("update", ({ path, payload }) => notes("notes:write", (s) => s.update(path.id, payload)))
    .handle("remove", ({ path }) => notes("notes:write", (s) => s.remove(path.id))))
