import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { BatonError } from '../../src/core/errors.ts';
import { createRandom } from '../../src/core/random.ts';
import type { Random } from '../../src/core/random.ts';
import {
  createPlan, generateMinuteGapsMs, planColdStartSweep, planEntries, planTrace, sampleMemoryMiB, sampleRuntimeMs,
  sweepFunctionCount, sweepFunctionNames,
} from '../../src/loadgen/schedule.ts';
import type { Plan } from '../../src/loadgen/schedule.ts';
import { readTrace } from '../../src/loadgen/trace.ts';

const FIXTURE = join(import.meta.dirname, '..', 'fixtures', 'azure2019-example');

/** A Random that replays fixed values: `next` returns them in turn, `int(n)` is floor(next × n). */
function scripted(values: number[]): Random {
  let i = 0;
  const next = (): number => values[i++ % values.length] ?? 0;
  return { next, int: (n) => Math.floor(next() * n) };
}

function isSorted(plan: Plan): boolean {
  for (let i = 1; i < plan.length; i++) if ((plan.atMs[i] ?? 0) < (plan.atMs[i - 1] ?? 0)) return false;
  return true;
}

describe('generateMinuteGapsMs', () => {
  it('scales the gaps of every distribution to sum to 60 s', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 500 }), fc.constantFrom('exponential', 'uniform', 'equidistant' as const), fc.integer(), (n, d, seed) => {
      const gaps = generateMinuteGapsMs(n, d, createRandom(seed));
      assert.equal(gaps.length, n);
      assert.ok(Math.abs(gaps.reduce((a, b) => a + b, 0) - 60_000) < 1e-6);
      assert.ok(gaps.every((g) => g >= 0));
    }));
  });

  it('spaces equidistant invocations by 60 s / N', () => {
    assert.deepEqual([...generateMinuteGapsMs(4, 'equidistant', createRandom(1))], [15_000, 15_000, 15_000, 15_000]);
  });

  it('normalises uniform draws: 0.1, 0.2, 0.3 → 10 s, 20 s, 30 s', () => {
    const gaps = generateMinuteGapsMs(3, 'uniform', scripted([0.1, 0.2, 0.3]));
    assert.ok(Math.abs((gaps[0] ?? 0) - 10_000) < 1e-9 && Math.abs((gaps[1] ?? 0) - 20_000) < 1e-9);
    assert.equal(gaps[2], 60_000 - (gaps[0] ?? 0) - (gaps[1] ?? 0));
  });
});

describe('sampleRuntimeMs / sampleMemoryMiB', () => {
  const durations = [10, 20, 30, 40, 50, 60, 70]; // p0 p1 p25 p50 p75 p99 p100
  it('picks Invitro buckets by the quantile, then a uniform integer in [lo, hi)', () => {
    assert.equal(sampleRuntimeMs(durations, scripted([0])), 10); //         q = 0 → p0
    assert.equal(sampleRuntimeMs(durations, scripted([0.01, 0.5])), 15); //  [p0, p1): 10 + floor(0.5 × 10)
    assert.equal(sampleRuntimeMs(durations, scripted([0.3, 0])), 30); //    (0.25, 0.5] → [p25, p50)
    assert.equal(sampleRuntimeMs(durations, scripted([0.995, 0.99])), 69); // above 0.99 → [p99, p100)
  });
  it('truncates float bounds, returns lo for empty ranges and clamps to [1, 60000] ms', () => {
    assert.equal(sampleRuntimeMs([99.7, 99.9, 99, 100, 101, 101, 101], scripted([0.005, 0.9])), 99);
    assert.equal(sampleRuntimeMs([0, 0, 0, 0, 0, 0, 0], scripted([0.5])), 1);
    assert.equal(sampleRuntimeMs([9e4, 9e4, 9e4, 9e4, 9e4, 9e4, 9e4], scripted([0.5])), 60_000);
  });
  it('draws memory from pct1 … pct100 and clamps to [1, 10240] MiB', () => {
    const memory = [100, 110, 120, 130, 140, 150, 160, 170];
    assert.equal(sampleMemoryMiB(memory, scripted([0.01])), 100); //        ≤ 0.01 → pct1
    assert.equal(sampleMemoryMiB(memory, scripted([0.03, 0.5])), 105); //   [pct1, pct5)
    assert.equal(sampleMemoryMiB(memory, scripted([0.97, 0])), 150); //     (0.95, 0.99] → [pct95, pct99)
    assert.equal(sampleMemoryMiB(memory, scripted([0.999, 0.5])), 165); //  [pct99, pct100)
    assert.equal(sampleMemoryMiB(memory.map(() => 20_000), scripted([0.5])), 10_240);
  });
});

