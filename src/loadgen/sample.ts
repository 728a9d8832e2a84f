/**
 * Reproducible sampling of K functions from a trace that keeps its mix of invocation rates.
 *
 * The functions are ranked by their total invocation count (ties by HashFunction, so the input row
 * order does not matter) and cut into K strata of (nearly) equal size; one function is drawn from
 * each stratum with a seeded Random. So the sample's rates cover the trace's whole range in the same
 * proportions — the rare, the common and the very busy — as a stratified sample does, instead of
 * depending on luck as a plain random sample of a heavy-tailed population does. The sampled
 * functions keep the order they had in the trace (the planner's seeded streams follow that order).
 */
import { BatonError } from '../core/errors.ts';
import { createRandom } from '../core/random.ts';
import type { TraceFunction } from './trace.ts';

/** Total invocations of a function over all its minutes. */
export function totalInvocations(fn: TraceFunction): number {
  let total = 0;
  for (const count of fn.perMinute) total += count;
  return total;
}

/**
 * K of the functions, stratified by total invocation count; the same inputs and seed give the same
 * sample. K ≥ the number of functions gives them all. Throws ERR_INVALID_REQUEST for K < 1.
 */
export function sampleFunctions(functions: readonly TraceFunction[], k: number, seed: number): TraceFunction[] {
  if (!Number.isInteger(k) || k < 1) throw new BatonError('ERR_INVALID_REQUEST', `the sample size must be a positive integer, got ${k}`, { details: { functions: k } });
  if (k >= functions.length) return [...functions];
  const totals = new Map(functions.map((fn) => [fn, totalInvocations(fn)]));
  const ranked = [...functions].sort((a, b) => (totals.get(a) ?? 0) - (totals.get(b) ?? 0) || (a.hashFunction < b.hashFunction ? -1 : a.hashFunction > b.hashFunction ? 1 : 0));
  const random = createRandom(seed);
  const chosen = new Set<TraceFunction>();
  for (let s = 0; s < k; s++) {
    const from = Math.floor((s * ranked.length) / k);
    const to = Math.floor(((s + 1) * ranked.length) / k);
    chosen.add(ranked[from + random.int(to - from)] as TraceFunction);
  }
  return functions.filter((fn) => chosen.has(fn));
}
