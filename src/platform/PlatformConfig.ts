import { Context, type Duration, type Redacted } from "effect"

/** Where the platform (control) database is, and how many connections it may use. */
export class PlatformConfig extends Context.Tag("tenant-engine/PlatformConfig")<PlatformConfig, {
  /** Connection URL of the platform database. */
  readonly url: Redacted.Redacted<string>
  readonly maxConnections: number
  /**
   * How often the notification connection proves it still delivers (default
   * 10 seconds); caches are off while it does not (PlatformNotifications).
   */
  readonly notificationHeartbeat?: Duration.Duration | undefined
}>() {}
