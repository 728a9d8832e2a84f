/**
 * Reader for traces in the Azure Functions 2019 format as the Invitro load generator consumes them:
 * a directory with `invocations.csv`, `durations.csv` and `memory.csv`, joined by `HashFunction`.
 *
 * - invocations.csv: only the first four header cells are examined (case-insensitively):
 *   `HashOwner`, `HashApp`, `HashFunction` and, if present, `Trigger`. The minute columns start
 *   right after `Trigger` (or at index 3 without it); their names are never used, so a slice whose
 *   columns are named `540..689` parses the same way.
 * - durations.csv and memory.csv are read by header name, so their column order does not matter.
 *
 * Malformed input throws `BatonError('ERR_INVALID_REQUEST')` whose message and `details` name the
 * file, the 1-based line and the 1-based column. A function listed in invocations.csv but missing
 * from durations.csv or memory.csv (or with `Count`/`SampleCount` ≤ 0, or decreasing percentiles,
 * which would make Invitro's sampler fail) is left out of `functions` and reported in `issues`.
 *
 * Values are comma-separated without quoting (the dataset has none); blank lines are skipped and
 * CRLF line ends are accepted.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BatonError } from '../core/errors.ts';

/** Execution-time statistics of one function, in ms (percentiles of 30-s-window averages). */
export interface DurationStats {
  readonly averageMs: number;
  readonly count: number;
  readonly minimumMs: number;
  readonly maximumMs: number;
  /** p0, p1, p25, p50, p75, p99, p100 in that order. */
  readonly percentilesMs: readonly [number, number, number, number, number, number, number];
}

/** Allocated-memory statistics of one function, in MiB. */
export interface MemoryStats {
  readonly sampleCount: number;
  readonly averageMiB: number;
  /** pct1, pct5, pct25, pct50, pct75, pct95, pct99, pct100 in that order (there is no pct0). */
  readonly percentilesMiB: readonly [number, number, number, number, number, number, number, number];
}

export interface TraceFunction {
  /** `t<first 18 chars of HashFunction>-<row index>`, a valid Baton function name. */
  readonly name: string;
  readonly hashOwner: string;
  readonly hashApp: string;
  readonly hashFunction: string;
  readonly trigger: string;
  /** Invocations per trace minute; index 0 is the first minute column. */
  readonly perMinute: Uint32Array;
  readonly durations: DurationStats;
  readonly memory: MemoryStats;
}

export type TraceIssueKind = 'missing-durations' | 'missing-memory' | 'invalid-durations' | 'invalid-memory';

export interface TraceIssue {
  readonly kind: TraceIssueKind;
  readonly hashFunction: string;
  readonly message: string;
}

export interface Trace {
  readonly functions: readonly TraceFunction[];
  /** Number of minute columns in invocations.csv. */
  readonly minutes: number;
  readonly issues: readonly TraceIssue[];
}

export interface TraceFiles {
  readonly invocationsCsv: string;
  readonly durationsCsv: string;
  readonly memoryCsv: string;
}

export const DURATION_COLUMNS = [
  'Average', 'Count', 'Minimum', 'Maximum',
  'percentile_Average_0', 'percentile_Average_1', 'percentile_Average_25', 'percentile_Average_50',
  'percentile_Average_75', 'percentile_Average_99', 'percentile_Average_100',
] as const;

export const MEMORY_COLUMNS = [
  'SampleCount', 'AverageAllocatedMb',
  'AverageAllocatedMb_pct1', 'AverageAllocatedMb_pct5', 'AverageAllocatedMb_pct25', 'AverageAllocatedMb_pct50',
  'AverageAllocatedMb_pct75', 'AverageAllocatedMb_pct95', 'AverageAllocatedMb_pct99', 'AverageAllocatedMb_pct100',
] as const;

/** Reads and parses the three files of a trace directory. */
export async function readTrace(directory: string): Promise<Trace> {
  const read = (file: string): Promise<string> => readFile(join(directory, file), 'utf8');
  const [invocationsCsv, durationsCsv, memoryCsv] = await Promise.all([
    read('invocations.csv'), read('durations.csv'), read('memory.csv'),
  ]);
  return parseTrace({ invocationsCsv, durationsCsv, memoryCsv });
}

