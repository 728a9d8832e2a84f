import { test } from 'node:test';
import assert from 'node:assert/strict';
import { functionSpecSchema, type FunctionSpecInput } from '../../src/api/function-spec.ts';
import { Autoscaler } from '../../src/controlplane/autoscaler.ts';
import { newFunctionEntry, newWorkerEntry, Sandbox, type FunctionEntry } from '../../src/controlplane/model.ts';
import { ManualClock } from '../kit/manual-clock.ts';

const record = (scaling: FunctionSpecInput['scaling'], generation = 1) => ({
  spec: functionSpecSchema.parse({ name: 'f', runtime: 'emulated', scaling }),
  generation, createdAt: '', updatedAt: '',
});

function setup(scaling: FunctionSpecInput['scaling']) {
  const clock = new ManualClock(0);
  const decisions: number[] = [];
  const taken: number[] = [];
  const autoscaler = new Autoscaler({
    clock, bucketMs: 1000, tickMs: 2000, onDecision: (fn) => decisions.push(autoscaler.desiredScale(fn)), onDecisions: (count) => taken.push(count),
  });
  const fn: FunctionEntry = newFunctionEntry(record(scaling));
  return { clock, autoscaler, fn, decisions, taken };
}

/** Gives `fn` a ready sandbox of its current generation, as the plan executor would after a creation. */
function addReadySandbox(fn: FunctionEntry, id: string): void {
  const worker = newWorkerEntry({ id: 'w', url: 'http://127.0.0.1:1', capacity: { cpuMilli: 1000, memoryMiB: 1024 }, runtimes: ['emulated'], state: 'ready', nowMs: 0 });
  const sandbox = new Sandbox({ id, fn, worker, generation: fn.record.generation, resources: fn.record.spec.resources, requestedAtMs: 0, createdAtWallMs: 0 });
  sandbox.phase = 'ready';
  fn.sandboxes.items.add(sandbox);
}

test('the poke scales a function at zero to the capacity its waiting invocations need, at once', () => {
  const { autoscaler, fn, decisions } = setup({ maxScale: 10 });
  autoscaler.poke(fn, 3);
  assert.deepEqual(decisions, [3], 'three waiting invocations of concurrency 1: three sandboxes, no tick needed');
});

test('a stable window shorter than a bucket, and a spec update that lengthens it, keep deciding', () => {
  const { clock, autoscaler, fn, decisions } = setup({ stableWindowMs: 500, panicWindowMs: 200, maxScale: 10 });
  autoscaler.reportDemand(fn, 'dp', 2);
  clock.advance(2000);
  assert.ok(decisions.length > 0, 'decided with a 500 ms window and 1 s buckets');
  fn.replaceRecord(record({ stableWindowMs: 120_000, panicWindowMs: 6_000, maxScale: 10 }, 2));
  autoscaler.reportDemand(fn, 'dp', 2);
  const before = decisions.length;
  clock.advance(4000);
  assert.ok(decisions.length > before, 'still deciding after the window grew past the old buffer');
  assert.ok(decisions.every((d) => d >= 0 && d <= 10));
});

test('an idle function is forgotten: no timer is left once it is at zero with no demand', () => {
  const { clock, autoscaler, fn } = setup({ stableWindowMs: 1000, panicWindowMs: 1000, scaleToZeroGraceMs: 0 });
  autoscaler.reportDemand(fn, 'dp', 0);
  assert.equal(autoscaler.activeCount, 1);
  clock.advance(20_000);
  assert.equal(autoscaler.activeCount, 0);
  assert.equal(clock.pendingTimers, 0);
});

