/**
 * Checks a response against the OpenAPI document the server itself serves:
 * the response's status must be declared for its path and method, its body
 * must match the declared JSON schema (a small JSON Schema subset: the
 * keywords Effect's OpenApi emits; any other validation keyword is reported,
 * never ignored), its content type the declared one, and the declared
 * required headers must be there.
 */

export interface OpenApiDocument {
  readonly paths: Readonly<Record<string, Readonly<Record<string, Operation>>>>
  readonly components?: { readonly schemas?: Readonly<Record<string, JsonSchema>> }
}

interface Operation {
  readonly responses: Readonly<Record<string, Response>>
}

interface Response {
  readonly content?: Readonly<Record<string, { readonly schema: JsonSchema }>>
  readonly headers?: Readonly<Record<string, { readonly required?: boolean; readonly schema?: JsonSchema }>>
}

type JsonSchema = Readonly<Record<string, unknown>>

export interface ObservedResponse {
  readonly method: string
  /** The request's path, with or without a query. */
  readonly path: string
  readonly status: number
  /** By lower-case name, as Node and Effect give them. */
  readonly headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
  readonly text: string
}

/**
 * The operation a request went to: its path template (`/v1/notes/{id}`) and
 * method in the document; undefined when the document has none (an unknown
 * route, /openapi.json and /docs themselves).
 */
export const operationOf = (document: OpenApiDocument, method: string, path: string) => {
  const segments = path.split("?")[0]!.split("/")
  const candidates = Object.keys(document.paths).filter((template) => {
    const parts = template.split("/")
    return parts.length === segments.length &&
      parts.every((part, i) => /^\{[^}]+\}$/.test(part) ? segments[i] !== "" : part === segments[i])
  })
  // A literal segment wins over a parameter (as the router decides).
  const template = candidates.sort((a, b) => b.split("{").length - a.split("{").length).pop()
  const operation = template === undefined ? undefined : document.paths[template]?.[method.toLowerCase()]
  return operation === undefined ? undefined : { template: template!, operation }
}

/** What is wrong with the response, by the document; empty when it conforms or the document has no such operation. */
export const checkResponse = (document: OpenApiDocument, observed: ObservedResponse): ReadonlyArray<string> => {
  const found = operationOf(document, observed.method, observed.path)
  if (found === undefined) return []
  const where = `${observed.method} ${found.template} ${observed.status}`
  const declared = found.operation.responses[String(observed.status)] ?? found.operation.responses["default"]
  if (declared === undefined) {
    return [`${where}: status not declared (declared: ${Object.keys(found.operation.responses).join(", ")})`]
  }
  const problems: Array<string> = []
  for (const [name, header] of Object.entries(declared.headers ?? {})) {
    const value = observed.headers[name.toLowerCase()]
    if (value === undefined) {
      if (header.required === true) problems.push(`${where}: header ${name} is required`)
    } else if (header.schema !== undefined) {
      problems.push(...validate(document, header.schema, value, `${where} header ${name}`))
    }
  }
  const content = Object.entries(declared.content ?? {})
  if (content.length === 0) {
    if (observed.text !== "") problems.push(`${where}: a body where none is declared`)
    return problems
  }
  const contentType = String(observed.headers["content-type"] ?? "")
  const media = content.find(([type]) => contentType.split(";")[0]!.trim() === type)
  if (media === undefined) {
    problems.push(`${where}: content type ${contentType || "(none)"}, declared ${content.map(([type]) => type).join(", ")}`)
    return problems
  }
  let body: unknown
  try {
    body = JSON.parse(observed.text)
  } catch {
    return [...problems, `${where}: the body is not JSON: ${observed.text.slice(0, 200)}`]
  }
  return [...problems, ...validate(document, media[1].schema, body, `${where} body`)]
}

/** Keywords that say nothing about validity. */
const ANNOTATIONS = new Set(["description", "title", "examples", "default", "$id", "$comment", "contentMediaType", "format"])

const typeOf = (value: unknown) =>
  value === null
    ? "null"
    : Array.isArray(value)
    ? "array"
    : typeof value === "number" && Number.isInteger(value)
    ? "integer"
    : typeof value

const isType = (value: unknown, type: unknown) =>
  type === "number" ? typeof value === "number" : typeOf(value) === type

