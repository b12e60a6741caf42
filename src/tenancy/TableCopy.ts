import { Data, Effect, Redacted } from "effect"
import Pg from "pg"
import { from as copyFrom, to as copyTo } from "pg-copy-streams"
import { pipeline } from "node:stream/promises"
import { MIGRATIONS_TABLE } from "../db/Migrations.js"
import { messageOf } from "../ErrorText.js"

/** One side of a copy: a database reached as its administrator, and the schema holding the tenant's tables. */
export interface CopyEnd {
  readonly url: Redacted.Redacted<string>
  readonly schema: string
}

export interface TableCopied {
  readonly table: string
  readonly rows: number
}

export class CopyFailed extends Data.TaggedError("CopyFailed")<{ readonly message: string }> {}


const ident = Pg.escapeIdentifier

/**
 * Copies every table of a tenant from one place to another with COPY, one
 * table after the other, streamed from server to server (binary format; no
 * file in between). The source is read in one repeatable-read snapshot after
 * locking its tables in SHARE mode: writes still in flight finish first and
 * later ones wait, so the copy holds every committed row. The target is
 * written in one transaction, committed only when each table's row count
 * matches the source's, so a failed copy leaves nothing half-written; its
 * sequences are set to the source's.
 */
export const copyTables = (from: CopyEnd, to: CopyEnd, onTable: (copied: TableCopied) => void) =>
  Effect.tryPromise({
    try: async (signal) => {
      const source = new Pg.Client({ connectionString: Redacted.value(from.url), application_name: "tenant-engine/move" })
      const target = new Pg.Client({ connectionString: Redacted.value(to.url), application_name: "tenant-engine/move" })
      // Interrupted: the connections end, and both transactions roll back.
      const abort = () => {
        source.end().catch(() => undefined)
        target.end().catch(() => undefined)
      }
      signal.addEventListener("abort", abort)
      try {
        await source.connect()
        await target.connect()
        await source.query("BEGIN ISOLATION LEVEL REPEATABLE READ")
        // Not the migrator's own table: the target has its rows already, written by its migrations.
        const { rows: tables } = await source.query<{ name: string }>(
          `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname <> $2 ORDER BY c.relname`,
          [from.schema, MIGRATIONS_TABLE]
        )
        const qualified = (end: CopyEnd, table: string) => `${ident(end.schema)}.${ident(table)}`
        if (tables.length > 0) {
          await source.query(`LOCK TABLE ${tables.map((t) => qualified(from, t.name)).join(", ")} IN SHARE MODE`)
        }
        await target.query("BEGIN")
        const copied: Array<TableCopied> = []
        for (const { name } of tables) {
          const { rows: columns } = await source.query<{ name: string }>(
            `SELECT attname AS name FROM pg_attribute
             WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
             ORDER BY attnum`,
            [qualified(from, name)]
          )
          const list = columns.map((c) => ident(c.name)).join(", ")
          const reader = source.query(copyTo(`COPY ${qualified(from, name)} (${list}) TO STDOUT (FORMAT binary)`))
          const writer = target.query(copyFrom(`COPY ${qualified(to, name)} (${list}) FROM STDIN (FORMAT binary)`))
          await pipeline(reader, writer)
          const counts = await Promise.all([source, target].map((client, i) =>
            client.query<{ n: string }>(`SELECT count(*) AS n FROM ${qualified(i === 0 ? from : to, name)}`)
          ))
          const [have, wrote] = counts.map((result) => Number(result.rows[0]!.n))
          if (have !== wrote) throw new Error(`table ${name}: ${have} rows at the source, ${wrote} copied`)
          copied.push({ table: name, rows: wrote! })
          onTable({ table: name, rows: wrote! })
        }
        const { rows: sequences } = await source.query<{ name: string; last_value: string | null }>(
          "SELECT sequencename AS name, last_value::text FROM pg_sequences WHERE schemaname = $1",
          [from.schema]
        )
        for (const sequence of sequences) {
          if (sequence.last_value === null) continue
          await target.query("SELECT setval($1::regclass, $2::bigint)", [qualified(to, sequence.name), sequence.last_value])
        }
        await target.query("COMMIT")
        await source.query("COMMIT")
        return copied
      } finally {
        signal.removeEventListener("abort", abort)
        await Promise.all([source.end().catch(() => undefined), target.end().catch(() => undefined)])
      }
    },
    catch: (cause) => new CopyFailed({ message: messageOf(cause) })
  })
