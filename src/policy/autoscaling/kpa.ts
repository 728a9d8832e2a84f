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
 *    drops below the highest value seen in this panic (maxPanicSandboxes).
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
  const target = settings.targetPerSandbox;
  const stableSandboxes = clamp(unclampedSandboxes(input.stableAverage, target), maxDown, maxUp);
  const panicUnclamped = unclampedSandboxes(input.panicAverage, target);
  const panicSandboxes = clamp(panicUnclamped, maxDown, maxUp);

  // Worked example: target 7, ready 3, panic average 50 → dppc 8, 8 / 3 = 2.67 ≥ 2 → panic.
  const isOverPanic = panicUnclamped / ready >= settings.panicThreshold;
  let panicStartMs = state.panicStartMs;
  let maxPanicSandboxes = state.maxPanicSandboxes;
  if (isOverPanic) {
    panicStartMs = now;
  } else if (panicStartMs !== null && now > panicStartMs + settings.stableWindowMs) {
    panicStartMs = null;
    maxPanicSandboxes = 0;
  }

  let unbounded = stableSandboxes;
  let wanted = stableSandboxes;
  if (panicStartMs !== null) {
    // Never scale down while panicking: 8 seen earlier in this panic, 5 wanted now → 8.
    wanted = Math.max(stableSandboxes, panicSandboxes);
    maxPanicSandboxes = Math.max(maxPanicSandboxes, wanted);
    unbounded = maxPanicSandboxes;
  }

  const bounded = clamp(unbounded, settings.minScale, settings.maxScale);
  const zeroSinceMs = unbounded === 0 ? (state.zeroSinceMs ?? now) : null;
  // The state is immutable: an unchanged one is handed back as it is.
  const nextState: KpaState = panicStartMs === state.panicStartMs && maxPanicSandboxes === state.maxPanicSandboxes && zeroSinceMs === state.zeroSinceMs
    ? state
    : { panicStartMs, maxPanicSandboxes, zeroSinceMs };
  // The scale-to-zero gate: a bounded 0 keeps one sandbox until the decision has been 0 for the grace.
  const zeroForMs = now - (zeroSinceMs ?? now);
  const gate = bounded !== 0 ? 'none' : input.currentScale === 0 ? 'at-zero' : zeroForMs >= settings.scaleToZeroGraceMs ? 'to-zero' : 'grace';
  return new Decision({
    desired: gate === 'grace' ? 1 : bounded, state: nextState, isPanicking: panicStartMs !== null, input,
    steps: { maxDown, maxUp, wanted, unbounded, bounded, gate, zeroForMs },
  });
}

/** The intermediate numbers of one decision, for its reason. */
interface DecisionSteps {
  readonly maxDown: number;
  readonly maxUp: number;
  /** The stable (or, panicking, max of stable and panic) count, within the rate limits. */
  readonly wanted: number;
  /** What the KPA asks for before the min/max bounds (panicking: the highest of this panic). */
  readonly unbounded: number;
  readonly bounded: number;
  readonly gate: Gate;
  readonly zeroForMs: number;
}

type Gate = 'none' | 'at-zero' | 'to-zero' | 'grace';

/**
 * A decision. Its `reason` is text for people (describe, debug logs), built only when read: the
 * autoscaler decides for every active function on every tick, and nearly no reason is ever read.
 */
class Decision implements KpaDecision {
  readonly desired: number;
  readonly state: KpaState;
  readonly isPanicking: boolean;
  readonly #input: KpaInput;
  readonly #steps: DecisionSteps;

  constructor(init: { desired: number; state: KpaState; isPanicking: boolean; input: KpaInput; steps: DecisionSteps }) {
    this.desired = init.desired;
    this.state = init.state;
    this.isPanicking = init.isPanicking;
    this.#input = init.input;
    this.#steps = init.steps;
  }

  get reason(): string {
    const { settings } = this.#input;
    const stable = this.#sandboxText(this.#input.stableAverage);
    let reason = `stable: ${stable}`;
    if (this.isPanicking) {
      reason = `panic: max(stable ${stable}, panic ${this.#sandboxText(this.#input.panicAverage)})=${this.#steps.wanted}`
        + (this.state.maxPanicSandboxes > this.#steps.wanted ? `, held at ${this.state.maxPanicSandboxes}` : '');
    }
    if (this.#steps.bounded !== this.#steps.unbounded) reason += `; bounded to [${settings.minScale}, ${settings.maxScale}]`;
    if (this.#steps.gate === 'at-zero') return `${reason}; at zero`;
    if (this.#steps.gate === 'to-zero') return `${reason}; scale to zero: no demand for ${this.#steps.zeroForMs} ms`;
    if (this.#steps.gate === 'grace') return `${reason}; scale-to-zero grace: ${this.#steps.zeroForMs}/${settings.scaleToZeroGraceMs} ms`;
    return reason;
  }

  /** "ceil(3.2/0.7)=5", with the rate limit that changed it, if any. */
  #sandboxText(average: number): string {
    const target = this.#input.settings.targetPerSandbox;
    const observed = average > 0 ? average : 0;
    const unclamped = unclampedSandboxes(average, target);
    const sandboxes = clamp(unclamped, this.#steps.maxDown, this.#steps.maxUp);
    let text = `ceil(${formatNumber(observed)}/${formatNumber(target)})=${unclamped}`;
    if (sandboxes > unclamped) text += ` → ${sandboxes} (scale-down limit)`;
    if (sandboxes < unclamped) text += ` → ${sandboxes} (scale-up limit)`;
    return text;
  }
}

/** ceil(average / target); NaN and negative averages (no data) mean no demand. 3.2 in flight, target 0.7 → ceil(4.57) = 5. */
function unclampedSandboxes(average: number, target: number): number {
  return Math.ceil((average > 0 ? average : 0) / target);
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(Math.max(value, low), high);
}

function formatNumber(value: number): string {
  // 3.14159 → "3.14"; 7 → "7".
  return String(Math.round(value * 100) / 100);
}

/**
 * The state to start a function's autoscaler with. When `readySandboxes` ≥ 1 (sandboxes found
 * running after a control-plane restart), it starts in panic with maxPanicSandboxes = ready, so it does
 * not scale down on lost history: it holds at least that many until a full stable window passes
 * without a panic-level burst (knative-kpa.md §12.3, start-up rule).
 */
export function initialKpaState(readySandboxes: number, now: number): KpaState {
  // One sandbox too: without the hold, the scale-to-zero grace (shorter than the window by
  // default) would remove it on a history that was lost, not on one that is calm.
  if (readySandboxes >= 1) return { panicStartMs: now, maxPanicSandboxes: readySandboxes, zeroSinceMs: null };
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
