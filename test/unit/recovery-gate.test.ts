import { test } from 'node:test';
import assert from 'node:assert/strict';
import { newWorkerEntry, type WorkerEntry } from '../../src/controlplane/model.ts';
import { guardRoutes, RecoveryGate } from '../../src/controlplane/recovery-gate.ts';
import { BatonError } from '../../src/core/errors.ts';
import { ManualClock } from '../kit/manual-clock.ts';

/** Workers as WorkerMembership holds them after loading from the store: every one `unregistered`. */
function workersOf(ids: readonly string[]): Map<string, WorkerEntry> {
  const workers = new Map<string, WorkerEntry>();
  for (const id of ids) {
    workers.set(id, newWorkerEntry({ id, url: `http://127.0.0.1:1/${id}`, capacity: { cpuMilli: 1000, memoryMiB: 1024 }, runtimes: ['emulated'], state: 'unregistered', nowMs: 0 }));
  }
  return workers;
}

test('a first start (no workers in the store) is open at once', () => {
  const gate = new RecoveryGate({ workers: new Map(), clock: new ManualClock(0), maxWaitMs: 3000 });
  assert.equal(gate.isOpen, true);
  gate.check();
});

test('after a restart it holds until every worker from the store has registered again', () => {
  const workers = workersOf(['w1', 'w2']);
  const clock = new ManualClock(0);
  const gate = new RecoveryGate({ workers, clock, maxWaitMs: 3000 });
  assert.equal(gate.isOpen, false);
  assert.throws(() => gate.check(), (err: unknown) => err instanceof BatonError && err.code === 'ERR_UNAVAILABLE' && /2 of 2 workers/.test(err.message));
  (workers.get('w1') as { state: string }).state = 'ready';
  assert.throws(() => gate.check(), /1 of 2 workers/);
  (workers.get('w2') as { state: string }).state = 'ready';
  assert.equal(gate.isOpen, true);
  (workers.get('w2') as { state: string }).state = 'unschedulable';
  assert.equal(gate.isOpen, true, 'once open it stays open');
});

test('a worker that never comes back holds it only for the failure-detection time', () => {
  const workers = workersOf(['w1', 'gone']);
  const clock = new ManualClock(0);
  const gate = new RecoveryGate({ workers, clock, maxWaitMs: 3000 });
  (workers.get('w1') as { state: string }).state = 'ready';
  clock.advance(2999);
  assert.equal(gate.isOpen, false);
  clock.advance(1);
  assert.equal(gate.isOpen, true);
});

test('guardRoutes: while recovering only data-plane registrations wait; while closing everything but /healthz is refused with ERR_SHUTTING_DOWN', async () => {
  const workers = workersOf(['w1']);
  const recovery = new RecoveryGate({ workers, clock: new ManualClock(0), maxWaitMs: 3000 });
  let isClosing = false;
  const seen: string[] = [];
  const routes = guardRoutes({
    handle: () => undefined,
    dispatch: async (method, path) => { seen.push(`${method} ${path}`); return { status: 200, body: {} }; },
  }, { recovery, isClosing: () => isClosing });
  const codeOf = (reply: { body: unknown }) => (reply.body as { error?: { code: string } }).error?.code;
  assert.equal(codeOf(await routes.dispatch('POST', '/internal/v1/dataplanes/register', {})), 'ERR_UNAVAILABLE');
  assert.equal((await routes.dispatch('POST', '/internal/v1/workers/register', {})).status, 200, 'workers register at once');
  (workers.get('w1') as { state: string }).state = 'ready';
  assert.equal((await routes.dispatch('POST', '/internal/v1/dataplanes/register', {})).status, 200);
  isClosing = true;
  const refused = await routes.dispatch('GET', '/v1/functions', undefined);
  assert.equal(refused.status, 503);
  assert.equal(codeOf(refused), 'ERR_SHUTTING_DOWN');
  assert.equal((await routes.dispatch('GET', '/healthz', undefined)).status, 200, '/healthz still answers (it says closing itself)');
  assert.deepEqual(seen, ['POST /internal/v1/workers/register', 'POST /internal/v1/dataplanes/register', 'GET /healthz']);
});
