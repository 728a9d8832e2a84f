/**
 * Pure planners: they turn a trace or a sweep description into a Plan, the sorted list of
 * invocations a runner sends. No clocks, no I/O; randomness comes from seeded `Random`s, so the same
 * inputs give the same plan.
 *
 * A Plan is stored column-wise in typed arrays (about 24 bytes per invocation), because plans of
 * 10^5–10^6 invocations are normal; `planEntries` gives the object form for small plans and tests.
 */
import { FUNCTION_NAME_PATTERN } from '../api/function-spec.ts';
import { BatonError } from '../core/errors.ts';
import { createRandom } from '../core/random.ts';
import type { Random } from '../core/random.ts';
import type { TraceFunction } from './trace.ts';

/** One invocation of a plan, in object form. */
export interface PlanEntry {
  /** When to send it, in ms from the start of the run. */
  readonly atMs: number;
  readonly function: string;
  /** Requested execution time, ms (sent as `x-baton-exec-ms`). */
  readonly execMs: number;
  /** Requested memory, MiB; 0 when the plan does not say. */
  readonly memoryMiB?: number;
}

/** A plan in column form, sorted by `atMs` (ties keep function order). */
export interface Plan {
  readonly length: number;
  /** Function names; `functionIndex` points into this list. */
  readonly functions: readonly string[];
  readonly atMs: Float64Array;
  readonly functionIndex: Uint32Array;
  readonly execMs: Uint32Array;
  readonly memoryMiB: Uint32Array;
  /** Trace minute of each invocation (0-based): Dirigent's analysis drops minutes 0–9 by it. */
  readonly minute: Uint32Array;
}

export type IatDistribution = 'exponential' | 'uniform' | 'equidistant';

export interface TracePlanOptions {
  /** How many trace minutes to replay, from the first minute column; at most the trace's minutes. */
  readonly minutes: number;
  readonly iatDistribution: IatDistribution;
  readonly seed: number;
  /**
   * Invitro's `*_shift` distributions: each minute's send offsets are rotated by one uniform draw
   * (modulo the minute), so the first invocation lands at a random offset instead of at :00 for
   * every function. The count per minute is unchanged. Default false.
   */
  readonly shift?: boolean;
  /** Refuse to build larger plans (ERR_INVALID_REQUEST). Default 2,000,000. */
  readonly maxInvocations?: number;
}

export interface ColdStartSweepOptions {
  /** Cold starts (invocations) per second over all functions. */
  readonly rate: number;
  /** Length of the sweep point, s. */
  readonly seconds: number;
  /** Time between two invocations of the same function, s: long enough for it to scale to zero. */
  readonly cooldownS: number;
  /** Requested execution time per invocation, ms. */
  readonly execMs: number;
  /** Function names are `<prefix><i>`, i = 0 … functionCount−1. */
  readonly functionPrefix: string;
  readonly memoryMiB?: number;
  readonly maxInvocations?: number;
}

const MINUTE_MS = 60_000;
const DEFAULT_MAX_INVOCATIONS = 2_000_000;
/** The spec stream is seeded apart from the IAT stream, so a run quantile is not the IAT draw's twin. */
const SPEC_SEED_SALT = 0x5bd1e995;

function invalid(message: string, details?: unknown): BatonError {
  return new BatonError('ERR_INVALID_REQUEST', message, details === undefined ? {} : { details });
}

/**
 * The N gaps g1…gN (ms) of one trace minute with N invocations, as Invitro draws them: raw values
 * (exponential: −ln(1−u); uniform: u; equidistant: 1 each) scaled to sum to exactly 60,000 ms.
 * Invocation k of the minute fires at g1+…+gk (k = 0 fires at the minute's start: Invitro's leading 0),
 * and gN is the gap left until the next minute, so the count per minute is preserved exactly.
 */
export function generateMinuteGapsMs(count: number, distribution: IatDistribution, random: Random): Float64Array {
  const gaps = new Float64Array(count);
  let sum = 0;
  for (let i = 0; i < count; i++) {
    const raw = drawRaw(distribution, random);
    gaps[i] = raw;
    sum += raw;
  }
  if (sum <= 0) { // every draw was 0 (u = 0 each time): spread evenly
    gaps.fill(1);
    sum = count;
  }
  let assigned = 0;
  for (let i = 0; i < count - 1; i++) {
    const gap = ((gaps[i] ?? 0) / sum) * MINUTE_MS;
    gaps[i] = gap;
    assigned += gap;
  }
  if (count > 0) gaps[count - 1] = Math.max(0, MINUTE_MS - assigned); // the last gap absorbs rounding: Σ = 60 s
  return gaps;
}

