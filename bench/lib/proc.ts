/**
 * What a process costs, read from /proc (Linux): CPU time, resident memory,
 * and the machine's CPU as a whole. Nothing here changes the process.
 */
import { execFileSync } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"

/** Clock ticks per second of /proc/<pid>/stat times (100 nearly everywhere; asked once). */
const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100
  } catch {
    return 100
  }
})()

/** User + system CPU seconds a process has used so far. */
export const cpuSeconds = (pid: number): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
}

/** User + system CPU seconds of this process's children that have ended and been waited for. */
export const endedChildrenCpuSeconds = (): number => {
  const stat = readFileSync("/proc/self/stat", "utf8")
  // cutime is field 16, cstime 17.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(fields[13]) + Number(fields[14])) / CLOCK_TICKS
}

export interface MemoryReading {
  /** Resident set size now, MiB. */
  readonly rssMiB: number
  /** The highest RSS since the process started (VmHWM), MiB. */
  readonly hwmMiB: number
}

export const memory = (pid: number): MemoryReading => {
  const status = readFileSync(`/proc/${pid}/status`, "utf8")
  const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN)
  return { rssMiB: kib("VmRSS") / 1024, hwmMiB: kib("VmHWM") / 1024 }
}

export interface MachineCpu {
  readonly busy: number
  readonly total: number
}

/** Jiffies of the whole machine, from the first line of /proc/stat. */
export const machineCpu = (): MachineCpu => {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!
  const [, ...values] = line.trim().split(/\s+/)
  const n = values.map(Number)
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const idle = (n[3] ?? 0) + (n[4] ?? 0)
  const total = n.slice(0, 8).reduce((a, b) => a + b, 0)
  return { busy: total - idle, total }
}

/** Share of the machine's CPU (0..1 of all cores) busy between two readings. */
export const machineBusy = (before: MachineCpu, after: MachineCpu): number =>
  after.total === before.total ? 0 : (after.busy - before.busy) / (after.total - before.total)

/** Samples a process's RSS on an interval and keeps the highest and every reading. */
export class RssSampler {
  private timer: NodeJS.Timeout | undefined
  peakMiB = 0
  readonly samples: Array<{ readonly atMs: number; readonly rssMiB: number }> = []
  private started = 0

  constructor(private readonly pid: number, private readonly intervalMs = 200) {}

  start(): this {
    this.started = Date.now()
    this.sample()
    this.timer = setInterval(() => this.sample(), this.intervalMs)
    return this
  }

  private sample() {
    try {
      const { rssMiB } = memory(this.pid)
      this.samples.push({ atMs: Date.now() - this.started, rssMiB })
      if (rssMiB > this.peakMiB) this.peakMiB = rssMiB
    } catch {
      // The process has gone: the readings so far stand.
    }
  }

  stop(): this {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.sample()
    return this
  }

  /** The reading closest to `atMs` after start. */
  at(atMs: number): number | undefined {
    let best: { atMs: number; rssMiB: number } | undefined
    for (const s of this.samples) if (best === undefined || Math.abs(s.atMs - atMs) < Math.abs(best.atMs - atMs)) best = s
    return best?.rssMiB
  }
}

/** CPU seconds of each process whose command name is `comm` (e.g. every PostgreSQL backend), now, by pid. */
export const cpuByPidOfCommand = (comm: string): ReadonlyMap<number, number> => {
  const byPid = new Map<number, number>()
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8")
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"))
      if (name !== comm) continue
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      byPid.set(Number(entry), (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS)
    } catch {
      // gone meanwhile
    }
  }
  return byPid
}

/**
 * CPU seconds `comm` processes took since `before` (a cpuByPidOfCommand
 * reading): what each process still running used since then, all of it for
 * those started since. A process that ended meanwhile takes its time with it,
 * so this is a lower bound; it is never below zero.
 */
export const cpuOfCommandSince = (comm: string, before: ReadonlyMap<number, number>): number => {
  let total = 0
  for (const [pid, seconds] of cpuByPidOfCommand(comm)) total += Math.max(0, seconds - (before.get(pid) ?? 0))
  return total
}

/** Machine CPU busy time in seconds (all cores) between two readings. */
export const machineBusySeconds = (before: MachineCpu, after: MachineCpu): number => (after.busy - before.busy) / CLOCK_TICKS
