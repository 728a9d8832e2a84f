import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DemandReport } from '../../src/api/dataplane.ts';
import { BatonError } from '../../src/core/errors.ts';
import { DEMAND_CHUNK } from '../../src/controlplane/demand-intake.ts';
import { setupCore } from '../kit/control-plane-core.ts';

const poke = (fn: string, queued: number): DemandReport => ({ dataplaneId: 'dp-1', isPoke: true, entries: [{ function: fn, concurrency: queued, queued, inflight: 0 }] });

/** A function that scales to zero soon after its demand ends (2 s window, no grace). */
const churny = (name: string, extra: Record<string, unknown> = {}) => ({ name, scaling: { stableWindowMs: 2000, panicWindowMs: 1000, scaleToZeroGraceMs: 0, maxScale: 10 }, ...extra });

test('cold start: a poke plans a sandbox on a worker at once; its ready event makes it an endpoint on the data plane', async () => {
  const kit = await setupCore();
  const worker = await kit.registerWorker('w-1');
  await kit.registerDataplane();
  await kit.deploy(churny('f'));
  kit.core.demand.report(poke('f', 2));
  kit.clock.runTurns();
  assert.equal(worker.creates.length, 2, 'two waiting invocations of concurrency 1: two sandboxes, before any tick');
  assert.equal(kit.core.autoscaler.describe(kit.core.registry.get('f'))?.reason, 'poke: 2 waiting at zero → 2');
  for (const { sandboxId } of worker.creates) kit.ready('w-1', sandboxId);
  await kit.clock.settle();
  assert.deepEqual([...kit.dataplane.endpoints.keys()].sort(), worker.running.sort());
  const fn = kit.core.registry.get('f');
  assert.equal(fn.sandboxes.recentColdStarts.size, 2);
  assert.equal(kit.core.workers.get('w-1')?.allocated.memoryMiB, 256);
  kit.core.close();
});

test('a sandbox not ready in time is given up and deleted; the next is created after a back-off that doubles, and a ready one resets it', async () => {
  const kit = await setupCore({ sandboxCreateTimeoutMs: 1000 });
  const worker = await kit.registerWorker('w-1');
  await kit.deploy(churny('f', { scaling: { minScale: 1, maxScale: 1, stableWindowMs: 2000, panicWindowMs: 1000 } }));
  await kit.advance(2000);
  assert.equal(worker.creates.length, 1, 'the minimum scale is created at the first tick');
  // Never ready: given up after 1 s, then created again after 100, 200, 400 ms of back-off.
  for (const backoffMs of [100, 200, 400]) {
    const before: number = worker.creates.length;
    await kit.advance(1000);
    assert.equal(worker.deletes.at(-1), worker.creates.at(-1)?.sandboxId, 'the timed-out sandbox is deleted on its worker');
    await kit.advance(backoffMs - 10);
    assert.equal(worker.creates.length, before, `nothing before ${backoffMs} ms of back-off`);
    await kit.advance(10);
    assert.equal(worker.creates.length, before + 1, `created again after ${backoffMs} ms`);
  }
  kit.ready('w-1', worker.creates.at(-1)!.sandboxId);
  assert.equal(kit.core.registry.get('f').sandboxes.backoff, undefined, 'a ready sandbox clears the back-off');
  assert.equal(kit.core.sandboxes.size, 1);
  kit.core.close();
});

test('a ready sandbox that exits is withdrawn from routing and replaced', async () => {
  const kit = await setupCore();
  const worker = await kit.registerWorker('w-1');
  await kit.registerDataplane();
  await kit.deploy(churny('f', { scaling: { minScale: 1, maxScale: 1, stableWindowMs: 2000, panicWindowMs: 1000 } }));
  await kit.advance(2000);
  const first = worker.creates[0]!.sandboxId;
  kit.ready('w-1', first);
  await kit.clock.settle();
  assert.ok(kit.dataplane.endpoints.has(first));
  kit.core.executor.onEvent(kit.core.workers.require('w-1'), { type: 'exited', sandboxId: first, exitCode: 1, signal: null });
  await kit.clock.settle();
  assert.equal(kit.dataplane.endpoints.has(first), false, 'withdrawn at once');
  assert.equal(worker.creates.length, 2, 'replaced by a new plan at once: a ready sandbox that exits starts no back-off');
  assert.equal(kit.core.registry.get('f').sandboxes.backoff, undefined);
  assert.equal(kit.core.sandboxes.size, 1);
  assert.notEqual(worker.creates[1]!.sandboxId, first);
  kit.core.close();
});

