import { BatonError } from '../../core/errors.ts';
import type { Random } from '../../core/random.ts';

/**
 * How long an emulated sandbox takes to be created, in milliseconds:
 *
 *   `0`, `40`, `40ms`                    fixed
 *   `uniform:20-60`                      uniform in [20, 60)
 *   `lognormal:median=40,sigma=0.5`      log-normal with that median and shape (σ of ln X)
 *
 * Parsed once (at configuration), sampled per sandbox with a seeded Random so that a run can be
 * repeated. Every sample is capped at MAX_LATENCY_MS: a log-normal tail is unbounded.
 */
export type LatencySpec =
  | { readonly kind: 'fixed'; readonly ms: number }
  | { readonly kind: 'uniform'; readonly minMs: number; readonly maxMs: number }
  | { readonly kind: 'lognormal'; readonly medianMs: number; readonly sigma: number };

export const MAX_LATENCY_MS = 60_000;

const NUMBER = String.raw`\d+(?:\.\d+)?`;
const FIXED = new RegExp(`^(${NUMBER})(?:ms)?$`);
const UNIFORM = new RegExp(`^uniform:(${NUMBER})-(${NUMBER})$`);
const LOGNORMAL = new RegExp(`^lognormal:median=(${NUMBER}),sigma=(${NUMBER})$`);

/** @throws BatonError ERR_INVALID_CONFIG naming the accepted forms */
export function parseLatencySpec(text: string): LatencySpec {
  const trimmed = text.trim();
  let match = FIXED.exec(trimmed);
  if (match !== null) return { kind: 'fixed', ms: bounded(Number(match[1]), text) };
  match = UNIFORM.exec(trimmed);
  if (match !== null) {
    const minMs = bounded(Number(match[1]), text);
    const maxMs = bounded(Number(match[2]), text);
    if (minMs > maxMs) throw invalid(text, 'the minimum must not exceed the maximum');
    return { kind: 'uniform', minMs, maxMs };
  }
  match = LOGNORMAL.exec(trimmed);
  if (match !== null) {
    const medianMs = bounded(Number(match[1]), text);
    const sigma = Number(match[2]);
    if (medianMs <= 0) throw invalid(text, 'the median must be above 0');
    if (sigma > 5) throw invalid(text, 'sigma must be at most 5');
    return { kind: 'lognormal', medianMs, sigma };
  }
  throw invalid(text, 'expected 0, 40ms, uniform:20-60 or lognormal:median=40,sigma=0.5 (milliseconds)');
}

/** One creation latency in ms, in [0, MAX_LATENCY_MS]. */
export function sampleLatencyMs(spec: LatencySpec, random: Random): number {
  switch (spec.kind) {
    case 'fixed':
      return spec.ms;
    case 'uniform':
      return spec.minMs + random.next() * (spec.maxMs - spec.minMs);
    case 'lognormal':
      // X = median · e^(σZ), Z standard normal (Box–Muller). With median 40 and σ 0.5, about 95 %
      // of samples fall in 40·e^(±0.98) = [15, 107] ms.
      return Math.min(MAX_LATENCY_MS, spec.medianMs * Math.exp(spec.sigma * standardNormal(random)));
  }
}

function standardNormal(random: Random): number {
  const u1 = 1 - random.next(); // (0, 1]: ln(0) would be -∞
  const u2 = random.next();
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

function bounded(ms: number, text: string): number {
  if (ms > MAX_LATENCY_MS) throw invalid(text, `latencies are at most ${MAX_LATENCY_MS} ms`);
  return ms;
}

function invalid(text: string, rule: string): BatonError {
  return new BatonError('ERR_INVALID_CONFIG', `invalid emulated latency '${text}': ${rule}`, { details: { value: text, rule } });
}
