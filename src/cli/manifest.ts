import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { functionSpecSchema, type FunctionSpec, type FunctionSpecInput } from '../api/function-spec.ts';
import { parseOrThrow } from '../api/validate.ts';
import { BatonError } from '../core/errors.ts';

/**
 * What `baton deploy` builds before touching the network: a function spec without its artifact
 * (the digest is known only after upload) and the folder to pack. It comes from a `baton.yaml`
 * manifest, from flags, or from both (flags win).
 *
 * baton.yaml holds the function spec's fields except `artifact`, plus `dir` (default: the
 * manifest's folder; relative to it). `command` may be a list or one shell-like string.
 */

export type SpecDraft = Omit<FunctionSpecInput, 'artifact'>;

export interface DeployPlan {
  readonly spec: SpecDraft;
  /** Absolute path of the folder to pack. */
  readonly dir: string | undefined;
}

/** A well-formed digest used only to validate a draft before anything is uploaded. */
export const PLACEHOLDER_DIGEST = `sha256:${'0'.repeat(64)}`;

const SPEC_KEYS = Object.keys(functionSpecSchema.shape).filter((k) => k !== 'artifact');
const MANIFEST_KEYS = [...SPEC_KEYS, 'dir'];

function specError(field: string, rule: string): BatonError {
  return new BatonError('ERR_INVALID_SPEC', `invalid function spec: ${field}: ${rule}`, { details: { issues: [{ field, rule }] } });
}

/**
 * Splits a command line into arguments like a POSIX shell would, without evaluating anything:
 * whitespace separates, '…' is literal, "…" allows \" \\ \$ \` escapes, \x outside quotes is x.
 * `node server.js --name "a b"` → ['node', 'server.js', '--name', 'a b'].
 */
export function splitCommand(line: string): string[] {
  const args: string[] = [];
  let current = '';
  let hasArg = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i] as string;
    if (quote === "'") {
      if (ch === "'") quote = undefined;
      else current += ch;
    } else if (quote === '"') {
      if (ch === '"') quote = undefined;
      else if (ch === '\\' && i + 1 < line.length && '"\\$`'.includes(line[i + 1] as string)) current += line[++i];
      else current += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      hasArg = true;
    } else if (ch === '\\') {
      if (i + 1 < line.length) current += line[++i];
      hasArg = true;
    } else if (/\s/.test(ch)) {
      if (hasArg) args.push(current);
      current = '';
      hasArg = false;
    } else {
      current += ch;
      hasArg = true;
    }
  }
  if (quote !== undefined) throw specError('command', `unterminated ${quote} quote in '${line}'`);
  if (hasArg) args.push(current);
  if (args.length === 0) throw specError('command', 'must not be empty');
  return args;
}

/** `['A=1', 'B=x=y']` → `{ A: '1', B: 'x=y' }` (split at the first `=`; later keys win). */
export function parseEnvPairs(pairs: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw specError('env', `'${pair}' must be KEY=VALUE`);
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return env;
}

/** Parses the text of a manifest found at `manifestPath` (used to resolve `dir`). */
export function parseManifest(text: string, manifestPath: string): DeployPlan {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new BatonError('ERR_INVALID_SPEC', `cannot parse ${manifestPath}: ${(err as Error).message}`, { cause: err });
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new BatonError('ERR_INVALID_SPEC', `${manifestPath} must hold a mapping of fields to values`);
  }
  const fields = { ...(doc as Record<string, unknown>) };
  for (const key of Object.keys(fields)) {
    if (key === 'artifact') throw specError('artifact', `is set by 'baton deploy' from dir; remove it from ${manifestPath}`);
    if (!MANIFEST_KEYS.includes(key)) throw specError(key, `unknown field in ${manifestPath} (allowed: ${MANIFEST_KEYS.join(', ')})`);
  }
  const base = dirname(resolve(manifestPath));
  const { dir, command, env, ...rest } = fields;
  if (dir !== undefined && typeof dir !== 'string') throw specError('dir', 'must be a path');
  const spec: Record<string, unknown> = { ...rest };
  if (command !== undefined) spec['command'] = typeof command === 'string' ? splitCommand(command) : command;
  if (env !== undefined) spec['env'] = stringifyScalars(env);
  return { spec: spec as SpecDraft, dir: resolve(base, dir ?? '.') };
}

