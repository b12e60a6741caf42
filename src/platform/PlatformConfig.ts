import { Context, type Duration, type Redacted } from "effect"

/** Where the platform (control) database is, and how many connections it may use. */
export class PlatformConfig extends Context.Tag("tenant-engine/PlatformConfig")<PlatformConfig, {
  /** Connection URL of the platform database. */
  readonly url: Redacted.Redacted<string>
  readonly maxConnections: number
  /**
   * How often the notification connection proves it still delivers (default
   * 250 ms). It bounds how soon a cache notices it may have missed a change:
   * keep it well under the account cache's staleness bound (1 second by
   * default, AuthConfig.accountCacheStaleness), or that cache answers from
   * memory less often (PlatformNotifications).
   */
  readonly notificationHeartbeat?: Duration.Duration | undefined
}>() {}
