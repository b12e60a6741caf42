import { execFile } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { ensureBuilt, staleness } from "../../bin/build.mjs"
import { buildOnce, builtCli, repositoryRoot } from "./build.js"

/** Runs a program with node; its exit code and output. */
const run = (args: ReadonlyArray<string>) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((done) => {
    execFile(process.execPath, args, { cwd: repositoryRoot, timeout: 120_000 }, (error, stdout, stderr) =>
      done({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr }))
  })

describe("the build", () => {
  it("runs: --help from dist/ and through the installed bin exits 0 and lists the commands", async () => {
    await buildOnce()
    for (const program of [builtCli, join(repositoryRoot, "bin", "tenant-engine.mjs")]) {
      const result = await run([program, "--help"])
      expect(result.code, result.stderr).toBe(0)
      for (const command of ["serve", "migrate", "tenants", "clients", "domains", "token"]) {
        expect(result.stdout).toContain(command)
      }
    }
  }, 300_000)

  // On a project of its own (two entry points, a migration), so that editing
  // its sources disturbs nobody's dist/.
  describe("rebuilds only when the sources changed", () => {
    const base = mkdtempSync(join(tmpdir(), "tenant-engine-build-"))
    afterAll(() => rmSync(base, { recursive: true, force: true }))
    const write = (path: string, text: string) => {
      mkdirSync(join(base, path, ".."), { recursive: true })
      writeFileSync(join(base, path), text)
    }
    write("package.json", `{ "type": "module" }\n`)
    write("src/main.ts", `console.log("server")\n`)
    write("src/cli/main.ts", `const greeting: string = "one"\nconsole.log(greeting)\n`)
    write("migrations/platform/0001_first.ts", `export default "first"\n`)
    mkdirSync(join(base, "migrations", "tenant"), { recursive: true })
    symlinkSync(join(repositoryRoot, "node_modules"), join(base, "node_modules"))
    const cli = join(base, "dist", "src", "cli", "main.js")

    it("builds when missing, not again when fresh, again after an edit, an added file or a removed one", async () => {
      expect(staleness(base)).toBe("dist/ has not been built")
      expect(await ensureBuilt(base)).toBe(true)
      expect((await run([cli])).stdout).toBe("one\n")
      expect(staleness(base)).toBeUndefined()
      expect(await ensureBuilt(base)).toBe(false)

      write("src/cli/main.ts", `console.log("two")\n`)
      // However quick the edit, it shows (mtimes can be coarse).
      utimesSync(join(base, "src/cli/main.ts"), new Date(), new Date(Date.now() + 5_000))
      expect(staleness(base)).toBe("the sources changed since the last build")
      expect(await ensureBuilt(base)).toBe(true)
      expect((await run([cli])).stdout).toBe("two\n")

      write("migrations/platform/0002_second.ts", `export default "second"\n`)
      expect(staleness(base)).toBeDefined()
      expect(await ensureBuilt(base)).toBe(true)
      expect((await run([join(base, "dist", "migrations", "platform", "0002_second.js")])).code).toBe(0)

      rmSync(join(base, "migrations/platform/0002_second.ts"))
      expect(staleness(base)).toBeDefined()
      expect(await ensureBuilt(base)).toBe(true)
      // A clean build: the removed migration's output is gone with it.
      expect((await run([join(base, "dist", "migrations", "platform", "0002_second.js")])).code).not.toBe(0)

      // A deployment that ships dist/ without the sources runs dist/ as it is.
      rmSync(join(base, "src"), { recursive: true })
      expect(staleness(base)).toBeUndefined()
    }, 120_000)
  })
})
