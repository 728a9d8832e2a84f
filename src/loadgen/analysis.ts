/**
 * Pure analysis of a run's InvocationRecords: a run summary, and Dirigent's per-function metrics
 * (SOSP'24 artifact evaluation, `plot_azure_500.py`). All results are in ms unless named otherwise.
 *
 * Response time ("latency") can be measured from two starts:
 * - 'scheduled' (default for summaries): from the time the plan said to send. A late sender then
 *   shows up as latency instead of hiding it (no coordinated omission).
 * - 'sent': from the time the request was handed to the HTTP client, like Invitro's `startTime`.
 *   Dirigent's metrics default to it so that numbers compare with Invitro's CSVs.
 */
import { errorCodeOf, isOk } from './records.ts';
import type { InvocationRecords } from './records.ts';

export type LatencyFrom = 'scheduled' | 'sent';

/**
 * Nearest-rank percentile of an ascending array: the smallest value with at least p % of the values
 * at or below it, i.e. `sorted[ceil(p / 100 × n) − 1]` (p = 0 gives the minimum). No interpolation,
 * so the result is always an observed value. Example: [10, 20, 30, 40], p50 → rank 2 → 20;
 * p99 → rank ceil(3.96) = 4 → 40. NaN when there are no values.
 */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * n - 1e-9)); // 1e-9: 0.29 × 100 is 28.999999999999996
  return sorted[Math.min(n, rank) - 1] ?? Number.NaN;
}

/** Nearest-rank percentiles of unsorted values (copied, not modified). */
export function percentiles(values: ArrayLike<number>, ps: readonly number[]): number[] {
  const sorted = Float64Array.from(values).sort();
  return ps.map((p) => percentile(sorted, p));
}

export interface SummaryOptions {
  /** Sandbox creation latency to subtract from the overhead, ms. Default 0. */
  readonly creationLatencyMs?: number;
  /** Default 'scheduled'. */
  readonly latencyFrom?: LatencyFrom;
  /**
   * Only the invocations scheduled in [fromMs, untilMs) count: e.g. `{ fromMs: 5000 }` leaves out
   * a first 5 s of warm-up, as Invitro's warm-up phase and Dirigent's analysis do. Default: all.
   */
  readonly fromMs?: number;
  readonly untilMs?: number;
}

export interface RunSummary {
  /** Invocations sent (in the window, when `fromMs`/`untilMs` set one). */
  readonly count: number;
  /** Invocations answered with 2xx and no error. */
  readonly ok: number;
  /** Failed invocations by code: the error body's `code`, a transport error name, or `HTTP_<status>`. */
  readonly errorsByCode: Readonly<Record<string, number>>;
  /** Send rate, invocations/s: (count − 1) / (last sentMs − first sentMs). 0 with fewer than 2. */
  readonly sentRps: number;
  /** Successful invocations/s: sentRps × ok / count. */
  readonly achievedRps: number;
  /** Latency percentiles of the ok invocations, ms, from `latencyFrom`. */
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** The same measured from the actual send time, ms. */
  readonly p50FromSentMs: number;
  readonly p99FromSentMs: number;
  /**
   * Overhead of the ok invocations, ms: latency − execution time − creationLatencyMs, where execution
   * time is the function-reported ExecutionTime, or the requested one when the reply had none.
   */
  readonly overheadP50Ms: number;
  readonly overheadP99Ms: number;
  /** p99 of sentMs − scheduledMs over all sent invocations, ms: how late the sender was. */
  readonly sendLagP99Ms: number;
}

/** Latency of invocation i, ms, from its scheduled or its actual send time. */
export function latencyMs(records: InvocationRecords, i: number, from: LatencyFrom): number {
  const start = from === 'scheduled' ? records.scheduledMs[i] : records.sentMs[i];
  return (records.endMs[i] ?? 0) - (start ?? 0);
}

/** Execution time of invocation i, ms: reported by the function, else requested. */
export function executionMs(records: InvocationRecords, i: number): number {
  const us = records.execUs[i] ?? Number.NaN;
  return Number.isFinite(us) ? us / 1000 : records.requestedExecMs[i] ?? 0;
}

