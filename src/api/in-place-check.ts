import type { z } from 'zod';

/** Says whether a value passes a schema, without building anything. */
export type InPlaceCheck = (value: unknown) => boolean;

/**
 * Compiles a zod schema into a check that reads a value where it is instead of copying it, or
 * `undefined` when the schema uses something the check does not cover (defaults, transforms,
 * refinements, formats such as URLs, non-strict objects — anything whose output may differ from
 * its input or whose rule is not listed below).
 *
 * Why: zod builds a new object for every object it accepts (~600 bytes per entry of a demand
 * report, 3.5× what `JSON.parse` allocated for it). The internal messages — demand reports,
 * sandbox events, creations, routing deltas — cross the daemons thousands of times a second, and
 * that garbage was a fifth of what the control plane allocated per cold start.
 *
 * The contract is one-sided: `check(v) === true` implies that `schema.safeParse(v)` succeeds with
 * an output deep-equal to `v`, so `v` can be used as the parsed value. A `false` promises nothing:
 * the caller parses with zod, which decides and words the error (a property test holds both to
 * this on generated valid and broken values of every internal message schema).
 *
 * Covered: strict objects, strings (regex, min/max length), finite numbers (int, ≥, >, ≤, <),
 * booleans, literals, string enums, arrays (min/max/exact length), optional, nullable,
 * discriminated unions, records of string keys.
 */
export function compileInPlaceCheck(schema: z.ZodType): InPlaceCheck | undefined {
  const cached = cache.get(schema);
  if (cached !== undefined) return cached ?? undefined;
  const check = compile(schema);
  cache.set(schema, check ?? null);
  return check;
}

const cache = new WeakMap<z.ZodType, InPlaceCheck | null>();

/** The parts of zod's (v4) schema definition read here. */
interface Def {
  readonly type: string;
  readonly checks?: readonly { readonly _zod: { readonly def: CheckDef } }[];
  readonly shape?: Record<string, z.ZodType>;
  readonly catchall?: z.ZodType;
  readonly element?: z.ZodType;
  readonly innerType?: z.ZodType;
  readonly values?: readonly unknown[];
  readonly entries?: Record<string, unknown>;
  readonly options?: readonly z.ZodType[];
  readonly discriminator?: string;
  readonly keyType?: z.ZodType;
  readonly valueType?: z.ZodType;
  readonly format?: string;
  readonly coerce?: boolean;
}

interface CheckDef {
  readonly check: string;
  readonly format?: string;
  readonly pattern?: RegExp;
  readonly value?: unknown;
  readonly inclusive?: boolean;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly length?: number;
  readonly when?: unknown;
}

function defOf(schema: z.ZodType): Def {
  return (schema as unknown as { _zod: { def: Def } })._zod.def;
}

function compile(schema: z.ZodType): InPlaceCheck | undefined {
  const def = defOf(schema);
  if (def.coerce === true) return undefined;
  switch (def.type) {
    case 'string': return def.format === undefined ? compileString(def) : undefined;
    case 'number': return compileNumber(def);
    case 'boolean': return noChecks(def) ? (v) => typeof v === 'boolean' : undefined;
    case 'literal': return compileLiteral(def);
    case 'enum': return compileEnum(def);
    case 'optional': return wrap(def, (inner) => (v) => v === undefined || inner(v));
    case 'nullable': return wrap(def, (inner) => (v) => v === null || inner(v));
    case 'array': return compileArray(def);
    case 'object': return compileObject(def);
    case 'union': return compileUnion(def);
    case 'record': return compileRecord(def);
    default: return undefined;
  }
}

function noChecks(def: Def): boolean {
  return def.checks === undefined || def.checks.length === 0;
}

function wrap(def: Def, make: (inner: InPlaceCheck) => InPlaceCheck): InPlaceCheck | undefined {
  if (!noChecks(def) || def.innerType === undefined) return undefined;
  const inner = compile(def.innerType);
  return inner === undefined ? undefined : make(inner);
}

/** The checks of one value, or undefined when one is not understood. */
function compileChecks<T>(def: Def, each: (check: CheckDef) => ((v: T) => boolean) | undefined): ((v: T) => boolean)[] | undefined {
  const out: ((v: T) => boolean)[] = [];
  for (const check of def.checks ?? []) {
    const checkDef = check._zod.def;
    // zod runs its length checks only `when` the value has a length: here the type is checked first.
    if (checkDef.when !== undefined && !LENGTH_CHECKS.has(checkDef.check)) return undefined;
    const fn = each(checkDef);
    if (fn === undefined) return undefined;
    out.push(fn);
  }
  return out;
}

function all<T>(checks: readonly ((v: T) => boolean)[], v: T): boolean {
  for (let i = 0; i < checks.length; i++) if (!(checks[i] as (v: T) => boolean)(v)) return false;
  return true;
}

function compileString(def: Def): InPlaceCheck | undefined {
  const checks = compileChecks<string>(def, (c) => {
    if (c.check === 'string_format' && c.format === 'regex' && c.pattern instanceof RegExp) {
      // A global or sticky pattern keeps state between calls; zod resets it, so it is left to zod.
      if (c.pattern.global || c.pattern.sticky) return undefined;
      const pattern = c.pattern;
      return (v) => pattern.test(v);
    }
    return lengthCheck(c);
  });
  if (checks === undefined) return undefined;
  if (checks.length === 0) return (v) => typeof v === 'string';
  return (v) => typeof v === 'string' && all(checks, v);
}