test('scale-down drains before it deletes: draining on every data plane, then deleted only once the drain wait is answered', async () => {
  const kit = await setupCore();
  const worker = await kit.registerWorker('w-1');
  await kit.registerDataplane();
  await kit.deploy(churny('f'));
  kit.core.demand.report(poke('f', 1));
  kit.clock.runTurns();
  const id = worker.creates[0]!.sandboxId;
  kit.ready('w-1', id);
  await kit.clock.settle();
  // No more demand: the poke's report stays fresh for 3 buckets, then the stable average falls to
  // zero within the 2 s window, a tick decides 0 and the paced scale-down hands it on within 80 %
  // of the tick.
  await kit.advance(10_000, 50);
  assert.equal(kit.dataplane.endpoints.get(id)?.isDraining, true, 'marked draining on the data plane');
  const wait = kit.dataplane.drainWaits.find((w) => w.ids.includes(id));
  assert.ok(wait !== undefined, 'a drain wait was sent for it');
  assert.equal(worker.deletes.includes(id), false, 'not deleted while invocations may be in flight');
  wait.release();
  await kit.clock.settle();
  assert.equal(worker.deletes.includes(id), true);
  assert.equal(kit.dataplane.endpoints.has(id), false);
  assert.equal(kit.core.sandboxes.size, 0);
  assert.equal(kit.core.workers.get('w-1')?.allocated.cpuMilli, 0);
  kit.core.close();
});

test('a worker that misses its heartbeats is withdrawn and its sandboxes are recreated elsewhere; when it comes back it is told to delete them', async () => {
  const kit = await setupCore({ heartbeatIntervalMs: 1000, heartbeatMissLimit: 3 });
  const lost = await kit.registerWorker('w-1', { cpuMilli: 1000 });
  await kit.registerDataplane();
  await kit.deploy(churny('f', { scaling: { minScale: 2, maxScale: 2, stableWindowMs: 2000, panicWindowMs: 1000 } }));
  await kit.advance(2000, 100);
  assert.equal(lost.creates.length, 2);
  for (const { sandboxId } of lost.creates) kit.ready('w-1', sandboxId);
  const other = await kit.registerWorker('w-2');
  await kit.clock.settle();
  // w-1 falls silent at t = 2 s: 2.5 s later it is still within the limit (3 × 1 s)…
  kit.silent.add('w-1');
  await kit.advance(2500, 100);
  assert.equal(kit.core.workers.get('w-1')?.state, 'ready');
  await kit.advance(1500, 100);
  // …and at the next check past it, it is unschedulable, its endpoints are withdrawn and the
  // function is back at two sandboxes on w-2.
  assert.equal(kit.core.workers.get('w-1')?.state, 'unschedulable');
  for (const { sandboxId } of lost.creates) assert.equal(kit.dataplane.endpoints.has(sandboxId), false);
  assert.equal(other.creates.length, 2, 'replaced on the worker that is still heard from');
  assert.equal(kit.core.sandboxes.size, 2);
  // w-1 comes back, reporting the two sandboxes it still runs: they were replaced, so it deletes them.
  await kit.registerWorker('w-1', {
    cpuMilli: 1000,
    sandboxes: lost.creates.map((c) => ({ sandboxId: c.sandboxId, function: 'f', generation: 1, state: 'ready', address: '127.0.0.1:9', startedAt: '' })),
  });
  assert.deepEqual(lost.deletes.sort(), lost.creates.map((c) => c.sandboxId).sort());
  assert.equal(kit.core.sandboxes.size, 2, 'no duplicates');
  assert.equal(kit.core.workers.get('w-1')?.state, 'ready');
  kit.core.close();
});

test('after a control-plane restart a returning worker\'s ready sandboxes are adopted as endpoints, and the function is held at its size', async () => {
  const kit = await setupCore();
  await kit.deploy(churny('f'));
  await kit.registerDataplane();
  await kit.registerWorker('w-1', {
    sandboxes: [
      { sandboxId: 'f-a', function: 'f', generation: 1, state: 'ready', address: '127.0.0.1:9', startedAt: '' },
      { sandboxId: 'f-b', function: 'f', generation: 1, state: 'ready', address: '127.0.0.1:10', startedAt: '' },
      { sandboxId: 'f-old', function: 'f', generation: 7, state: 'ready', address: '127.0.0.1:8', startedAt: '' },
      { sandboxId: 'gone-1', function: 'gone', generation: 1, state: 'ready', address: '127.0.0.1:7', startedAt: '' },
    ],
  });
  await kit.clock.settle();
  const worker = kit.workers.get('w-1')!;
  assert.deepEqual(worker.deletes.sort(), ['f-old', 'gone-1'], 'unknown generation or function: deleted');
  assert.ok(kit.dataplane.endpoints.has('f-a') && kit.dataplane.endpoints.has('f-b'));
  // No demand is reported, but the windows are empty after a restart: the autoscaler holds the
  // size (panic at the ready count, Knative's start-up rule) instead of scaling down, before its
  // first tick and for a stable window after the restart.
  const fn = kit.core.registry.get('f');
  assert.equal(kit.core.autoscaler.desiredScale(fn), 2);
  await kit.advance(2000, 100);
  assert.equal(kit.core.autoscaler.desiredScale(fn), 2);
  assert.equal(kit.core.autoscaler.describe(fn)?.isPanicking, true);
  assert.equal(kit.dataplane.endpoints.get('f-a')?.isDraining, false);
  await kit.advance(2000, 100);
  assert.ok(kit.core.autoscaler.desiredScale(fn) < 2, 'once the window has passed, the empty demand counts');
  kit.core.close();
});

