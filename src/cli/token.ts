import { Command, Options } from "@effect/cli"
import { Console, Duration, Effect, Option } from "effect"
import { join } from "node:path"
import { readSettings } from "../AppConfig.js"
import type { DevIssuer } from "../auth/DevIssuer.js"

const scope = Options.text("scope").pipe(
  Options.withDescription("scopes, space- or comma-separated (default: notes:read notes:write)"),
  Options.optional
)
const lifetime = Options.text("lifetime").pipe(
  Options.withDescription("how long the token is valid, e.g. '1 hour', '30 minutes' (default 1 hour)"),
  Options.withDefault("1 hour")
)

const scopesOf = (value: Option.Option<string>) =>
  Option.match(value, {
    onNone: () => ["notes:read", "notes:write"],
    onSome: (text) => text.split(/[\s,]+/).filter((s) => s !== "")
  })

/** Mints with the development issuer of this data folder; refuses when a real issuer is configured. */
const mint = (f: (issuer: DevIssuer["Type"], lifetime: Duration.Duration) => Effect.Effect<string>, lifetimeText: string) =>
  Effect.gen(function*() {
    const settings = yield* readSettings
    if (settings.authIssuers.length > 0) {
      return yield* Effect.fail(
        new Error("AUTH_ISSUER is set: tokens come from that issuer; this command mints development tokens only")
      )
    }
    const lifetime = yield* Option.match(Duration.decodeUnknown(lifetimeText), {
      onNone: () => Effect.fail(new Error(`--lifetime: not a duration: ${lifetimeText}`)),
      onSome: Effect.succeed
    })
    // Imported here: the issuer's key handling (jose) is for this command only.
    const { DevIssuer } = yield* Effect.promise(() => import("../auth/DevIssuer.js"))
    const issuer = yield* Effect.provide(
      DevIssuer,
      DevIssuer.layer({ directory: join(settings.dataDir, "issuer"), audience: settings.authAudience })
    )
    yield* Console.log(yield* f(issuer, lifetime))
  })

const user = Command.make(
  "user",
  {
    tenant: Options.text("tenant").pipe(Options.withDescription("the user's tenant (the tenant claim)")),
    sub: Options.text("sub").pipe(Options.withDescription("the user's subject"), Options.withDefault("dev-user")),
    email: Options.text("email").pipe(Options.withDescription("a verified email address"), Options.optional),
    scope,
    lifetime
  },
  (o) =>
    mint((issuer, lifetime) =>
      issuer.user(o.sub, {
        tenant: o.tenant,
        scopes: scopesOf(o.scope),
        lifetime,
        ...Option.match(o.email, { onNone: () => ({}), onSome: (email) => ({ email, emailVerified: true }) })
      }), o.lifetime)
).pipe(Command.withDescription("a user token for a tenant"))

const machine = Command.make(
  "machine",
  { client: Options.text("client").pipe(Options.withDescription("a registered client id")), scope, lifetime },
  (o) => mint((issuer, lifetime) => issuer.machine(o.client, { scopes: scopesOf(o.scope), lifetime }), o.lifetime)
).pipe(Command.withDescription("a client-credentials token of a service client"))

const admin = Command.make(
  "admin",
  { sub: Options.text("sub").pipe(Options.withDefault("operator")), lifetime },
  (o) => mint((issuer, lifetime) => issuer.admin(o.sub, { lifetime }), o.lifetime)
).pipe(Command.withDescription("an operator token (scope platform:admin)"))

export const token = Command.make("token").pipe(
  Command.withDescription("mint development tokens (only when AUTH_ISSUER is unset)"),
  Command.withSubcommands([user, machine, admin])
)
