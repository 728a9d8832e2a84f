import { test } from 'node:test';
import assert from 'node:assert/strict';
import { systemClock } from '../../src/core/clock.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { LeaderLease } from '../../src/store/leader-lease.ts';
import { RedisStore } from '../../src/store/redis-store.ts';
import { startRedis } from '../kit/redis.ts';
import { waitFor } from '../kit/wait-for.ts';

const log = createLogger({ name: 'test', level: 'silent' });

test('three control planes on one Redis: one leader at a time; when it goes, another takes over in a higher epoch', async (t) => {
  const redis = await startRedis();
  const stores = await Promise.all([0, 1, 2].map(() => RedisStore.open(redis.client())));
  const elected: { holder: string; epoch: number }[] = [];
  const leases = stores.map((store, i) => new LeaderLease({
    leases: store.leases, clock: systemClock, log, holder: `cp-${i}`, ttlMs: 600,
    onElected: (epoch) => elected.push({ holder: `cp-${i}`, epoch }),
  }));
  t.after(async () => {
    await Promise.all(leases.map((l) => l.close()));
    await Promise.all(stores.map((s) => s.close()));
    await redis.stop();
  });
  for (const lease of leases) lease.start();
  const first = await waitFor(() => leases.find((l) => l.isLeader), { message: 'a leader' });
  // Over several renewals there is never more than one leader.
  let samples = 0;
  await waitFor(() => {
    assert.ok(leases.filter((l) => l.isLeader).length <= 1, 'never two leaders');
    return ++samples >= 60;
  }, { intervalMs: 20, message: 'samples over several renewals' });
  assert.equal(first.isLeader, true, 'the leader kept its lease by renewing it');
  const firstEpoch = first.epoch as number;
  await first.close();
  const second = await waitFor(() => leases.find((l) => l !== first && l.isLeader), { message: 'a new leader' });
  assert.ok((second.epoch as number) > firstEpoch, `epoch ${second.epoch} > ${firstEpoch}`);
  assert.deepEqual(elected.map((e) => e.epoch), [...elected.map((e) => e.epoch)].sort((a, b) => a - b), 'epochs only grow');
  assert.equal(new Set(elected.map((e) => e.epoch)).size, elected.length, 'no epoch was handed out twice');
});

test('Redis restarted (kill -9, AOF replayed): the epoch counter survives, the next leader gets a higher epoch', async (t) => {
  const redis = await startRedis();
  const store = await RedisStore.open(redis.client());
  const lease = new LeaderLease({ leases: store.leases, clock: systemClock, log, holder: 'cp-a', ttlMs: 600 });
  t.after(async () => {
    await lease.close();
    await store.close();
    await redis.stop();
  });
  lease.start();
  await waitFor(() => lease.isLeader, { message: 'elected' });
  const before = lease.epoch as number;
  await redis.restart();
  // The holding key came back from the AOF with its expiry; either it is renewed or it runs out
  // and is taken again — never in an epoch handed out before.
  await waitFor(async () => (await store.leases.current('controlplane-leader')) !== undefined && lease.isLeader, { timeoutMs: 10_000, message: 'a leader after the restart' });
  assert.ok((lease.epoch as number) >= before);
  await lease.close();
  const other = await store.leases.acquire('controlplane-leader', 'cp-b', 60_000);
  assert.ok(other !== undefined && other.epoch > before, `epoch ${other?.epoch} > ${before}`);
});
