import { HttpApiBuilder, HttpApiSwagger } from "@effect/platform"
import { Layer } from "effect"
import { AdminHandlers } from "./AdminHandlers.js"
import { PlatformApi } from "./Api.js"
import { AdminAuthenticatedLive, AuthenticatedLive } from "./AuthenticationMiddleware.js"
import { HealthHandlers } from "./HealthHandlers.js"
import { MeHandlers } from "./MeHandlers.js"
import { NotesHandlers } from "./NotesHandlers.js"
import { platformMiddleware } from "./PlatformMiddleware.js"

/** The platform router: every route of API.md, /openapi.json and /docs. Needs an HttpServer. */
export const HttpLive = HttpApiBuilder.serve(platformMiddleware).pipe(
  Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
  Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
  Layer.provide(
    HttpApiBuilder.api(PlatformApi).pipe(
      Layer.provide([HealthHandlers, MeHandlers, NotesHandlers, AdminHandlers]),
      Layer.provide([AuthenticatedLive, AdminAuthenticatedLive])
    )
  )
)
