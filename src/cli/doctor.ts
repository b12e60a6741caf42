import { Command, Options } from "@effect/cli"
import { Console, Data, Duration, Effect, Logger, LogLevel, Option } from "effect"

/** Some check failed: the exit code is 1 (main.ts prints this message on stderr, after the report). */
export class DoctorFoundFailures extends Data.TaggedError("DoctorFoundFailures")<{ readonly message: string }> {}

/**
 * `tenant-engine doctor [--json] [--timeout SECONDS]`: the configuration, the
 * platform database, every registered server, the issuers and the fleet, each
 * ok / warn / fail with what to do about it (src/cli/doctorChecks.ts).
 *
 * Not on CliPlatform: building the platform's services needs the platform
 * database, and the doctor must report on it when it is down. The checks'
 * module is imported when the command runs, so --help stays fast.
 */
export const doctor = Command.make(
  "doctor",
  {
    json: Options.boolean("json").pipe(Options.withDescription("print JSON: {\"ok\": boolean, \"checks\": [...]}")),
    timeout: Options.integer("timeout").pipe(
      Options.withDescription("seconds each check may take (default 5)"),
      Options.withDefault(5),
      Options.filterMap((n) => (n >= 1 ? Option.some(n) : Option.none()), "--timeout must be at least 1")
    )
  },
  ({ json, timeout }) =>
    Effect.gen(function*() {
      const { diagnose, formatChecks } = yield* Effect.promise(() => import("./doctorChecks.js"))
      const checks = yield* Effect.scoped(diagnose({ timeout: Duration.seconds(timeout) }))
      const failed = checks.filter((check) => check.status === "fail")
      yield* Console.log(json ? JSON.stringify({ ok: failed.length === 0, checks }, null, 2) : formatChecks(checks))
      if (failed.length > 0) {
        return yield* new DoctorFoundFailures({
          message: `${failed.length === 1 ? "1 check" : `${failed.length} checks`} failed: ${failed.map((c) => c.name).join(", ")}`
        })
      }
    }).pipe(Logger.withMinimumLogLevel(LogLevel.Warning))
).pipe(Command.withDescription("check the configuration, databases, servers, issuers and fleet; exit 1 on any failure"))
