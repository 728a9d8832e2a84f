import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createRandom } from '../../src/core/random.ts';
import { createEvictionPolicy } from '../../src/policy/eviction/index.ts';
import { createPlacementPolicy } from '../../src/policy/placement/index.ts';
import type { WorkerSnapshot } from '../../src/policy/placement/types.ts';
import { isEmptyPlan, planScale } from '../../src/policy/plan/plan-scale.ts';
import type { SandboxPhase, SandboxView, ScaleInput } from '../../src/policy/plan/types.ts';

const policies = { placement: createPlacementPolicy('least-allocated', { random: createRandom(1) }), eviction: createEvictionPolicy('oldest', { random: createRandom(1) }) };

const worker = (id: string, cpuMilli = 1000): WorkerSnapshot => ({
  id, capacity: { cpuMilli, memoryMiB: 1024 }, allocated: { cpuMilli: 0, memoryMiB: 0 }, runtimes: ['emulated'], isSchedulable: true, cachedArtifacts: new Set(),
});

const sandbox = (id: string, phase: SandboxPhase, options: { generation?: number; readyAtMs?: number; workerId?: string } = {}): SandboxView => ({
  id, phase, generation: options.generation ?? 2, workerId: options.workerId ?? 'w1', requestedAtMs: 0,
  readyAtMs: phase === 'starting' ? undefined : (options.readyAtMs ?? 0), lastUsedMs: 0,
});

const input = (desired: number, sandboxes: SandboxView[], extra: Partial<ScaleInput> = {}): ScaleInput => ({
  function: 'f', runtime: 'emulated', artifact: undefined, resources: { cpuMilli: 100, memoryMiB: 64 }, generation: 2,
  desired, sandboxes, isBackingOff: false, workers: [worker('w1'), worker('w2')], ...extra,
});

test('a converged function plans nothing', () => {
  const plan = planScale(input(2, [sandbox('a', 'ready'), sandbox('b', 'starting'), sandbox('c', 'draining')]), policies);
  assert.ok(isEmptyPlan(plan));
  assert.equal(plan.reason, 'converged');
});

test('scale up places desired − current new sandboxes, spread by the placement policy', () => {
  const plan = planScale(input(3, [sandbox('a', 'ready')]), policies);
  assert.equal(plan.reason, 'scale-up');
  assert.equal(plan.create.length, 2);
  assert.deepEqual(new Set(plan.create), new Set(['w1', 'w2']), 'least-allocated spreads them');
  assert.equal(plan.unplaced, 0);
});

test('while backing off, nothing is created', () => {
  const plan = planScale(input(3, [], { isBackingOff: true }), policies);
  assert.equal(plan.reason, 'backing-off');
  assert.equal(plan.create.length, 0);
});

test('no worker with room: the sandboxes are unplaced, and a function with none at all has no capacity', () => {
  const plan = planScale(input(2, [], { workers: [worker('w1', 50)] }), policies);
  assert.equal(plan.reason, 'no-worker-has-room');
  assert.equal(plan.unplaced, 2);
  assert.equal(plan.hasNoCapacity, true);
  const partly = planScale(input(3, [sandbox('a', 'ready')], { workers: [worker('w1', 150)] }), policies);
  assert.equal(partly.reason, 'scale-up-partly-placed');
  assert.deepEqual([partly.create.length, partly.unplaced, partly.hasNoCapacity], [1, 1, false]);
});

test('scale down cancels starting sandboxes first, then drains the ready ones the eviction policy picks', () => {
  const plan = planScale(input(1, [sandbox('r1', 'ready', { readyAtMs: 10 }), sandbox('r2', 'ready', { readyAtMs: 5 }), sandbox('s1', 'starting'), sandbox('s2', 'starting')]), policies);
  assert.equal(plan.reason, 'scale-down');
  assert.deepEqual([...plan.cancel].sort(), ['s1', 's2']);
  assert.deepEqual(plan.drain, ['r2'], 'oldest first');
  const toZero = planScale(input(0, [sandbox('r1', 'ready'), sandbox('r2', 'ready')]), policies);
  assert.deepEqual([...toZero.drain].sort(), ['r1', 'r2'], 'all go: no choice to make');
});

test('rollout: ready sandboxes of an older generation are retired, oldest first, as current ones become ready', () => {
  const old = [sandbox('o1', 'ready', { generation: 1, readyAtMs: 3 }), sandbox('o2', 'ready', { generation: 1, readyAtMs: 1 }), sandbox('o3', 'ready', { generation: 1, readyAtMs: 2 })];
  // desired 3, one current ready, two starting: retire 3 − max(0, 3 − 1) = 1, the oldest.
  const plan = planScale(input(3, [...old, sandbox('n1', 'ready'), sandbox('n2', 'starting'), sandbox('n3', 'starting')]), policies);
  assert.equal(plan.reason, 'rollout');
  assert.deepEqual(plan.drain, ['o2']);
  assert.equal(plan.create.length, 0);
  // Nothing of the new generation ready yet: the old ones stay, and the new ones are created.
  const start = planScale(input(3, old), policies);
  assert.deepEqual([start.drain.length, start.create.length], [0, 3]);
});
