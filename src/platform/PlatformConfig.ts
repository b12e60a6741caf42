import { Context, type Redacted } from "effect"

/** Where the platform (control) database is, and how many connections it may use. */
export class PlatformConfig extends Context.Tag("tenant-engine/PlatformConfig")<PlatformConfig, {
  /** Connection URL of the platform database. */
  readonly url: Redacted.Redacted<string>
  readonly maxConnections: number
}>() {}
