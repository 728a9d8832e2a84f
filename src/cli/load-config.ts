import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { BatonError } from '../core/errors.ts';

/**
 * Loads a daemon's configuration once, from three sources in increasing precedence:
 *
 *   file (YAML for .yaml/.yml, JSON for .json)  <  environment  <  flags
 *
 * - environment: `${envPrefix}${UPPER_SNAKE(key)}`, e.g. key `heartbeatIntervalMs` with prefix
 *   `BATON_CONTROLPLANE_` is `BATON_CONTROLPLANE_HEARTBEAT_INTERVAL_MS`;
 * - flags: `--kebab-case-key` (the record's keys are the flag names without `--`, e.g.
 *   `heartbeat-interval-ms`; the camelCase key itself is accepted too; `undefined` means "not given").
 *
 * Sources merge per top-level key (a nested object given by a later source replaces the earlier
 * one). Values from env and flags are strings, coerced to the key's type: numbers must be finite,
 * booleans are `true`/`false`, objects and arrays are JSON. Unknown keys (in the file, in flags, or
 * env vars starting with the prefix) and invalid values throw ERR_INVALID_CONFIG naming the key,
 * the rule and the bad value. The result is deep-frozen.
 */
export function loadConfig<S extends z.ZodObject>(
  schema: S,
  sources: {
    file?: string;
    env: NodeJS.ProcessEnv;
    envPrefix: string;
    flags: Record<string, string | boolean | undefined>;
  },
): Readonly<z.output<S>> {
  const keys = Object.keys(schema.shape);
  const input: Record<string, unknown> = {};
  const origin = new Map<string, string>();
  const set = (key: string, value: unknown, from: string) => {
    input[key] = value;
    origin.set(key, from);
  };

  if (sources.file !== undefined) {
    for (const [key, value] of Object.entries(readConfigFile(sources.file))) {
      if (!keys.includes(key)) throw unknownKey(key, sources.file, keys);
      set(key, value, sources.file);
    }
  }
  for (const [name, raw] of Object.entries(sources.env)) {
    if (!name.startsWith(sources.envPrefix) || raw === undefined) continue;
    const key = keys.find((k) => sources.envPrefix + toUpperSnake(k) === name);
    if (key === undefined) throw unknownKey(name, 'environment', keys.map((k) => sources.envPrefix + toUpperSnake(k)));
    set(key, coerce(schema, key, raw, name), name);
  }
  for (const [flag, raw] of Object.entries(sources.flags)) {
    if (raw === undefined) continue;
    const key = keys.find((k) => k === flag || toKebab(k) === flag);
    if (key === undefined) throw unknownKey(`--${flag}`, 'flags', keys.map((k) => `--${toKebab(k)}`));
    set(key, coerce(schema, key, raw, `--${toKebab(key)}`), `--${toKebab(key)}`);
  }

  const result = schema.safeParse(input);
  if (!result.success) throw describeIssue(schema, result.error.issues[0], input, origin, sources.file);
  return deepFreeze(result.data) as Readonly<z.output<S>>;
}

/** `heartbeatIntervalMs` → `HEARTBEAT_INTERVAL_MS`; `memoryMiB` → `MEMORY_MIB`. */
export function toUpperSnake(key: string): string {
  return words(key).join('_').toUpperCase();
}

/** `heartbeatIntervalMs` → `heartbeat-interval-ms`. */
export function toKebab(key: string): string {
  return words(key).join('-').toLowerCase();
}

