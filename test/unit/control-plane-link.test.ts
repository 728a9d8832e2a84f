import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import type { RegisterWorkerRequest } from '../../src/api/worker.ts';
import { BatonError, type ErrorCode } from '../../src/core/errors.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { ControlPlaneLink } from '../../src/worker/control-plane-link.ts';
import { ManualClock } from '../kit/manual-clock.ts';

/** A control plane whose next answers the test scripts; unscripted calls succeed. */
function setup() {
  const clock = new ManualClock();
  const log: string[] = [];
  const failures: ErrorCode[] = [];
  const registrations: RegisterWorkerRequest[] = [];
  const answer = async (what: string): Promise<void> => {
    log.push(`${what}@${clock.now()}`);
    const code = failures.shift();
    if (code !== undefined) throw new BatonError(code, what);
  };
  const link = new ControlPlaneLink({
    workerId: 'w1', url: 'http://127.0.0.1:1', capacity: { cpuMilli: 1000, memoryMiB: 1024 }, runtimes: ['process'],
    listSandboxes: () => [], heartbeatIntervalMs: 1000, clock, logger: silentLogger(),
    calls: {
      register: async (request) => {
        registrations.push(request);
        await answer('register');
        return { heartbeatIntervalMs: 500 };
      },
      heartbeat: () => answer('heartbeat'),
    },
  });
  return { clock, log, failures, registrations, link };
}

/** Lets pending answers arrive, then moves time in 50 ms steps, letting answers arrive after each. */
async function advance(clock: ManualClock, ms: number): Promise<void> {
  const settle = async () => { for (let j = 0; j < 3; j++) await turn(); };
  await settle();
  for (let i = 0; i < ms; i += 50) {
    clock.advance(50);
    await settle();
  }
}

test('registration retries with backoff until the control plane answers, then heartbeats at its interval', async () => {
  const { clock, log, failures, link } = setup();
  failures.push('ERR_UNAVAILABLE', 'ERR_UNAVAILABLE', 'ERR_TIMEOUT');
  link.start();
  await advance(clock, 2000);
  // Retries after 100, 200 and 400 ms; then heartbeats every 500 ms (the control plane's interval).
  assert.deepEqual(log, ['register@0', 'register@100', 'register@300', 'register@700', 'heartbeat@1200', 'heartbeat@1700']);
  assert.equal(link.state, 'registered');
  await link.close();
});

test('registers again when the control plane does not know the worker', async () => {
  const { clock, log, failures, link } = setup();
  link.start();
  await advance(clock, 100);
  failures.push('ERR_WORKER_NOT_FOUND');
  await advance(clock, 1000);
  assert.deepEqual(log, ['register@0', 'heartbeat@500', 'register@500', 'heartbeat@1000']);
  await link.close();
});

test('registers again when the control plane comes back after being unreachable', async () => {
  const { clock, log, failures, link } = setup();
  link.start();
  await advance(clock, 100);
  failures.push('ERR_UNAVAILABLE', 'ERR_UNAVAILABLE');
  await advance(clock, 1600);
  assert.deepEqual(log, ['register@0', 'heartbeat@500', 'heartbeat@1000', 'heartbeat@1500', 'register@1500']);
  await link.close();
});

test('close stops every timer', async () => {
  const { clock, log, link } = setup();
  link.start();
  await advance(clock, 100);
  await link.close();
  await advance(clock, 2000);
  assert.deepEqual(log, ['register@0']);
  assert.equal(clock.pendingTimers, 0);
});
