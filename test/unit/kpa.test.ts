import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SCALING_DEFAULTS } from '../../src/api/function-spec.ts';
import { computeDesiredScale, initialKpaState, kpaSettingsFromSpec } from '../../src/policy/autoscaling/kpa.ts';
import { INITIAL_KPA_STATE } from '../../src/policy/autoscaling/types.ts';
import type { KpaSettings, KpaState } from '../../src/policy/autoscaling/types.ts';

/** Concurrency 10 at 70 % → target 7 per sandbox; Knative's defaults otherwise. */
const BASE: KpaSettings = {
  targetPerSandbox: 7,
  stableWindowMs: 60_000,
  panicWindowMs: 6_000,
  panicThreshold: 2,
  maxScaleUpRate: 1000,
  maxScaleDownRate: 2,
  minScale: 0,
  maxScale: 100,
  scaleToZeroGraceMs: 30_000,
};

interface Step {
  readonly now: number;
  readonly stableAverage: number;
  readonly panicAverage: number;
  readonly ready: number;
  readonly currentScale: number;
  readonly expectDesired: number;
  readonly expectPanicking: boolean;
}

/** Runs the instants in order, carrying the state from one decision to the next. */
function runTable(settings: KpaSettings, steps: readonly Step[], initial: KpaState = INITIAL_KPA_STATE): KpaState {
  let state = initial;
  steps.forEach((step, i) => {
    const decision = computeDesiredScale({
      now: step.now, settings, state,
      stableAverage: step.stableAverage, panicAverage: step.panicAverage,
      readySandboxes: step.ready, currentScale: step.currentScale,
    });
    const where = `step ${i} (now ${step.now}): ${decision.reason}`;
    assert.equal(decision.desired, step.expectDesired, where);
    assert.equal(decision.isPanicking, step.expectPanicking, where);
    state = decision.state;
  });
  return state;
}

/** Table rows: [now, stableAverage, panicAverage, ready, currentScale, expectDesired, expectPanicking]. */
type Row = readonly [number, number, number, number, number, number, boolean];
const rows = (table: readonly Row[]): Step[] => table.map(([now, stableAverage, panicAverage, ready, currentScale, expectDesired, expectPanicking]) =>
  ({ now, stableAverage, panicAverage, ready, currentScale, expectDesired, expectPanicking }));

