import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BatonError } from '../../src/core/errors.ts';
import { admitEpoch, EpochFence } from '../../src/core/fencing.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { FileStore } from '../../src/store/file-store.ts';
import { LeaderLease, type LeaderLeaseOptions } from '../../src/store/leader-lease.ts';
import type { LeaseStore } from '../../src/store/store.ts';
import { ManualClock } from '../kit/manual-clock.ts';

const log = createLogger({ name: 'test', level: 'silent' });
const TTL = 3000;
const MARGIN = 300;
const INTERVAL = 1000;

/** A file store whose lease expiry runs on a ManualClock, and lease holders over it. */
async function setup(t: TestContext) {
  const dir = await mkdtemp(join(tmpdir(), 'baton-lease-'));
  const clock = new ManualClock(1_000);
  const store = await FileStore.open(dir, { clock });
  t.after(() => rm(dir, { recursive: true, force: true }));
  const events: string[] = [];
  const lease = (holder: string, leases: LeaseStore = store.leases, extra: Partial<LeaderLeaseOptions> = {}) => new LeaderLease({
    leases, clock, log, holder, ttlMs: TTL, intervalMs: INTERVAL, marginMs: MARGIN,
    onElected: (epoch) => events.push(`${holder} elected ${epoch}`),
    onDeposed: (epoch, reason) => events.push(`${holder} deposed ${epoch} ${reason}`),
    ...extra,
  });
  return { clock, store, lease, events };
}

test('acquire: the first holder is elected in epoch 1; a second is refused while it renews', async (t) => {
  const { clock, lease, events } = await setup(t);
  const a = lease('cp-a');
  const b = lease('cp-b');
  assert.equal(a.isLeader, false);
  await a.step();
  assert.equal(a.isLeader, true);
  assert.equal(a.epoch, 1);
  // Renewal by compare-and-set every interval keeps it for far longer than one TTL.
  for (let i = 0; i < 10; i++) {
    clock.advance(INTERVAL);
    await a.step();
    await b.step();
    assert.equal(a.isLeader, true, `still the leader after ${i + 1} renewals`);
    assert.equal(b.isLeader, false);
  }
  assert.deepEqual(events, ['cp-a elected 1']);
});

test('expiry: a holder that cannot renew stops acting before the store lets another take over, which gets the next epoch', async (t) => {
  const { clock, lease, events } = await setup(t);
  const a = lease('cp-a');
  const b = lease('cp-b');
  await a.step();
  // cp-a is paused (no step runs). Its own clock gives up the lease at TTL − margin…
  clock.advance(TTL - MARGIN - 1);
  assert.equal(a.isLeader, true);
  clock.advance(1);
  assert.equal(a.isLeader, false);
  assert.equal(a.epoch, undefined);
  assert.deepEqual(events, ['cp-a elected 1', 'cp-a deposed 1 expired']);
  // …while the store still holds it for cp-a until TTL: nobody acts in between.
  await b.step();
  assert.equal(b.isLeader, false);
  clock.advance(MARGIN);
  await b.step();
  assert.equal(b.isLeader, true);
  assert.equal(b.epoch, 2);
});

test('take-over: a deposed holder resumed late has its renewal refused, and its late messages are refused by the fence', async (t) => {
  const { clock, lease, events } = await setup(t);
  const a = lease('cp-a');
  const b = lease('cp-b');
  await a.step();
  const receiver = new EpochFence();
  receiver.admit(a.epoch as number, 'routing update');
  const lateEpoch = a.epoch as number;
  clock.advance(TTL);
  await b.step();
  assert.equal(b.epoch, 2);
  receiver.admit(b.epoch as number, 'routing update');
  // cp-a resumes (SIGCONT): its renewal is refused, and what it still sends in epoch 1 is refused.
  await a.step();
  assert.equal(a.isLeader, false);
  assert.throws(() => receiver.admit(lateEpoch, 'routing update'), (err: unknown) => err instanceof BatonError && err.code === 'ERR_STALE_EPOCH');
  assert.equal(receiver.highest, 2, 'the refusal changed nothing');
  assert.equal(b.isLeader, true);
  await b.step();
  assert.equal(b.isLeader, true, 'the new leader renews undisturbed');
  assert.deepEqual(events, ['cp-a elected 1', 'cp-a deposed 1 expired', 'cp-b elected 2']);
});

