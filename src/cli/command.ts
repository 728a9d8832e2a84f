import { parseArgs, type ParseArgsConfig } from 'node:util';
import { BatonError } from '../core/errors.ts';
import { BatonClient, resolveClientOptions } from './client.ts';

/**
 * What every `baton` command shares: its declaration (flags, positionals, usage), the parsed
 * arguments, the I/O it writes to, and a lazily created client. Exit codes: 0 success, 1 failure
 * (a BatonError, printed as `error ERR_CODE: message`), 2 bad command line (a UsageError).
 */

export interface Writer {
  write(chunk: string | Uint8Array): unknown;
  readonly isTTY?: boolean;
}

/** Everything a command touches outside itself; tests pass their own. */
export interface CliIo {
  readonly stdout: Writer;
  readonly stderr: Writer;
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
  /** Aborted on Ctrl-C: ends `logs --follow`. */
  readonly signal?: AbortSignal;
  /** Epoch milliseconds, for ages in tables; default Date.now. */
  readonly now?: () => number;
}

/** A malformed command line: unknown flag, missing value, wrong number of arguments. Exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export type OptionSpecs = NonNullable<ParseArgsConfig['options']>;
export type FlagValues = Readonly<Record<string, string | boolean | (string | boolean)[] | undefined>>;

export interface CommandContext {
  readonly values: FlagValues;
  readonly positionals: readonly string[];
  readonly io: CliIo;
  readonly isJson: boolean;
  /** The control-plane/data-plane client, created on first use and closed after the command. */
  client(): BatonClient;
  /** Writes a line (newline added) to stdout. */
  print(text?: string): void;
  /** Writes a value as pretty JSON to stdout. */
  printJson(value: unknown): void;
}

export interface Command {
  readonly name: string;
  readonly summary: string;
  /** Usage lines after `usage: `, then option descriptions. */
  readonly usage: string;
  readonly options: OptionSpecs;
  readonly positionals: { readonly min: number; readonly max: number; readonly names: string };
  run(ctx: CommandContext): Promise<number>;
}

/** Flags every command accepts. */
export const COMMON_OPTIONS: OptionSpecs = {
  url: { type: 'string' },
  token: { type: 'string' },
  ca: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

export const COMMON_USAGE = `common flags:
  --url URL     control plane (default: $BATON_URL, else the one 'baton up' started, else http://127.0.0.1:9090)
  --token T     API token (default: $BATON_TOKEN, else the admin token 'baton up' wrote to ~/.config/baton/config.json)
  --ca FILE     CA of an https cluster (default: $BATON_CA, else the one 'baton up --tls' made)
  --json        machine-readable JSON on stdout
  -h, --help    this help`;

/** Parses `argv` (after the command name) strictly; every mistake is a UsageError naming it. */
export function parseCommandArgs(command: Command, argv: readonly string[]): { values: FlagValues; positionals: string[] } {
  const options = { ...COMMON_OPTIONS, ...command.options };
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options, strict: true, allowPositionals: true });
  } catch (err) {
    throw new UsageError(describeParseError(err, command, options));
  }
  const { positionals } = parsed;
  if (parsed.values['help'] === true) return { values: parsed.values, positionals };
  if (positionals.length < command.positionals.min) {
    throw new UsageError(`'baton ${command.name}' needs ${command.positionals.names}`);
  }
  if (positionals.length > command.positionals.max) {
    const extra = positionals[command.positionals.max];
    throw new UsageError(`unexpected argument '${extra}' for 'baton ${command.name}'`);
  }
  return { values: parsed.values, positionals };
}

function describeParseError(err: unknown, command: Command, options: OptionSpecs): string {
  const code = (err as { code?: string }).code;
  const message = (err as Error).message;
  const quoted = /'([^']+)'/.exec(message)?.[1]?.split(' ')[0];
  const allowed = Object.keys(options).map((name) => `--${name}`).join(', ');
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown flag '${quoted ?? message}' for 'baton ${command.name}' (allowed: ${allowed})`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return /argument missing|ambiguous/.test(message)
        ? `flag '${quoted ?? '?'}' needs a value`
        : `flag '${quoted ?? '?'}' takes no value`;
    default:
      return message;
  }
}

/** Builds the context a command runs with; call `dispose` afterwards. */
export function createContext(
  io: CliIo,
  parsed: { values: FlagValues; positionals: readonly string[] },
): { ctx: CommandContext; dispose(): Promise<void> } {
  let client: BatonClient | undefined;
  const ctx: CommandContext = {
    values: parsed.values,
    positionals: parsed.positionals,
    io,
    isJson: parsed.values['json'] === true,
    client() {
      client ??= new BatonClient(resolveClientOptions(
        { url: stringFlag(parsed.values, 'url'), dataplaneUrl: stringFlag(parsed.values, 'dataplane-url'), token: stringFlag(parsed.values, 'token'), ca: stringFlag(parsed.values, 'ca') }, io.env));
      return client;
    },
    print: (text = '') => io.stdout.write(`${text}\n`),
    printJson: (value) => io.stdout.write(`${JSON.stringify(value, null, 2)}\n`),
  };
  return { ctx, dispose: async () => { await client?.close(); } };
}

export function stringFlag(values: FlagValues, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

export function stringListFlag(values: FlagValues, name: string): string[] {
  const value = values[name];
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

/** An integer flag ≥ `min`, or undefined when absent; anything else is a UsageError. */
export function intFlag(values: FlagValues, name: string, min: number): number | undefined {
  const raw = stringFlag(values, name);
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw) || Number(raw) < min) throw new UsageError(`--${name} must be an integer ≥ ${min} (got '${raw}')`);
  return Number(raw);
}

/** Prints an error the way every command does; returns the exit code. */
export function reportError(io: CliIo, err: unknown, commandName?: string): number {
  if (err instanceof UsageError) {
    const help = commandName === undefined ? 'baton help' : `baton ${commandName} --help`;
    io.stderr.write(`error: ${err.message}\nrun '${help}' for usage\n`);
    return 2;
  }
  const error = err instanceof BatonError ? err : new BatonError('ERR_INTERNAL', err instanceof Error ? err.message : String(err));
  io.stderr.write(`error ${error.code}: ${error.message}\n`);
  const issues = (error.details as { issues?: { field: string; rule: string }[] } | undefined)?.issues;
  if (Array.isArray(issues) && issues.length > 1) {
    for (const issue of issues) io.stderr.write(`  ${issue.field}: ${issue.rule}\n`);
  }
  return 1;
}