function words(key: string): string[] {
  // Binary units are one word: memoryMiB is memory + MiB, not memory + Mi + B.
  const normalised = key.replace(/([KMGT])iB/g, '$1ib');
  return normalised.match(/[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+/g) ?? [key];
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new BatonError('ERR_INVALID_CONFIG', `cannot read config file ${file}: ${(err as Error).message}`, { cause: err });
  }
  const ext = extname(file).toLowerCase();
  let parsed: unknown;
  try {
    if (ext === '.json') parsed = JSON.parse(text);
    else if (ext === '.yaml' || ext === '.yml') parsed = parseYaml(text);
    else throw new Error(`unsupported extension '${ext}' (use .yaml, .yml or .json)`);
  } catch (err) {
    throw new BatonError('ERR_INVALID_CONFIG', `cannot parse config file ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new BatonError('ERR_INVALID_CONFIG', `config file ${file} must hold a mapping of keys to values`);
  }
  return parsed as Record<string, unknown>;
}

function unknownKey(key: string, where: string, allowed: readonly string[]): BatonError {
  return new BatonError('ERR_INVALID_CONFIG', `unknown config key '${key}' in ${where} (allowed: ${allowed.join(', ')})`, {
    details: { key, source: where, allowed },
  });
}

type ValueKind = 'number' | 'boolean' | 'string' | 'json' | 'any';

/** The scalar kind a schema field accepts, looking through default/optional/pipe wrappers. */
function kindOf(field: z.ZodType): ValueKind {
  const def = field._zod.def as { type: string; innerType?: z.ZodType; in?: z.ZodType };
  switch (def.type) {
    case 'default': case 'prefault': case 'optional': case 'nullable': case 'readonly': case 'catch': case 'nonoptional':
      return def.innerType === undefined ? 'any' : kindOf(def.innerType);
    case 'pipe':
      return def.in === undefined ? 'any' : kindOf(def.in);
    case 'number': case 'int': return 'number';
    case 'boolean': return 'boolean';
    case 'string': case 'enum': case 'template_literal': return 'string';
    case 'object': case 'array': case 'record': case 'tuple': return 'json';
    default: return 'any';
  }
}

function coerce(schema: z.ZodObject, key: string, raw: string | boolean, from: string): unknown {
  const kind = kindOf(schema.shape[key] as z.ZodType);
  const bad = (rule: string) => new BatonError('ERR_INVALID_CONFIG',
    `invalid config value for '${key}' from ${from}: ${rule} (got ${show(raw)})`, { details: { key, source: from, rule, value: raw } });
  if (typeof raw === 'boolean') {
    if (kind === 'boolean' || kind === 'any') return raw;
    throw bad(`needs a ${kind === 'json' ? 'JSON' : kind} value`);
  }
  switch (kind) {
    case 'number': {
      const n = raw.trim() === '' ? Number.NaN : Number(raw);
      if (!Number.isFinite(n)) throw bad('must be a finite number');
      return n;
    }
    case 'boolean':
      if (raw === 'true') return true;
      if (raw === 'false') return false;
      throw bad("must be 'true' or 'false'");
    case 'string':
      return raw;
    case 'json':
      try {
        return JSON.parse(raw);
      } catch {
        throw bad('must be JSON');
      }
    case 'any':
      try {
        return JSON.parse(raw);
      } catch {
        return raw;
      }
  }
}

function describeIssue(
  schema: z.ZodObject,
  issue: z.core.$ZodIssue | undefined,
  input: Record<string, unknown>,
  origin: ReadonlyMap<string, string>,
  file: string | undefined,
): BatonError {
  if (issue === undefined) return new BatonError('ERR_INVALID_CONFIG', 'invalid config');
  const path = issue.path.map(String);
  const top = path[0];
  const from = top === undefined ? undefined : origin.get(top) ?? 'defaults';
  if (issue.code === 'unrecognized_keys') {
    const prefix = path.length === 0 ? '' : `${path.join('.')}.`;
    const allowed = Object.keys(shapeAt(schema, path) ?? {}).map((k) => prefix + k);
    return unknownKey(prefix + (issue.keys[0] ?? '?'), from ?? file ?? 'config', allowed);
  }
  const key = path.length === 0 ? '(root)' : path.join('.');
  const value = valueAt(input, path);
  const where = from === undefined ? '' : ` from ${from}`;
  return new BatonError('ERR_INVALID_CONFIG', `invalid config value for '${key}'${where}: ${issue.message} (got ${show(value)})`, {
    details: { key, source: from, rule: issue.message, value },
  });
}

function shapeAt(schema: z.ZodType, path: readonly string[]): Record<string, unknown> | undefined {
  let current: z.ZodType | undefined = schema;
  for (const segment of [...path, undefined]) {
    while (current !== undefined) {
      const def = current._zod.def as { type: string; innerType?: z.ZodType; in?: z.ZodType };
      if (def.innerType !== undefined) current = def.innerType;
      else if (def.type === 'pipe') current = def.in;
      else break;
    }
    const shape: Record<string, z.ZodType> | undefined = (current as { shape?: Record<string, z.ZodType> } | undefined)?.shape;
    if (segment === undefined) return shape;
    current = shape?.[segment];
  }
  return undefined;
}

function valueAt(input: unknown, path: readonly string[]): unknown {
  let value = input;
  for (const segment of path) value = (value as Record<string, unknown> | undefined)?.[segment];
  return value;
}

function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = typeof value === 'string' ? `'${value}'` : JSON.stringify(value) ?? String(value);
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
