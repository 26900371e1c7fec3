// The schema's Field trees as JSON Schema (2020-12, the dialect of OpenAPI 3.1), for the
// admin API's document: what a request body may hold and what a view shows are read off
// the same trees that validate() walks, never written a second time.

import type { Field } from './schema.js';

export type JsonSchema = { readonly [keyword: string]: unknown };

/**
 * `input`: what validate() accepts in its `exact` mode (the admin API's request bodies); a
 * field with a default, or marked optional, may be left out. `output`: what it returns; every field it always fills in is required, defaults are
 * not shown (they are filled in), and a shorthand is already expanded into its object.
 */
export type SchemaMode = 'input' | 'output';

export function jsonSchemaOf(field: Field, mode: SchemaMode): JsonSchema {
  switch (field.kind) {
    case 'int':
    case 'number':
      return {
        type: field.kind === 'int' ? 'integer' : 'number',
        ...(field.min === undefined ? {} : { minimum: field.min }),
        ...(field.max === undefined ? {} : { maximum: field.max }),
        ...defaultOf(field.default, mode),
      };
    case 'string':
      return {
        type: field.nullable === true ? ['string', 'null'] : 'string',
        ...(field.enum === undefined ? {} : { enum: field.nullable === true ? [...field.enum, null] : field.enum }),
        ...(field.pattern === undefined ? {} : { pattern: patternOf(field.pattern) }),
        ...(field.reserved === undefined ? {} : { not: { enum: field.reserved } }),
        ...(field.secret === true ? { writeOnly: true } : {}),
        ...defaultOf(field.default, mode),
      };
    case 'bool':
      return { type: 'boolean', ...defaultOf(field.default, mode) };
    case 'array':
      return { type: 'array', items: jsonSchemaOf(field.of, mode), ...defaultOf(field.default, mode) };
    case 'map':
      return { type: 'object', additionalProperties: jsonSchemaOf(field.of, mode), ...defaultOf(field.default, mode) };
    case 'object': {
      const properties: Record<string, JsonSchema> = {};
      const required: string[] = [];
      for (const [name, sub] of Object.entries(field.fields)) {
        properties[name] = jsonSchemaOf(sub, mode);
        if (mode === 'input' ? requiredIn(sub) : alwaysOut(sub)) required.push(name);
      }
      const object = { type: 'object', properties, ...(required.length === 0 ? {} : { required }), additionalProperties: false };
      // validate() takes the bare string for the object with only that field (`urls: ["http://..."]`).
      return mode === 'input' && field.shorthand !== undefined ? { anyOf: [properties[field.shorthand]!, object] } : object;
    }
  }
}

function defaultOf(value: unknown, mode: SchemaMode): JsonSchema {
  return mode === 'input' && value !== undefined ? { default: value } : {};
}

/** validate() throws `is required` when it is absent. */
function requiredIn(f: Field): boolean {
  if (f.kind === 'string') return f.default === undefined && f.optional !== true;
  // An absent object is validated as `{}`: a required field inside makes it required too.
  if (f.kind === 'object') return f.optional !== true && Object.values(f.fields).some(requiredIn);
  return false;
}

/** validate() always returns it: a default, a required string, a list, a map, a non-optional object. */
function alwaysOut(f: Field): boolean {
  switch (f.kind) {
    case 'int':
    case 'number':
    case 'bool':
      return f.default !== undefined;
    case 'string':
      return f.default !== undefined || f.optional !== true;
    case 'object':
      return f.optional !== true;
    case 'array':
    case 'map':
      return true;
  }
}

/** JSON Schema patterns are ECMA-262 regular expressions without flags: the schema uses none. */
function patternOf(re: RegExp): string {
  if (re.flags !== '') throw new Error(`a schema pattern with flags cannot be a JSON Schema pattern: ${re}`);
  return re.source;
}
