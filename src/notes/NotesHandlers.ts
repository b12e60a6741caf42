import { HttpApiBuilder } from "@effect/platform"
import { Context, Effect } from "effect"
import { requireScope } from "../auth/Authentication.js"
import { UserWithAccount } from "../auth/UserWithAccount.js"
import { PlatformApi } from "../http/Api.js"
import { TenantContexts } from "../tenancy/TenantContexts.js"
import { NoteService } from "./NoteService.js"

/**
 * Checks the scope, then runs `f` with the caller's tenant's NoteService,
 * taken from the tenant's built context by reference (nothing is provided or
 * built per request).
 */
const notes = <A, E>(scope: string, f: (service: NoteService["Type"]) => Effect.Effect<A, E, UserWithAccount>) =>
  Effect.zipRight(
    requireScope(scope),
    Effect.flatMap(UserWithAccount, (user) =>
      Effect.flatMap(TenantContexts, (contexts) =>
        contexts.use(user.tenant.id, (context) => f(Context.get(context, NoteService)))))
  )

export const NotesHandlers = HttpApiBuilder.group(PlatformApi, "notes", (handlers) =>
  handlers
    .handle("list", ({ urlParams }) => notes("notes:read", (s) => s.list(urlParams)))
    .handle("create", ({ payload }) => notes("notes:write", (s) => s.create(payload)))
    .handle("get", ({ path }) => notes("notes:read", (s) => s.get(path.id)))
    .handle("update", ({ path, payload }) => notes("notes:write", (s) => s.update(path.id, payload)))
    .handle("remove", ({ path }) => notes("notes:write", (s) => s.remove(path.id))))
