/**
 * A preload for the bench's server processes (`node --import tsx --import
 * bench/lib/probe.ts <server>`), run before the server's own code and changing
 * none of it. It watches garbage collection (PerformanceObserver 'gc') and the
 * event loop's delay (monitorEventLoopDelay); with BENCH_COUNT_INSTRUCTIONS=1
 * it also counts the instructions Effect's fibers run, by giving Effect's
 * default runtime (what Effect.runPromiseExit, Effect.runFork and so
 * NodeRuntime.runMain start the server's fibers on) the OpSupervision flag
 * and a supervisor whose onEffect adds one: every fiber forked from there
 * inherits both. That slows every instruction: never in a timed run.
 *
 * On SIGUSR2 it writes a ProbeReading to BENCH_PROBE_FILE (atomically, by
 * rename) and starts the event-loop delay histogram afresh: two signals frame
 * a measured run. servers.ts's ServerProcess.readProbe() sends and reads it.
 */
import { Effect, FiberRef, Runtime, RuntimeFlags, Supervisor } from "effect"
import { renameSync, writeFileSync } from "node:fs"
import { monitorEventLoopDelay, performance, PerformanceObserver } from "node:perf_hooks"

export interface ProbeReading {
  /** Numbered from 1 by signal, so that the reader knows a fresh one. */
  readonly seq: number
  /** performance.now() in the server, ms. */
  readonly atMs: number
  /** Garbage collection pauses so far: their total in ms, and how many. */
  readonly gcMs: number
  readonly gcCount: number
  /** Event-loop delay since the previous reading (or the start), ms. */
  readonly loopDelayP99Ms: number
  readonly loopDelayMaxMs: number
  /** Effect instructions run so far by every fiber, when counted. */
  readonly instructions: number | null
  /** process.memoryUsage() now, MiB: the JS heap in use and reserved, and memory outside it (Buffers and native objects). */
  readonly heapUsedMiB: number
  readonly heapTotalMiB: number
  readonly externalMiB: number
}

const file = process.env["BENCH_PROBE_FILE"]
if (file !== undefined && file !== "") {
  let gcMs = 0
  let gcCount = 0
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      gcMs += entry.duration
      gcCount++
    }
  }).observe({ entryTypes: ["gc"] })
  // A 1 ms timer's intervals between wake-ups: at least 1 ms, else how long the loop was busy before it could run.
  const loopDelay = monitorEventLoopDelay({ resolution: 1 })
  loopDelay.enable()

  class Counter extends Supervisor.AbstractSupervisor<number> {
    count = 0
    get value() {
      return Effect.sync(() => this.count)
    }
    override onEffect() {
      this.count++
    }
  }
  let counter: Counter | undefined
  if (process.env["BENCH_COUNT_INSTRUCTIONS"] === "1") {
    counter = new Counter()
    const counting = Runtime.defaultRuntime.pipe(
      Runtime.enableRuntimeFlag(RuntimeFlags.OpSupervision),
      Runtime.setFiberRef(FiberRef.currentSupervisor, counter)
    )
    // The default runtime is one shared object: the server's own runPromiseExit/runFork read these at each call.
    Object.assign(Runtime.defaultRuntime, { runtimeFlags: counting.runtimeFlags, fiberRefs: counting.fiberRefs })
  }

  let seq = 0
  process.on("SIGUSR2", () => {
    const reading: ProbeReading = {
      seq: ++seq,
      atMs: performance.now(),
      gcMs,
      gcCount,
      loopDelayP99Ms: loopDelay.count === 0 ? 0 : loopDelay.percentile(99) / 1e6,
      loopDelayMaxMs: loopDelay.count === 0 ? 0 : loopDelay.max / 1e6,
      instructions: counter?.count ?? null,
      ...(() => {
        const usage = process.memoryUsage()
        return { heapUsedMiB: usage.heapUsed / 2 ** 20, heapTotalMiB: usage.heapTotal / 2 ** 20, externalMiB: usage.external / 2 ** 20 }
      })()
    }
    loopDelay.reset()
    writeFileSync(`${file}.tmp`, JSON.stringify(reading))
    renameSync(`${file}.tmp`, file)
  })
}
