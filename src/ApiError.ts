import { HttpApiSchema, HttpServerResponse } from "@effect/platform"
import { Predicate, Schema } from "effect"
import type { Cause } from "effect"
import type * as AST from "effect/SchemaAST"

/**
 * The one way to declare an error the HTTP API can send (docs/API.md, error
 * bodies): a `Schema.TaggedError` class, so `yield*`, `catchTag` and
 * `Effect.fail` work as usual, whose schema encodes to exactly the wire body:
 *
 * ```ts
 * class TenantNotFound extends ApiError<TenantNotFound>()("TenantNotFound", { code: "not_found", status: 404 }) {}
 * new TenantNotFound({ message: "no tenant acme" })  // the body: {"error":"not_found","message":"no tenant acme"}
 * ```
 *
 * - `code`: the body's `error` (also a field of the error, filled in);
 * - `status`: the response status (HttpApi reads it from the schema's annotation);
 * - `fields`: more members of the body, e.g. `scope`;
 * - `local`: members the server keeps but the body does not carry (say, to
 *   make a header). A client decoding the body cannot have them, so they must
 *   be optional;
 * - `headers`: headers the response carries, made from the error. The
 *   failure path sets them (see src/http/ApiFailures.ts); the OpenAPI
 *   document declares them (src/http/OpenApiErrors.ts).
 *
 * The body has no `_tag`: on the wire an error is its status and code, so a
 * client decodes a body as the first error declared for that status that it
 * matches (several errors may share a code).
 */
export const ApiError = <Self = never>() =>
<
  Tag extends string,
  Code extends string,
  Fields extends Schema.Struct.Fields = {},
  Local extends { readonly [K in keyof Local]: OptionalField } = {}
>(
  tag: Tag,
  options: {
    readonly code: Code
    readonly status: number
    readonly fields?: Fields
    readonly local?: Local
    readonly headers?: { readonly [name: string]: (error: Schema.Struct.Type<Common<Code> & Fields & Local>) => string }
  }
): [Self] extends [never] ? "Missing `Self` generic - use `class Self extends ApiError<Self>()(...)`"
  : ApiErrorClass<Self, Tag, Code, Fields, Local> =>
{
  const { code, headers = {}, status } = options
  const wire = Schema.Struct({ error: Schema.Literal(code), message: Schema.String, ...options.fields })
  const bodyKeys = Object.keys(wire.fields)
  const Base = Schema.TaggedError<ApiErrorInstance>()(tag, {
    error: Schema.Literal(code).pipe(Schema.propertySignature, Schema.withConstructorDefault(() => code)),
    message: Schema.String,
    ...options.fields,
    ...options.local
  })
  // A class of its own to carry the schema replaced below and the headers.
  class ApiErrorBase extends Base {}
  if (options.headers !== undefined) {
    const make = (error: never) => {
      const out: Record<string, string> = {}
      for (const name in headers) out[name] = headers[name]!(error)
      return out
    }
    Object.defineProperty(ApiErrorBase.prototype, HeadersKey, { value: make })
  }
  // The class's schema, replaced: the wire body on one side, the class on the
  // other (TaggedError's own encodes every field and `_tag`). Built once per
  // subclass, as Schema's class `ast` is.
  const asts = new WeakMap<object, AST.Transformation>()
  Object.defineProperty(ApiErrorBase, "ast", {
    get(this: new(props: unknown, disableValidation: boolean) => ApiErrorInstance) {
      let ast = asts.get(this)
      if (ast === undefined) {
        const declaration: AST.Transformation = Reflect.get(Base, "ast", this)
        const Self = this
        ast = Schema.transform(wire, Schema.make<ApiErrorInstance>(declaration.to), {
          strict: true,
          decode: (body) => new Self(body, true),
          encode: (error) => {
            const body: Record<string, unknown> = {}
            for (const key of bodyKeys) body[key] = Reflect.get(error, key)
            return body as typeof wire.Type
          }
        }).annotations({
          identifier: tag,
          [HttpApiSchema.AnnotationStatus]: status,
          [HeaderNamesAnnotation]: Object.keys(headers)
        }).ast as AST.Transformation // what `transform` makes, typed AST once annotated
        asts.set(this, ast)
      }
      return ast
    }
  })
  // The declared type is what the class is; TypeScript cannot follow the
  // schema replaced above through the generic fields.
  return ApiErrorBase as never
}

const HeadersKey: unique symbol = Symbol.for("tenant-engine/ApiError/headers")

/** On an ApiError's schema: the names of the headers its response carries. */
export const HeaderNamesAnnotation: unique symbol = Symbol.for("tenant-engine/ApiError/headerNames")

/** What every ApiError instance has. */
export interface ApiErrorInstance extends Cause.YieldableError {
  readonly _tag: string
  readonly error: string
  readonly message: string
}

/** A field the body does not carry: optional (`Schema.optional(...)`). */
type OptionalField = Schema.PropertySignature<"?:", any, PropertyKey, Schema.PropertySignature.Token, any, boolean, never>

type CodeField<Code extends string> = Schema.PropertySignature<":", Code, never, ":", Code, true, never>
type Common<Code extends string> = { readonly error: CodeField<Code>; readonly message: typeof Schema.String }
type Wire<Code extends string, Fields extends Schema.Struct.Fields> =
  & { readonly error: Schema.Literal<[Code]>; readonly message: typeof Schema.String }
  & Fields

/** An ApiError class: a TaggedError class whose encoded side is the wire body. */
export interface ApiErrorClass<
  Self,
  Tag extends string,
  Code extends string,
  Fields extends Schema.Struct.Fields,
  Local extends Schema.Struct.Fields
> extends
  Schema.Class<
    Self,
    { readonly _tag: Schema.tag<Tag> } & Common<Code> & Fields & Local,
    Schema.Struct.Encoded<Wire<Code, Fields>>,
    Schema.Struct.Context<Fields & Local>,
    Schema.Struct.Constructor<Common<Code> & Fields & Local>,
    {},
    Cause.YieldableError
  >
{
  readonly _tag: Tag
}

/** The headers an error's response carries (none for anything but an ApiError declaring some). */
export const responseHeaders = (error: unknown): Readonly<Record<string, string>> | undefined => {
  const make = Predicate.hasProperty(error, HeadersKey) ? error[HeadersKey] : undefined
  // Only the factory puts a function there, one taking the error it is on.
  return Predicate.isFunction(make) ? make(error) : undefined
}

/**
 * The response an error is, for answers made outside HttpApi (body limits,
 * unknown routes, defects): the same encoding, status and headers HttpApi uses.
 */
export const errorResponse = <A, I>(schema: Schema.Schema<A, I>, error: A): HttpServerResponse.HttpServerResponse => {
  const response = HttpServerResponse.unsafeJson(Schema.encodeSync(schema)(error), {
    status: HttpApiSchema.getStatusErrorAST(schema.ast)
  })
  const headers = responseHeaders(error)
  return headers === undefined ? response : HttpServerResponse.setHeaders(response, headers)
}