function drawRaw(distribution: IatDistribution, random: Random): number {
  switch (distribution) {
    case 'exponential': return -Math.log(1 - random.next());
    case 'uniform': return random.next();
    case 'equidistant': return 1;
  }
}

/** A uniform integer in [trunc(lo), trunc(hi)); `lo` when the range is empty (Invitro's rule). */
function drawInRange(lo: number, hi: number, random: Random): number {
  const low = Math.trunc(lo);
  const high = Math.trunc(hi);
  return high <= low ? low : low + random.int(high - low);
}

/**
 * One execution time (ms) from a function's duration percentiles [p0, p1, p25, p50, p75, p99, p100],
 * as Invitro does: a uniform quantile q picks the bucket (q = 0 → p0; ≤ 0.01 → [p0, p1); ≤ 0.25 →
 * [p1, p25); ≤ 0.5 → [p25, p50); ≤ 0.75 → [p50, p75); ≤ 0.99 → [p75, p99); else [p99, p100)), a
 * uniform integer is drawn inside it, and the result is clamped to [1, 60,000] ms.
 */
export function sampleRuntimeMs(percentilesMs: readonly number[], random: Random): number {
  const q = random.next();
  const p = (i: number): number => percentilesMs[i] ?? 0;
  const bounds = [0.01, 0.25, 0.5, 0.75, 0.99];
  const bucket = bounds.findIndex((b) => q <= b);
  const lo = bucket === -1 ? 5 : bucket; // above 0.99: [p99, p100)
  const value = q === 0 ? Math.trunc(p(0)) : drawInRange(p(lo), p(lo + 1), random);
  return Math.min(60_000, Math.max(1, value));
}

/**
 * One memory size (MiB) from [pct1, pct5, pct25, pct50, pct75, pct95, pct99, pct100]: q ≤ 0.01 →
 * pct1; then [pct1, pct5) up to 0.05, [pct5, pct25) up to 0.25, … [pct99, pct100) above 0.99;
 * clamped to [1, 10,240] MiB.
 */
export function sampleMemoryMiB(percentilesMiB: readonly number[], random: Random): number {
  const q = random.next();
  const p = (i: number): number => percentilesMiB[i] ?? 0;
  const bounds = [0.05, 0.25, 0.5, 0.75, 0.95, 0.99];
  const bucket = bounds.findIndex((b) => q <= b);
  const lo = bucket === -1 ? 6 : bucket; // above 0.99: [pct99, pct100)
  const value = q <= 0.01 ? Math.trunc(p(0)) : drawInRange(p(lo), p(lo + 1), random);
  return Math.min(10_240, Math.max(1, value));
}

/**
 * Replays the first `minutes` minutes of a trace. Per function (in the given order) and per minute
 * with N > 0 invocations, the N send times are the minute start plus the running sums of
 * `generateMinuteGapsMs`; each invocation gets an execution time and a memory size sampled from the
 * function's percentiles. Two seeded streams (IATs, specs) are consumed in function order, like
 * Invitro's `iatRand` and `specRand`, so the plan depends on the order of the functions.
 */
