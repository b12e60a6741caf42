import { Args, Command, Options, Prompt } from "@effect/cli"
import { Effect } from "effect"
import { TenantAdmin } from "../platform/TenantAdmin.js"
import { done, printRecord, printRows } from "./output.js"

const id = Args.text({ name: "ID" }).pipe(Args.withDescription("the tenant id"))
const json = Options.boolean("json").pipe(Options.withDescription("print JSON"))

const create = Command.make(
  "create",
  { id, name: Options.text("name").pipe(Options.withDescription("the tenant's display name")), json },
  ({ id, json, name }) =>
    Effect.flatMap(TenantAdmin, (admin) => admin.create(id, name)).pipe(
      Effect.flatMap((tenant) => printRecord({ ...tenant }, json))
    )
).pipe(Command.withDescription("create a tenant and its database"))

const list = Command.make("list", { json }, ({ json }) =>
  Effect.flatMap(TenantAdmin, (admin) => admin.list).pipe(
    Effect.flatMap((tenants) => printRows(tenants.map((t) => ({ ...t })), { json, columns: ["id", "name", "status", "createdAt"] }))
  )).pipe(Command.withDescription("list tenants"))

const setStatus = (name: "suspend" | "resume", status: "suspended" | "active") =>
  Command.make(name, { id }, ({ id }) =>
    Effect.flatMap(TenantAdmin, (admin) => admin.setStatus(id, status)).pipe(
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
      const admin = yield* TenantAdmin
      yield* admin.remove(id)
      yield* done(`tenant ${id} deleted`)
    })
).pipe(Command.withDescription("delete a tenant: suspend, drain, drop its database, accounts, clients and domains"))

export const tenants = Command.make("tenants").pipe(
  Command.withDescription("create, list, suspend, resume and delete tenants"),
  Command.withSubcommands([create, list, setStatus("suspend", "suspended"), setStatus("resume", "active"), remove])
)