const LENGTH_CHECKS = new Set(['min_length', 'max_length', 'length_equals']);

function lengthCheck(c: CheckDef): ((v: { length: number }) => boolean) | undefined {
  if (c.check === 'min_length' && typeof c.minimum === 'number') { const n = c.minimum; return (v) => v.length >= n; }
  if (c.check === 'max_length' && typeof c.maximum === 'number') { const n = c.maximum; return (v) => v.length <= n; }
  if (c.check === 'length_equals' && typeof c.length === 'number') { const n = c.length; return (v) => v.length === n; }
  return undefined;
}

function compileNumber(def: Def): InPlaceCheck | undefined {
  // z.int() keeps its format on the definition itself.
  if (def.format !== undefined && def.format !== 'safeint') return undefined;
  const checks = compileChecks<number>(def, (c) => {
    if (c.check === 'number_format') return c.format === 'safeint' ? (v) => Number.isSafeInteger(v) : undefined;
    if (typeof c.value !== 'number') return undefined;
    const bound = c.value;
    if (c.check === 'greater_than') return c.inclusive === true ? (v) => v >= bound : (v) => v > bound;
    if (c.check === 'less_than') return c.inclusive === true ? (v) => v <= bound : (v) => v < bound;
    return undefined;
  });
  if (checks === undefined) return undefined;
  if (def.format === 'safeint') checks.unshift((v) => Number.isSafeInteger(v));
  return (v) => typeof v === 'number' && Number.isFinite(v) && all(checks, v);
}

function compileLiteral(def: Def): InPlaceCheck | undefined {
  const values = def.values ?? [];
  if (!noChecks(def) || values.length === 0 || !values.every((v) => typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v)))) return undefined;
  if (values.length === 1) {
    const only = values[0];
    return (v) => v === only;
  }
  return (v) => values.includes(v);
}

function compileEnum(def: Def): InPlaceCheck | undefined {
  const values = Object.values(def.entries ?? {});
  if (!noChecks(def) || values.length === 0 || !values.every((v) => typeof v === 'string')) return undefined;
  const set = new Set<unknown>(values);
  return (v) => typeof v === 'string' && set.has(v);
}

function compileArray(def: Def): InPlaceCheck | undefined {
  if (def.element === undefined) return undefined;
  const element = compile(def.element);
  const checks = compileChecks<unknown[]>(def, lengthCheck);
  if (element === undefined || checks === undefined) return undefined;
  return (v) => {
    if (!Array.isArray(v) || !all(checks, v)) return false;
    for (let i = 0; i < v.length; i++) if (!element(v[i])) return false;
    return true;
  };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;
}

function compileObject(def: Def): InPlaceCheck | undefined {
  // Only strict objects: a plain z.object() drops unknown keys, so its output is not its input.
  if (!noChecks(def) || def.shape === undefined || def.catchall === undefined || defOf(def.catchall).type !== 'never') return undefined;
  const keys = Object.keys(def.shape);
  const fields: InPlaceCheck[] = [];
  const known = new Set(keys);
  for (const key of keys) {
    const field = compile(def.shape[key] as z.ZodType);
    if (field === undefined) return undefined;
    fields.push(field);
  }
  return (v) => {
    if (!isPlainObject(v)) return false;
    for (const key in v) if (!known.has(key)) return false;
    for (let i = 0; i < keys.length; i++) if (!(fields[i] as InPlaceCheck)(v[keys[i] as string])) return false;
    return true;
  };
}

function compileUnion(def: Def): InPlaceCheck | undefined {
  // Only discriminated unions: at most one option can accept a value, so the output is that
  // option's. (With a plain union zod keeps the first option that accepts, which may not be the
  // one that passed here.)
  const { discriminator, options } = def;
  if (!noChecks(def) || typeof discriminator !== 'string' || options === undefined) return undefined;
  const byTag = new Map<unknown, InPlaceCheck>();
  for (const option of options) {
    const optionDef = defOf(option);
    const tagSchema = optionDef.shape?.[discriminator];
    if (optionDef.type !== 'object' || tagSchema === undefined || defOf(tagSchema).type !== 'literal') return undefined;
    const check = compile(option);
    if (check === undefined) return undefined;
    for (const tag of defOf(tagSchema).values ?? []) {
      if (byTag.has(tag)) return undefined;
      byTag.set(tag, check);
    }
  }
  return (v) => {
    if (!isPlainObject(v)) return false;
    const check = byTag.get(v[discriminator]);
    return check !== undefined && check(v);
  };
}

function compileRecord(def: Def): InPlaceCheck | undefined {
  if (!noChecks(def) || def.keyType === undefined || def.valueType === undefined) return undefined;
  const keyDef = defOf(def.keyType);
  if (keyDef.type !== 'string' || keyDef.format !== undefined || !noChecks(keyDef)) return undefined;
  const value = compile(def.valueType);
  if (value === undefined) return undefined;
  return (v) => {
    if (!isPlainObject(v)) return false;
    // zod would set a `__proto__` key as the prototype of the object it builds: left to zod.
    for (const key in v) if (key === '__proto__' || !value(v[key])) return false;
    return true;
  };
}
