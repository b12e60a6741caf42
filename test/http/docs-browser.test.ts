import { expect, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { existsSync } from "node:fs"
import { delimiter, join } from "node:path"
import puppeteer, { type Page } from "puppeteer-core"
import { Bodies, bodyOf } from "../bodies.js"
import { get, makeTenant, platform, serverUrl, userToken } from "./support.js"

/**
 * /docs as a person sees it: Debian's Chromium (headless) loads the page,
 * Swagger UI renders every route of /openapi.json without an error, and a
 * request tried from the page with a bearer token (Authorize, Try it out,
 * Execute) gets the caller's account and tenant back.
 */

/**
 * Debian's `chromium` (apt-get install chromium; .ci/run installs it), or
 * undefined. Synchronous so the file can decide at load time whether its test
 * runs, as the PgBouncer tests do.
 */
const chromiumBinary = (): string | undefined => {
  for (const folder of [...(process.env["PATH"] ?? "").split(delimiter), "/usr/bin"]) {
    if (folder === "") continue
    const candidate = join(folder, "chromium")
    if (existsSync(candidate)) return candidate
  }
  return undefined
}

/** The parts of /openapi.json the test reads. */
const OpenApiDocument = Schema.Struct({
  info: Schema.Struct({ title: Schema.String }),
  paths: Schema.Record({ key: Schema.String, value: Schema.Record({ key: Schema.String, value: Schema.Unknown }) }),
  components: Schema.Struct({ securitySchemes: Schema.Record({ key: Schema.String, value: Schema.Unknown }) })
})

const CHROMIUM = chromiumBinary()
const CHROMIUM_MISSING = "chromium is not installed (apt-get install chromium; .ci/run installs it): skipped"

/** What the page did that it should not: requests that left the engine, failed loads, script errors. */
interface PageLog {
  readonly foreignRequests: Array<string>
  readonly errors: Array<string>
}

/** A headless Chromium and one page in it, closed with the scope. */
const browserPage = (executablePath: string, origin: string) =>
  Effect.gen(function*() {
    const browser = yield* Effect.acquireRelease(
      Effect.promise(() =>
        puppeteer.launch({
          executablePath,
          // Chromium's new headless mode (--headless=new), the one that renders as the browser does.
          headless: true,
          args: [
            // As root (a container, CI) Chromium refuses to start with its sandbox.
            ...(process.getuid?.() === 0 ? ["--no-sandbox"] : []),
            "--disable-gpu",
            // The machine reaches no host but its own: no background calls home to be refused.
            "--disable-quic",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run"
          ]
        })
      ),
      (browser) => Effect.promise(() => browser.close())
    )
    const page = yield* Effect.promise(() => browser.newPage())
    const log: PageLog = { foreignRequests: [], errors: [] }
    page.on("request", (request) => {
      const url = request.url()
      if (!url.startsWith(origin) && !url.startsWith("data:")) log.foreignRequests.push(url)
    })
    page.on("pageerror", (error) => log.errors.push(`page error: ${error instanceof Error ? error.message : String(error)}`))
    page.on("response", (response) => {
      // The browser asks for /favicon.ico on its own; the engine has none, and says so (404).
      if (response.status() >= 400 && new URL(response.url()).pathname !== "/favicon.ico") {
        log.errors.push(`${response.status()} ${response.url()}`)
      }
    })
    page.on("console", (message) => {
      // A failed load is logged too; the response listener names its URL.
      if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
        log.errors.push(`console: ${message.text()}`)
      }
    })
    return { page, log }
  })

const run = <A>(what: (page: Page) => Promise<A>) => (page: Page) => Effect.promise(() => what(page))

/** The routes the page lists: "GET /v1/me", one per operation block Swagger UI rendered. */
const listedRoutes = run((page) =>
  page.$$eval(".opblock", (blocks) =>
    blocks.map((block) => {
      const method = block.querySelector(".opblock-summary-method")?.textContent ?? "?"
      const path = block.querySelector(".opblock-summary-path")?.getAttribute("data-path") ?? "?"
      return `${method.trim().toUpperCase()} ${path}`
    }))
)

/** The selector of the operation block of one route. */
const operation = (method: string, path: string) =>
  `.opblock.opblock-${method.toLowerCase()}:has(.opblock-summary-path[data-path="${path}"])`

/** What the page shows of the response it got for an operation: status and body text. */
const liveResponse = (selector: string) =>
  run((page) =>
    page.$eval(selector, (block) => {
      const status = block.querySelector(".live-responses-table tr.response .response-col_status")?.textContent ?? ""
      // The body is the code block under the "Response body" heading.
      const heading = [...block.querySelectorAll(".live-responses-table h5")].find((h) =>
        h.textContent === "Response body"
      )
      const body = heading?.parentElement?.querySelector("pre")?.textContent ?? ""
      const curl = block.querySelector(".curl-command")?.textContent ?? block.querySelector(".curl")?.textContent ?? ""
      return { status: status.trim(), body, curl }
    })
  )