/** Parses the three files' contents (pure). */
export function parseTrace(files: TraceFiles): Trace {
  const durations = parseStatsFile('durations.csv', files.durationsCsv, DURATION_COLUMNS);
  const memory = parseStatsFile('memory.csv', files.memoryCsv, MEMORY_COLUMNS);
  const invocations = parseInvocations(files.invocationsCsv);
  const functions: TraceFunction[] = [];
  const issues: TraceIssue[] = [];
  invocations.rows.forEach((row, index) => {
    const durationValues = durations.get(row.hashFunction);
    const memoryValues = memory.get(row.hashFunction);
    const report = (kind: TraceIssueKind, message: string): void => {
      issues.push({ kind, hashFunction: row.hashFunction, message });
    };
    if (durationValues === undefined) report('missing-durations', 'not in durations.csv');
    if (memoryValues === undefined) report('missing-memory', 'not in memory.csv');
    if (durationValues === undefined || memoryValues === undefined) return;
    const durationProblem = checkStats(durationValues, 1, 4);
    const memoryProblem = checkStats(memoryValues, 0, 2);
    if (durationProblem !== undefined) report('invalid-durations', `durations.csv line ${durationValues.line}: ${durationProblem}`);
    if (memoryProblem !== undefined) report('invalid-memory', `memory.csv line ${memoryValues.line}: ${memoryProblem}`);
    if (durationProblem !== undefined || memoryProblem !== undefined) return;
    functions.push({ ...row, name: traceFunctionName(row.hashFunction, index), durations: toDurationStats(durationValues.values), memory: toMemoryStats(memoryValues.values) });
  });
  return { functions, minutes: invocations.minutes, issues };
}

/** `t` + the first 18 lower-case alphanumerics of the hash + `-<row index>` (Dirigent's rps_mode naming). */
export function traceFunctionName(hashFunction: string, rowIndex: number): string {
  return `t${hashFunction.toLowerCase().replace(/[^a-z0-9]/g, '').slice(0, 18)}-${rowIndex}`;
}

interface Line {
  readonly number: number;
  readonly cells: string[];
}

function splitLines(text: string): Line[] {
  const lines: Line[] = [];
  text.split('\n').forEach((raw, index) => {
    const content = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (content.trim() !== '') lines.push({ number: index + 1, cells: content.split(',').map((c) => c.trim()) });
  });
  return lines;
}

function malformed(file: string, line: number, column: number | undefined, problem: string): BatonError {
  const where = column === undefined ? `${file} line ${line}` : `${file} line ${line} column ${column}`;
  return new BatonError('ERR_INVALID_REQUEST', `${where}: ${problem}`, { details: { file, line, column, problem } });
}

function headerOf(file: string, lines: Line[]): Line {
  const header = lines[0];
  if (header === undefined) throw malformed(file, 1, undefined, 'the file is empty (a header line is required)');
  return header;
}

function checkWidth(file: string, line: Line, width: number): void {
  if (line.cells.length !== width) {
    throw malformed(file, line.number, undefined, `has ${line.cells.length} cells, the header has ${width}`);
  }
}

interface InvocationRow {
  readonly hashOwner: string;
  readonly hashApp: string;
  readonly hashFunction: string;
  readonly trigger: string;
  readonly perMinute: Uint32Array;
}

