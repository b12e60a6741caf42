import { HttpApi, HttpApiError, type HttpApiGroup } from "@effect/platform"
import { Option } from "effect"
import * as AST from "effect/SchemaAST"
import { HeaderNamesAnnotation } from "../ApiError.js"
import { BadRequest } from "./HttpErrors.js"

/**
 * The OpenAPI document's errors as the server sends them, for
 * `OpenApi.Transform` on the API (the document is made once):
 * - HttpApiDecodeError, which HttpApi.make declares on every route, is
 *   answered as BadRequest (src/http/ApiFailures.ts), so the document refers
 *   to BadRequest instead, and keeps no schema nothing refers to (it, its Issue...);
 * - each error response declares the headers its errors carry
 *   (`WWW-Authenticate`, `Retry-After`), required when every error of that
 *   status carries it.
 */
export const documentErrors = <Id extends string, Groups extends HttpApiGroup.HttpApiGroup.Any, E, R>(
  api: HttpApi.HttpApi<Id, Groups, E, R>
) =>
(spec: Record<string, any>): Record<string, any> => {
  const decodeError = HttpApiError.HttpApiDecodeError
  const out = replaceRef(spec, schemaRef(decodeError.identifier), schemaRef(BadRequest.identifier)) as Record<string, any>
  out["components"].schemas = referenced(out)
  const decodeDescription = descriptionOf(decodeError.ast)
  HttpApi.reflect(api, {
    onGroup() {},
    onEndpoint({ endpoint, errors }) {
      const operation = out["paths"][endpoint.path.replace(/:(\w+)\??/g, "{$1}")]?.[endpoint.method.toLowerCase()]
      for (const [status, { ast }] of errors) {
        const response = operation?.responses[status]
        if (response === undefined || Option.isNone(ast)) continue
        if (response.description === decodeDescription) response.description = descriptionOf(BadRequest.ast)
        const headers = headersOf(ast.value)
        if (Object.keys(headers).length > 0) response.headers = headers
      }
    }
  })
  return out
}

const schemaRef = (identifier: string) => `#/components/schemas/${identifier}`

const descriptionOf = (ast: AST.AST): string | undefined =>
  Option.getOrUndefined(Option.orElse(AST.getDescriptionAnnotation(ast), () =>
    AST.isTransformation(ast) ? AST.getDescriptionAnnotation(ast.to) : Option.none()))
    ?? Option.getOrUndefined(AST.getIdentifierAnnotation(ast))

/** `value` with every reference to `from` made one to `to`, and the alternatives this repeats merged. */
const replaceRef = (value: unknown, from: string, to: string): unknown => {
  if (Array.isArray(value)) return value.map((item) => replaceRef(item, from, to))
  if (typeof value !== "object" || value === null) return value
  const out: Record<string, unknown> = {}
  for (const [key, item] of Object.entries(value)) out[key] = key === "$ref" && item === from ? to : replaceRef(item, from, to)
  const anyOf = out["anyOf"]
  if (Array.isArray(anyOf)) {
    const unique = [...new Map(anyOf.map((item) => [JSON.stringify(item), item])).values()]
    if (unique.length === 1) {
      delete out["anyOf"]
      return { ...out, ...unique[0] }
    }
    out["anyOf"] = unique
  }
  return out
}

/** The component schemas the paths refer to, directly or through each other. */
const referenced = (spec: Record<string, any>): Record<string, unknown> => {
  const schemas: Record<string, unknown> = spec["components"].schemas
  const kept: Record<string, unknown> = {}
  const visit = (value: unknown): void => {
    if (Array.isArray(value)) return value.forEach(visit)
    if (typeof value !== "object" || value === null) return
    for (const [key, item] of Object.entries(value)) {
      if (key === "$ref" && typeof item === "string" && item.startsWith(schemaRef(""))) {
        const name = item.slice(schemaRef("").length)
        if (!(name in kept) && name in schemas) {
          kept[name] = schemas[name]
          visit(schemas[name])
        }
      } else visit(item)
    }
  }
  visit(spec["paths"])
  return kept
}

/** The response headers of the errors of one status (a union or one error). */
const headersOf = (ast: AST.AST) => {
  const errors = AST.isUnion(ast) ? ast.types : [ast]
  const carriers = new Map<string, Array<string>>()
  for (const error of errors) {
    const names = error.annotations[HeaderNamesAnnotation]
    if (!Array.isArray(names)) continue
    const tag = Option.getOrElse(AST.getIdentifierAnnotation(error), () => "")
    for (const name of names) carriers.set(name, [...(carriers.get(name) ?? []), tag])
  }
  const headers: Record<string, { required: boolean; description?: string; schema: { type: "string" } }> = {}
  for (const [name, tags] of carriers) {
    const required = tags.length === errors.length
    headers[name] = { required, ...(required ? {} : { description: `with ${tags.join(", ")}` }), schema: { type: "string" } }
  }
  return headers
}
