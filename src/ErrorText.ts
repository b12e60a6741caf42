/** The message of a failure: typed errors carry one; anything else is shown as it is. */
export const messageOf = (error: unknown): string => {
  if (typeof error === "object" && error !== null && "message" in error && typeof error.message === "string") {
    return error.message
  }
  return String(error)
}

/**
 * An error on one line, without stack traces: its message and those of its
 * causes (an SqlError's own message says only "Failed to execute statement";
 * PostgreSQL's, in its cause, says what went wrong).
 */
export const describeError = (error: unknown): string => {
  const messages: Array<string> = []
  let current: unknown = error
  for (let depth = 0; depth < 8 && current !== undefined && current !== null; depth++) {
    const line = messageOf(current).split("\n").map((l) => l.trim()).find((l) => l !== "")
    if (line !== undefined && !messages.includes(line)) messages.push(line)
    current = typeof current === "object" && "cause" in current ? current.cause : undefined
  }
  return messages.length === 0 ? "unexpected failure" : messages.join(": ")
}
