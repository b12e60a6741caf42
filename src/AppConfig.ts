import { Config, ConfigError, Data, Duration, Effect, Either, LogLevel, Option, Redacted } from "effect"
import { makeAuthConfig, PUBLIC_KEY_ALGORITHMS } from "./auth/AuthConfig.js"
import { withDatabase } from "./db/DatabaseUrl.js"
import type { TenantStrategy } from "./tenancy/Tenant.js"

/**
 * Every setting, read once from the environment at start-up. A bad value stops
 * start-up with a message naming the variable (see `describeConfigError`).
 */
export interface Settings {
  /** Unset: an embedded PostgreSQL under `dataDir`. */
  readonly databaseUrl: Option.Option<Redacted.Redacted<string>>
  /** Server for tenant databases; `{database}` may stand for the database name. */
  readonly tenantDatabaseUrl: Option.Option<Redacted.Redacted<string>>
  readonly port: number
  readonly host: string
  /** Unset: the built-in development issuer. */
  readonly authIssuers: ReadonlyArray<string>
  readonly authAudience: string
  readonly authJwksUrl: Option.Option<string>
  readonly authAlgorithms: ReadonlyArray<string>
  readonly authClockTolerance: Duration.Duration
  readonly tenantClaim: string
  readonly logLevel: LogLevel.LogLevel
  readonly logFormat: "pretty" | "json"
  readonly platformPoolMax: number
  readonly tenantPoolMax: number
  readonly tenantConnectionBudget: number
  /** Unset: half the budget. */
  readonly tenantSharedPoolMax: Option.Option<number>
  readonly tenantContextMax: number
  readonly tenantDefaultStrategy: TenantStrategy
  readonly tenantIdleTimeout: Duration.Duration
  readonly tenantAcquireTimeout: Duration.Duration
  readonly tenantDatabasePrefix: string
  /** Unset: the secret kept in `dataDir` (Environment), made on first start. */
  readonly tenantRoleSecret: Option.Option<Redacted.Redacted<string>>
  readonly dataDir: string
  /** GET /metrics is served (METRICS=off removes it). */
  readonly metrics: boolean
  /** The request histogram carries a `tenant` label: one series per tenant, off by default. */
  readonly metricsTenantLabel: boolean
  /** Where spans go (OTLP/HTTP); unset or OTEL_SDK_DISABLED=true: no tracer, no span at all. */
  readonly otlpTracesEndpoint: Option.Option<string>
}

/** The least length of TENANT_ROLE_SECRET: 32 characters, say 24 random bytes in base64. */
export const MIN_ROLE_SECRET_LENGTH = 32

/** Log levels by name, as people write them (any case; `warn` or `warning`). */
const LOG_LEVELS: Readonly<Record<string, LogLevel.LogLevel>> = {
  trace: LogLevel.Trace,
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warn: LogLevel.Warning,
  warning: LogLevel.Warning,
  error: LogLevel.Error,
  fatal: LogLevel.Fatal,
  none: LogLevel.None
}

/** Authentication's defaults are AuthConfig's (one place for them). */
const authDefaults = makeAuthConfig({ issuers: [] })

const list = (name: string, fallback: string) =>
  Config.map(Config.withDefault(Config.string(name), fallback), (value) =>
    value.split(",").map((item) => item.trim()).filter((item) => item !== ""))

const postgresUrl = (name: string) =>
  Config.option(Config.redacted(name)).pipe(
    Config.validate({
      message: `${name}: must be a postgres:// or postgresql:// URL`,
      validation: (value) =>
        Option.match(value, {
          onNone: () => true,
          onSome: (url) => /^postgres(ql)?:\/\/[^\s]+$/.test(Redacted.value(url))
        })
    })
  )

const positive = (name: string) =>
  Config.integer(name).pipe(Config.validate({ message: `${name}: must be a positive integer`, validation: (n) => n > 0 }))

const positiveInt = (name: string, fallback: number) => Config.withDefault(positive(name), fallback)