test('demand intake: an unknown data plane must register; a large report is applied in slices over turns; functions no worker has room for are named', async () => {
  const kit = await setupCore();
  assert.throws(() => kit.core.demand.report(poke('f', 1)), (err: unknown) => err instanceof BatonError && err.code === 'ERR_DATAPLANE_NOT_FOUND');
  await kit.registerDataplane();
  await kit.registerWorker('w-1', { cpuMilli: 100, memoryMiB: 128 });
  await kit.deploy(churny('big', { resources: { cpuMilli: 1000, memoryMiB: 128 } }));
  const ack = kit.core.demand.report(poke('big', 1));
  kit.clock.runTurns();
  assert.equal(kit.core.registry.get('big').sandboxes.hasNoCapacity, true);
  assert.deepEqual(kit.core.demand.report(poke('big', 1)).noCapacity, ['big'], 'the next report names it');
  assert.deepEqual(ack.noCapacity, ['big'], 'the poke planned at once, so its own answer names it');
  const names = Array.from({ length: DEMAND_CHUNK * 2 + 10 }, (_, i) => `f${i}`);
  for (const name of names) await kit.settled(kit.core.registry.create({ name, runtime: 'emulated' }));
  const before = kit.core.autoscaler.activeCount;
  kit.core.demand.report({ dataplaneId: 'dp-1', isPoke: false, entries: names.map((name) => ({ function: name, concurrency: 0.5, queued: 0, inflight: 1 })) });
  assert.equal(kit.core.autoscaler.activeCount - before, DEMAND_CHUNK, 'the first slice at once');
  assert.equal(kit.clock.runTurns(), 2, 'the rest in two more turns');
  assert.equal(kit.core.autoscaler.activeCount - before, names.length);
  kit.core.close();
});

test('the autoscaler decides more than 256 active functions in slices, one per turn, each decided once per tick', async () => {
  const kit = await setupCore();
  await kit.registerDataplane();
  const count = 600;
  const names = Array.from({ length: count }, (_, i) => `f${i}`);
  for (const name of names) await kit.settled(kit.core.registry.create({ name, runtime: 'emulated' }));
  kit.core.demand.report({ dataplaneId: 'dp-1', isPoke: false, entries: names.map((name) => ({ function: name, concurrency: 1, queued: 0, inflight: 1 })) });
  kit.clock.runTurns();
  assert.equal(kit.core.autoscaler.activeCount, count);
  const turnsBefore = kit.clock.turns;
  kit.clock.advance(1000);
  assert.ok(kit.clock.turns - turnsBefore >= Math.ceil(count / 256) - 1, 'the sweep took several turns');
  kit.clock.advance(1000);
  // The tick at 2 s decided every function: one sandbox each (concurrency 1 at target 0.7 → 2, no workers: unplaced).
  for (const name of names) assert.equal(kit.core.autoscaler.desiredScale(kit.core.registry.get(name)), 2, name);
  kit.core.close();
});

test('a worker that comes back before its sandboxes could be replaced gets them back, and functions that found no room are planned at once', async () => {
  const kit = await setupCore({ heartbeatIntervalMs: 1000, heartbeatMissLimit: 3 });
  const only = await kit.registerWorker('w-1');
  await kit.registerDataplane();
  await kit.deploy(churny('f', { scaling: { minScale: 1, maxScale: 1, stableWindowMs: 2000, panicWindowMs: 1000 } }));
  await kit.advance(2000, 100);
  const id = only.creates[0]!.sandboxId;
  kit.ready('w-1', id);
  kit.silent.add('w-1');
  await kit.advance(5000, 100);
  assert.equal(kit.core.workers.get('w-1')?.state, 'unschedulable');
  assert.equal(kit.core.sandboxes.size, 0, 'withdrawn; nowhere to put a replacement');
  const fn = kit.core.registry.get('f');
  assert.equal(fn.sandboxes.isBackingOff, true, 'backing off after finding no room');
  kit.silent.delete('w-1');
  await kit.registerWorker('w-1', { sandboxes: [{ sandboxId: id, function: 'f', generation: 1, state: 'ready', address: '127.0.0.1:9', startedAt: '' }] });
  await kit.clock.settle();
  assert.deepEqual(only.deletes, [], 'not replaced: taken back, not deleted');
  assert.ok(kit.dataplane.endpoints.has(id));
  assert.equal(kit.core.sandboxes.size, 1);
  assert.equal(fn.sandboxes.isBackingOff, false, 'capacity came back: no waiting out the back-off');
  kit.core.close();
});

