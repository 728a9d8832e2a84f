import { test } from 'node:test';
import assert from 'node:assert/strict';
import { functionSpecSchema, type FunctionSpecInput } from '../../src/api/function-spec.ts';
import { Autoscaler } from '../../src/controlplane/autoscaler.ts';
import { newFunctionEntry, type FunctionEntry } from '../../src/controlplane/model.ts';
import { ManualClock } from '../kit/manual-clock.ts';

const record = (scaling: FunctionSpecInput['scaling'], generation = 1) => ({
  spec: functionSpecSchema.parse({ name: 'f', runtime: 'emulated', scaling }),
  generation, createdAt: '', updatedAt: '',
});

function setup(scaling: FunctionSpecInput['scaling']) {
  const clock = new ManualClock(0);
  const decisions: number[] = [];
  const autoscaler = new Autoscaler({ clock, bucketMs: 1000, tickMs: 2000, onDecision: (fn) => decisions.push(fn.desired) });
  const fn: FunctionEntry = newFunctionEntry(record(scaling));
  return { clock, autoscaler, fn, decisions };
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
  fn.record = record({ stableWindowMs: 120_000, panicWindowMs: 6_000, maxScale: 10 }, 2);
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
