import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { PlatformDb } from "../platform/PlatformDb.js"
import { PlatformApi } from "./Api.js"
import { NotReady } from "./HttpErrors.js"

export const HealthHandlers = HttpApiBuilder.group(PlatformApi, "health", (handlers) =>
  Effect.gen(function*() {
    const platform = yield* PlatformDb
    const ping = platform`SELECT 1`.pipe(
      Effect.timeoutFail({
        duration: "2 seconds",
        onTimeout: () => new NotReady({ message: "the platform database does not answer in time" })
      }),
      Effect.catchTag("SqlError", () => Effect.fail(new NotReady({ message: "the platform database does not answer" })))
    )
    return handlers
      .handle("healthz", () => Effect.succeed({ status: "ok" as const }))
      .handle("readyz", () => Effect.as(ping, { status: "ready" as const }))
  }))
