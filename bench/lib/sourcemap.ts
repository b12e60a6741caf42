/**
 * Where a frame of a tsx-run TypeScript file really is. tsx compiles each file
 * with esbuild into one whitespace-minified line, so V8's line numbers are all
 * 1; doing the same transform here (tsx's options: sourcemap, minifyWhitespace,
 * keepNames, ESM) gives the same code and its source map, which names the
 * original line.
 */
import { transformSync } from "esbuild"
import { readFileSync } from "node:fs"

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
const B64_INDEX = new Map([...B64].map((c, i) => [c, i]))

/** Segments of one generated line: [generated column, original line] (0-based). */
type LineMap = Array<readonly [number, number]>

const decodeMappings = (mappings: string): Array<LineMap> => {
  const lines: Array<LineMap> = []
  let originalLine = 0
  let originalColumn = 0
  let source = 0
  for (const lineText of mappings.split(";")) {
    const line: LineMap = []
    let generatedColumn = 0
    for (const segment of lineText.split(",")) {
      if (segment === "") continue
      const values: Array<number> = []
      let value = 0
      let shift = 0
      for (const char of segment) {
        const digit = B64_INDEX.get(char) ?? 0
        value += (digit & 31) << shift
        if (digit & 32) {
          shift += 5
        } else {
          values.push(value & 1 ? -(value >>> 1) : value >>> 1)
          value = 0
          shift = 0
        }
      }
      generatedColumn += values[0] ?? 0
      if (values.length >= 4) {
        source += values[1]!
        originalLine += values[2]!
        originalColumn += values[3]!
        line.push([generatedColumn, originalLine])
      }
    }
    lines.push(line)
  }
  void source
  void originalColumn
  return lines
}

export class SourceMapper {
  private readonly cache = new Map<string, { lines: Array<LineMap>; source: Array<string> } | undefined>()

  private load(path: string) {
    if (!this.cache.has(path)) {
      try {
        const text = readFileSync(path, "utf8")
        const out = transformSync(text, {
          target: `node${process.versions.node}`,
          loader: "ts",
          sourcemap: "external",
          sourcesContent: false,
          minifyWhitespace: true,
          keepNames: true,
          format: "esm",
          sourcefile: path
        })
        const map = JSON.parse(out.map) as { mappings: string }
        this.cache.set(path, { lines: decodeMappings(map.mappings), source: text.split("\n") })
      } catch {
        this.cache.set(path, undefined)
      }
    }
    return this.cache.get(path)
  }

  /** The original 1-based line and its text, for a 0-based generated position in a .ts file. */
  original(path: string, line: number, column: number): { line: number; text: string } | undefined {
    if (!path.endsWith(".ts")) return undefined
    const loaded = this.load(path)
    const segments = loaded?.lines[line]
    if (loaded === undefined || segments === undefined || segments.length === 0) return undefined
    let best: readonly [number, number] | undefined
    for (const segment of segments) {
      if (segment[0] <= column) best = segment
      else break
    }
    best ??= segments[0]!
    return { line: best[1] + 1, text: (loaded.source[best[1]] ?? "").trim() }
  }
}