describe('computeDesiredScale', () => {
  it('scales on the stable average, limited by the scale-down rate', () => {
    runTable(BASE, rows([
      [0, 14, 14, 2, 2, 2, false], //       ceil(14/7) = 2
      [2_000, 20, 20, 2, 2, 3, false], //   ceil(2.86) = 3; 3/2 < 2: no panic
      [4_000, 20, 20, 3, 3, 3, false],
      [6_000, 27.9, 27.9, 3, 3, 4, false], // ceil(3.99) = 4
      [8_000, 7, 7, 4, 4, 2, false], //     wants 1, at least floor(4/2) = 2
      [10_000, 7, 7, 2, 2, 1, false], //    floor(2/2) = 1
    ]));
  });

  it('explains a stable decision with its arithmetic', () => {
    const decision = computeDesiredScale({
      now: 0, settings: { ...BASE, targetPerSandbox: 0.7 }, state: INITIAL_KPA_STATE,
      stableAverage: 3.2, panicAverage: 3.2, readySandboxes: 3, currentScale: 3,
    });
    assert.equal(decision.desired, 5);
    assert.equal(decision.reason, 'stable: ceil(3.2/0.7)=5');
  });

  it('follows the worked example: panic to 8, held for a calm stable window, then halves per tick', () => {
    runTable(BASE, rows([
      [0, 15, 50, 3, 3, 8, true], //        dppc ceil(50/7) = 8, 8/3 ≥ 2 → panic; max(3, 8) = 8
      [2_000, 15, 50, 3, 8, 8, true], //    still over: panic extended to 2 000
      [4_000, 15, 12, 8, 8, 8, true], //    calm (2/8 < 2) but never down while panicking
      [30_000, 15, 12, 8, 8, 8, true],
      [62_000, 15, 12, 8, 8, 8, true], //   62 000 is not past 2 000 + 60 000
      [64_000, 15, 12, 8, 8, 4, false], //  panic over; dspc 3 but at most halved: floor(8/2) = 4
      [66_000, 15, 12, 4, 4, 3, false], //  dspc 3 ≥ floor(4/2) = 2
      [68_000, 15, 12, 3, 3, 3, false],
    ]));
  });

  it('enters, extends, leaves and re-enters panic', () => {
    runTable(BASE, rows([
      [0, 7, 7, 1, 1, 1, false],
      [2_000, 7, 14, 1, 1, 2, true], //     dppc 2, 2/1 ≥ 2 → enter
      [4_000, 7, 28, 2, 2, 4, true], //     dppc 4, 4/2 ≥ 2 → extend to 4 000
      [6_000, 7, 7, 4, 4, 4, true], //      calm, held at 4
      [64_000, 7, 7, 4, 4, 4, true], //     64 000 = 4 000 + 60 000: not yet past
      [66_000, 7, 7, 4, 4, 2, false], //    left: dspc 1, at least floor(4/2) = 2
      [68_000, 7, 28, 2, 2, 4, true], //    re-enter; maxPanicSandboxes was reset, so max(1, 4) = 4
    ]));
  });

  it('limits scale-up to maxScaleUpRate × ready', () => {
    runTable({ ...BASE, maxScaleUpRate: 2 }, rows([
      [0, 700, 700, 2, 2, 4, true], //      wants 100, at most ceil(2 × 2) = 4
      [2_000, 700, 700, 4, 4, 8, true],
      [4_000, 700, 700, 8, 8, 16, true],
      [6_000, 700, 700, 0, 16, 16, true], // 0 ready counts as 1 (ceil(2 × 1) = 2), but panic holds 16
    ]));
  });

  it('limits scale-down to ready / maxScaleDownRate', () => {
    runTable({ ...BASE, maxScaleDownRate: 4 }, rows([
      [0, 0, 0, 20, 20, 5, false], //       floor(20/4) = 5
      [2_000, 0, 0, 5, 5, 1, false], //     floor(5/4) = 1
      [4_000, 0, 0, 1, 1, 1, false], //     floor(1/4) = 0: the grace holds 1
    ]));
  });

  it('keeps the decision within [minScale, maxScale]', () => {
    runTable({ ...BASE, minScale: 2, maxScale: 5 }, rows([
      [0, 0, 0, 0, 0, 2, false], //         no demand, but at least 2
      [2_000, 70, 7, 2, 2, 5, false], //    ceil(70/7) = 10, at most 5
      [4_000, 0, 0, 5, 5, 2, false], //     floor(5/2) = 2
      [6_000, 0, 0, 2, 2, 2, false], //     floor(2/2) = 1, at least 2
    ]));
  });

  it('holds the last sandbox until the decision has been 0 for the grace period', () => {
    const state = runTable(BASE, rows([
      [0, 0, 0, 1, 1, 1, false], //         0 since 0
      [2_000, 0, 0, 1, 1, 1, false],
      [28_000, 0, 0, 1, 1, 1, false],
      [30_000, 0, 0, 1, 1, 0, false], //    30 000 ms of zero: go
      [32_000, 0, 0, 0, 0, 0, false],
    ]));
    assert.equal(state.zeroSinceMs, 0);
  });

  it('restarts the grace when demand comes back', () => {
    runTable(BASE, rows([
      [0, 0, 0, 1, 1, 1, false],
      [20_000, 1, 1, 1, 1, 1, false], //    demand: grace reset
      [22_000, 0, 0, 1, 1, 1, false], //    0 since 22 000
      [50_000, 0, 0, 1, 1, 1, false], //    28 000 ms
      [52_000, 0, 0, 1, 1, 0, false], //    30 000 ms
    ]));
  });

  it('reports the grace progress in the reason', () => {
    const first = computeDesiredScale({ now: 1_000, settings: BASE, state: INITIAL_KPA_STATE, stableAverage: 0, panicAverage: 0, readySandboxes: 1, currentScale: 1 });
    const second = computeDesiredScale({ now: 2_200, settings: BASE, state: first.state, stableAverage: 0, panicAverage: 0, readySandboxes: 1, currentScale: 1 });
    assert.match(second.reason, /scale-to-zero grace: 1200\/30000 ms/);
  });

  it('stays at zero without demand, and goes at once with no grace', () => {
    runTable(BASE, rows([[0, 0, 0, 0, 0, 0, false]]));
    runTable({ ...BASE, scaleToZeroGraceMs: 0 }, rows([[0, 0, 0, 1, 1, 0, false]]));
  });

  it('scales from zero on the first demand', () => {
    runTable(BASE, rows([
      [0, 0, 0, 0, 0, 0, false],
      [100, 1, 1, 0, 0, 1, false], //       ceil(1/7) = 1
    ]));
    runTable({ ...BASE, targetPerSandbox: 0.7 }, rows([
      [0, 1, 1, 0, 0, 2, true], //          ceil(1/0.7) = 2, 2/1 ≥ 2 → panic
    ]));
  });

  it('stays up after a restart with sandboxes until a calm stable window has passed', () => {
    const initial = initialKpaState(6, 10_000);
    assert.deepEqual(initial, { panicStartMs: 10_000, maxPanicSandboxes: 6, zeroSinceMs: null });
    assert.deepEqual(initialKpaState(1, 10_000), { panicStartMs: 10_000, maxPanicSandboxes: 1, zeroSinceMs: null }, 'one sandbox is held too');
    assert.equal(initialKpaState(0, 10_000), INITIAL_KPA_STATE);
    runTable(BASE, rows([
      [10_000, 0, 0, 6, 6, 6, true], //     no history, but no scale-down
      [70_000, 0, 0, 6, 6, 6, true],
      [72_000, 0, 0, 6, 6, 3, false], //    past 10 000 + 60 000: halve
    ]), initial);
  });
});

describe('kpaSettingsFromSpec', () => {
  it('derives the target per sandbox from concurrency × utilisation, at least 0.01', () => {
    const settings = kpaSettingsFromSpec(10, { ...SCALING_DEFAULTS });
    assert.equal(settings.targetPerSandbox, 7);
    assert.equal(settings.stableWindowMs, SCALING_DEFAULTS.stableWindowMs);
    assert.equal(settings.scaleToZeroGraceMs, SCALING_DEFAULTS.scaleToZeroGraceMs);
    assert.equal(kpaSettingsFromSpec(1, { ...SCALING_DEFAULTS, targetUtilization: 0.001 }).targetPerSandbox, 0.01);
  });
});