export function summarizeRun(records: InvocationRecords, options: SummaryOptions = {}): RunSummary {
  const from = options.latencyFrom ?? 'scheduled';
  const creationMs = options.creationLatencyMs ?? 0;
  const fromMs = options.fromMs ?? Number.NEGATIVE_INFINITY;
  const untilMs = options.untilMs ?? Number.POSITIVE_INFINITY;
  const inWindow = (i: number): boolean => {
    const at = records.scheduledMs[i] ?? 0;
    return at >= fromMs && at < untilMs;
  };
  const latencies: number[] = [];
  const fromSent: number[] = [];
  const overheads: number[] = [];
  const lags: number[] = [];
  const errors = new Map<string, number>();
  for (let i = 0; i < records.length; i++) {
    if (!inWindow(i)) continue;
    lags.push((records.sentMs[i] ?? 0) - (records.scheduledMs[i] ?? 0));
    if (isOk(records, i)) {
      const latency = latencyMs(records, i, from);
      latencies.push(latency);
      fromSent.push(latencyMs(records, i, 'sent'));
      overheads.push(latency - executionMs(records, i) - creationMs);
    } else {
      const code = errorCodeOf(records, i) || `HTTP_${records.status[i] ?? 0}`;
      errors.set(code, (errors.get(code) ?? 0) + 1);
    }
  }
  const [p50Ms = Number.NaN, p99Ms = Number.NaN] = percentiles(latencies, [50, 99]);
  const [p50FromSentMs = Number.NaN, p99FromSentMs = Number.NaN] = percentiles(fromSent, [50, 99]);
  const [overheadP50Ms = Number.NaN, overheadP99Ms = Number.NaN] = percentiles(overheads, [50, 99]);
  const sentRps = sendRate(records, inWindow);
  const n = lags.length;
  return {
    count: n, ok: latencies.length, errorsByCode: Object.fromEntries([...errors].sort(([a], [b]) => a.localeCompare(b))),
    sentRps, achievedRps: n === 0 ? 0 : (sentRps * latencies.length) / n,
    p50Ms, p99Ms, p50FromSentMs, p99FromSentMs, overheadP50Ms, overheadP99Ms,
    sendLagP99Ms: percentiles(lags, [99])[0] ?? Number.NaN,
  };
}

/** (count − 1) / span of the send times in s: for n sends evenly spaced at rate R, exactly R. */
function sendRate(records: InvocationRecords, counts: (i: number) => boolean): number {
  let n = 0;
  let first = Number.POSITIVE_INFINITY;
  let last = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < records.length; i++) {
    if (!counts(i)) continue;
    const sent = records.sentMs[i] ?? 0;
    first = Math.min(first, sent);
    last = Math.max(last, sent);
    n++;
  }
  return n >= 2 && last > first ? ((n - 1) * 1000) / (last - first) : 0;
}

/**
 * Dirigent's grouping key: strips a trailing `-<digits>` (optionally followed by Knative's `-00001-deployment-…`)
 * suffix with the regex of `plot_azure_500.py`, so `tc13acdc7567b225971-3` → `tc13acdc7567b225971`.
 * Baton's own names carry no random suffix, so grouping by the plain name is the default.
 */
export function dirigentFunctionKey(name: string): string {
  return name.replace(/(-[0-9]+(-[0-9]+-deployment-[0-9A-Za-z-]+)?)$/, '');
}

export interface DirigentOptions {
  /** Default 'sent' (Invitro's responseTime). */
  readonly latencyFrom?: LatencyFrom;
  /** Maps a function name to its group; default: the name itself. */
  readonly groupBy?: (functionName: string) => string;
}

/**
 * Per-invocation scheduling latency, ms: responseTime − actualDuration, where actualDuration is the
 * function-reported ExecutionTime (0 when the reply had none, as in Invitro's CSV for failures).
 * Every invocation counts: no warm-up filter, no failure filter (as Dirigent's script).
 */
export function schedulingLatenciesMs(records: InvocationRecords, options: DirigentOptions = {}): Float64Array {
  const from = options.latencyFrom ?? 'sent';
  const result = new Float64Array(records.length);
  for (let i = 0; i < records.length; i++) {
    const us = records.execUs[i] ?? Number.NaN;
    result[i] = latencyMs(records, i, from) - (Number.isFinite(us) ? us / 1000 : 0);
  }
  return result;
}