/** Where `value` breaks `schema` (JSON Schema 2020-12 subset), each problem with its path. */
export const validate = (document: OpenApiDocument, schema: JsonSchema, value: unknown, at: string): Array<string> => {
  const problems: Array<string> = []
  for (const [keyword, expected] of Object.entries(schema)) {
    switch (keyword) {
      case "$ref": {
        const prefix = "#/components/schemas/"
        const target = typeof expected === "string" && expected.startsWith(prefix)
          ? document.components?.schemas?.[expected.slice(prefix.length)]
          : undefined
        if (target === undefined) problems.push(`${at}: unresolved $ref ${String(expected)}`)
        else problems.push(...validate(document, target, value, at))
        break
      }
      case "type": {
        const types = Array.isArray(expected) ? expected : [expected]
        if (!types.some((type) => isType(value, type))) {
          problems.push(`${at}: ${JSON.stringify(value)?.slice(0, 80)} is not ${types.join(" or ")}`)
        }
        break
      }
      case "enum":
        if (!(expected as ReadonlyArray<unknown>).some((option) => JSON.stringify(option) === JSON.stringify(value))) {
          problems.push(`${at}: ${JSON.stringify(value)} is not one of ${JSON.stringify(expected)}`)
        }
        break
      case "const":
        if (JSON.stringify(expected) !== JSON.stringify(value)) problems.push(`${at}: is not ${JSON.stringify(expected)}`)
        break
      case "anyOf":
      case "oneOf": {
        const matches = (expected as ReadonlyArray<JsonSchema>).filter((option) =>
          validate(document, option, value, at).length === 0
        ).length
        if (matches === 0 || (keyword === "oneOf" && matches > 1)) {
          const reasons = (expected as ReadonlyArray<JsonSchema>).map((option) => validate(document, option, value, at))
          problems.push(`${at}: matches ${matches} of the ${keyword} alternatives (${reasons.flat().join("; ")})`)
        }
        break
      }
      case "allOf":
        for (const part of expected as ReadonlyArray<JsonSchema>) problems.push(...validate(document, part, value, at))
        break
      case "required":
        if (typeOf(value) === "object") {
          for (const key of expected as ReadonlyArray<string>) {
            if (!(key in (value as object))) problems.push(`${at}: ${key} is missing`)
          }
        }
        break
      case "properties":
        if (typeOf(value) === "object") {
          for (const [key, property] of Object.entries(expected as Record<string, JsonSchema>)) {
            if (key in (value as object)) {
              problems.push(...validate(document, property, (value as Record<string, unknown>)[key], `${at}.${key}`))
            }
          }
        }
        break
      case "additionalProperties":
        if (typeOf(value) === "object") {
          const declared = Object.keys((schema["properties"] ?? {}) as object)
          for (const [key, item] of Object.entries(value as object)) {
            if (declared.includes(key)) continue
            if (expected === false) problems.push(`${at}: ${key} is not declared`)
            else if (typeof expected === "object") problems.push(...validate(document, expected as JsonSchema, item, `${at}.${key}`))
          }
        }
        break
      case "items":
        if (Array.isArray(value)) {
          value.forEach((item, i) => problems.push(...validate(document, expected as JsonSchema, item, `${at}[${i}]`)))
        }
        break
      case "pattern":
        if (typeof value === "string" && !new RegExp(expected as string, "u").test(value)) {
          problems.push(`${at}: ${JSON.stringify(value).slice(0, 80)} does not match /${String(expected)}/`)
        }
        break
      case "minLength":
      case "maxLength":
        if (typeof value === "string") {
          const length = [...value].length
          if (keyword === "minLength" ? length < Number(expected) : length > Number(expected)) {
            problems.push(`${at}: length ${length} breaks ${keyword} ${String(expected)}`)
          }
        }
        break
      case "minItems":
      case "maxItems":
        if (Array.isArray(value) && (keyword === "minItems" ? value.length < Number(expected) : value.length > Number(expected))) {
          problems.push(`${at}: ${value.length} items breaks ${keyword} ${String(expected)}`)
        }
        break
      case "minimum":
      case "maximum":
        if (typeof value === "number" && (keyword === "minimum" ? value < Number(expected) : value > Number(expected))) {
          problems.push(`${at}: ${value} breaks ${keyword} ${String(expected)}`)
        }
        break
      default:
        if (!ANNOTATIONS.has(keyword)) problems.push(`${at}: the checker does not know the keyword ${keyword}`)
    }
  }
  return problems
}
