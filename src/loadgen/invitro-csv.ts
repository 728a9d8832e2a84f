/**
 * Writes a run's records as Invitro's per-invocation CSV (`experiment_duration_<minutes>.csv`), so
 * Dirigent's analysis scripts can read Baton's runs unchanged, and reads such files back (Invitro's
 * own or Baton's) for `baton loadgen analyze`. Units follow Invitro: times in µs, startTime in
 * Unix-epoch µs. Columns that only the gRPC or async paths fill are 0 / false.
 *
 * The `baton` format appends Baton's own columns after Invitro's (scripts that read columns by
 * name still work): `scheduledTime` (Unix µs, when the plan said to send), `sendLag` (µs, startTime
 * − scheduledTime), `status` (HTTP status, 0 without an answer) and `errorCode` ('' when none).
 */
import { BatonError } from '../core/errors.ts';
import { errorCodeOf, isOk } from './records.ts';
import type { InvocationRecords } from './records.ts';

export const INVITRO_CSV_HEADER = 'phase,instance,invocationID,startTime,requestedDuration,grpcConnEstablish,responseTime,actualDuration,connectionTimeout,functionTimeout,actualMemoryUsage,memoryAllocationTimeout,timeToSubmitMs,userCodeExecutionMs,timeToGetResponseMs';

export const BATON_CSV_COLUMNS = 'scheduledTime,sendLag,status,errorCode';

export type ResultsFormat = 'invitro' | 'baton';

export interface InvitroCsvOptions {
  /** Wall-clock start of the run, ms since the epoch (RunResult.startWallMs). */
  readonly startWallMs: number;
  /** Minutes below this are phase 1 (warm-up), the rest phase 2. Default 0. */
  readonly warmupMinutes?: number;
  /** 'baton' appends BATON_CSV_COLUMNS. Default 'invitro'. */
  readonly format?: ResultsFormat;
}

/**
 * One line per invocation, in record order. `invocationID` is `min<m>.inv<k>`, k counting the
 * function's invocations within trace minute m. A failure with an HTTP answer sets
 * functionTimeout; one without (transport error, timeout, stop) sets connectionTimeout, as
 * Invitro's HTTP path does. `grpcConnEstablish` is 0 (headers-arrival time is not recorded).
 */
export function formatInvitroCsv(records: InvocationRecords, options: InvitroCsvOptions): string {
  const warmupMinutes = options.warmupMinutes ?? 0;
  const perFunctionMinute = new Map<string, number>();
  const isBaton = options.format === 'baton';
  const lines = [isBaton ? `${INVITRO_CSV_HEADER},${BATON_CSV_COLUMNS}` : INVITRO_CSV_HEADER];
  const us = (ms: number): number => Math.round(ms * 1000);
  for (let i = 0; i < records.length; i++) {
    const fn = records.functionIndex[i] ?? 0;
    const minute = records.minute[i] ?? 0;
    const key = `${fn}:${minute}`;
    const k = perFunctionMinute.get(key) ?? 0;
    perFunctionMinute.set(key, k + 1);
    const sentMs = records.sentMs[i] ?? 0;
    const execUs = records.execUs[i] ?? Number.NaN;
    const isFailure = !isOk(records, i);
    const hasResponse = (records.status[i] ?? 0) > 0 && errorCodeOf(records, i) !== 'TIMEOUT';
    const row: (string | number | boolean)[] = [
      minute < warmupMinutes ? 1 : 2,
      records.functions[fn] ?? '',
      `min${minute}.inv${k}`,
      us(options.startWallMs + sentMs),
      us(records.requestedExecMs[i] ?? 0),
      0,
      us((records.endMs[i] ?? 0) - sentMs),
      Number.isFinite(execUs) ? Math.round(execUs) : 0,
      isFailure && !hasResponse,
      isFailure && hasResponse,
      0, false, 0, 0, 0,
    ];
    if (isBaton) {
      const scheduledMs = records.scheduledMs[i] ?? 0;
      row.push(us(options.startWallMs + scheduledMs), us(sentMs - scheduledMs), records.status[i] ?? 0, errorCodeOf(records, i));
    }
    lines.push(row.join(','));
  }
  return `${lines.join('\n')}\n`;
}

/** A results file read back: records on a timeline whose 0 is `startWallMs`. */
export interface ParsedResults {
  readonly records: InvocationRecords;
  /** The earliest startTime (or scheduledTime) of the file, ms since the epoch. */
  readonly startWallMs: number;
  /** True when the file has Baton's columns (scheduled times, status and error codes are then exact). */
  readonly hasBatonColumns: boolean;
}

const REQUIRED_COLUMNS = ['instance', 'invocationID', 'startTime', 'requestedDuration', 'responseTime', 'actualDuration', 'connectionTimeout', 'functionTimeout'] as const;