export interface FunctionSchedulingLatency {
  readonly function: string;
  readonly count: number;
  /** Dirigent's "average per-function scheduling latency": arithmetic mean, ms. */
  readonly meanMs: number;
  /** A separate metric, not Dirigent's: the function's nearest-rank p99, ms. */
  readonly p99Ms: number;
}

/** Scheduling latency per function (all invocations, see `schedulingLatenciesMs`). */
export function perFunctionSchedulingLatency(records: InvocationRecords, options: DirigentOptions = {}): FunctionSchedulingLatency[] {
  const latencies = schedulingLatenciesMs(records, options);
  const groups = groupIndexes(records, options.groupBy, () => true);
  return [...groups].map(([fn, indexes]) => {
    const values = indexes.map((i) => latencies[i] ?? 0);
    const meanMs = values.reduce((a, b) => a + b, 0) / values.length;
    return { function: fn, count: values.length, meanMs, p99Ms: percentiles(values, [99])[0] ?? Number.NaN };
  });
}

export interface SlowdownOptions extends DirigentOptions {
  /** Invocations in trace minutes below this are dropped. Default 10 (Dirigent drops min0–min9). */
  readonly warmupMinutes?: number;
}

export interface FunctionSlowdown {
  readonly function: string;
  /** Invocations kept (slowdown ≥ 1). */
  readonly count: number;
  /** Geometric mean of responseTime / requestedDuration over the kept invocations. */
  readonly slowdown: number;
}

export interface SlowdownReport {
  readonly perFunction: readonly FunctionSlowdown[];
  /** Invocations after the warm-up filter (failed ones included, as Dirigent keeps them). */
  readonly considered: number;
  /** Share of the considered invocations that failed (0…1). */
  readonly failureShare: number;
  /** Share of the considered invocations discarded for a slowdown below 1 (0…1). */
  readonly discardedBelowOneShare: number;
}

/**
 * Dirigent's per-function slowdown (AE definition): drop the warm-up minutes; slowdown =
 * responseTime / requestedDuration (the requested, not the actual duration); discard slowdowns
 * below 1; per function, the geometric mean. Invocations with a requested duration of 0 are skipped
 * (their slowdown is undefined). Functions left with no invocation are omitted.
 */
export function perFunctionSlowdown(records: InvocationRecords, options: SlowdownOptions = {}): SlowdownReport {
  const from = options.latencyFrom ?? 'sent';
  const warmupMinutes = options.warmupMinutes ?? 10;
  let considered = 0;
  let failed = 0;
  let belowOne = 0;
  const slowdowns = new Float64Array(records.length);
  const groups = groupIndexes(records, options.groupBy, (i) => {
    if ((records.minute[i] ?? 0) < warmupMinutes || (records.requestedExecMs[i] ?? 0) <= 0) return false;
    considered++;
    if (!isOk(records, i)) failed++;
    const slowdown = latencyMs(records, i, from) / (records.requestedExecMs[i] ?? 1);
    slowdowns[i] = slowdown;
    if (slowdown < 1) belowOne++;
    return slowdown >= 1;
  });
  const perFunction = [...groups].map(([fn, indexes]) => {
    const logSum = indexes.reduce((sum, i) => sum + Math.log(slowdowns[i] ?? 1), 0);
    return { function: fn, count: indexes.length, slowdown: Math.exp(logSum / indexes.length) };
  });
  const share = (x: number): number => (considered === 0 ? 0 : x / considered);
  return { perFunction, considered, failureShare: share(failed), discardedBelowOneShare: share(belowOne) };
}

/** Indexes of the kept invocations per group, groups in order of first appearance. */
function groupIndexes(records: InvocationRecords, groupBy: ((name: string) => string) | undefined, keep: (i: number) => boolean): Map<string, number[]> {
  const keys = records.functions.map((name) => (groupBy === undefined ? name : groupBy(name)));
  const groups = new Map<string, number[]>();
  for (let i = 0; i < records.length; i++) {
    if (!keep(i)) continue;
    const key = keys[records.functionIndex[i] ?? 0] ?? '';
    const list = groups.get(key);
    if (list === undefined) groups.set(key, [i]);
    else list.push(i);
  }
  return groups;
}
