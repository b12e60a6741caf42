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

export const done = (message: string) => Effect.asVoid(Console.log(message))