test('a registration that crosses a deletion still lists the sandbox: it is deleted again, never adopted', async () => {
  const kit = await setupCore();
  const worker = await kit.registerWorker('w-1');
  await kit.registerDataplane();
  await kit.deploy(churny('f'));
  kit.core.demand.report(poke('f', 1));
  kit.clock.runTurns();
  const id = worker.creates[0]!.sandboxId;
  kit.ready('w-1', id);
  const deleted = kit.core.registry.delete('f');
  await kit.clock.settle();
  for (const wait of kit.dataplane.drainWaits) wait.release();
  await kit.clock.settle();
  await kit.settled(deleted);
  await kit.settled(kit.core.registry.create({ name: 'f', runtime: 'emulated' }));
  assert.ok(worker.deletes.includes(id), 'deleted with its function');
  // The worker registers again before it has acted on the deletion: it still reports the sandbox
  // (the re-created function is at generation 1 again, so it would match).
  const info = { sandboxId: id, function: 'f', generation: 1, state: 'ready' as const, address: '127.0.0.1:9', startedAt: '' };
  await kit.registerWorker('w-1', { sandboxes: [info] });
  assert.equal(kit.core.sandboxes.get(id), undefined, 'not adopted');
  assert.equal(worker.deletes.filter((d) => d === id).length, 2, 'asked again');
  // Once it no longer reports it, the deletion is done and forgotten.
  await kit.registerWorker('w-1', { sandboxes: [] });
  assert.equal(kit.core.workers.get('w-1')?.deletingSandboxIds.size, 0);
  kit.core.close();
});

test('a worker that leaves (graceful stop): unschedulable at once, its sandboxes draining on the data plane and replaced on the other worker; deleted and answered only once the drain wait is', async () => {
  const kit = await setupCore();
  const leaving = await kit.registerWorker('w-1', { cpuMilli: 1000 });
  await kit.registerDataplane();
  await kit.deploy(churny('f', { scaling: { minScale: 2, maxScale: 2, stableWindowMs: 2000, panicWindowMs: 1000 } }));
  await kit.advance(2000, 100);
  assert.equal(leaving.creates.length, 2);
  const ids = leaving.creates.map((c) => c.sandboxId);
  for (const id of ids) kit.ready('w-1', id);
  const other = await kit.registerWorker('w-2');
  await kit.clock.settle();

  let isAnswered = false;
  const left = kit.core.workers.leave('w-1').then(() => { isAnswered = true; });
  kit.silent.add('w-1');
  await kit.clock.settle();
  assert.equal(kit.core.workers.get('w-1')?.state, 'unschedulable');
  for (const id of ids) assert.equal(kit.dataplane.endpoints.get(id)?.isDraining, true, 'draining on the data plane');
  assert.equal(other.creates.length, 2, 'replaced on w-2 while they drain');
  assert.throws(() => kit.core.workers.heartbeat('w-1'), (err: unknown) => err instanceof BatonError && err.code === 'ERR_WORKER_NOT_FOUND');
  const wait = kit.dataplane.drainWaits.find((w) => ids.every((id) => w.ids.includes(id)));
  assert.ok(wait !== undefined, 'one drain wait for both');
  assert.deepEqual(leaving.deletes, [], 'nothing deleted while invocations may be in flight');
  assert.equal(isAnswered, false);
  wait.release();
  await kit.settled(left);
  assert.deepEqual(leaving.deletes.sort(), [...ids].sort());
  for (const id of ids) assert.equal(kit.dataplane.endpoints.has(id), false);
  assert.equal(kit.core.workers.get('w-1')?.allocated.cpuMilli, 0);
  for (const { sandboxId } of other.creates) kit.ready('w-2', sandboxId);
  assert.equal(kit.core.sandboxes.size, 2, 'no duplicates');
  // Back with the same identity and nothing running: schedulable again.
  await kit.registerWorker('w-1', { cpuMilli: 1000 });
  assert.equal(kit.core.workers.get('w-1')?.state, 'ready');
  await assert.rejects(kit.core.workers.leave('w-unknown'), (err: unknown) => err instanceof BatonError && err.code === 'ERR_WORKER_NOT_FOUND');
  kit.core.close();
});
