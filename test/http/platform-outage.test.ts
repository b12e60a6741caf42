import { expect, layer } from "@effect/vitest"
import { Duration, Effect } from "effect"
import { AccountDirectory } from "../../src/auth/AccountDirectory.js"
import { TenantAdmin } from "../../src/platform/TenantAdmin.js"
import { TestIssuer } from "../../src/testing/TestIssuer.js"
import { Bodies, bodyOf } from "../bodies.js"
import {
  allNotes,
  eventually,
  expectError,
  get,
  makeTenant,
  platform,
  post,
  READ_WRITE,
  type Reply,
  refusePlatformConnections,
  userToken
} from "./support.js"

/**
 * The platform database refusing connections in the middle of load
 * (docs/API.md, "Operations"; README, "Outages"): callers the engine already
 * knows (account cached, tenant context open) are served from their tenants'
 * databases for as long as the account cache's staleness bound allows; a
 * caller that needs the platform database gets 503 service_unavailable with
 * Retry-After, never a 500; the engine recovers by itself once the database
 * answers again.
 */

type Who = "known user reads" | "known user writes" | "known machine" | "new user" | "new client"

interface Answer {
  readonly who: Who
  readonly startedAt: number
  readonly endedAt: number
  readonly reply: Reply
}

const KNOWN: ReadonlyArray<Who> = ["known user reads", "known user writes", "known machine"]

/** The same concurrent traffic in both suites: returns what every request got, and the notes written. */
const underLoad = (tenant: string, boundMillis: number) =>
  Effect.gen(function*() {
    yield* makeTenant(tenant)
    const issuer = yield* TestIssuer
    yield* Effect.orDie(Effect.flatMap(TenantAdmin, (admin) => admin.registerClient(tenant, `${tenant}-job`, "Job")))
    const reader = yield* userToken(`${tenant}-reader`, tenant)
    const writer = yield* userToken(`${tenant}-writer`, tenant)
    const machine = yield* issuer.machine(`${tenant}-job`, { scopes: READ_WRITE })
    // Known: seen once, so their accounts are cached and the tenant's context is open.
    for (const token of [reader, writer, machine]) expect((yield* get("/v1/notes", token)).status).toBe(200)

    let n = 0
    const request = (who: Who) => {
      const i = n++
      switch (who) {
        case "known user reads":
          return get("/v1/notes", reader)
        case "known user writes":
          return post("/v1/notes", writer, { title: `note ${i}`, body: "" })
        case "known machine":
          return get("/v1/me", machine)
        case "new user":
          // First sight: the account must be created in the platform database.
          return Effect.flatMap(userToken(`${tenant}-new-${i}`, tenant), (token) => get("/v1/me", token))
        case "new client":
          // Never seen: only the platform database knows whether it is registered (it is not).
          return Effect.flatMap(issuer.machine(`${tenant}-stranger-${i}`), (token) => get("/v1/me", token))
      }
    }

    const answers: Array<Answer> = []
    let running = true
    const worker = (who: Who) =>
      Effect.whileLoop({
        while: () => running,
        body: () =>
          Effect.suspend(() => {
            const startedAt = Date.now()
            return Effect.map(request(who), (reply) => answers.push({ who, startedAt, endedAt: Date.now(), reply }))
          }),
        step: () => undefined
      })
    const roles: ReadonlyArray<Who> = ["known user reads", "known user writes", "known machine", "new user", "new client"]
    const load = yield* Effect.forkScoped(Effect.forEach(roles, worker, { concurrency: "unbounded", discard: true }))

    yield* Effect.sleep("300 millis")
    const downStart = Date.now()
    const { accept, database } = yield* refusePlatformConnections
    const down = Date.now()
    expectError(yield* get("/readyz"), 503, "not_ready", [database])
    // Long enough for the bound to pass (and then some) when it is the default.
    yield* Effect.sleep(Duration.millis(Math.min(boundMillis, 1_000) + 1_000))
    const acceptAt = Date.now()
    yield* accept
    // Recovery: a caller that needs the platform database is served again, and the notifications are heard again.
    const directory = yield* AccountDirectory
    yield* eventually(
      "a new user to be served and the notifications heard again",
      Effect.map(directory.stats, (stats) =>
        stats.listening &&
        answers.some((answer) => answer.who === "new user" && answer.startedAt > acceptAt && answer.reply.status === 200)),
      "20 seconds"
    )
    const recoveredAt = Date.now()
    running = false
    yield* load.await

    return { answers, downStart, down, acceptAt, recoveredAt, database, writer }
  })