const otlpUrl = (name: string) =>
  Config.option(Config.url(name).pipe(
    Config.map((url) => url.toString()),
    Config.mapOrFail((url) =>
      /^https?:/.test(url)
        ? Either.right(url)
        : Either.left(ConfigError.InvalidData([], `${name}: must be an http:// or https:// URL`))
    )
  ))

/**
 * Where spans are exported, from the standard OpenTelemetry variables:
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT; none
 * when OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none. The exporter and
 * the SDK read the other OTEL_* variables themselves (headers, timeout,
 * compression, batching, sampler, service name and resource attributes).
 */
const otlpTracesEndpoint = Config.all({
  traces: otlpUrl("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
  any: otlpUrl("OTEL_EXPORTER_OTLP_ENDPOINT"),
  disabled: Config.withDefault(Config.boolean("OTEL_SDK_DISABLED"), false),
  exporter: Config.withDefault(Config.string("OTEL_TRACES_EXPORTER"), "otlp")
}).pipe(
  Config.map(({ any, disabled, exporter, traces }) =>
    disabled || exporter.trim().toLowerCase() === "none"
      ? Option.none()
      // As the exporter resolves them: the traces URL as it is, the base URL with /v1/traces.
      : Option.orElse(traces, () => Option.map(any, (base) => base.replace(/\/*$/, "") + "/v1/traces"))
  )
)

export const settingsConfig: Config.Config<Settings> = Config.all({
  databaseUrl: postgresUrl("DATABASE_URL"),
  tenantDatabaseUrl: postgresUrl("TENANT_DATABASE_URL"),
  port: Config.withDefault(Config.port("PORT"), 3000),
  host: Config.withDefault(Config.nonEmptyString("HOST"), "127.0.0.1"),
  authIssuers: list("AUTH_ISSUER", ""),
  authAudience: Config.withDefault(Config.nonEmptyString("AUTH_AUDIENCE"), authDefaults.audience),
  authJwksUrl: Config.option(Config.url("AUTH_JWKS_URL").pipe(Config.map((url) => url.toString()))),
  authAlgorithms: list("AUTH_ALGORITHMS", authDefaults.algorithms.join(",")).pipe(
    Config.validate({
      message: `AUTH_ALGORITHMS: must be a comma-separated list of ${PUBLIC_KEY_ALGORITHMS.join(", ")}`,
      validation: (algs) => algs.length > 0 && algs.every((alg) => PUBLIC_KEY_ALGORITHMS.includes(alg))
    })
  ),
  authClockTolerance: Config.withDefault(Config.duration("AUTH_CLOCK_TOLERANCE"), authDefaults.clockTolerance),
  tenantClaim: Config.withDefault(Config.nonEmptyString("TENANT_CLAIM"), authDefaults.tenantClaim),
  logLevel: Config.string("LOG_LEVEL").pipe(
    Config.withDefault("info"),
    Config.mapOrFail((value) => {
      const level = LOG_LEVELS[value.trim().toLowerCase()]
      return level !== undefined
        ? Either.right(level)
        : Either.left(ConfigError.InvalidData([], `LOG_LEVEL: must be one of ${Object.keys(LOG_LEVELS).join(", ")}`))
    })
  ),
  logFormat: Config.withDefault(Config.literal("pretty", "json")("LOG_FORMAT"), "pretty" as const),
  platformPoolMax: positiveInt("PLATFORM_POOL_MAX", 10),
  tenantPoolMax: positiveInt("TENANT_POOL_MAX", 4),
  tenantConnectionBudget: positiveInt("TENANT_CONNECTION_BUDGET", 80),
  tenantSharedPoolMax: Config.option(positive("TENANT_SHARED_POOL_MAX")),
  tenantContextMax: positiveInt("TENANT_CONTEXT_MAX", 10_000),
  tenantDefaultStrategy: Config.withDefault(
    Config.literal("database", "schema")("TENANT_DEFAULT_STRATEGY"),
    "database" as const
  ),
  tenantIdleTimeout: Config.withDefault(Config.duration("TENANT_IDLE_TIMEOUT"), Duration.minutes(5)),
  tenantAcquireTimeout: Config.withDefault(Config.duration("TENANT_ACQUIRE_TIMEOUT"), Duration.seconds(5)),
  tenantDatabasePrefix: Config.withDefault(Config.string("TENANT_DATABASE_PREFIX"), "tenant_").pipe(
    Config.validate({
      message: "TENANT_DATABASE_PREFIX: must be lowercase letters, digits and '_', starting with a letter",
      validation: (prefix) => /^[a-z][a-z0-9_]{0,20}$/.test(prefix)
    })
  ),
  tenantRoleSecret: Config.option(Config.redacted("TENANT_ROLE_SECRET")).pipe(
    Config.validate({
      message: `TENANT_ROLE_SECRET: must be at least ${MIN_ROLE_SECRET_LENGTH} characters (e.g. openssl rand -base64 32)`,
      validation: (secret) =>
        Option.match(secret, {
          onNone: () => true,
          onSome: (value) => Redacted.value(value).trim().length >= MIN_ROLE_SECRET_LENGTH
        })
    }),
    // Trimmed: a secret pasted with a line break is the same secret.
    Config.map(Option.map((value) => Redacted.make(Redacted.value(value).trim())))
  ),
  dataDir: Config.withDefault(Config.string("DATA_DIR"), ".data"),
  metrics: Config.withDefault(Config.boolean("METRICS"), true),
  metricsTenantLabel: Config.withDefault(Config.boolean("METRICS_TENANT_LABEL"), false),
  otlpTracesEndpoint: otlpTracesEndpoint
}).pipe(
  Config.validate({
    message: "TENANT_CONNECTION_BUDGET: must be at least TENANT_POOL_MAX",
    validation: (s) => s.tenantConnectionBudget >= s.tenantPoolMax
  }),
  Config.validate({
    message: "TENANT_SHARED_POOL_MAX: must be at most TENANT_CONNECTION_BUDGET",
    validation: (s) => Option.getOrElse(s.tenantSharedPoolMax, () => 1) <= s.tenantConnectionBudget
  })
)

/** The shared pool's connections: TENANT_SHARED_POOL_MAX, or half the budget. */
export const sharedPoolConnections = (settings: Settings) =>
  Option.getOrElse(settings.tenantSharedPoolMax, () => Math.max(1, Math.floor(settings.tenantConnectionBudget / 2)))

/** The administrative URL of the tenant server, from TENANT_DATABASE_URL or the platform URL. */
export const tenantAdminUrl = (settings: Settings, platformUrl: Redacted.Redacted<string>) =>
  Option.match(settings.tenantDatabaseUrl, {
    onNone: () => platformUrl,
    onSome: (url) => {
      const text = Redacted.value(url)
      return text.includes("{database}")
        ? withDatabase(Redacted.make(text.replace("{database}", "postgres")), "postgres")
        : url
    }
  })

/** One line per problem, each naming its variable. */
export const describeConfigError = (error: ConfigError.ConfigError): string =>
  ConfigError.reduceWithContext(error, undefined, {
    andCase: (_, left: string, right: string) => `${left}\n${right}`,
    orCase: (_, left: string, right: string) => `${left}\n${right}`,
    // Validation rules name their variable in the message; a path names it otherwise.
    invalidDataCase: (_, path, message) => (path.length > 0 ? `${path.join(".")}: ${message}` : message),
    missingDataCase: (_, path, message) => `${path.join(".")}: ${message}`,
    sourceUnavailableCase: (_, path, message) => `${path.join(".")}: ${message}`,
    unsupportedCase: (_, path, message) => `${path.join(".")}: ${message}`
  })

/** The environment's settings are not valid: one problem per variable. */
export class InvalidConfiguration extends Data.TaggedError("InvalidConfiguration")<{
  readonly problems: ReadonlyArray<string>
  readonly message: string
}> {}

export const readSettings = Effect.mapError(settingsConfig, (error) => {
  const problems = describeConfigError(error).split("\n").filter((line) => line !== "")
  return new InvalidConfiguration({ problems, message: `invalid configuration: ${problems.join("; ")}` })
})