export function planTrace(functions: readonly TraceFunction[], options: TracePlanOptions): Plan {
  const { minutes, iatDistribution, seed } = options;
  const maxInvocations = options.maxInvocations ?? DEFAULT_MAX_INVOCATIONS;
  const shortest = functions.reduce((min, f) => Math.min(min, f.perMinute.length), Number.POSITIVE_INFINITY);
  if (!Number.isInteger(minutes) || minutes < 1 || (functions.length > 0 && minutes > shortest)) {
    throw invalid(`minutes must be an integer in [1, ${shortest}], got ${minutes}`, { minutes });
  }
  let total = 0;
  for (const fn of functions) for (let m = 0; m < minutes; m++) total += fn.perMinute[m] ?? 0;
  if (total > maxInvocations) throw invalid(`the plan has ${total} invocations, more than maxInvocations ${maxInvocations}`, { total, maxInvocations });

  const columns = allocate(total);
  const iatRandom = createRandom(seed);
  const specRandom = createRandom((seed ^ SPEC_SEED_SALT) >>> 0);
  let n = 0;
  functions.forEach((fn, f) => {
    for (let m = 0; m < minutes; m++) {
      const count = fn.perMinute[m] ?? 0;
      if (count === 0) continue;
      const gaps = generateMinuteGapsMs(count, iatDistribution, iatRandom);
      const rotationMs = options.shift === true ? iatRandom.next() * MINUTE_MS : 0;
      let offsetMs = 0;
      for (let k = 0; k < count; k++) {
        columns.atMs[n] = m * MINUTE_MS + ((offsetMs + rotationMs) % MINUTE_MS);
        columns.functionIndex[n] = f;
        columns.minute[n] = m;
        offsetMs += gaps[k] ?? 0;
        n++;
      }
    }
    for (let i = n - countInvocations(fn, minutes); i < n; i++) {
      columns.execMs[i] = sampleRuntimeMs(fn.durations.percentilesMs, specRandom);
      columns.memoryMiB[i] = sampleMemoryMiB(fn.memory.percentilesMiB, specRandom);
    }
  });
  return sortColumns(functions.map((f) => f.name), columns);
}

function countInvocations(fn: TraceFunction, minutes: number): number {
  let count = 0;
  for (let m = 0; m < minutes; m++) count += fn.perMinute[m] ?? 0;
  return count;
}

/** The number of functions a cold-start sweep uses: ceil(rate × cooldownS). */
export function sweepFunctionCount(rate: number, cooldownS: number): number {
  return Math.ceil(rate * cooldownS - 1e-9); // 0.1 × 30 is 3.0000000000000004 in floating point: still 3
}

/** The function names of a cold-start sweep, for registering them before the run. */
export function sweepFunctionNames(options: Pick<ColdStartSweepOptions, 'rate' | 'cooldownS' | 'functionPrefix'>): string[] {
  const count = sweepFunctionCount(options.rate, options.cooldownS);
  return Array.from({ length: count }, (_, i) => `${options.functionPrefix}${i}`);
}

/**
 * A cold-start sweep point (Invitro's RPS mode, cold part). F = ceil(rate × cooldownS) functions;
 * invocation n (n = 0, 1, …) is sent at n / rate s to function n mod F, for `seconds`: so exactly
 * `rate` invocations per second overall, and each function is invoked every F / rate s. That is
 * exactly `cooldownS` when rate × cooldownS is an integer (e.g. 100 /s × 10 s: 1,000 functions,
 * function i at i × 10 ms + j × 10 s, Invitro's offsets), and slightly more otherwise, never less.
 */
export function planColdStartSweep(options: ColdStartSweepOptions): Plan {
  const { rate, seconds, cooldownS, execMs } = options;
  const maxInvocations = options.maxInvocations ?? DEFAULT_MAX_INVOCATIONS;
  for (const [name, value] of [['rate', rate], ['seconds', seconds], ['cooldownS', cooldownS]] as const) {
    if (!Number.isFinite(value) || value <= 0) throw invalid(`${name} must be a positive number, got ${value}`, { [name]: value });
  }
  if (!Number.isInteger(execMs) || execMs < 0) throw invalid(`execMs must be a non-negative integer, got ${execMs}`, { execMs });
  const total = Math.ceil(rate * seconds - 1e-9);
  if (total > maxInvocations) throw invalid(`the plan has ${total} invocations, more than maxInvocations ${maxInvocations}`, { total, maxInvocations });
  const names = sweepFunctionNames(options);
  for (const name of [names[0] ?? '', names[names.length - 1] ?? '']) {
    if (!FUNCTION_NAME_PATTERN.test(name)) throw invalid(`functionPrefix makes "${name}", not a valid function name`, { functionPrefix: options.functionPrefix });
  }
  const columns = allocate(total);
  for (let n = 0; n < total; n++) {
    const atMs = (n * 1000) / rate;
    columns.atMs[n] = atMs;
    columns.functionIndex[n] = n % names.length;
    columns.minute[n] = Math.floor(atMs / MINUTE_MS);
  }
  columns.execMs.fill(execMs);
  columns.memoryMiB.fill(options.memoryMiB ?? 0);
  return { length: total, functions: names, ...columns };
}

