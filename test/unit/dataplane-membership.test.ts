import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DataplaneMembership, type DataplaneChannel } from '../../src/controlplane/dataplane-membership.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { ManualClock } from '../kit/manual-clock.ts';
import { MemoryStore } from '../kit/memory-store.ts';

function membership(store: MemoryStore): DataplaneMembership {
  return new DataplaneMembership({
    store, clock: new ManualClock(0), log: silentLogger(), heartbeatIntervalMs: 200, heartbeatMissLimit: 3,
    connect: () => ({ publisher: { resync: () => undefined }, drainWait: async () => undefined, close: () => undefined }) as unknown as DataplaneChannel,
  });
}

const registration = (id: string) => ({ dataplaneId: id, url: `http://127.0.0.1:1/${id}`, proxyUrl: `http://127.0.0.1:2/${id}` });

/** Whether the promise has settled once the microtasks queued so far have run. */
async function isSettled(promise: Promise<void>): Promise<boolean> {
  let settled = false;
  void promise.then(() => { settled = true; });
  await new Promise<void>((resolve) => setImmediate(resolve));
  return settled;
}

test('registered() resolves at once on a first start, and after a restart only once every data plane from the store has registered again', async () => {
  const store = new MemoryStore();
  const first = membership(store);
  assert.equal(await isSettled(first.registered()), true, 'no data plane known: nothing to wait for');
  await first.register(registration('dp-1'));
  await first.register(registration('dp-2'));
  assert.equal(await isSettled(first.registered()), true);

  // A new term loads both as unregistered: a function change then reaches them only with their registration's snapshot.
  const next = membership(store);
  await next.load();
  const waiting = next.registered();
  const alsoWaiting = next.registered();
  await next.register(registration('dp-2'));
  assert.equal(await isSettled(waiting), false, 'dp-1 has not registered yet');
  await next.register(registration('dp-1'));
  assert.equal(await isSettled(waiting), true);
  assert.equal(await isSettled(alsoWaiting), true);
  assert.equal(await isSettled(next.registered()), true);
});