test('a decision that keeps a converged function as it is asks for nothing; a change does', () => {
  const { clock, autoscaler, fn, decisions, taken } = setup({ stableWindowMs: 4000, panicWindowMs: 2000, maxScale: 10, scaleToZeroGraceMs: 0 });
  autoscaler.poke(fn, 1);
  assert.deepEqual(decisions, [1]);
  addReadySandbox(fn, 's1');
  // Steady demand that one sandbox serves (0.5 in flight, under the target utilisation): every tick decides 1.
  for (let t = 0; t < 10; t++) {
    autoscaler.reportDemand(fn, 'dp', 0.5);
    clock.advance(1000);
  }
  assert.deepEqual(decisions, [1], 'ticks that keep one sandbox call nothing');
  assert.equal(taken.reduce((a, b) => a + b, 0), 5, 'five ticks, five decisions counted');
  assert.equal(autoscaler.desiredScale(fn), 1);
  // Demand gone: the stable average falls to zero and that decision is passed on — at every tick
  // until the function has converged (here nothing removes the sandbox, so it never does).
  clock.advance(10_000);
  assert.deepEqual(decisions.slice(0, 2), [1, 0]);
  assert.ok(decisions.slice(1).every((d) => d === 0));
  for (const sandbox of [...fn.sandboxes.values()]) fn.sandboxes.items.delete(sandbox);
  const before = decisions.length;
  clock.advance(10_000);
  assert.equal(decisions.length, before, 'at zero with no demand: nothing to ask for');
});

test('the scale-downs of one tick are handed on spread over the tick, not all at once; scale-ups are not held', () => {
  const clock = new ManualClock(0);
  const handed: { name: string; atMs: number; desired: number }[] = [];
  const autoscaler = new Autoscaler({ clock, bucketMs: 1000, tickMs: 2000, onDecision: (fn) => handed.push({ name: fn.record.spec.name, atMs: clock.now(), desired: autoscaler.desiredScale(fn) }) });
  const fns: FunctionEntry[] = [];
  for (let i = 0; i < 100; i++) {
    const fn = newFunctionEntry({ ...record({ stableWindowMs: 2000, panicWindowMs: 1000, maxScale: 10, scaleToZeroGraceMs: 0 }), spec: functionSpecSchema.parse({ name: `f${i}`, runtime: 'emulated', scaling: { stableWindowMs: 2000, panicWindowMs: 1000, maxScale: 10, scaleToZeroGraceMs: 0 } }) });
    addReadySandbox(fn, `s${i}`);
    autoscaler.ensureActive(fn);
    fns.push(fn);
  }
  // No demand at all: the first tick (t = 2 s) decides every function down to zero.
  clock.advance(2000);
  assert.equal(handed.length, 0, 'nothing handed on in the sweep itself');
  assert.equal(autoscaler.scaleDownsWaiting, 100);
  assert.ok(fns.every((fn) => autoscaler.desiredScale(fn) === 0));
  // A scale-up decided meanwhile (a poke of a function at zero) goes out at once.
  const cold = newFunctionEntry(record({ maxScale: 10 }));
  autoscaler.poke(cold, 2);
  assert.deepEqual(handed.map((h) => h.desired), [2]);
  handed.length = 0;
  // The 100 go out over 80 % of the 2 s tick, in 10 ms slices: never more than one slice's share at once.
  const perStep: number[] = [];
  for (let t = 0; t < 1600; t += 10) {
    const before = handed.length;
    clock.advance(10);
    perStep.push(handed.length - before);
  }
  assert.equal(handed.length, 100, 'all handed on within 80 % of the tick');
  assert.equal(new Set(handed.map((h) => h.name)).size, 100, 'each once');
  assert.ok(Math.max(...perStep) <= 1, `at most one per slice, got ${Math.max(...perStep)}`);
  assert.ok(handed[99]!.atMs - handed[0]!.atMs >= 900, 'spread over most of the tick');
  assert.equal(autoscaler.scaleDownsWaiting, 0);
});