/** Builds a plan from entries in any order (for small, hand-written plans). */
export function createPlan(entries: readonly PlanEntry[]): Plan {
  const names: string[] = [];
  const indexByName = new Map<string, number>();
  const columns = allocate(entries.length);
  entries.forEach((entry, i) => {
    let index = indexByName.get(entry.function);
    if (index === undefined) indexByName.set(entry.function, (index = names.push(entry.function) - 1));
    columns.atMs[i] = entry.atMs;
    columns.functionIndex[i] = index;
    columns.execMs[i] = entry.execMs;
    columns.memoryMiB[i] = entry.memoryMiB ?? 0;
    columns.minute[i] = Math.floor(entry.atMs / MINUTE_MS);
  });
  return sortColumns(names, columns);
}

/** The invocations [from, to) of a plan in object form. */
export function planEntries(plan: Plan, from = 0, to = plan.length): PlanEntry[] {
  const entries: PlanEntry[] = [];
  for (let i = from; i < Math.min(to, plan.length); i++) {
    entries.push({
      atMs: plan.atMs[i] ?? 0, function: plan.functions[plan.functionIndex[i] ?? 0] ?? '',
      execMs: plan.execMs[i] ?? 0, memoryMiB: plan.memoryMiB[i] ?? 0,
    });
  }
  return entries;
}

type Columns = Omit<Plan, 'length' | 'functions'>;

function allocate(length: number): Columns {
  return {
    atMs: new Float64Array(length), functionIndex: new Uint32Array(length), execMs: new Uint32Array(length),
    memoryMiB: new Uint32Array(length), minute: new Uint32Array(length),
  };
}

function sortColumns(functions: readonly string[], columns: Columns): Plan {
  const length = columns.atMs.length;
  const order = new Uint32Array(length);
  for (let i = 0; i < length; i++) order[i] = i;
  const at = columns.atMs;
  order.sort((a, b) => (at[a] ?? 0) - (at[b] ?? 0) || a - b);
  const sorted = allocate(length);
  for (let i = 0; i < length; i++) {
    const j = order[i] ?? 0;
    sorted.atMs[i] = at[j] ?? 0;
    sorted.functionIndex[i] = columns.functionIndex[j] ?? 0;
    sorted.execMs[i] = columns.execMs[j] ?? 0;
    sorted.memoryMiB[i] = columns.memoryMiB[j] ?? 0;
    sorted.minute[i] = columns.minute[j] ?? 0;
  }
  return { length, functions, ...sorted };
}

export interface FixedRateOptions {
  /** Invocations per second. */
  readonly rate: number;
  readonly seconds: number;
  readonly function: string;
  readonly execMs: number;
  readonly memoryMiB?: number;
  readonly maxInvocations?: number;
}

/**
 * Invitro's RPS mode, warm part: one function at a constant rate, invocation n (n = 0, 1, …) at
 * (n + 1) / rate s (rps_mode starts one inter-arrival time in), for `seconds`.
 */
export function planFixedRate(options: FixedRateOptions): Plan {
  const { rate, seconds, execMs } = options;
  const maxInvocations = options.maxInvocations ?? DEFAULT_MAX_INVOCATIONS;
  for (const [name, value] of [['rate', rate], ['seconds', seconds]] as const) {
    if (!Number.isFinite(value) || value <= 0) throw invalid(`${name} must be a positive number, got ${value}`, { [name]: value });
  }
  if (!Number.isInteger(execMs) || execMs < 0) throw invalid(`execMs must be a non-negative integer, got ${execMs}`, { execMs });
  if (!FUNCTION_NAME_PATTERN.test(options.function)) throw invalid(`"${options.function}" is not a valid function name`, { function: options.function });
  const total = Math.floor(rate * seconds + 1e-9);
  if (total > maxInvocations) throw invalid(`the plan has ${total} invocations, more than maxInvocations ${maxInvocations}`, { total, maxInvocations });
  const columns = allocate(total);
  for (let n = 0; n < total; n++) {
    const atMs = ((n + 1) * 1000) / rate;
    columns.atMs[n] = atMs;
    columns.minute[n] = Math.floor(atMs / MINUTE_MS);
  }
  columns.execMs.fill(execMs);
  columns.memoryMiB.fill(options.memoryMiB ?? 0);
  return { length: total, functions: [options.function], ...columns };
}
