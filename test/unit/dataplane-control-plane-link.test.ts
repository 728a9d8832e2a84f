import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dataplaneToControlPlane, type Contract } from '../../src/api/contracts.ts';
import { BatonError } from '../../src/core/errors.ts';
import { ControlPlaneLink, type ControlPlaneClient } from '../../src/dataplane/control-plane-link.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { ManualClock } from '../kit/manual-clock.ts';

/** A control plane whose answers the test scripts per path; unscripted calls succeed. */
function fakeClient() {
  const calls: string[] = [];
  const failures = new Map<string, BatonError[]>();
  const client = {
    invoke: (c: Contract): Promise<unknown> => {
      calls.push(c.path.split('/').pop() ?? c.path);
      const next = failures.get(c.path)?.shift();
      return next === undefined ? Promise.resolve(c === dataplaneToControlPlane.reportDemand ? { noCapacity: [] } : {}) : Promise.reject(next);
    },
  } as ControlPlaneClient;
  const failNext = (path: string, ...errors: BatonError[]) => failures.set(`/internal/v1/${path}`, errors);
  return { client, calls, failNext };
}

const settle = () => new Promise<void>((resolve) => setImmediate(resolve));
const unavailable = () => new BatonError('ERR_UNAVAILABLE', 'connection refused');

function makeLink() {
  const clock = new ManualClock();
  const fake = fakeClient();
  const link = new ControlPlaneLink({
    client: fake.client, clock, logger: silentLogger(), heartbeatIntervalMs: 1000, initialRetryMs: 100, maxRetryMs: 400,
    registration: { dataplaneId: 'dp-1', url: 'http://127.0.0.1:8081', proxyUrl: 'http://127.0.0.1:8080' },
  });
  return { clock, link, ...fake };
}

test('registers with exponential backoff until the control plane answers, then heartbeats', async () => {
  const { clock, link, calls, failNext } = makeLink();
  failNext('dataplanes/register', unavailable(), unavailable(), unavailable(), unavailable());
  link.start();
  await settle();
  assert.equal(link.state, 'registering');
  for (const wait of [100, 200, 400, 400]) {
    clock.advance(wait - 1);
    await settle();
    const before = calls.length;
    clock.advance(1);
    await settle();
    assert.equal(calls.length, before + 1, `a retry after ${wait} ms`);
  }
  assert.equal(link.state, 'registered');
  assert.equal(link.registrations, 1);
  clock.advance(1000);
  await settle();
  assert.equal(calls.at(-1), 'heartbeat');
  link.close();
  assert.equal(clock.pendingTimers, 0);
});

test('registers again when a heartbeat says ERR_DATAPLANE_NOT_FOUND, and when the control plane is back after being unreachable', async () => {
  const { clock, link, calls, failNext } = makeLink();
  link.start();
  await settle();
  failNext('dataplanes/heartbeat', new BatonError('ERR_DATAPLANE_NOT_FOUND', 'unknown'), unavailable());
  clock.advance(1000);
  await settle();
  await settle();
  assert.equal(link.registrations, 2, 'forgotten: registered again at once');
  clock.advance(1000);
  await settle();
  assert.equal(link.registrations, 2, 'unreachable: heartbeats go on');
  clock.advance(1000);
  await settle();
  await settle();
  assert.equal(link.registrations, 3, 'reachable again: registered again');
  assert.deepEqual(calls, ['register', 'heartbeat', 'register', 'heartbeat', 'heartbeat', 'register']);
  link.close();
});

test('a registration refused with a code that is not retryable is retried at the longest interval, not in a tight loop', async () => {
  const { clock, link, calls, failNext } = makeLink();
  failNext('dataplanes/register', new BatonError('ERR_INVALID_REQUEST', 'bad'), new BatonError('ERR_INVALID_REQUEST', 'bad'));
  link.start();
  await settle();
  clock.advance(399);
  await settle();
  assert.deepEqual(calls, ['register'], 'no retry before maxRetryMs (400 here)');
  clock.advance(1);
  await settle();
  assert.deepEqual(calls, ['register', 'register']);
  clock.advance(400);
  await settle();
  assert.equal(link.state, 'registered');
  link.close();
});