describe('planTrace', () => {
  it('preserves each function\'s count per minute and fires the first invocation of a minute at its start', async () => {
    const { functions } = await readTrace(FIXTURE);
    const plan = planTrace(functions, { minutes: 12, iatDistribution: 'exponential', seed: 42 });
    assert.equal(plan.length, 12 * 5 + 3 * 7 * 5); // f1: 12 minutes × 5; f2–f4: minutes 5–11 × 5
    assert.ok(isSorted(plan));
    for (let f = 0; f < functions.length; f++) {
      for (let m = 0; m < 12; m++) {
        const times: number[] = [];
        for (let i = 0; i < plan.length; i++) if (plan.functionIndex[i] === f && plan.minute[i] === m) times.push(plan.atMs[i] ?? 0);
        assert.equal(times.length, functions[f]?.perMinute[m]);
        if (times.length > 0) assert.equal(Math.min(...times), m * 60_000);
        assert.ok(times.every((t) => t >= m * 60_000 && t < (m + 1) * 60_000));
      }
    }
  });

  it('samples execution times within the function\'s percentile range', async () => {
    const { functions } = await readTrace(FIXTURE);
    const plan = planTrace(functions, { minutes: 30, iatDistribution: 'uniform', seed: 7 });
    for (let i = 0; i < plan.length; i++) {
      const p = functions[plan.functionIndex[i] ?? 0]?.durations.percentilesMs ?? [];
      assert.ok((plan.execMs[i] ?? 0) >= (p[0] ?? 0) && (plan.execMs[i] ?? 0) <= (p[6] ?? 0));
      assert.ok((plan.memoryMiB[i] ?? 0) >= 1);
    }
  });

  it('is deterministic by seed', async () => {
    const { functions } = await readTrace(FIXTURE);
    const options = { minutes: 20, iatDistribution: 'exponential' as const, seed: 1 };
    assert.deepEqual(planEntries(planTrace(functions, options)), planEntries(planTrace(functions, options)));
    assert.notDeepEqual(planEntries(planTrace(functions, options)), planEntries(planTrace(functions, { ...options, seed: 2 })));
  });

  it('refuses too many minutes or too many invocations', async () => {
    const { functions } = await readTrace(FIXTURE);
    const isInvalid = (err: unknown): boolean => err instanceof BatonError && err.code === 'ERR_INVALID_REQUEST';
    assert.throws(() => planTrace(functions, { minutes: 1441, iatDistribution: 'uniform', seed: 1 }), isInvalid);
    assert.throws(() => planTrace(functions, { minutes: 0, iatDistribution: 'uniform', seed: 1 }), isInvalid);
    assert.throws(() => planTrace(functions, { minutes: 60, iatDistribution: 'uniform', seed: 1, maxInvocations: 100 }), isInvalid);
  });
});

describe('planColdStartSweep', () => {
  it('uses ceil(rate × cooldown) functions', () => {
    assert.equal(sweepFunctionCount(100, 10), 1000);
    assert.equal(sweepFunctionCount(0.1, 30), 3);
    assert.equal(sweepFunctionCount(3, 2.5), 8);
    assert.deepEqual(sweepFunctionNames({ rate: 1, cooldownS: 3, functionPrefix: 'cold-' }), ['cold-0', 'cold-1', 'cold-2']);
  });

  it('sends exactly `rate` invocations in every second and each function every cooldown', () => {
    for (const [rate, cooldownS, seconds] of [[1, 5, 60], [10, 10, 60], [100, 10, 30], [250, 6, 20]] as const) {
      const plan = planColdStartSweep({ rate, seconds, cooldownS, execMs: 10, functionPrefix: 'cold-' });
      assert.equal(plan.length, rate * seconds);
      assert.equal(plan.functions.length, rate * cooldownS);
      assert.ok(isSorted(plan));
      const perSecond = new Array<number>(seconds).fill(0);
      for (let i = 0; i < plan.length; i++) perSecond[Math.floor((plan.atMs[i] ?? 0) / 1000 + 1e-9)]! += 1;
      assert.ok(perSecond.every((c) => c === rate), `${rate}/s: ${perSecond.join(',')}`);
      const last = new Map<number, number>();
      for (let i = 0; i < plan.length; i++) {
        const f = plan.functionIndex[i] ?? 0;
        const previous = last.get(f);
        if (previous !== undefined) assert.ok(Math.abs((plan.atMs[i] ?? 0) - previous - cooldownS * 1000) < 1e-6);
        last.set(f, plan.atMs[i] ?? 0);
      }
      assert.ok(plan.execMs.every((e) => e === 10));
    }
  });

  it('matches Invitro\'s offsets: function i first at i / rate s', () => {
    const plan = planColdStartSweep({ rate: 4, seconds: 3, cooldownS: 2, execMs: 0, functionPrefix: 'c-' });
    assert.deepEqual(planEntries(plan, 0, 9).map((e) => [e.atMs, e.function]), [
      [0, 'c-0'], [250, 'c-1'], [500, 'c-2'], [750, 'c-3'], [1000, 'c-4'], [1250, 'c-5'], [1500, 'c-6'], [1750, 'c-7'], [2000, 'c-0'],
    ]);
  });

  it('keeps the rate exact and gaps at least the cooldown when rate × cooldown is not an integer', () => {
    const plan = planColdStartSweep({ rate: 3, seconds: 10, cooldownS: 2.5, execMs: 1, functionPrefix: 'c-' });
    assert.equal(plan.length, 30);
    assert.equal(plan.functions.length, 8); // each function every 8 / 3 s ≥ 2.5 s
    for (let i = 8; i < plan.length; i++) assert.ok((plan.atMs[i] ?? 0) - (plan.atMs[i - 8] ?? 0) >= 2500);
  });

  it('refuses bad options', () => {
    const base = { rate: 1, seconds: 1, cooldownS: 1, execMs: 1, functionPrefix: 'c-' };
    for (const bad of [{ rate: 0 }, { seconds: -1 }, { cooldownS: Number.NaN }, { execMs: 1.5 }, { functionPrefix: 'Bad_' }, { rate: 1e6, seconds: 10 }]) {
      assert.throws(() => planColdStartSweep({ ...base, ...bad }), (err: unknown) => err instanceof BatonError && err.code === 'ERR_INVALID_REQUEST');
    }
  });
});

describe('createPlan', () => {
  it('sorts entries by time, keeping the given order on ties', () => {
    const plan = createPlan([{ atMs: 5, function: 'b', execMs: 1 }, { atMs: 0, function: 'a', execMs: 2 }, { atMs: 5, function: 'a', execMs: 3 }]);
    assert.deepEqual(planEntries(plan).map((e) => [e.atMs, e.function, e.execMs]), [[0, 'a', 2], [5, 'b', 1], [5, 'a', 3]]);
  });
});
