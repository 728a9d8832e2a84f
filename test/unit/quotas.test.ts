import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DemandReport } from '../../src/api/dataplane.ts';
import { BatonError } from '../../src/core/errors.ts';
import { setupCore } from '../kit/control-plane-core.ts';

const poke = (fn: string, queued: number): DemandReport => ({ dataplaneId: 'dp-1', isPoke: true, entries: [{ function: fn, concurrency: queued, queued, inflight: 0 }] });
const scaling = { stableWindowMs: 2000, panicWindowMs: 1000, scaleToZeroGraceMs: 0, maxScale: 10 };

async function withQuota(quota: Record<string, unknown>, scope = 'team-a-*') {
  const kit = await setupCore();
  const worker = await kit.registerWorker('w-1');
  await kit.registerDataplane();
  await kit.core.quotas.set(scope, quota);
  return { kit, worker };
}

const createsOf = (creates: readonly { function: { name: string } }[], name: string): number => creates.filter((c) => c.function.name === name).length;

test('a quota of 2 sandboxes on team-a-*: two functions under demand get 2 in total, the one held back says so, a function out of scope is not limited', async () => {
  const { kit, worker } = await withQuota({ maxSandboxes: 2 });
  const a = await kit.deploy({ name: 'team-a-one', scaling });
  const b = await kit.deploy({ name: 'team-a-two', scaling });
  const other = await kit.deploy({ name: 'team-b-x', scaling });
  kit.core.demand.report(poke('team-a-one', 3));
  kit.core.demand.report(poke('team-a-two', 3));
  kit.core.demand.report(poke('team-b-x', 3));
  kit.clock.runTurns();
  assert.equal(createsOf(worker.creates, 'team-b-x'), 3, 'a function in no quota scales as it asks');
  await kit.advance(4000);
  assert.equal(createsOf(worker.creates, 'team-a-one') + createsOf(worker.creates, 'team-a-two'), 2, 'two sandboxes in the scope, whatever the demand and the ticks');
  assert.deepEqual(kit.core.quotas.of(a), [{ scope: 'team-a-*', maxSandboxes: 2, sandboxes: 2, memoryMiB: 256 }]);
  assert.deepEqual(kit.core.quotas.of(other), []);
  assert.equal(kit.core.quotas.heldBy(b), 'team-a-*', 'the function that got no sandbox is held back by the quota');
  assert.equal(kit.core.quotas.heldBy(a), 'team-a-*', 'so is the one that got 2 of its 3');
  const lastMaxScale = (name: string) => kit.dataplane.changes.filter((c) => c.type === 'function.put' && c.function.name === name).map((c) => (c as { function: { maxScale?: number } }).function.maxScale).at(-1);
  const shareOfA = createsOf(worker.creates, 'team-a-one');
  assert.equal(lastMaxScale('team-a-one'), shareOfA === 0 ? 10 : shareOfA, 'the data planes see what the quota leaves it as its maxScale (its own when it has none)');
  assert.equal(lastMaxScale('team-b-x'), 10);
  await kit.core.quotas.delete('team-a-*');
  await kit.advance(100);
  assert.equal(lastMaxScale('team-a-one'), 10, 'its own maxScale again once no quota holds it');
  kit.core.close();
});