test('a demand report answered ERR_DATAPLANE_NOT_FOUND triggers a registration and still rejects', async () => {
  const { link, failNext } = makeLink();
  link.start();
  await settle();
  failNext('demand', new BatonError('ERR_DATAPLANE_NOT_FOUND', 'unknown'));
  await assert.rejects(link.sendDemand({ dataplaneId: 'dp-1', isPoke: false, entries: [] }));
  await settle();
  assert.equal(link.registrations, 2);
  link.close();
});

test('many demand sends in flight at once share the link signal without a listener-leak warning', async () => {
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.name);
  process.on('warning', onWarning);
  try {
    const client = {
      // As the RPC client does: each call listens on the signal until it settles (here: never).
      invoke: (_c: Contract, _body: unknown, options?: { signal?: AbortSignal }): Promise<unknown> => {
        options?.signal?.addEventListener('abort', () => undefined, { once: true });
        return new Promise(() => undefined);
      },
    } as ControlPlaneClient;
    const link = new ControlPlaneLink({
      client, clock: new ManualClock(), logger: silentLogger(), heartbeatIntervalMs: 1000, initialRetryMs: 100, maxRetryMs: 400,
      registration: { dataplaneId: 'dp-1', url: 'http://127.0.0.1:8081', proxyUrl: 'http://127.0.0.1:8080' },
    });
    for (let i = 0; i < 20; i++) void link.sendDemand({ dataplaneId: 'dp-1', isPoke: true, entries: [] }).catch(() => undefined);
    await settle();
    await settle();
    assert.deepEqual(warnings, []);
    link.close();
  } finally {
    process.off('warning', onWarning);
  }
});

test('onRegistered runs after each successful registration (the first and every resync), never after a failed one', async () => {
  const clock = new ManualClock();
  const fake = fakeClient();
  let registered = 0;
  const link = new ControlPlaneLink({
    client: fake.client, clock, logger: silentLogger(), heartbeatIntervalMs: 1000, initialRetryMs: 100, maxRetryMs: 400,
    registration: { dataplaneId: 'dp-1', url: 'http://127.0.0.1:8081', proxyUrl: 'http://127.0.0.1:8080' },
    onRegistered: () => { registered++; assert.equal(link.state, 'registered'); },
  });
  fake.failNext('dataplanes/register', unavailable());
  link.start();
  await settle();
  assert.equal(registered, 0);
  clock.advance(100);
  await settle();
  assert.equal(registered, 1);
  // The control plane restarted and forgot us: the heartbeat is refused, the link registers again.
  fake.failNext('dataplanes/heartbeat', new BatonError('ERR_DATAPLANE_NOT_FOUND', 'must register'));
  clock.advance(1000);
  await settle();
  await settle();
  assert.equal(registered, 2);
  link.close();
});

test('the registration retry is capped at 250 ms by default: a control plane that comes back is found within it', async () => {
  const clock = new ManualClock();
  const fake = fakeClient();
  const link = new ControlPlaneLink({
    client: fake.client, clock, logger: silentLogger(), heartbeatIntervalMs: 1000,
    registration: { dataplaneId: 'dp-1', url: 'http://127.0.0.1:8081', proxyUrl: 'http://127.0.0.1:8080' },
  });
  fake.failNext('dataplanes/register', ...Array.from({ length: 10 }, unavailable));
  link.start();
  await settle();
  const waits: number[] = [];
  for (let i = 0; i < 10; i++) {
    const before = fake.calls.length;
    let waited = 0;
    while (fake.calls.length === before) {
      clock.advance(50);
      waited += 50;
      await settle();
    }
    waits.push(waited);
  }
  assert.deepEqual(waits, [100, 200, 250, 250, 250, 250, 250, 250, 250, 250]);
  assert.equal(link.state, 'registered');
  link.close();
});