/** Every answer is one the contract allows, the 503s in the contract's shape. */
const expectContractAnswers = (answers: ReadonlyArray<Answer>, database: string) => {
  for (const { reply, who } of answers) {
    if (reply.status === 503) {
      expectError(reply, 503, "service_unavailable", [database])
      expect(Number(reply.headers["retry-after"]), `${who}: Retry-After`).toBeGreaterThanOrEqual(1)
    } else if (who === "new client") {
      expectError(reply, 403, "unknown_client")
    } else {
      expect([200, 201], `${who}: ${reply.text}`).toContain(reply.status)
    }
  }
}

const summary = (answers: ReadonlyArray<Answer>, from: number, to: number) => {
  const counts: Record<string, number> = {}
  for (const answer of answers) {
    if (answer.startedAt < from || answer.startedAt > to) continue
    const key = `${answer.who} ${answer.reply.status}`
    counts[key] = (counts[key] ?? 0) + 1
  }
  return JSON.stringify(counts)
}

/** Whatever was answered 201 is there, once, with its content; nothing else was written. */
const expectNothingLost = (answers: ReadonlyArray<Answer>, writer: string) =>
  Effect.gen(function*() {
    const created = answers.filter((answer) => answer.who === "known user writes" && answer.reply.status === 201)
      .map((answer) => bodyOf(answer.reply, Bodies.note))
    const stored = yield* allNotes(writer)
    expect(stored.map((note) => note.id).sort()).toEqual(created.map((note) => note.id).sort())
    for (const note of created) expect(stored.find((s) => s.id === note.id)?.title).toBe(note.title)
  })

// A bound longer than the outage: known callers never notice it.
layer(platform({ auth: { accountCacheStaleness: Duration.minutes(1) } }), { excludeTestServices: true, timeout: 60_000 })(
  "platform database outage, account cache bound 1 minute",
  (it) => {
    it.scoped("known callers keep being served from their tenant; new callers get 503 service_unavailable; it recovers", () =>
      Effect.gen(function*() {
        const { acceptAt, answers, database, down, downStart, recoveredAt, writer } = yield* underLoad("outage-long", 60_000)
        expectContractAnswers(answers, database)
        // Never anything but 2xx for the known callers, before, during and after.
        for (const answer of answers.filter((a) => KNOWN.includes(a.who))) {
          expect([200, 201], `${answer.who}: ${answer.reply.text}`).toContain(answer.reply.status)
        }
        const during = answers.filter((a) => a.startedAt >= down && a.endedAt <= acceptAt)
        for (const who of KNOWN) expect(during.some((a) => a.who === who), `${who} during the outage`).toBe(true)
        // Every new caller asked while the database refused was refused with 503.
        const newcomers = during.filter((a) => a.who === "new user" || a.who === "new client")
        expect(newcomers.length).toBeGreaterThan(0)
        for (const answer of newcomers) expect(answer.reply.status, answer.reply.text).toBe(503)
        yield* expectNothingLost(answers, writer)
        console.log(
          `outage (bound 1 min): ${summary(answers, downStart, acceptAt)}; ` +
            `recovered ${recoveredAt - acceptAt} ms after the database accepted connections again`
        )
        expect(recoveredAt - acceptAt).toBeLessThan(5_000 * 3)
      }))
  }
)

// The default bound (1 second): known callers are served for at most that long into the outage, then 503.
layer(platform(), { excludeTestServices: true, timeout: 60_000 })("platform database outage, default bound", (it) => {
  it.scoped("known callers are served at most 1 s into the outage, then 503 like everyone; never a 500; it recovers", () =>
    Effect.gen(function*() {
      const { acceptAt, answers, database, down, downStart, recoveredAt, writer } = yield* underLoad("outage-short", 1_000)
      expectContractAnswers(answers, database)
      const BOUND = 1_000
      // No known caller admitted by a decision made more than the bound after the listener died (at the latest `down`).
      for (const answer of answers.filter((a) => KNOWN.includes(a.who) && a.startedAt > down + BOUND && a.endedAt <= acceptAt)) {
        expect(answer.reply.status, `${answer.who} ${answer.startedAt - down} ms into the outage: ${answer.reply.text}`).toBe(503)
      }
      const refusedKnown = answers.filter((a) => KNOWN.includes(a.who) && a.reply.status === 503)
      expect(refusedKnown.length).toBeGreaterThan(0)
      const lastServed = Math.max(
        ...answers.filter((a) => KNOWN.includes(a.who) && a.reply.status < 300 && a.endedAt <= acceptAt).map((a) => a.startedAt)
      )
      yield* expectNothingLost(answers, writer)
      console.log(
        `outage (default bound): ${summary(answers, downStart, acceptAt)}; ` +
          `a known caller's last request served (answered before the database came back) started ${lastServed - downStart} ms after the outage began; ` +
          `recovered ${recoveredAt - acceptAt} ms after the database accepted connections again`
      )
      expect(recoveredAt - acceptAt).toBeLessThan(5_000 * 3)
    }))
})
