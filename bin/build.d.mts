// Types of bin/build.mjs, for the tests that call it.

/** The repository: the folder above bin/. */
export declare const root: string
/** A hash of the path, mtime and size of every input of the build. */
export declare const fingerprint: (base?: string) => string
/** Why dist/ must be built, or undefined when it matches the sources (or there are no sources). */
export declare const staleness: (base?: string) => string | undefined
/** Builds now. */
export declare const build: (base?: string) => Promise<void>
/** Builds when dist/ is missing or stale; true when it built. */
export declare const ensureBuilt: (base?: string) => Promise<boolean>