/**
 * Reads a per-invocation CSV written by Invitro or by Baton (columns by name, any order). Without
 * Baton's columns, a failed row's code is `connectionTimeout` or `functionTimeout` (Invitro's
 * flags), its status 0 or 500 respectively, and its scheduled time its startTime. Malformed input
 * throws ERR_INVALID_REQUEST naming the file, line and column.
 */
export function parseResultsCsv(text: string, file = 'results.csv'): ParsedResults {
  const lines = text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  const header = (lines[0] ?? '').split(',').map((c) => c.trim());
  const bad = (line: number, column: number | undefined, problem: string): BatonError => new BatonError('ERR_INVALID_REQUEST',
    `${file} line ${line}${column === undefined ? '' : ` column ${column}`}: ${problem}`, { details: { file, line, column, problem } });
  const at = (name: string): number => header.indexOf(name);
  for (const name of REQUIRED_COLUMNS) if (at(name) < 0) throw bad(1, undefined, `the header has no ${name} column (not an Invitro per-invocation CSV)`);
  const hasBatonColumns = BATON_CSV_COLUMNS.split(',').every((name) => at(name) >= 0);
  const rows = lines.slice(1).map((raw, i) => ({ raw, line: i + 2 })).filter((r) => r.raw.trim() !== '');
  const n = rows.length;
  const functions: string[] = [];
  const functionIds = new Map<string, number>();
  const errorCodes: string[] = [''];
  const functionIndex = new Uint32Array(n);
  const requestedExecMs = new Float64Array(n);
  const minute = new Float64Array(n);
  const startUs = new Float64Array(n);
  const scheduledUs = new Float64Array(n);
  const responseUs = new Float64Array(n);
  const execUs = new Float64Array(n);
  const status = new Uint16Array(n);
  const errorIndex = new Uint16Array(n);
  const intern = (code: string): number => {
    const index = errorCodes.indexOf(code);
    return index >= 0 ? index : Math.min(0xffff, errorCodes.push(code) - 1);
  };
  rows.forEach(({ raw, line }, i) => {
    const cells = raw.split(',').map((c) => c.trim());
    if (cells.length !== header.length) throw bad(line, undefined, `has ${cells.length} cells, the header has ${header.length}`);
    const cell = (name: string): string => cells[at(name)] ?? '';
    const number = (name: string): number => {
      const value = Number(cell(name));
      if (cell(name) === '' || !Number.isFinite(value) || value < 0) throw bad(line, at(name) + 1, `${name} "${cell(name)}" is not a non-negative number`);
      return value;
    };
    const flag = (name: string): boolean => {
      const value = cell(name).toLowerCase();
      if (value !== 'true' && value !== 'false') throw bad(line, at(name) + 1, `${name} "${cell(name)}" is not true or false`);
      return value === 'true';
    };
    const name = cell('instance');
    let fn = functionIds.get(name);
    if (fn === undefined) functionIds.set(name, (fn = functions.push(name) - 1));
    functionIndex[i] = fn;
    const id = /^(?:min|sec)(\d+)\.inv\d+$/.exec(cell('invocationID'));
    if (id === null) throw bad(line, at('invocationID') + 1, `invocationID "${cell('invocationID')}" is not min<m>.inv<k>`);
    minute[i] = Number(id[1]);
    startUs[i] = number('startTime');
    requestedExecMs[i] = number('requestedDuration') / 1000;
    responseUs[i] = number('responseTime');
    execUs[i] = number('actualDuration');
    const connectionTimeout = flag('connectionTimeout');
    const functionTimeout = flag('functionTimeout');
    if (hasBatonColumns) {
      scheduledUs[i] = number('scheduledTime');
      status[i] = Math.min(0xffff, number('status'));
      const code = cell('errorCode');
      errorIndex[i] = code === '' ? ((connectionTimeout || functionTimeout) ? intern(connectionTimeout ? 'connectionTimeout' : 'functionTimeout') : 0) : intern(code);
    } else {
      scheduledUs[i] = startUs[i] ?? 0;
      status[i] = connectionTimeout ? 0 : functionTimeout ? 500 : 200;
      errorIndex[i] = connectionTimeout ? intern('connectionTimeout') : functionTimeout ? intern('functionTimeout') : 0;
    }
  });
  let originUs = Number.POSITIVE_INFINITY;
  for (let i = 0; i < n; i++) originUs = Math.min(originUs, startUs[i] ?? 0, scheduledUs[i] ?? 0);
  if (n === 0) originUs = 0;
  const sentMs = new Float64Array(n);
  const scheduledMs = new Float64Array(n);
  const endMs = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    sentMs[i] = ((startUs[i] ?? 0) - originUs) / 1000;
    scheduledMs[i] = ((scheduledUs[i] ?? 0) - originUs) / 1000;
    endMs[i] = (sentMs[i] ?? 0) + (responseUs[i] ?? 0) / 1000;
  }
  return {
    records: { length: n, functions, functionIndex, requestedExecMs, minute, scheduledMs, sentMs, endMs, status, errorIndex, errorCodes, execUs },
    startWallMs: originUs / 1000,
    hasBatonColumns,
  };
}