function parseInvocations(text: string): { rows: InvocationRow[]; minutes: number } {
  const file = 'invocations.csv';
  const lines = splitLines(text);
  const header = headerOf(file, lines);
  const position = (name: string): number => header.cells.slice(0, 4).findIndex((c) => c.toLowerCase() === name);
  const [owner, app, fn, trigger] = ['hashowner', 'hashapp', 'hashfunction', 'trigger'].map(position) as [number, number, number, number];
  for (const [name, index] of [['HashOwner', owner], ['HashApp', app], ['HashFunction', fn]] as const) {
    if (index < 0) throw malformed(file, header.number, undefined, `the first four header cells must include ${name}`);
  }
  const firstMinute = trigger >= 0 ? trigger + 1 : 3;
  const minutes = header.cells.length - firstMinute;
  if (minutes < 1) throw malformed(file, header.number, undefined, 'no minute columns after the key columns');
  const seen = new Map<string, number>();
  const rows = lines.slice(1).map((line): InvocationRow => {
    checkWidth(file, line, header.cells.length);
    const hashFunction = line.cells[fn] ?? '';
    if (hashFunction === '') throw malformed(file, line.number, fn + 1, 'HashFunction is empty');
    const previous = seen.get(hashFunction);
    if (previous !== undefined) throw malformed(file, line.number, fn + 1, `HashFunction repeats line ${previous}`);
    seen.set(hashFunction, line.number);
    const perMinute = new Uint32Array(minutes);
    for (let m = 0; m < minutes; m++) {
      const cell = line.cells[firstMinute + m] ?? '';
      if (!/^\d+$/.test(cell) || Number(cell) > 0xffffffff) {
        throw malformed(file, line.number, firstMinute + m + 1, `minute count "${cell}" is not a non-negative integer`);
      }
      perMinute[m] = Number(cell);
    }
    return {
      hashOwner: line.cells[owner] ?? '', hashApp: line.cells[app] ?? '', hashFunction,
      trigger: trigger >= 0 ? line.cells[trigger] ?? '' : '', perMinute,
    };
  });
  return { rows, minutes };
}

interface StatsRow {
  readonly line: number;
  readonly values: readonly number[];
}

/** Reads the named numeric columns of a stats file, keyed by HashFunction. */
function parseStatsFile(file: string, text: string, columns: readonly string[]): Map<string, StatsRow> {
  const lines = splitLines(text);
  const header = headerOf(file, lines);
  const indexOf = (name: string): number => {
    const index = header.cells.indexOf(name);
    if (index < 0) throw malformed(file, header.number, undefined, `the header has no ${name} column`);
    return index;
  };
  const key = indexOf('HashFunction');
  const indexes = columns.map(indexOf);
  const rows = new Map<string, StatsRow>();
  for (const line of lines.slice(1)) {
    checkWidth(file, line, header.cells.length);
    const hashFunction = line.cells[key] ?? '';
    if (hashFunction === '') throw malformed(file, line.number, key + 1, 'HashFunction is empty');
    const previous = rows.get(hashFunction);
    if (previous !== undefined) throw malformed(file, line.number, key + 1, `HashFunction repeats line ${previous.line}`);
    const values = indexes.map((index, i) => {
      const cell = line.cells[index] ?? '';
      const value = cell === '' ? Number.NaN : Number(cell);
      if (!Number.isFinite(value)) throw malformed(file, line.number, index + 1, `${columns[i]} "${cell}" is not a number`);
      return value;
    });
    rows.set(hashFunction, { line: line.number, values });
  }
  return rows;
}

/** A reason the stats cannot be sampled, or undefined: count ≤ 0, or percentiles not non-decreasing. */
function checkStats(row: StatsRow, countIndex: number, firstPercentile: number): string | undefined {
  if ((row.values[countIndex] ?? 0) <= 0) return 'the sample count is not positive';
  const percentiles = row.values.slice(firstPercentile);
  for (let i = 1; i < percentiles.length; i++) {
    if ((percentiles[i] ?? 0) < (percentiles[i - 1] ?? 0)) return 'the percentiles decrease';
  }
  return undefined;
}

function toDurationStats(v: readonly number[]): DurationStats {
  const at = (i: number): number => v[i] ?? 0;
  return {
    averageMs: at(0), count: at(1), minimumMs: at(2), maximumMs: at(3),
    percentilesMs: [at(4), at(5), at(6), at(7), at(8), at(9), at(10)],
  };
}

function toMemoryStats(v: readonly number[]): MemoryStats {
  const at = (i: number): number => v[i] ?? 0;
  return {
    sampleCount: at(0), averageMiB: at(1),
    percentilesMiB: [at(2), at(3), at(4), at(5), at(6), at(7), at(8), at(9)],
  };
}
