import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/globalSetup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Most files wait on PostgreSQL or on child processes rather than on the
    // CPU: more workers than the 2 cores overlap those waits.
    maxWorkers: 3,
    minWorkers: 1
  }
})
