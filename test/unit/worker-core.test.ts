import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import type { SandboxEvent, SandboxFunction } from '../../src/api/worker.ts';
import { BatonError } from '../../src/core/errors.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { Worker } from '../../src/worker/worker.ts';
import { FakeRuntime } from '../kit/fake-runtime.ts';
import { ManualClock } from '../kit/manual-clock.ts';

const FN: SandboxFunction = {
  name: 'f', generation: 1, runtime: 'process', artifact: `sha256:${'1'.repeat(64)}`, handler: 'index.handler',
  concurrency: 1, timeoutMs: 1000, env: {}, resources: { cpuMilli: 100, memoryMiB: 128 },
};

function setup(maxConcurrentStarts = 16) {
  const runtime = new FakeRuntime();
  const events: SandboxEvent[] = [];
  const worker = new Worker({
    runtimes: [runtime], clock: new ManualClock(), logger: silentLogger(), maxConcurrentStarts,
    artifacts: { ensure: async () => ({ dir: '/artifact', fetchMs: 0, isHit: true }) },
    events: { push: (e) => events.push(e) },
  });
  return { runtime, events, worker };
}

const batch = (...ids: string[]) => ids.map((sandboxId) => ({ sandboxId, function: FN }));

/** Lets the worker's promise chains advance. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await turn();
}

test('create accepts at once, reports ready with a breakdown, and ignores a known id', async () => {
  const { runtime, events, worker } = setup();
  assert.equal(worker.create(batch('a', 'b')), 2);
  assert.equal(worker.create(batch('a')), 0);
  await settle();
  assert.deepEqual(worker.list().map((s) => s.state), ['starting', 'starting']);
  runtime.finish('a', 1234);
  await settle();
  assert.deepEqual(events, [{ type: 'ready', sandboxId: 'a', address: '127.0.0.1:1234', breakdown: { fetchMs: 0, startMs: 1, readyMs: 2, totalMs: 0 } }]);
  assert.equal(worker.list().find((s) => s.sandboxId === 'a')?.pid, 4242);
});

test('starts are bounded by maxConcurrentStarts', async () => {
  const { runtime, worker } = setup(2);
  worker.create(batch('a', 'b', 'c', 'd'));
  await settle();
  assert.deepEqual([...runtime.pending.keys()], ['a', 'b']);
  runtime.finish('a');
  await settle();
  assert.deepEqual([...runtime.pending.keys()], ['b', 'c']);
});

test('a failed start is reported with its code and forgotten', async () => {
  const { runtime, events, worker } = setup();
  worker.create(batch('a'));
  await settle();
  runtime.fail('a', new BatonError('ERR_SANDBOX_START_FAILED', 'boom'));
  await settle();
  assert.deepEqual(events, [{ type: 'failed', sandboxId: 'a', code: 'ERR_SANDBOX_START_FAILED', message: 'boom' }]);
  assert.deepEqual(worker.list(), []);
});

test('deleting a starting sandbox cancels it without an event, also while it waits for a slot', async () => {
  const { runtime, events, worker } = setup(1);
  worker.create(batch('a', 'b'));
  await settle();
  const signal = runtime.pending.get('a')?.signal;
  assert.deepEqual(worker.delete(['a', 'b', 'zzz']), { deleted: ['a', 'b'], unknown: ['zzz'] });
  await settle();
  assert.equal(signal?.aborted, true);
  assert.deepEqual(worker.list(), []);
  assert.deepEqual(events, []);
});

test('an exit of a ready sandbox is reported; one after delete is not', async () => {
  const { runtime, events, worker } = setup();
  worker.create(batch('a', 'b'));
  await settle();
  runtime.finish('a');
  runtime.finish('b');
  await settle();
  events.length = 0;
  runtime.exit('a');
  worker.delete(['b']);
  runtime.exit('b');
  await settle();
  assert.deepEqual(events, [{ type: 'exited', sandboxId: 'a', exitCode: 1, signal: null, reason: 'exit' }]);
  assert.deepEqual(runtime.deleted, ['b']);
  assert.deepEqual(worker.list(), []);
});

test('a worker without the function\'s runtime fails the sandbox with ERR_RUNTIME_UNAVAILABLE', () => {
  const events: SandboxEvent[] = [];
  const worker = new Worker({
    runtimes: [], clock: new ManualClock(), logger: silentLogger(), maxConcurrentStarts: 1,
    artifacts: { ensure: async () => ({ dir: '/x', fetchMs: 0, isHit: true }) }, events: { push: (e) => events.push(e) },
  });
  worker.create(batch('a'));
  assert.equal(events[0]?.type === 'failed' && events[0].code, 'ERR_RUNTIME_UNAVAILABLE');
});

test('a closed worker refuses new sandboxes with ERR_SHUTTING_DOWN', async () => {
  const { worker } = setup();
  await worker.close();
  assert.throws(() => worker.create(batch('a')), (err) => err instanceof BatonError && err.code === 'ERR_SHUTTING_DOWN');
});
