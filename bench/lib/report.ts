/**
 * What both benchmark scripts put in bench/RESULTS.md: the state of the
 * source they measured, and sections that one script writes and the other
 * keeps (the bench rewrites the file, test:scale replaces only its section).
 */
import { execFileSync } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { ROOT } from "./servers.js"

/** The commit, and a digest of uncommitted changes to what the server runs (others edit src/ meanwhile). */
export const sourceState = () => {
  try {
    const git = (...args: Array<string>) => execFileSync("git", args, { cwd: ROOT, encoding: "utf8" }).trim()
    const commit = git("rev-parse", "--short", "HEAD")
    const diff = git("diff", "HEAD", "--", "src", "migrations", "package.json")
    const untracked = git("ls-files", "--others", "--exclude-standard", "--", "src", "migrations")
    if (diff === "" && untracked === "") return `${commit}, clean`
    const digest = createHash("sha256").update(diff).update(untracked).digest("hex").slice(0, 12)
    const files = git("diff", "HEAD", "--name-only", "--", "src", "migrations", "package.json").split("\n").filter((l) => l !== "")
    return `${commit} + uncommitted changes to ${files.length} files${untracked === "" ? "" : " and untracked files"} (diff sha256 ${digest})`
  } catch {
    return "unknown (no git)"
  }
}

/** The heading of the section test:scale writes into the results file. */
export const SCALE_HEADING = "## Fleet scale (npm run test:scale)"

/** The hand-written section of bench/PROFILE.md that `--profile` keeps when it writes the file anew. */
export const STACK_HEADING = "## What the stack does per request that the engine cannot avoid, and the upstream change"

/** The heading of the section bench:servers writes into the results file. */
export const SERVERS_HEADING = "## Servers: moves and replicas"

/** The heading of the section the soak (`npm run bench -- --soak=SECONDS`, bench/soak.ts) writes into the results file. */
export const SOAK_HEADING = "## Soak (npm run bench -- --soak=SECONDS)"

/** The bench's section that test:scale's goes before when the file has none yet. */
const PLACE_BEFORE = "## How it was measured"

/** A `## ` section of a Markdown text, from its heading to the next `## ` heading (or the end). */
export const extractSection = (text: string, heading: string): string | undefined => {
  const lines = text.split("\n")
  const start = lines.findIndex((line) => line.trim() === heading)
  if (start < 0) return undefined
  let end = start + 1
  while (end < lines.length && !lines[end]!.startsWith("## ")) end++
  return lines.slice(start, end).join("\n").trimEnd()
}

/** The section as it is in a file now, if the file has it. */
export const sectionOfFile = (file: string, heading: string): string | undefined =>
  existsSync(file) ? extractSection(readFileSync(file, "utf8"), heading) : undefined

/**
 * Replaces the section in the file; when it has none, puts it before "How it
 * was measured" (or at the end); creates the file when there is none.
 */
export const writeSection = (file: string, heading: string, section: string) => {
  const body = section.trimEnd()
  if (!existsSync(file)) {
    writeFileSync(file, `# Benchmark results\n\n${body}\n`)
    return
  }
  const text = readFileSync(file, "utf8")
  const old = extractSection(text, heading)
  // Where the bench puts it: before its notes on how things were measured.
  const before = text.indexOf(`\n${PLACE_BEFORE}\n`)
  const next = old !== undefined
    ? text.replace(old, () => body)
    : before >= 0
    ? `${text.slice(0, before + 1)}${body}\n\n${text.slice(before + 1)}`
    : `${text.trimEnd()}\n\n${body}\n`
  writeFileSync(file, next.endsWith("\n") ? next : next + "\n")
}