test('deleting the quota (or raising it) lets held-back functions scale at once; usage follows every sandbox added and removed back to zero', async () => {
  const { kit, worker } = await withQuota({ maxSandboxes: 1 });
  const a = await kit.deploy({ name: 'team-a-one', scaling });
  kit.core.demand.report(poke('team-a-one', 3));
  kit.clock.runTurns();
  await kit.advance(100);
  assert.equal(createsOf(worker.creates, 'team-a-one'), 1);
  await kit.core.quotas.set('team-a-*', { maxSandboxes: 2 });
  await kit.advance(100);
  assert.equal(createsOf(worker.creates, 'team-a-one'), 2, 'raised: one more at once, no tick needed');
  assert.equal(kit.core.quotas.heldBy(a), 'team-a-*');
  await kit.core.quotas.delete('team-a-*');
  await kit.advance(100);
  assert.equal(createsOf(worker.creates, 'team-a-one'), 3, 'deleted: the function gets its desired scale');
  assert.equal(kit.core.quotas.heldBy(a), undefined);
  // A quota set while sandboxes run counts them from the start, and every removal is taken off.
  await kit.core.quotas.set('team-a-*', { maxSandboxes: 5, maxMemoryMiB: 1024 });
  assert.deepEqual(kit.core.quotas.list(), [{ scope: 'team-a-*', maxSandboxes: 5, maxMemoryMiB: 1024, sandboxes: 3, memoryMiB: 384 }]);
  for (const { sandboxId } of worker.creates) kit.ready('w-1', sandboxId);
  await kit.advance(10_000);
  for (const wait of kit.dataplane.drainWaits) wait.release();
  await kit.advance(1000);
  assert.equal(kit.core.sandboxes.size, 0, 'scaled to zero once the demand ended');
  assert.deepEqual(kit.core.quotas.list(), [{ scope: 'team-a-*', maxSandboxes: 5, maxMemoryMiB: 1024, sandboxes: 0, memoryMiB: 0 }]);
  kit.core.close();
});

test('a memory quota allows as many sandboxes as their memory fits; a function matched by two quotas is bound by the tighter', async () => {
  const { kit, worker } = await withQuota({ maxMemoryMiB: 300 });
  await kit.core.quotas.set('team-a-big-*', { maxSandboxes: 1 });
  await kit.deploy({ name: 'team-a-small', scaling, resources: { cpuMilli: 100, memoryMiB: 100 } });
  const big = await kit.deploy({ name: 'team-a-big-1', scaling, resources: { cpuMilli: 100, memoryMiB: 100 } });
  kit.core.demand.report(poke('team-a-big-1', 4));
  kit.clock.runTurns();
  assert.equal(createsOf(worker.creates, 'team-a-big-1'), 1, 'team-a-big-* allows one');
  assert.equal(kit.core.quotas.heldBy(big), 'team-a-big-*');
  kit.core.demand.report(poke('team-a-small', 4));
  kit.clock.runTurns();
  assert.equal(createsOf(worker.creates, 'team-a-small'), 2, '300 MiB with 100 already used by team-a-big-1: two more of 100 MiB');
  assert.deepEqual(kit.core.quotas.list().map((q) => [q.scope, q.sandboxes, q.memoryMiB]), [['team-a-*', 3, 300], ['team-a-big-*', 1, 100]]);
  kit.core.close();
});

test('a create or an update whose minScale cannot fit the quota with the other functions\' minimum scales is refused with ERR_QUOTA_EXCEEDED and changes nothing', async () => {
  const { kit, worker } = await withQuota({ maxSandboxes: 2, maxMemoryMiB: 512 });
  await assert.rejects(kit.settled(kit.core.registry.create({ name: 'team-a-big', runtime: 'emulated', scaling: { minScale: 3, maxScale: 5 } })), (err: unknown) => {
    assert.ok(err instanceof BatonError);
    assert.equal(err.code, 'ERR_QUOTA_EXCEEDED');
    assert.equal(err.status, 403);
    assert.equal((err.details as { scope: string }).scope, 'team-a-*');
    return true;
  });
  assert.equal(kit.core.registry.find('team-a-big'), undefined, 'nothing created');
  await kit.deploy({ name: 'team-a-one', scaling: { minScale: 1, maxScale: 5 } });
  await kit.deploy({ name: 'team-a-two', scaling: { minScale: 1, maxScale: 5 } });
  await assert.rejects(kit.settled(kit.core.registry.create({ name: 'team-a-three', runtime: 'emulated', scaling: { minScale: 1, maxScale: 5 } })), { code: 'ERR_QUOTA_EXCEEDED' });
  await assert.rejects(kit.settled(kit.core.registry.update('team-a-one', { runtime: 'emulated', resources: { cpuMilli: 100, memoryMiB: 400 }, scaling: { minScale: 1, maxScale: 5 } })), { code: 'ERR_QUOTA_EXCEEDED' }, '400 + 128 MiB of floors is over 512');
  assert.equal(kit.core.registry.get('team-a-one').record.generation, 1, 'the refused update changed nothing');
  await kit.deploy({ name: 'team-a-three', scaling: { minScale: 0, maxScale: 5 } });
  await kit.deploy({ name: 'team-b-big', scaling: { minScale: 3, maxScale: 5 } });
  await kit.advance(2000);
  assert.equal(createsOf(worker.creates, 'team-b-big'), 3, 'out of scope: its minimum scale is created');
  kit.core.close();
});

