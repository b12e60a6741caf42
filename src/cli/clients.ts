import { Args, Command, Options } from "@effect/cli"
import { Effect } from "effect"
import { tenantAdmin } from "./CliPlatform.js"
import { done, printRecord, printRows } from "./output.js"

const tenant = Args.text({ name: "TENANT" }).pipe(Args.withDescription("the tenant id"))
const clientId = Args.text({ name: "CLIENT_ID" }).pipe(Args.withDescription("the client id its tokens carry"))
const json = Options.boolean("json").pipe(Options.withDescription("print JSON"))

const add = Command.make(
  "add",
  { tenant, clientId, name: Options.text("name").pipe(Options.withDescription("display name")), json },
  ({ clientId, json, name, tenant }) =>
    Effect.flatMap(tenantAdmin, (admin) => admin.registerClient(tenant, clientId, name)).pipe(
      Effect.flatMap((client) => printRecord({ ...client }, json))
    )
).pipe(Command.withDescription("register a service client (machine tokens) of a tenant"))

const list = Command.make("list", { tenant, json }, ({ json, tenant }) =>
  Effect.flatMap(tenantAdmin, (admin) => admin.listClients(tenant)).pipe(
    Effect.flatMap((clients) =>
      printRows(clients.map((c) => ({ ...c })), {
        json,
        columns: ["clientId", "displayName", "accountId", "disabled", "createdAt"]
      })
    )
  )).pipe(Command.withDescription("list a tenant's service clients"))

const disable = Command.make("disable", { tenant, clientId }, ({ clientId, tenant }) =>
  Effect.flatMap(tenantAdmin, (admin) => admin.disableClient(tenant, clientId)).pipe(
    Effect.zipRight(done(`client ${clientId} of tenant ${tenant} is disabled`))
  )).pipe(Command.withDescription("disable a service client: its next request is refused"))

export const clients = Command.make("clients").pipe(
  Command.withDescription("register, list and disable service clients"),
  Command.withSubcommands([add, list, disable])
)