/** YAML reads `DEBUG: 1` as a number; environment values are strings, so scalars are stringified. */
function stringifyScalars(env: unknown): unknown {
  if (typeof env !== 'object' || env === null || Array.isArray(env)) return env;
  return Object.fromEntries(Object.entries(env).map(([k, v]) =>
    [k, typeof v === 'number' || typeof v === 'boolean' ? String(v) : v]));
}

export async function loadManifest(file: string): Promise<DeployPlan> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new BatonError('ERR_INVALID_SPEC', `cannot read manifest ${file}: ${(err as Error).message}`, { cause: err });
  }
  return parseManifest(text, file);
}

/** The deploy flags as parsed from the command line (strings, as given). */
export interface DeployFlags {
  readonly name?: string | undefined;
  readonly dir?: string | undefined;
  readonly runtime?: string | undefined;
  readonly protocol?: string | undefined;
  readonly handler?: string | undefined;
  readonly command?: string | undefined;
  readonly concurrency?: string | undefined;
  readonly minScale?: string | undefined;
  readonly maxScale?: string | undefined;
  readonly memory?: string | undefined;
  readonly maxPids?: string | undefined;
  readonly cpu?: string | undefined;
  readonly timeoutMs?: string | undefined;
  readonly env?: readonly string[] | undefined;
}

/**
 * Lays flags over a manifest's plan (or over nothing). `--handler` replaces a manifest's
 * `command` and vice versa; `--env` pairs are merged over the manifest's env.
 */
export function applyDeployFlags(base: DeployPlan | undefined, flags: DeployFlags, cwd: string): DeployPlan {
  const spec: Record<string, unknown> = { ...base?.spec };
  if (flags.name !== undefined) spec['name'] = flags.name;
  if (flags.runtime !== undefined) spec['runtime'] = flags.runtime;
  if (flags.protocol !== undefined) spec['protocol'] = flags.protocol;
  if (flags.handler !== undefined) {
    spec['handler'] = flags.handler;
    if (flags.command === undefined) delete spec['command'];
  }
  if (flags.command !== undefined) {
    spec['command'] = splitCommand(flags.command);
    if (flags.handler === undefined) delete spec['handler'];
  }
  if (flags.concurrency !== undefined) spec['concurrency'] = toNumber('concurrency', flags.concurrency);
  if (flags.timeoutMs !== undefined) spec['timeoutMs'] = toNumber('timeout-ms', flags.timeoutMs);
  const scaling = pick({ minScale: flags.minScale, maxScale: flags.maxScale }, { minScale: 'min-scale', maxScale: 'max-scale' });
  if (scaling !== undefined) spec['scaling'] = { ...(spec['scaling'] as object | undefined), ...scaling };
  const resources = pick({ memoryMiB: flags.memory, cpuMilli: flags.cpu, maxPids: flags.maxPids }, { memoryMiB: 'memory', cpuMilli: 'cpu', maxPids: 'max-pids' });
  if (resources !== undefined) spec['resources'] = { ...(spec['resources'] as object | undefined), ...resources };
  if (flags.env !== undefined && flags.env.length > 0) {
    spec['env'] = { ...(spec['env'] as object | undefined), ...parseEnvPairs(flags.env) };
  }
  const dir = flags.dir === undefined ? base?.dir : resolve(cwd, flags.dir);
  return { spec: spec as SpecDraft, dir };
}

function pick(values: Record<string, string | undefined>, flagNames: Record<string, string>): Record<string, number> | undefined {
  const out: Record<string, number> = {};
  for (const [key, raw] of Object.entries(values)) {
    if (raw !== undefined) out[key] = toNumber(flagNames[key] ?? key, raw);
  }
  return Object.keys(out).length === 0 ? undefined : out;
}

function toNumber(flag: string, raw: string): number {
  const n = raw.trim() === '' ? Number.NaN : Number(raw);
  if (!Number.isFinite(n)) throw specError(flag, `--${flag} must be a number (got '${raw}')`);
  return n;
}

/**
 * Checks a draft with the function spec schema (with a placeholder digest), so that bad input is
 * rejected before anything is packed or uploaded. Throws ERR_INVALID_SPEC naming the field.
 */
export function validateDraft(spec: SpecDraft): FunctionSpec {
  return parseOrThrow(functionSpecSchema, { ...spec, artifact: PLACEHOLDER_DIGEST }, 'ERR_INVALID_SPEC', 'function spec');
}
