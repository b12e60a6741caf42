import { Args, Command, Options } from "@effect/cli"
import { Effect, Option, Schema } from "effect"
import { ServerView } from "../servers/Server.js"
import { tenantAdmin } from "./CliPlatform.js"
import { done, printRows } from "./output.js"

const name = Args.text({ name: "NAME" }).pipe(Args.withDescription("the server's name"))
const json = Options.boolean("json").pipe(Options.withDescription("print JSON"))

const add = Command.make(
  "add",
  {
    name,
    url: Args.text({ name: "URL" }).pipe(
      Args.withDescription("an administrative postgres:// URL (a role that may create databases and roles)")
    ),
    weight: Options.integer("weight").pipe(
      Options.withDescription("its share of new tenants against the other active servers' (default 1)"),
      Options.optional
    ),
    maxConnections: Options.integer("max-connections").pipe(
      Options.withDescription("the connections all engine processes together may open on it (default 80)"),
      Options.optional
    )
  },
  ({ maxConnections, name, url, weight }) =>
    Effect.flatMap(tenantAdmin, (admin) =>
      admin.addServer(name, url, {
        weight: Option.getOrUndefined(weight),
        maxConnections: Option.getOrUndefined(maxConnections)
      })).pipe(Effect.zipRight(done(`server ${name} added`)))
).pipe(Command.withDescription("register a PostgreSQL server for tenant data (its URL is never shown again)"))

const list = Command.make("list", { json }, ({ json }) =>
  Effect.flatMap(tenantAdmin, (admin) => admin.listServers).pipe(
    Effect.flatMap((servers) =>
      printRows(servers.map((server) => Schema.encodeSync(ServerView)(server)), {
        json,
        columns: ["name", "status", "weight", "maxConnections", "tenants"]
      })
    )
  )).pipe(Command.withDescription("list the registered servers and how many tenants each holds"))

const drain = Command.make("drain", { name }, ({ name }) =>
  Effect.flatMap(tenantAdmin, (admin) => admin.drainServer(name)).pipe(
    Effect.zipRight(done(`server ${name} is draining: it takes no new tenants; move its tenants off with tenants move`))
  )).pipe(Command.withDescription("stop placing new tenants on a server"))

const remove = Command.make("remove", { name }, ({ name }) =>
  Effect.flatMap(tenantAdmin, (admin) => admin.removeServer(name)).pipe(
    Effect.zipRight(done(`server ${name} removed`))
  )).pipe(Command.withDescription("forget a server that holds no tenant"))

export const servers = Command.make("servers").pipe(
  Command.withDescription("register, list, drain and remove the PostgreSQL servers tenants are placed on"),
  Command.withSubcommands([add, list, drain, remove])
)
