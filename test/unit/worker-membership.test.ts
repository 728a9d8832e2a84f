import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RegisterWorkerRequest } from '../../src/api/worker.ts';
import type { WorkerEntry } from '../../src/controlplane/model.ts';
import type { SandboxBatcher } from '../../src/controlplane/worker-client.ts';
import { WorkerMembership } from '../../src/controlplane/worker-membership.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { ManualClock } from '../kit/manual-clock.ts';
import { MemoryStore } from '../kit/memory-store.ts';

const INTERVAL_MS = 1000;
const MISS_LIMIT = 3;
const LIMIT_MS = INTERVAL_MS * MISS_LIMIT;

/** Membership on a ManualClock; `withdrawn` records when each worker was declared dead. */
function membership(clock: ManualClock): { workers: WorkerMembership; withdrawn: Map<string, number> } {
  const withdrawn = new Map<string, number>();
  const workers = new WorkerMembership({
    store: new MemoryStore(), clock, log: silentLogger(), heartbeatIntervalMs: INTERVAL_MS, heartbeatMissLimit: MISS_LIMIT,
    functions: { get: () => undefined },
    sandboxes: {
      get: () => undefined, adopt: () => undefined, forget: () => undefined, deleteUnknown: () => undefined, onCapacityAdded: () => undefined, drainWorker: async () => undefined,
      withdrawWorker: (worker: WorkerEntry) => {
        assert.ok(!withdrawn.has(worker.id), `${worker.id} withdrawn once`);
        withdrawn.set(worker.id, clock.now());
      },
    },
    onRecovered: () => undefined,
    shortfall: () => 0,
    connect: () => ({ client: { close: () => undefined } }) as unknown as SandboxBatcher,
  });
  return { workers, withdrawn };
}

const registration = (workerId: string): RegisterWorkerRequest => ({
  workerId, url: `http://127.0.0.1:1/${workerId}`, capacity: { cpuMilli: 1000, memoryMiB: 1024 }, runtimes: ['emulated'], sandboxes: [],
});

test('a worker whose last heartbeat was at t is declared dead past t + limit, within 1 ms, never before, whatever the phase of its heartbeats', async () => {
  // Last heartbeats at every phase of an interval: a periodic check found some of them up to one interval late.
  for (const phaseMs of [0, 1, 137, 250, 499, 500, 750, 999]) {
    const clock = new ManualClock(10_000);
    const { workers, withdrawn } = membership(clock);
    workers.start();
    await workers.register(registration('w1'));
    await workers.register(registration('w2'));
    // Three healthy intervals, then w1 heartbeats once more at `phaseMs` into the next one and falls silent.
    for (let i = 0; i < 3; i++) {
      clock.advance(INTERVAL_MS);
      workers.heartbeat('w1');
      workers.heartbeat('w2');
    }
    clock.advance(phaseMs);
    workers.heartbeat('w1');
    const lastMs = clock.now();
    // Time moves 1 ms at a time; w2 keeps heartbeating every interval throughout.
    while (clock.now() < lastMs + LIMIT_MS + 1) {
      assert.equal(withdrawn.has('w1'), false, `phase ${phaseMs}: not dead ${clock.now() - lastMs} ms after its last heartbeat`);
      clock.advance(1);
      if ((clock.now() - 10_000) % INTERVAL_MS === 0) workers.heartbeat('w2');
    }
    assert.equal(withdrawn.get('w1'), lastMs + LIMIT_MS + 1, `phase ${phaseMs}: dead 1 ms past t + limit`);
    assert.equal(workers.get('w1')?.state, 'unschedulable');
    assert.equal(withdrawn.has('w2'), false, `phase ${phaseMs}: the heartbeating worker lives`);
    assert.equal(workers.get('w2')?.state, 'ready');
    workers.close();
  }
});

test('the monitor is one timer, re-armed per sweep: heartbeats arm nothing, a sweep runs about once per limit − interval while all are healthy', async () => {
  const clock = new ManualClock(0);
  const { workers, withdrawn } = membership(clock);
  assert.equal(clock.pendingTimers, 0);
  workers.start();
  assert.equal(clock.pendingTimers, 0, 'no ready worker, nothing to watch');
  for (let i = 0; i < 150; i++) await workers.register(registration(`w${i}`));
  assert.equal(clock.pendingTimers, 1);
  let sweeps = 0;
  const check = workers.checkHeartbeats.bind(workers);
  workers.checkHeartbeats = () => { sweeps++; check(); };
  // 150 workers heartbeat every interval, spread over it, for 20 intervals.
  for (let tick = 0; tick < 20 * 10; tick++) {
    clock.advance(INTERVAL_MS / 10);
    for (let i = tick % 10; i < 150; i += 10) workers.heartbeat(`w${i}`);
    assert.equal(clock.pendingTimers, 1);
  }
  assert.equal(withdrawn.size, 0);
  assert.ok(sweeps >= 5 && sweeps <= 12, `${sweeps} sweeps in 20 s`);
  // All fall silent: each is declared dead past its own deadline, and then nothing stays armed.
  const silentSince = clock.now();
  clock.advance(LIMIT_MS + 1);
  assert.equal(withdrawn.size, 150);
  for (const at of withdrawn.values()) assert.ok(at <= silentSince + LIMIT_MS + 1 && at > silentSince - INTERVAL_MS + LIMIT_MS);
  assert.equal(clock.pendingTimers, 0);
  // One registering again is watched again.
  await workers.register(registration('w0'));
  assert.equal(clock.pendingTimers, 1);
  workers.close();
  assert.equal(clock.pendingTimers, 0);
});