test('a renewal refused while the holder still thinks it leads deposes it at once (taken-over)', async (t) => {
  const { store, lease, events } = await setup(t);
  const a = lease('cp-a');
  await a.step();
  // Someone released cp-a's holding and took the lease (an operator, or a store that lost it).
  await store.leases.release('controlplane-leader', { holder: 'cp-a', epoch: 1 });
  assert.equal((await store.leases.acquire('controlplane-leader', 'cp-b', TTL))?.epoch, 2);
  await a.step();
  assert.equal(a.isLeader, false);
  assert.deepEqual(events, ['cp-a elected 1', 'cp-a deposed 1 taken-over']);
});

test('an unreachable store: the holder keeps leading until its lease would run out, then stops; a follower stays one', async (t) => {
  const { clock, store, lease, events } = await setup(t);
  let isDown = false;
  const down = () => Promise.reject(new BatonError('ERR_UNAVAILABLE', 'the store is unreachable'));
  const flaky: LeaseStore = {
    acquire: (...args) => (isDown ? down() : store.leases.acquire(...args)),
    renew: (...args) => (isDown ? down() : store.leases.renew(...args)),
    release: (...args) => (isDown ? down() : store.leases.release(...args)),
    current: (...args) => (isDown ? down() : store.leases.current(...args)),
  };
  const a = lease('cp-a', flaky);
  const b = lease('cp-b', flaky);
  await a.step();
  isDown = true;
  clock.advance(INTERVAL);
  await a.step();
  await b.step();
  assert.equal(a.isLeader, true, 'one failed renewal is not the end of the lease');
  assert.equal(b.isLeader, false);
  clock.advance(INTERVAL);
  await a.step();
  clock.advance(TTL - MARGIN - 2 * INTERVAL);
  assert.equal(a.isLeader, false, 'no renewal within TTL − margin: it stops acting');
  isDown = false;
  clock.advance(MARGIN);
  await a.step();
  assert.equal(a.epoch, 2, 'once the store is back it may lead again, in a new epoch');
  assert.deepEqual(events, ['cp-a elected 1', 'cp-a deposed 1 expired', 'cp-a elected 2']);
});

test('close gives the lease up, so a successor takes it at once, in the next epoch', async (t) => {
  const { clock, lease } = await setup(t);
  const a = lease('cp-a');
  await a.step();
  await a.close();
  assert.equal(a.isLeader, false);
  const b = lease('cp-b');
  await b.step();
  assert.equal(b.epoch, 2);
  await b.close();
});

test('options that could let two leaders act at once are refused', () => {
  const clock = new ManualClock(0);
  const leases = {} as LeaseStore;
  assert.throws(() => new LeaderLease({ leases, clock, log, holder: 'a', ttlMs: 1000, intervalMs: 1000 }), /renewal interval/);
  assert.throws(() => new LeaderLease({ leases, clock, log, holder: 'a', ttlMs: 1000, intervalMs: 900, marginMs: 200 }), /renewal interval/);
  assert.throws(() => new LeaderLease({ leases, clock, log, holder: 'a', ttlMs: 1.5 }), /TTL/);
});

test('admitEpoch: the same or a higher epoch is taken, a lower one refused with ERR_STALE_EPOCH, a malformed one is a bad request', () => {
  assert.equal(admitEpoch(0, 1), 1);
  assert.equal(admitEpoch(4, 4), 4);
  assert.equal(admitEpoch(4, 7), 7);
  assert.throws(() => admitEpoch(4, 3, 'endpoint delta'), (err: unknown) => err instanceof BatonError && err.code === 'ERR_STALE_EPOCH'
    && /endpoint delta/.test(err.message) && (err.details as { highest: number }).highest === 4);
  for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    assert.throws(() => admitEpoch(0, bad), (err: unknown) => err instanceof BatonError && err.code === 'ERR_INVALID_REQUEST');
  }
});
