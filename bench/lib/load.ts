/**
 * One autocannon run against 127.0.0.1, with a bearer token per request taken
 * from a list in turn (or at random), so that the load spreads over tenants.
 */
import autocannon from "autocannon"

export interface LoadOptions {
  readonly baseUrl: string
  readonly method: "GET" | "POST"
  readonly path: string
  readonly body?: string
  readonly tokens: ReadonlyArray<string>
  /** Pick tokens at random rather than in turn. */
  readonly random?: boolean
  readonly connections: number
  readonly durationSeconds: number
}

export interface LoadResult {
  readonly requests: number
  readonly durationSeconds: number
  readonly rps: number
  readonly p50: number
  readonly p99: number
  readonly max: number
  readonly non2xx: number
  readonly errors: number
  readonly timeouts: number
  readonly statusCodes: Readonly<Record<string, number>>
}

export const runLoad = (options: LoadOptions): Promise<LoadResult> => startLoad(options).done

/** A run that can be cut short: stop() ends it early, done has what it did until then. */
export interface RunningLoad {
  readonly stop: () => void
  readonly done: Promise<LoadResult>
}

/** Starts a run (for up to durationSeconds) that the caller may stop earlier, when what it measures around is over. */
export const startLoad = (options: LoadOptions): RunningLoad => {
  if (!options.baseUrl.startsWith("http://127.0.0.1:")) throw new Error("load goes to 127.0.0.1 only")
  if (options.tokens.length === 0) throw new Error("no tokens")
  let next = 0
  const tokens = options.tokens
  const pick = options.random === true
    ? () => tokens[Math.floor(Math.random() * tokens.length)]!
    : () => tokens[next++ % tokens.length]!
  const headers: Record<string, string> = options.body !== undefined ? { "content-type": "application/json" } : {}
  let instance: autocannon.Instance | undefined
  const done = new Promise<autocannon.Result>((resolve, reject) => {
    // The callback form: only it returns an instance that can be stopped.
    instance = autocannon({
      url: options.baseUrl,
      connections: options.connections,
      duration: options.durationSeconds,
      timeout: 30,
      requests: [
        {
          method: options.method,
          path: options.path,
          headers,
          ...(options.body !== undefined ? { body: options.body } : {}),
          setupRequest: (request) => {
            request.headers = { ...request.headers, authorization: `Bearer ${pick()}` }
            return request
          }
        }
      ]
    }, (error, result) => (error ? reject(error) : resolve(result)))
  })
  return { stop: () => instance?.stop(), done: done.then(summarize) }
}

const summarize = (result: autocannon.Result): LoadResult => {
  const statusCodes: Record<string, number> = {}
  for (const [code, stats] of Object.entries(result.statusCodeStats ?? {})) statusCodes[code] = stats.count ?? 0
  const requests = result.requests.total
  return {
    requests,
    durationSeconds: result.duration,
    rps: requests / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    max: result.latency.max,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes
  }
}