test('bad quotas are refused with ERR_INVALID_REQUEST and store nothing; an unknown one is ERR_QUOTA_NOT_FOUND', async () => {
  const { kit } = await withQuota({ maxSandboxes: 1 });
  for (const [scope, body] of [['Team-A', { maxSandboxes: 1 }], ['team-a-*', {}], ['team-a-*', { maxSandboxes: -1 }], ['team-a-*', { maxSandboxes: 1.5 }], ['team-a-*', { maxSandboxes: 1, extra: 1 }], ['', { maxSandboxes: 1 }]] as const) {
    await assert.rejects(kit.core.quotas.set(scope, body), { code: 'ERR_INVALID_REQUEST' }, `${scope} ${JSON.stringify(body)}`);
  }
  assert.deepEqual(kit.core.quotas.list().map((q) => [q.scope, q.maxSandboxes]), [['team-a-*', 1]]);
  assert.deepEqual((await kit.store.list<{ scope: string }>('quotas')).map((q) => q.scope), ['team-a-*']);
  await assert.rejects(kit.core.quotas.delete('team-b-*'), { code: 'ERR_QUOTA_NOT_FOUND' });
  kit.core.close();
});

test('usage is rebuilt from what workers report: sandboxes adopted at a registration (after a restart or a fail-over) count, and a withdrawn worker\'s are taken off', async () => {
  const { kit } = await withQuota({ maxSandboxes: 2 });
  const fn = await kit.deploy({ name: 'team-a-one', scaling });
  await kit.registerWorker('w-2', { sandboxes: [
    { sandboxId: 'team-a-one-adopted1', function: 'team-a-one', generation: 1, state: 'ready', address: '127.0.0.1:9', startedAt: '' },
    { sandboxId: 'team-a-one-adopted2', function: 'team-a-one', generation: 1, state: 'ready', address: '127.0.0.1:10', startedAt: '' },
  ] });
  assert.deepEqual(kit.core.quotas.of(fn), [{ scope: 'team-a-*', maxSandboxes: 2, sandboxes: 2, memoryMiB: 256 }]);
  kit.core.demand.report(poke('team-a-one', 4));
  kit.clock.runTurns();
  assert.equal(createsOf(kit.workers.get('w-1')!.creates, 'team-a-one') + createsOf(kit.workers.get('w-2')!.creates, 'team-a-one'), 0, 'the adopted sandboxes fill the quota: nothing more is created');
  kit.silent.add('w-2');
  await kit.advance(5000);
  assert.equal(kit.core.quotas.of(fn)[0]?.sandboxes, 2, 'the lost worker\'s sandboxes are taken off, and the function gets its 2 back elsewhere');
  assert.equal(createsOf(kit.workers.get('w-1')!.creates, 'team-a-one'), 2);
  kit.core.close();
});

test('concurrent creates in one scope are checked against each other: of three with minScale 1 under a quota of 2, exactly one is refused', async () => {
  const { kit } = await withQuota({ maxSandboxes: 2 });
  const results = await Promise.allSettled(['team-a-x', 'team-a-y', 'team-a-z'].map((name) => kit.settled(kit.core.registry.create({ name, runtime: 'emulated', scaling: { minScale: 1, maxScale: 2 } }))));
  const refused = results.filter((r) => r.status === 'rejected');
  assert.equal(refused.length, 1, JSON.stringify(results.map((r) => r.status)));
  assert.equal(((refused[0] as PromiseRejectedResult).reason as BatonError).code, 'ERR_QUOTA_EXCEEDED');
  assert.equal(kit.core.registry.list().length, 2);
  kit.core.close();
});
