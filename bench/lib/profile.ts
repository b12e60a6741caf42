/**
 * A V8 .cpuprofile (node --cpu-prof) summed up: self and total time per
 * function and self time per package, optionally only for samples inside a
 * time window (V8 stamps samples with the monotonic clock that
 * process.hrtime reads, in microseconds, so another process can name the window).
 */
import { readFileSync } from "node:fs"
import { SourceMapper } from "./sourcemap.js"

interface CallFrame {
  readonly functionName: string
  readonly url: string
  readonly lineNumber: number
  readonly columnNumber: number
}

interface ProfileNode {
  readonly id: number
  readonly callFrame: CallFrame
  readonly children?: ReadonlyArray<number>
}

interface CpuProfile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly startTime: number
  readonly endTime: number
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

export interface Row {
  readonly name: string
  readonly where: string
  readonly ms: number
  readonly share: number
}

export interface ProfileSummary {
  readonly sampledMs: number
  readonly samples: number
  readonly windowed: boolean
  readonly selfByFunction: ReadonlyArray<Row>
  readonly selfByPackage: ReadonlyArray<Row>
  readonly totalByProjectFunction: ReadonlyArray<Row>
}

const shortUrl = (url: string, root: string) => {
  let u = url.replace(/^file:\/\//, "")
  if (u.startsWith(root + "/")) u = u.slice(root.length + 1)
  return u
}

/** The package (or project folder, or runtime) a frame belongs to. */
const packageOf = (frame: CallFrame, root: string): string => {
  if (frame.url === "") return frame.functionName.startsWith("(") ? frame.functionName : "(native/V8 builtins)"
  if (frame.url.startsWith("node:")) return "node: core"
  const u = shortUrl(frame.url, root)
  const nm = u.lastIndexOf("node_modules/")
  if (nm !== -1) {
    const parts = u.slice(nm + "node_modules/".length).split("/")
    return parts[0]!.startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0]!
  }
  if (u.startsWith("src/") || u.startsWith("bench/") || u.startsWith("migrations/")) return u.split("/").slice(0, 2).join("/")
  return u
}

export const summarizeProfile = (
  file: string,
  options: { readonly root: string; readonly fromUs?: number; readonly toUs?: number; readonly top?: number }
): ProfileSummary => {
  const profile: CpuProfile = JSON.parse(readFileSync(file, "utf8"))
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  const top = options.top ?? 30

  // Sample i lasts until sample i + 1.
  const times: Array<number> = []
  let t = profile.startTime
  for (const delta of profile.timeDeltas) {
    t += delta
    times.push(t)
  }
  const inWindow = (i: number) =>
    (options.fromUs === undefined || times[i]! >= options.fromUs) && (options.toUs === undefined || times[i]! <= options.toUs)
  let windowed = options.fromUs !== undefined || options.toUs !== undefined
  let picked = profile.samples.map((_, i) => i).filter(inWindow)
  if (picked.length === 0) {
    // The window missed the profile (clocks not comparable): use all of it, and say so.
    windowed = false
    picked = profile.samples.map((_, i) => i)
  }

  const keyOf = (frame: CallFrame) =>
    `${frame.functionName || "(anonymous)"}\u0000${frame.url}\u0000${frame.lineNumber}:${frame.columnNumber}`
  const self = new Map<string, { frame: CallFrame; us: number }>()
  const selfPackage = new Map<string, number>()
  const total = new Map<string, { frame: CallFrame; us: number }>()
  let sampledUs = 0
  for (const i of picked) {
    const duration = i + 1 < times.length ? times[i + 1]! - times[i]! : 0
    sampledUs += duration
    const node = byId.get(profile.samples[i]!)
    if (node === undefined) continue
    const key = keyOf(node.callFrame)
    const s = self.get(key) ?? { frame: node.callFrame, us: 0 }
    s.us += duration
    self.set(key, s)
    const pkg = packageOf(node.callFrame, options.root)
    selfPackage.set(pkg, (selfPackage.get(pkg) ?? 0) + duration)
    // Total time of the project's own functions: each once per sample, however deep the recursion.
    const seen = new Set<string>()
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const frame = byId.get(id)!.callFrame
      if (!shortUrl(frame.url, options.root).startsWith("src/")) continue
      const k = keyOf(frame)
      if (seen.has(k)) continue
      seen.add(k)
      const entry = total.get(k) ?? { frame, us: 0 }
      entry.us += duration
      total.set(k, entry)
    }
  }
  const mapper = new SourceMapper()
  const where = (frame: CallFrame) => {
    if (frame.url === "") return ""
    const path = frame.url.replace(/^file:\/\//, "")
    const original = mapper.original(path, frame.lineNumber, frame.columnNumber)
    return original === undefined
      ? `${shortUrl(frame.url, options.root)}:${frame.lineNumber + 1}`
      : `${shortUrl(frame.url, options.root)}:${original.line} \`${original.text.slice(0, 70).replaceAll("|", "\\|").replaceAll("`", "'")}\``
  }
  const rows = (entries: Iterable<{ frame: CallFrame; us: number }>) =>
    [...entries].sort((a, b) => b.us - a.us).slice(0, top).map(({ frame, us }) => ({
      name: frame.functionName || "(anonymous)",
      where: where(frame),
      ms: us / 1000,
      share: sampledUs === 0 ? 0 : us / sampledUs
    }))
  return {
    sampledMs: sampledUs / 1000,
    samples: picked.length,
    windowed,
    selfByFunction: rows(self.values()),
    selfByPackage: [...selfPackage.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, us]) => ({
      name,
      where: "",
      ms: us / 1000,
      share: sampledUs === 0 ? 0 : us / sampledUs
    })),
    totalByProjectFunction: rows(total.values())
  }
}

export const profileMarkdown = (summary: ProfileSummary, heading = "###") => {
  const table = (title: string, rows: ReadonlyArray<Row>, withWhere: boolean) =>
    [
      `${heading} ${title}`,
      "",
      withWhere ? "| % | ms | function | where |" : "| % | ms | package |",
      withWhere ? "|---:|---:|---|---|" : "|---:|---:|---|",
      ...rows.map((r) =>
        withWhere
          ? `| ${(r.share * 100).toFixed(1)} | ${r.ms.toFixed(0)} | \`${r.name}\` | ${r.where} |`
          : `| ${(r.share * 100).toFixed(1)} | ${r.ms.toFixed(0)} | ${r.name} |`
      ),
      ""
    ].join("\n")
  return [
    `${summary.samples} samples, ${(summary.sampledMs / 1000).toFixed(1)} s of the server's main thread` +
    (summary.windowed ? ", only while the load ran" : " (whole profile: the load window could not be matched)"),
    "",
    table("Self time by function", summary.selfByFunction, true),
    table("Self time by package", summary.selfByPackage, false),
    table("Total (inclusive) time of the project's own functions (src/)", summary.totalByProjectFunction, true)
  ].join("\n")
}
