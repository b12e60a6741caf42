import { Args, Command, Options, Prompt } from "@effect/cli"
import { Console, Effect, Option, Schema } from "effect"
import { ManagedTenant } from "../tenancy/Tenant.js"
import type { CredentialRotation } from "../tenancy/TenantDatabases.js"
import { tenantAdmin } from "./CliPlatform.js"
import { move } from "./move.js"
import { done, printRecord, printRows } from "./output.js"

const id = Args.text({ name: "ID" }).pipe(Args.withDescription("the tenant id"))
const json = Options.boolean("json").pipe(Options.withDescription("print JSON"))

/** A tenant as one record: its placement flattened for people, nested in JSON as the admin API has it. */
const printTenant = (tenant: ManagedTenant, json: boolean) =>
  json
    ? printRecord(Schema.encodeSync(ManagedTenant)(tenant), true)
    : printRecord({
      id: tenant.id,
      name: tenant.name,
      status: tenant.status,
      createdAt: tenant.createdAt,
      server: tenant.placement.server,
      strategy: tenant.placement.strategy,
      database: tenant.placement.database,
      schema: tenant.placement.schema ?? "-",
      role: tenant.placement.role
    }, false)

const create = Command.make(
  "create",
  {
    id,
    name: Options.text("name").pipe(Options.withDescription("the tenant's display name")),
    strategy: Options.choice("strategy", ["database", "schema"]).pipe(
      Options.withDescription("a database of its own, or a schema in the server's shared database (default: TENANT_DEFAULT_STRATEGY)"),
      Options.optional
    ),
    server: Options.text("server").pipe(Options.withDescription("the server to place it on"), Options.optional),
    json
  },
  ({ id, json, name, server, strategy }) =>
    Effect.flatMap(tenantAdmin, (admin) =>
      admin.create(id, name, {
        strategy: Option.getOrUndefined(strategy),
        server: Option.getOrUndefined(server)
      })).pipe(Effect.flatMap((tenant) => printTenant(tenant, json)))
).pipe(Command.withDescription("create a tenant with its database or schema"))

const show = Command.make("show", { id, json }, ({ id, json }) =>
  Effect.flatMap(tenantAdmin, (admin) => admin.find(id)).pipe(
    Effect.flatMap((tenant) => printTenant(tenant, json))
  )).pipe(Command.withDescription("show a tenant and where its data lives"))

const list = Command.make("list", { json }, ({ json }) =>
  Effect.flatMap(tenantAdmin, (admin) => admin.list).pipe(
    Effect.flatMap((tenants) =>
      json
        ? Console.log(JSON.stringify(tenants.map((t) => Schema.encodeSync(ManagedTenant)(t)), null, 2))
        : printRows(
          tenants.map((t) => ({ ...t, strategy: t.placement.strategy })),
          { json, columns: ["id", "name", "status", "strategy", "createdAt"] }
        )
    )
  )).pipe(Command.withDescription("list tenants"))

const setStatus = (name: "suspend" | "resume", status: "suspended" | "active") =>
  Command.make(name, { id }, ({ id }) =>
    Effect.flatMap(tenantAdmin, (admin) => admin.setStatus(id, status)).pipe(
      Effect.zipRight(done(`tenant ${id} is ${status}`))
    )).pipe(
      Command.withDescription(
        status === "suspended" ? "suspend a tenant: its next request is refused" : "resume a suspended tenant"
      )
    )

const remove = Command.make(
  "delete",
  { id, yes: Options.boolean("yes").pipe(Options.withDescription("do not ask for confirmation")) },
  ({ id, yes }) =>
    Effect.gen(function*() {
      if (!yes) {
        if (!process.stdin.isTTY) {
          return yield* Effect.fail(new Error(`refusing to delete tenant ${id} without --yes`))
        }
        const confirmed = yield* Prompt.confirm({
          message: `Delete tenant ${id}, its database and all its accounts? This cannot be undone.`
        })
        if (!confirmed) return yield* done("nothing deleted")
      }
      const admin = yield* tenantAdmin
      yield* admin.remove(id)
      yield* done(`tenant ${id} deleted`)
    })
).pipe(Command.withDescription("delete a tenant: suspend, drain, drop its database, accounts, clients and domains"))

/** One line for a rotated login: which role, where, its new version; never a password. */
const describeRotation = (rotation: CredentialRotation) =>
  (rotation.kind === "role"
    ? `role ${rotation.role} on ${rotation.server}`
    : `gateway ${rotation.role} on ${rotation.server} (shared by ${rotation.tenants} schema tenant(s))`) +
  `: credential version ${rotation.version}` +
  (rotation.converted ? "; its stored password is removed from the platform database" : "")

const rotateCredentials = Command.make(
  "rotate-credentials",
  {
    id: Args.optional(Args.text({ name: "ID" }).pipe(Args.withDescription("the tenant whose login gets a new password"))),
    all: Options.boolean("all").pipe(
      Options.withDescription("every database tenant's role and every server's gateway (schema tenants' login)")
    ),
    json
  },
  ({ all, id, json }) =>
    Effect.gen(function*() {
      const admin = yield* tenantAdmin
      if (Option.isSome(id) === all) {
        return yield* Effect.fail(new Error("name one tenant ID, or --all"))
      }
      if (Option.isSome(id)) {
        const rotation = yield* admin.rotateCredentials(id.value)
        return yield* json
          ? printRecord({ tenantId: id.value, ...rotation }, true)
          : done(`tenant ${id.value}: ${describeRotation(rotation)}`)
      }
      const { failed, rotated, secretAdopted } = yield* admin.rotateAllCredentials
      if (json) {
        yield* Console.log(JSON.stringify({ rotated, failed, secretAdopted }, null, 2))
      } else {
        for (const rotation of rotated) yield* Console.log(describeRotation(rotation))
        for (const failure of failed) yield* Console.error(`${failure.target}: ${failure.message}`)
        yield* done(`${rotated.length} login(s) rotated, ${failed.length} failed`)
        if (secretAdopted) {
          yield* done("the tenant roles' passwords derive from this TENANT_ROLE_SECRET from now on: give it to every process")
        }
      }
      if (failed.length > 0) {
        return yield* Effect.fail(new Error(`${failed.length} login(s) could not be rotated; run the command again`))
      }
    })
).pipe(
  Command.withDescription(
    "give tenant logins new passwords (derived from TENANT_ROLE_SECRET; the platform database keeps only their version)"
  )
)

export const tenants = Command.make("tenants").pipe(
  Command.withDescription("create, show, list, suspend, resume, move, delete tenants and rotate their credentials"),
  Command.withSubcommands([
    create,
    show,
    list,
    setStatus("suspend", "suspended"),
    setStatus("resume", "active"),
    move,
    rotateCredentials,
    remove
  ])
)
