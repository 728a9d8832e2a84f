import type { ScalingSpec } from '../../api/function-spec.ts';
import type { KpaDecision, KpaInput, KpaSettings, KpaState } from './types.ts';
import { INITIAL_KPA_STATE } from './types.ts';

/**
 * Knative's KPA decision (knative-kpa.md §12.3), then bounds and the scale-to-zero gate (§12.4),
 * as a pure function of the input: call it on every tick (and on a demand poke) with the state the
 * previous call returned.
 *
 * 1. Rates: ready = max(1, readySandboxes); maxUp = ceil(maxScaleUpRate × ready);
 *    maxDown = floor(ready / maxScaleDownRate).
 * 2. dspc = ceil(stableAverage / target), dppc = ceil(panicAverage / target), each clamped to
 *    [maxDown, maxUp].
 * 3. Panic: entered (or extended) when dppc / ready ≥ panicThreshold; left once `now` is past the
 *    last entry/extension + stableWindowMs. While panicking, desired = max(stable, panic) and never
 *    drops below the highest value seen in this panic (maxPanicPods).
 * 4. Bounds: clamp to [minScale, maxScale].
 * 5. Scale-to-zero gate: a bounded 0 while sandboxes exist holds at 1 until the unbounded decision
 *    has been 0 for scaleToZeroGraceMs (tracked in `state.zeroSinceMs`).
 *
 * Time to zero: after demand stops, the stable average only falls to 0 once a whole stable window
 * of zero reports has passed (older non-zero buckets still count until then), and the rate limit
 * halves the scale per tick; only then does the grace start. With the defaults (60 s window,
 * 30 s grace) the last sandbox goes ≈ stableWindowMs + scaleToZeroGraceMs ≈ 90 s after the last
 * invocation.
 */
export function computeDesiredScale(input: KpaInput): KpaDecision {
  const { now, settings, state } = input;
  const ready = Math.max(1, input.readySandboxes);
  // ready 3, up rate 1000 → at most 3000; down rate 2 → at least floor(3 / 2) = 1.
  const maxUp = Math.ceil(settings.maxScaleUpRate * ready);
  const maxDown = Math.floor(ready / settings.maxScaleDownRate);
  const stable = podCount(input.stableAverage, settings.targetPerSandbox, maxDown, maxUp);
  const panic = podCount(input.panicAverage, settings.targetPerSandbox, maxDown, maxUp);

  // Worked example: target 7, ready 3, panic average 50 → dppc 8, 8 / 3 = 2.67 ≥ 2 → panic.
  const isOverPanic = panic.unclamped / ready >= settings.panicThreshold;
  let panicStartMs = state.panicStartMs;
  let maxPanicPods = state.maxPanicPods;
  if (isOverPanic) {
    panicStartMs = now;
  } else if (panicStartMs !== null && now > panicStartMs + settings.stableWindowMs) {
    panicStartMs = null;
    maxPanicPods = 0;
  }

  let unbounded = stable.pods;
  let wanted = stable.pods;
  if (panicStartMs !== null) {
    // Never scale down while panicking: 8 seen earlier in this panic, 5 wanted now → 8.
    wanted = Math.max(stable.pods, panic.pods);
    maxPanicPods = Math.max(maxPanicPods, wanted);
    unbounded = maxPanicPods;
  }

  const bounded = clamp(unbounded, settings.minScale, settings.maxScale);
  const zeroSinceMs = unbounded === 0 ? (state.zeroSinceMs ?? now) : null;
  const nextState: KpaState = { panicStartMs, maxPanicPods, zeroSinceMs };
  const isPanicking = panicStartMs !== null;
  // The scale-to-zero gate: a bounded 0 keeps one sandbox until the decision has been 0 for the grace.
  const zeroForMs = now - (zeroSinceMs ?? now);
  const gate: Gate = bounded !== 0 ? 'none' : input.currentScale === 0 ? 'at-zero' : zeroForMs >= settings.scaleToZeroGraceMs ? 'to-zero' : 'grace';
  const desired = gate === 'grace' ? 1 : bounded;
  // The reason is text for people (describe, debug logs): it is built only when read, since the
  // autoscaler decides for every active function on every tick.
  return {
    desired, state: nextState, isPanicking,
    get reason() {
      return explain(settings, stable, panic, { isPanicking, wanted, maxPanicPods, unbounded, bounded, gate, zeroForMs });
    },
  };
}

