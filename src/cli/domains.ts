import { Args, Command, Options } from "@effect/cli"
import { Effect } from "effect"
import { tenantAdmin } from "./CliPlatform.js"
import { printRecord, printRows } from "./output.js"

const tenant = Args.text({ name: "TENANT" }).pipe(Args.withDescription("the tenant id"))
const json = Options.boolean("json").pipe(Options.withDescription("print JSON"))

const add = Command.make(
  "add",
  { tenant, domain: Args.text({ name: "DOMAIN" }).pipe(Args.withDescription("an email domain, e.g. acme.com")), json },
  ({ domain, json, tenant }) =>
    Effect.flatMap(tenantAdmin, (admin) => admin.addDomain(tenant, domain)).pipe(
      Effect.flatMap((added) => printRecord({ ...added }, json))
    )
).pipe(Command.withDescription("users whose verified email is in DOMAIN join TENANT on first login"))

const list = Command.make("list", { tenant, json }, ({ json, tenant }) =>
  Effect.flatMap(tenantAdmin, (admin) => admin.listDomains(tenant)).pipe(
    Effect.flatMap((domains) => printRows(domains.map((d) => ({ ...d })), { json, columns: ["domain", "createdAt"] }))
  )).pipe(Command.withDescription("list a tenant's email domains"))

export const domains = Command.make("domains").pipe(
  Command.withDescription("map email domains to tenants"),
  Command.withSubcommands([add, list])
)
