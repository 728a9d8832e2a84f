import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { quotaStoreKey } from '../../src/api/quotas.ts';
import { BatonError } from '../../src/core/errors.ts';
import { FileStore } from '../../src/store/file-store.ts';
import { RedisStore } from '../../src/store/redis-store.ts';
import type { Store } from '../../src/store/store.ts';
import { startRedis, type RedisServer } from '../kit/redis.ts';
import { waitFor } from '../kit/wait-for.ts';

/**
 * One contract, two backends: the embedded file store and Redis (a real `redis-server` with its
 * own data dir and the append-only file on). `reopen` stands for a crash of the control plane:
 * the store is opened again from what is durable (for Redis also after a `kill -9` of Redis).
 */
interface Backend {
  readonly name: string;
  open(): Promise<Store>;
  /** Closes `store` and the backend as a crash would, and opens it again from what is durable. */
  reopen(store: Store): Promise<Store>;
  cleanup(): Promise<void>;
}

function fileBackend(): Backend {
  let dir = '';
  return {
    name: 'file',
    async open() {
      dir = await mkdtemp(join(tmpdir(), 'baton-store-'));
      return FileStore.open(dir);
    },
    async reopen(store) {
      await store.close();
      return FileStore.open(dir);
    },
    async cleanup() {
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function redisBackend(): Backend {
  let server: RedisServer | undefined;
  return {
    name: 'redis',
    async open() {
      server = await startRedis();
      return RedisStore.open(server.client());
    },
    async reopen(store) {
      await server?.restart();
      await store.close();
      return RedisStore.open((server as RedisServer).client());
    },
    async cleanup() {
      await server?.stop();
    },
  };
}

const digestOf = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

for (const backend of [fileBackend(), redisBackend()]) {
  describe(`store contract: ${backend.name}`, () => {
    let store: Store;
    before(async () => { store = await backend.open(); });
    after(async () => {
      await store.close();
      await backend.cleanup();
    });

    test('records: put, overwrite, list per kind, delete; kinds are separate', async () => {
      await store.put('functions', 'f1', { name: 'f1', generation: 1 });
      await store.put('functions', 'f2', { name: 'f2', generation: 1 });
      await store.put('functions', 'f1', { name: 'f1', generation: 2 });
      await store.put('workers', 'f1', { id: 'a worker with the same key' });
      const functions = (await store.list<{ name: string; generation: number }>('functions')).sort((a, b) => a.name.localeCompare(b.name));
      assert.deepEqual(functions, [{ name: 'f1', generation: 2 }, { name: 'f2', generation: 1 }]);
      assert.deepEqual(await store.list('workers'), [{ id: 'a worker with the same key' }]);
      assert.deepEqual(await store.list('dataplanes'), []);
      await store.delete('functions', 'f2');
      await store.delete('functions', 'never-there');
      assert.deepEqual(await store.list('functions'), [{ name: 'f1', generation: 2 }]);
      await store.delete('workers', 'f1');
    });

    test('a bad key or digest is refused and changes nothing', async () => {
      await assert.rejects(store.put('functions', '../escape', { x: 1 }), /invalid store key/);
      await assert.rejects(store.put('functions', '', { x: 1 }), /invalid store key/);
      await assert.rejects(store.delete('functions', 'a b'), /invalid store key/);
      await assert.rejects(store.putBlob('md5:abc', Buffer.from('x')), /invalid digest/);
      await assert.rejects(store.getBlob('sha256:XYZ'), /invalid digest/);
      assert.deepEqual(await store.list('functions'), [{ name: 'f1', generation: 2 }]);
    });

    test('blobs: written once by digest, read back byte for byte, missing ones are undefined', async () => {
      const data = Buffer.from([0, 1, 2, 255, 254, 10, 13, 0]);
      const digest = digestOf(data);
      assert.equal(await store.hasBlob(digest), false);
      assert.equal(await store.getBlob(digest), undefined);
      await store.putBlob(digest, data);
      await store.putBlob(digest, data);
      assert.equal(await store.hasBlob(digest), true);
      assert.deepEqual(await store.getBlob(digest), data);
      const big = Buffer.alloc(2 * 1024 * 1024, 7);
      await store.putBlob(digestOf(big), big);
      assert.equal((await store.getBlob(digestOf(big)))?.equals(big), true);
    });

    test('lease: set-if-absent, compare-and-set renewal, release; a wrong epoch or holder is refused', async () => {
      const a = await store.leases.acquire('leader', 'cp-a', 60_000);
      assert.ok(a !== undefined);
      assert.ok(a.epoch >= 1);
      assert.equal(await store.leases.acquire('leader', 'cp-b', 60_000), undefined, 'held: a second holder is refused');
      assert.equal(await store.leases.acquire('leader', 'cp-a', 60_000), undefined, 'held: even by the same holder, no second epoch');
      assert.deepEqual(await store.leases.current('leader'), a);
      assert.equal(await store.leases.renew('leader', a, 60_000), true);
      assert.equal(await store.leases.renew('leader', { holder: 'cp-a', epoch: a.epoch - 1 }, 60_000), false, 'an old epoch');
      assert.equal(await store.leases.renew('leader', { holder: 'cp-b', epoch: a.epoch }, 60_000), false, 'another holder');
      await store.leases.release('leader', { holder: 'cp-b', epoch: a.epoch });
      assert.deepEqual(await store.leases.current('leader'), a, 'a release by a non-holder is a no-op');
      await store.leases.release('leader', a);
      assert.equal(await store.leases.current('leader'), undefined);
      const b = await store.leases.acquire('leader', 'cp-b', 60_000);
      assert.equal(b?.epoch, a.epoch + 1, 'the next holding gets the next epoch');
      assert.equal(await store.leases.renew('leader', a, 60_000), false, 'the deposed holder cannot renew');
      await store.leases.release('leader', b as NonNullable<typeof b>);
      await assert.rejects(store.leases.acquire('bad name', 'cp-a', 1000), /invalid lease name/);
      await assert.rejects(store.leases.acquire('leader', 'cp-a', 0), /invalid lease TTL/);
    });

    test('lease: a holding that is not renewed expires, and the next holder gets a higher epoch', async () => {
      const a = await store.leases.acquire('expiring', 'cp-a', 150);
      assert.ok(a !== undefined);
      await waitFor(async () => (await store.leases.current('expiring')) === undefined, { message: 'the holding to expire' });
      assert.equal(await store.leases.renew('expiring', a, 150), false, 'too late to renew');
      const b = await store.leases.acquire('expiring', 'cp-b', 60_000);
      assert.equal(b?.epoch, a.epoch + 1);
    });

    test('lease: of many concurrent acquisitions exactly one wins', async () => {
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => store.leases.acquire('race', `cp-${i}`, 60_000)));
      const winners = results.filter((r) => r !== undefined);
      assert.equal(winners.length, 1);
      assert.deepEqual(await store.leases.current('race'), winners[0]);
    });

    test('tokens: a kind of their own, kept by id as hashes, revocation overwrites', async () => {
      const record = { id: 'a1b2c3d4e5f6', hash: 'ab'.repeat(32), role: 'deployer', scopes: ['team-a-*'], createdAt: '2026-01-01T00:00:00.000Z' };
      await store.put('tokens', record.id, record);
      await store.put('tokens', 'b1b2c3d4e5f6', { ...record, id: 'b1b2c3d4e5f6', role: 'viewer', scopes: [] });
      await store.put('tokens', record.id, { ...record, revokedAt: '2026-01-02T00:00:00.000Z' });
      const tokens = (await store.list<typeof record & { revokedAt?: string }>('tokens')).sort((a, b) => a.id.localeCompare(b.id));
      assert.deepEqual(tokens.map((t) => [t.id, t.role, t.revokedAt ?? null]), [['a1b2c3d4e5f6', 'deployer', '2026-01-02T00:00:00.000Z'], ['b1b2c3d4e5f6', 'viewer', null]]);
      assert.deepEqual(await store.list('functions'), [{ name: 'f1', generation: 2 }], 'other kinds untouched');
      await store.delete('tokens', 'b1b2c3d4e5f6');
      assert.deepEqual((await store.list<{ id: string }>('tokens')).map((t) => t.id), ['a1b2c3d4e5f6']);
    });

    test('quotas: a kind of their own, kept by scope (its store key), replaced by a second put, deleted alone', async () => {
      const record = { scope: 'team-a-*', maxSandboxes: 2, updatedAt: '2026-01-01T00:00:00.000Z' };
      await store.put('quotas', quotaStoreKey(record.scope), record);
      await store.put('quotas', quotaStoreKey('team-a'), { scope: 'team-a', maxMemoryMiB: 512, updatedAt: '2026-01-01T00:00:00.000Z' });
      await store.put('quotas', quotaStoreKey(record.scope), { ...record, maxSandboxes: 5 });
      const quotas = (await store.list<{ scope: string; maxSandboxes?: number; maxMemoryMiB?: number }>('quotas')).sort((a, b) => a.scope.localeCompare(b.scope));
      assert.deepEqual(quotas.map((q) => [q.scope, q.maxSandboxes ?? null, q.maxMemoryMiB ?? null]), [['team-a', null, 512], ['team-a-*', 5, null]], "'team-a' and 'team-a-*' are distinct keys");
      await store.delete('quotas', quotaStoreKey('team-a'));
      assert.deepEqual((await store.list<{ scope: string }>('quotas')).map((q) => q.scope), ['team-a-*']);
      assert.equal((await store.list('tokens')).length, 1, 'other kinds untouched');
    });

    test('what was acknowledged survives a crash; epochs keep growing after it', async () => {
      const data = Buffer.from('artifact bytes');
      await store.putBlob(digestOf(data), data);
      await store.put('dataplanes', 'dp-1', { id: 'dp-1', url: 'http://127.0.0.1:1' });
      const before = await store.leases.current('expiring');
      assert.ok(before !== undefined);
      store = await backend.reopen(store);
      assert.deepEqual(await store.list('functions'), [{ name: 'f1', generation: 2 }]);
      assert.deepEqual(await store.list('dataplanes'), [{ id: 'dp-1', url: 'http://127.0.0.1:1' }]);
      assert.deepEqual((await store.list<{ id: string; revokedAt?: string }>('tokens')).map((t) => [t.id, t.revokedAt]), [['a1b2c3d4e5f6', '2026-01-02T00:00:00.000Z']], 'a revoked token stays revoked');
      assert.deepEqual((await store.list<{ scope: string; maxSandboxes: number }>('quotas')).map((q) => [q.scope, q.maxSandboxes]), [['team-a-*', 5]], 'a quota survives');
      assert.deepEqual(await store.getBlob(digestOf(data)), data);
      // The file store's holdings are of its one process and go with it; Redis keeps them. Either
      // way, the next epoch is above every one handed out before the crash.
      const current = await store.leases.current('expiring');
      if (current !== undefined) await store.leases.release('expiring', current);
      const next = await store.leases.acquire('expiring', 'cp-c', 60_000);
      assert.ok(next !== undefined && next.epoch > before.epoch, `epoch ${next?.epoch} > ${before.epoch}`);
    });
  });
}

describe('redis store: an unreachable Redis', () => {
  test('open and calls fail with ERR_UNAVAILABLE, never a hang', async () => {
    const server = await startRedis();
    const store = await RedisStore.open(server.client());
    await server.stop();
    const err = await store.put('functions', 'f', { x: 1 }).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof BatonError && err.code === 'ERR_UNAVAILABLE', String(err));
    await store.close();
    const { Redis } = await import('ioredis');
    const opened = await RedisStore.open(new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })).then(() => undefined, (e: unknown) => e);
    assert.ok(opened instanceof BatonError && opened.code === 'ERR_UNAVAILABLE', String(opened));
  });
});