test('a paced scale-down hands on the function as it is when its turn comes: converged or forgotten ones are skipped', () => {
  const clock = new ManualClock(0);
  const handed: { name: string; desired: number }[] = [];
  const autoscaler: Autoscaler = new Autoscaler({ clock, bucketMs: 1000, tickMs: 2000, onDecision: (fn) => handed.push({ name: fn.record.spec.name, desired: autoscaler.desiredScale(fn) }) });
  const scaling = { stableWindowMs: 2000, panicWindowMs: 1000, maxScale: 10, scaleToZeroGraceMs: 0 };
  const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((name) => newFunctionEntry({ ...record(scaling), spec: functionSpecSchema.parse({ name, runtime: 'emulated', scaling }) })) as [FunctionEntry, FunctionEntry, FunctionEntry, FunctionEntry];
  for (const fn of [a, b, c, d]) {
    addReadySandbox(fn, `s-${fn.record.spec.name}`);
    addReadySandbox(fn, `t-${fn.record.spec.name}`);
    autoscaler.ensureActive(fn);
  }
  clock.advance(2000);
  assert.equal(autoscaler.scaleDownsWaiting, 4);
  // Each was decided from two sandboxes down to one (the scale-down rate halves at most). Before
  // their turns: a is updated (a new generation keeps its two sandboxes: handed on at once), b loses
  // one sandbox (a lost worker: converged at one), c is deleted.
  assert.ok([a, b, c, d].every((fn) => autoscaler.desiredScale(fn) === 1));
  autoscaler.onUpdated(a);
  assert.deepEqual(handed, [{ name: 'a', desired: 2 }]);
  b.sandboxes.items.delete(b.sandboxes.values()[0]!);
  autoscaler.forget(c);
  clock.advance(1600);
  assert.deepEqual(handed, [{ name: 'a', desired: 2 }, { name: 'd', desired: 1 }], 'only d is handed on at its turn, with its desired scale then');
  autoscaler.close();
  assert.equal(clock.pendingTimers, 0);
});

test('describe gives the reason of the last decision; a function back from idle starts afresh', () => {
  const { clock, autoscaler, fn } = setup({ stableWindowMs: 2000, panicWindowMs: 1000, maxScale: 10, scaleToZeroGraceMs: 0 });
  autoscaler.poke(fn, 3);
  assert.deepEqual(autoscaler.describe(fn), { isPanicking: false, reason: 'poke: 3 waiting at zero → 3' });
  autoscaler.reportDemand(fn, 'dp', 2);
  clock.advance(2000);
  const described = autoscaler.describe(fn);
  assert.match(described?.reason ?? '', /stable ceil\(2\/0\.7\)=3/, `got ${described?.reason}`);
  // Demand stops and nothing is left: the function goes idle and is forgotten…
  clock.advance(20_000);
  assert.equal(autoscaler.activeCount, 0);
  assert.equal(autoscaler.describe(fn), undefined);
  // …and when demand comes back, it starts with empty windows and no decision yet.
  autoscaler.reportDemand(fn, 'dp', 1);
  assert.deepEqual(autoscaler.describe(fn), { isPanicking: false, reason: 'activated' });
  clock.advance(2000);
  assert.match(autoscaler.describe(fn)?.reason ?? '', /ceil\(1\/0\.7\)=2/, 'decided from the new demand only');
});

for (const ready of [1, 3]) {
  test(`after a control-plane restart (${ready} sandbox${ready === 1 ? '' : 'es'} recovered, windows empty) no scale-down comes before one stable window has passed`, () => {
    const { clock, autoscaler, fn, decisions } = setup({ stableWindowMs: 10_000, panicWindowMs: 1_000, scaleToZeroGraceMs: 2_000, maxScale: 10 });
    for (let i = 0; i < ready; i++) addReadySandbox(fn, `s${i}`);
    // The sandboxes were found on the workers; the data planes report no demand (idle, or not yet re-registered).
    autoscaler.ensureActive(fn, { isRecovered: true });
    for (let t = 0; t < 9; t++) {
      autoscaler.reportDemand(fn, 'dp', 0);
      clock.advance(1_000);
    }
    assert.ok(decisions.every((d) => d >= ready), `held at ${ready} through the stable window: ${JSON.stringify(decisions)}`);
    assert.equal(autoscaler.desiredScale(fn), ready);
    // Past the window, with still no demand, the normal rules apply and it scales down.
    for (let t = 0; t < 20; t++) {
      autoscaler.reportDemand(fn, 'dp', 0);
      clock.advance(1_000);
    }
    assert.ok(decisions.some((d) => d < ready), `scaled down after the window: ${JSON.stringify(decisions)}`);
  });
}
