import { HttpApiBuilder } from "@effect/platform"
import { UserWithAccount } from "../auth/UserWithAccount.js"
import { PlatformApi } from "./Api.js"

export const MeHandlers = HttpApiBuilder.group(PlatformApi, "me", (handlers) =>
  handlers.handle("me", () => UserWithAccount))
