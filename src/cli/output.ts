import { Console, Effect } from "effect"

/** Prints rows as JSON (for scripts) or as aligned columns (for people). */
export const printRows = <A extends Record<string, unknown>>(
  rows: ReadonlyArray<A>,
  options: { readonly json: boolean; readonly columns: ReadonlyArray<keyof A & string> }
) => {
  if (options.json) return Console.log(JSON.stringify(rows, null, 2))
  if (rows.length === 0) return Console.log("(none)")
  const cell = (value: unknown) => value instanceof Date ? value.toISOString() : String(value ?? "")
  const widths = options.columns.map((column) =>
    Math.max(column.length, ...rows.map((row) => cell(row[column]).length))
  )
  const line = (values: ReadonlyArray<string>) => values.map((v, i) => v.padEnd(widths[i]!)).join("  ").trimEnd()
  return Console.log(
    [line(options.columns), ...rows.map((row) => line(options.columns.map((column) => cell(row[column]))))].join("\n")
  )
}

/** Prints one record as JSON or as `key: value` lines. */
export const printRecord = (record: Record<string, unknown>, json: boolean) =>
  json
    ? Console.log(JSON.stringify(record, null, 2))
    : Console.log(
      Object.entries(record)
        .map(([key, value]) => `${key}: ${value instanceof Date ? value.toISOString() : String(value)}`)
        .join("\n")
    )

/** The message of a failure: typed errors carry one; anything else is shown as it is. */
export const messageOf = (error: unknown): string => {
  if (typeof error === "object" && error !== null && "message" in error && typeof error.message === "string") {
    return error.message
  }
  return String(error)
}

/**
 * A defect on one line: its message and those of its causes (an SqlError's
 * own message says only "Failed to execute statement"; PostgreSQL's, in its
 * cause, says what went wrong).
 */
export const describeDefect = (defect: unknown): string => {
  const messages: Array<string> = []
  let error: unknown = defect
  for (let depth = 0; depth < 8 && error !== undefined && error !== null; depth++) {
    const line = messageOf(error).split("\n").map((l) => l.trim()).find((l) => l !== "")
    if (line !== undefined && !messages.includes(line)) messages.push(line)
    error = typeof error === "object" && "cause" in error ? error.cause : undefined
  }
  return messages.length === 0 ? "unexpected failure" : messages.join(": ")
}

/** Configuration problems come one per line (each naming its variable): the CLI says them on one. */
export const invalidConfiguration = (problems: string) =>
  new Error(`invalid configuration: ${problems.split("\n").filter((line) => line !== "").join("; ")}`)

export const done = (message: string) => Effect.asVoid(Console.log(message))
