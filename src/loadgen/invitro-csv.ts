/**
 * Writes a run's records as Invitro's per-invocation CSV (`experiment_duration_<minutes>.csv`), so
 * Dirigent's analysis scripts can read Baton's runs unchanged. Units follow Invitro: times in µs,
 * startTime in Unix-epoch µs. Columns that only the gRPC or async paths fill are 0 / false.
 */
import { errorCodeOf, isOk } from './records.ts';
import type { InvocationRecords } from './records.ts';

export const INVITRO_CSV_HEADER = 'phase,instance,invocationID,startTime,requestedDuration,grpcConnEstablish,responseTime,actualDuration,connectionTimeout,functionTimeout,actualMemoryUsage,memoryAllocationTimeout,timeToSubmitMs,userCodeExecutionMs,timeToGetResponseMs';

export interface InvitroCsvOptions {
  /** Wall-clock start of the run, ms since the epoch (RunResult.startWallMs). */
  readonly startWallMs: number;
  /** Minutes below this are phase 1 (warm-up), the rest phase 2. Default 0. */
  readonly warmupMinutes?: number;
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
  const lines = [INVITRO_CSV_HEADER];
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
    lines.push([
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
    ].join(','));
  }
  return `${lines.join('\n')}\n`;
}
