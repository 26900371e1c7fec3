// The admin API's OpenAPI document as a validator of real answers: ajv (JSON Schema 2020-12,
// the dialect of OpenAPI 3.1) over the document's component schemas, and the response an
// operation documents for a status.

import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

type Json = Record<string, unknown>;

export interface ApiOperation {
  readonly responses: Record<string, Json>;
  readonly security?: unknown[];
  readonly parameters?: Json[];
  readonly requestBody?: Json;
}

export interface ApiDocument {
  readonly paths: Record<string, Record<string, ApiOperation>>;
  readonly components: { readonly schemas: Record<string, Json>; readonly responses: Record<string, Json> };
}

const BASE = 'urn:sluice:admin';

/** `#/components/schemas/X` -> the same schema under the validator's base id. */
function absolute(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(absolute);
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, k === '$ref' && typeof v === 'string' ? v.replace('#/components/schemas/', `${BASE}#/$defs/`) : absolute(v)]));
}

export class ResponseValidator {
  readonly #doc: ApiDocument;
  readonly #ajv: Ajv2020;
  readonly #compiled = new Map<string, ValidateFunction>();

  constructor(doc: ApiDocument) {
    this.#doc = doc;
    // Strict: a keyword ajv does not know (a typo in the document) fails compilation.
    this.#ajv = new Ajv2020({ strict: true, allowUnionTypes: true, allErrors: true });
    addFormats.default(this.#ajv);
    this.#ajv.addSchema({ $id: BASE, $defs: absolute(doc.components.schemas) as Json });
  }

  /** Compiles every component schema: throws on the first invalid one. */
  compileAll(): string[] {
    return Object.keys(this.#doc.components.schemas).map((name) => {
      this.#ajv.compile({ $ref: `${BASE}#/$defs/${name}` });
      return name;
    });
  }

  /** What is wrong with `value` as an instance of the component schema `name`; empty when nothing. */
  schemaProblems(name: string, value: unknown): string[] {
    const validate = this.#ajv.compile({ $ref: `${BASE}#/$defs/${name}` });
    return validate(value) ? [] : (validate.errors ?? []).map((e) => `${name}: ${e.instancePath || '(value)'} ${e.message ?? ''} ${JSON.stringify(e.params)}`);
  }

  /**
   * What is wrong with an answer of `method path` (the documented template): the status is
   * not documented, the content type is not the documented one, or the body does not
   * validate. An empty list when it conforms.
   */
  problems(method: string, path: string, status: number, contentType: string | null, body: unknown): string[] {
    const op = this.#doc.paths[path]?.[method.toLowerCase()];
    if (op === undefined) return [`${method} ${path} is not documented`];
    let response = op.responses[String(status)];
    if (response === undefined) return [`${method} ${path}: status ${status} is not documented (${Object.keys(op.responses).join(', ')})`];
    if (typeof response['$ref'] === 'string') response = this.#doc.components.responses[response['$ref'].slice(response['$ref'].lastIndexOf('/') + 1)]!;
    const content = (response['content'] ?? {}) as Record<string, { schema: Json }>;
    const type = (contentType ?? '').split(';')[0]!.trim();
    const media = content[type];
    if (media === undefined) return [`${method} ${path} ${status}: content type ${contentType} is not documented (${Object.keys(content).join(', ')})`];
    const key = `${method} ${path} ${status} ${type}`;
    let validate = this.#compiled.get(key);
    if (validate === undefined) this.#compiled.set(key, (validate = this.#ajv.compile(absolute(media.schema) as Json)));
    if (validate(body)) return [];
    return (validate.errors ?? []).map((e) => `${method} ${path} ${status}: ${e.instancePath || '(body)'} ${e.message ?? ''} ${JSON.stringify(e.params)}`);
  }
}
