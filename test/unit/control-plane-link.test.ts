import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import type { RegisterWorkerRequest } from '../../src/api/worker.ts';
import { BatonError, type ErrorCode } from '../../src/core/errors.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { ControlPlaneLink, type HeartbeatTicker } from '../../src/worker/control-plane-link.ts';
import { ClockHeartbeatTicker } from '../../src/worker/heartbeat-ticker.ts';
import { ManualClock } from '../kit/manual-clock.ts';

/** A control plane whose next answers the test scripts; unscripted calls succeed. */
function setup(options: { clock?: ManualClock; workerId?: string; ticker?: HeartbeatTicker } = {}) {
  const clock = options.clock ?? new ManualClock();
  const log: string[] = [];
  const failures: ErrorCode[] = [];
  const registrations: RegisterWorkerRequest[] = [];
  const answer = async (what: string): Promise<void> => {
    log.push(`${options.workerId === undefined ? '' : `${options.workerId}:`}${what}@${clock.now()}`);
    const code = failures.shift();
    if (code !== undefined) throw new BatonError(code, what);
  };
  const link = new ControlPlaneLink({
    workerId: options.workerId ?? 'w1', url: 'http://127.0.0.1:1',
    ...(options.ticker === undefined ? {} : { ticker: options.ticker }), capacity: { cpuMilli: 1000, memoryMiB: 1024 }, runtimes: ['process'],
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

test('links sharing a ticker heartbeat on its one timer, and re-register on their own', async () => {
  const clock = new ManualClock();
  const ticker = new ClockHeartbeatTicker(clock, 1000);
  const a = setup({ clock, workerId: 'a', ticker });
  const b = setup({ clock, workerId: 'b', ticker });
  a.link.start();
  await advance(clock, 200);
  b.link.start();
  // Registered links follow the ticker at the control plane's interval (500 ms); the first tick
  // comes 500 ms after the first subscription.
  await advance(clock, 1000);
  assert.deepEqual([...a.log, ...b.log], ['a:register@0', 'a:heartbeat@500', 'a:heartbeat@1000', 'b:register@200', 'b:heartbeat@500', 'b:heartbeat@1000']);
  assert.equal(ticker.size, 2);
  assert.equal(clock.pendingTimers, 1);
  b.failures.push('ERR_WORKER_NOT_FOUND');
  await advance(clock, 500);
  // b registers again at once and is back on the ticker from the next tick.
  assert.deepEqual(b.log.slice(3), ['b:heartbeat@1500', 'b:register@1500']);
  await advance(clock, 500);
  assert.deepEqual(b.log.slice(5), ['b:heartbeat@2000']);
  await a.link.close();
  await b.link.close();
  assert.equal(ticker.size, 0);
  assert.equal(clock.pendingTimers, 0);
});

test('a ticker skips a link whose previous heartbeat is still in flight', async () => {
  const clock = new ManualClock();
  const ticker = new ClockHeartbeatTicker(clock, 100);
  let calls = 0;
  let release: () => void = () => undefined;
  const link = new ControlPlaneLink({
    workerId: 'w', url: 'http://127.0.0.1:1', capacity: { cpuMilli: 1, memoryMiB: 1 }, runtimes: ['emulated'],
    listSandboxes: () => [], heartbeatIntervalMs: 100, clock, logger: silentLogger(), ticker,
    calls: {
      register: async () => ({ heartbeatIntervalMs: 100 }),
      heartbeat: () => { calls += 1; return new Promise<void>((resolve) => { release = resolve; }); },
    },
  });
  link.start();
  await advance(clock, 500);
  assert.equal(calls, 1);
  release();
  await advance(clock, 100);
  assert.equal(calls, 2);
  release();
  await link.close();
});

test('a registration asked for while one is in flight follows it: the one in flight may report an outdated state', async () => {
  const clock = new ManualClock();
  let release: () => void = () => undefined;
  const registrations: number[] = [];
  const link = new ControlPlaneLink({
    workerId: 'w', url: 'http://127.0.0.1:1', capacity: { cpuMilli: 1, memoryMiB: 1 }, runtimes: ['emulated'],
    listSandboxes: () => [], heartbeatIntervalMs: 1000, clock, logger: silentLogger(),
    calls: {
      register: () => {
        registrations.push(clock.now());
        return registrations.length === 1 ? new Promise((resolve) => { release = () => resolve({ heartbeatIntervalMs: 1000 }); }) : Promise.resolve({ heartbeatIntervalMs: 1000 });
      },
      heartbeat: async () => undefined,
    },
  });
  link.start();
  link.requestRegistration();
  assert.equal(registrations.length, 1, 'not a second one in parallel');
  release();
  await clock.settle();
  assert.equal(registrations.length, 2, 'a second registration right after the first');
  assert.equal(link.state, 'registered');
  await link.close();
});