type Gate = 'none' | 'at-zero' | 'to-zero' | 'grace';

interface PodCount {
  readonly observed: number;
  /** ceil(average / target), before the rate limits; used for the panic test. */
  readonly unclamped: number;
  /** The same, clamped to [maxDown, maxUp]. */
  readonly pods: number;
}

function podCount(average: number, target: number, maxDown: number, maxUp: number): PodCount {
  // NaN and negative averages (no data) mean no demand.
  const observed = average > 0 ? average : 0;
  // 3.2 in flight, target 0.7 → ceil(4.57) = 5 sandboxes.
  const unclamped = Math.ceil(observed / target);
  return { observed, unclamped, pods: clamp(unclamped, maxDown, maxUp) };
}

function podText(count: PodCount, target: number): string {
  let text = `ceil(${formatNumber(count.observed)}/${formatNumber(target)})=${count.unclamped}`;
  if (count.pods > count.unclamped) text += ` → ${count.pods} (scale-down limit)`;
  if (count.pods < count.unclamped) text += ` → ${count.pods} (scale-up limit)`;
  return text;
}

function explain(
  settings: KpaSettings, stable: PodCount, panic: PodCount,
  d: { isPanicking: boolean; wanted: number; maxPanicPods: number; unbounded: number; bounded: number; gate: Gate; zeroForMs: number },
): string {
  const target = settings.targetPerSandbox;
  let reason = `stable: ${podText(stable, target)}`;
  if (d.isPanicking) {
    reason = `panic: max(stable ${podText(stable, target)}, panic ${podText(panic, target)})=${d.wanted}` + (d.maxPanicPods > d.wanted ? `, held at ${d.maxPanicPods}` : '');
  }
  if (d.bounded !== d.unbounded) reason += `; bounded to [${settings.minScale}, ${settings.maxScale}]`;
  if (d.gate === 'at-zero') return `${reason}; at zero`;
  if (d.gate === 'to-zero') return `${reason}; scale to zero: no demand for ${d.zeroForMs} ms`;
  if (d.gate === 'grace') return `${reason}; scale-to-zero grace: ${d.zeroForMs}/${settings.scaleToZeroGraceMs} ms`;
  return reason;
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(Math.max(value, low), high);
}

function formatNumber(value: number): string {
  // 3.14159 → "3.14"; 7 → "7".
  return String(Math.round(value * 100) / 100);
}

/**
 * The state to start a function's autoscaler with. When `readySandboxes` > 1 (sandboxes found
 * running after a control-plane restart), it starts in panic with maxPanicPods = ready, so it does
 * not scale down on lost history: it holds at least that many until a full stable window passes
 * without a panic-level burst (knative-kpa.md §12.3, start-up rule).
 */
export function initialKpaState(readySandboxes: number, now: number): KpaState {
  if (readySandboxes > 1) return { panicStartMs: now, maxPanicPods: readySandboxes, zeroSinceMs: null };
  return INITIAL_KPA_STATE;
}

/**
 * Compiles a function's scaling spec into KPA settings. The target per sandbox is
 * concurrency × targetUtilization, at least 0.01: concurrency 10 at 70 % → 7 in flight per sandbox.
 */
export function kpaSettingsFromSpec(concurrency: number, scaling: ScalingSpec): KpaSettings {
  return {
    targetPerSandbox: Math.max(0.01, concurrency * scaling.targetUtilization),
    stableWindowMs: scaling.stableWindowMs,
    panicWindowMs: scaling.panicWindowMs,
    panicThreshold: scaling.panicThreshold,
    maxScaleUpRate: scaling.maxScaleUpRate,
    maxScaleDownRate: scaling.maxScaleDownRate,
    minScale: scaling.minScale,
    maxScale: scaling.maxScale,
    scaleToZeroGraceMs: scaling.scaleToZeroGraceMs,
  };
}