layer(platform(), { excludeTestServices: true, timeout: 120_000 })(
  CHROMIUM === undefined ? `the docs page in a browser (${CHROMIUM_MISSING})` : "the docs page in a browser",
  (it) => {
    it.scoped.skipIf(CHROMIUM === undefined)(
      "/docs renders every route of /openapi.json, with the bearer scheme, and a request tried from it with a token answers 200",
      () =>
        Effect.gen(function*() {
          yield* makeTenant("docs-page", "Docs Page Inc")
          const token = yield* userToken("dora", "docs-page")
          const origin = yield* serverUrl
          const document = bodyOf(yield* get("/openapi.json"), OpenApiDocument)
          const { page, log } = yield* browserPage(CHROMIUM!, origin)

          yield* run((p) => p.goto(`${origin}/docs`, { waitUntil: "load" }))(page)
          // Swagger UI renders after load, from the document embedded in the page.
          yield* run((p) => p.waitForSelector(".opblock", { timeout: 30_000 }))(page)

          // The page's promises: its title, the document loaded without errors.
          expect(yield* run((p) => p.title())(page)).toBe(`${document.info.title} Documentation`)
          expect(yield* run((p) => p.$eval(".info .title", (e) => e.textContent ?? ""))(page)).toContain(document.info.title)
          // What the UI shows (the page's text also holds the scripts, Swagger UI's own messages among them).
          const shownText = yield* run((p) => p.$eval("#swagger-ui", (e) => "innerText" in e && typeof e.innerText === "string" ? e.innerText : ""))(page)
          expect(shownText).not.toContain("Failed to load API definition")
          expect(yield* run((p) => p.$$(".errors-wrapper"))(page)).toHaveLength(0)

          // Every route of the document, and nothing else, is listed.
          const expected = Object.entries(document.paths).flatMap(([path, operations]) =>
            Object.keys(operations).map((method) => `${method.toUpperCase()} ${path}`)
          ).sort()
          expect(expected.length).toBeGreaterThan(10)
          expect((yield* listedRoutes(page)).sort()).toEqual(expected)

          // The bearer scheme: Authorize opens it, the token goes in.
          expect(Object.values(document.components.securitySchemes)).toContainEqual(
            expect.objectContaining({ type: "http", scheme: "bearer" })
          )
          yield* run((p) => p.click(".auth-wrapper .btn.authorize"))(page)
          yield* run((p) => p.waitForSelector(".modal-ux input[aria-label=auth-bearer-value]"))(page)
          expect(yield* run((p) => p.$eval(".modal-ux", (e) => e.textContent ?? ""))(page)).toContain("(http, Bearer)")
          yield* run((p) => p.type(".modal-ux input[aria-label=auth-bearer-value]", token))(page)
          yield* run((p) => p.click(".modal-ux .auth-btn-wrapper .btn.authorize"))(page)
          // Authorized: the modal now offers to log out.
          yield* run((p) => p.waitForSelector(`.modal-ux button[aria-label="Remove authorization"]`))(page)
          yield* run((p) => p.click(".modal-ux .btn-done"))(page)
          yield* run((p) => p.waitForSelector(".modal-ux", { hidden: true }))(page)

          // GET /v1/me: expand, Try it out, Execute.
          const me = operation("GET", "/v1/me")
          yield* run((p) => p.click(`${me} .opblock-summary-control`))(page)
          yield* run((p) => p.waitForSelector(`${me} .try-out__btn`))(page)
          yield* run((p) => p.click(`${me} .try-out__btn`))(page)
          yield* run((p) => p.waitForSelector(`${me} .btn.execute`))(page)
          yield* run((p) => p.click(`${me} .btn.execute`))(page)
          yield* run((p) => p.waitForSelector(`${me} .live-responses-table tr.response`, { timeout: 30_000 }))(page)

          const shown = yield* liveResponse(me)(page)
          expect(shown.status, shown.body).toMatch(/^200/)
          // The page sent the token it was given.
          expect(shown.curl).toContain(`Authorization: Bearer ${token}`)
          // The same account and tenant as the API gives the token directly.
          const direct = bodyOf(yield* get("/v1/me", token), Bodies.me)
          const body = bodyOf({ body: JSON.parse(shown.body) }, Bodies.me)
          expect(body.tenant.id).toBe("docs-page")
          expect(body.account).toEqual(direct.account)
          expect(body.principal.subject).toBe("dora")

          // Everything came from the engine (no CDN), and the page logged no error.
          expect(log.foreignRequests).toEqual([])
          expect(log.errors).toEqual([])
        })
    )
  }
)
