import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { AuditLog, RedisAuditTrail } from '../../src/controlplane/audit-log.ts';
import { RedisStore } from '../../src/store/redis-store.ts';
import { hasRedis, startRedis } from '../kit/redis.ts';
import { waitFor } from '../kit/wait-for.ts';
import { tempDirSync } from '../kit/temp-dir.ts';

test('the audit log appends JSON lines, rotates at its size keeping the newest, and goes on counting after a reopen', async () => {
  const dir = tempDirSync('baton-audit-');
  const log = await AuditLog.open(dir, { maxBytes: 4096 });
  await Promise.all(Array.from({ length: 100 }, (_, i) => log.record({ tokenId: 'a1b2c3d4e5f6', action: 'function.create', target: `fn-${i}`, status: 201 })));
  const current = await stat(join(dir, 'audit.log'));
  const rotated = await stat(join(dir, 'audit.log.1'));
  assert.ok(current.size <= 4096 && rotated.size <= 4096, `${current.size} and ${rotated.size} bytes, each at most 4096`);
  assert.equal(current.mode & 0o777, 0o600);
  const lines = (await readFile(join(dir, 'audit.log'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { seq: number; target: string; at: string });
  assert.equal(lines.at(-1)?.target, 'fn-99', 'the newest is kept');
  assert.ok(Number.isFinite(Date.parse(lines.at(-1)?.at ?? '')));

  const newest = await log.read({ afterSeq: 0, limit: 3 });
  assert.deepEqual(newest.map((e) => e.seq), [98, 99, 100]);
  const kept = await log.read({ afterSeq: 0, limit: 10_000 });
  assert.ok(kept.length < 100 && kept.length > 20, `${kept.length} entries kept`);
  assert.deepEqual(kept.map((e) => e.seq), Array.from({ length: kept.length }, (_, i) => 101 - kept.length + i), 'contiguous, in order');

  const reopened = await AuditLog.open(dir, { maxBytes: 4096 });
  await reopened.record({ tokenId: null, action: 'token.revoke', target: null, status: 401, code: 'ERR_UNAUTHENTICATED' });
  assert.deepEqual((await reopened.read({ afterSeq: 99, limit: 10 })).map((e) => [e.seq, e.action, e.code]), [[100, 'function.create', undefined], [101, 'token.revoke', 'ERR_UNAUTHENTICATED']]);
});

test('with Redis, every control plane writes one audit stream: one order, no seq twice, read on from any seq, kept through a restart of Redis', { skip: hasRedis() ? false : 'redis-server is not installed' }, async (t) => {
  const server = await startRedis();
  t.after(() => server.stop());
  // Two control planes, each with its own client, writing at once.
  const stores = await Promise.all([RedisStore.open(server.client()), RedisStore.open(server.client())]);
  t.after(() => Promise.all(stores.map((s) => s.close())));
  const errors: unknown[] = [];
  const trails = stores.map((store) => new RedisAuditTrail(store, { maxEntries: 1_000, onError: (err) => errors.push(err) }));
  await Promise.all(trails.flatMap((trail, cp) => Array.from({ length: 150 }, (_, i) => trail.record({ tokenId: 'a1b2c3d4e5f6', action: 'function.create', target: `cp${cp}-fn-${i}`, status: 201 }))));
  assert.deepEqual(errors, []);

  const all = await trails[1]?.read({ afterSeq: 0, limit: 10_000 }) ?? [];
  assert.equal(all.length, 300);
  assert.deepEqual(all.map((e) => e.seq), Array.from({ length: 300 }, (_, i) => i + 1), 'one order, each seq once');
  for (const cp of [0, 1]) {
    const own = all.filter((e) => e.target?.startsWith(`cp${cp}-`)).map((e) => Number(e.target?.split('-').at(-1)));
    assert.deepEqual(own, Array.from({ length: 150 }, (_, i) => i), `control plane ${cp}'s entries, each once, in the order it wrote them`);
  }
  assert.ok(all.every((e) => Number.isFinite(Date.parse(e.at)) && e.status === 201 && e.tokenId === 'a1b2c3d4e5f6'));
  assert.deepEqual((await trails[0]?.read({ afterSeq: 0, limit: 3 }))?.map((e) => e.seq), [298, 299, 300], 'the newest');
  assert.deepEqual((await trails[0]?.read({ afterSeq: 297, limit: 2 }))?.map((e) => e.seq), [298, 299], 'on from a seq');

  await server.restart();
  // The client reconnects in the background; a write it could not make meanwhile is reported, not kept.
  await waitFor(async () => (await stores[0]?.readAudit({ afterSeq: 0, limit: 1 }).then(() => true, () => false)) ?? false, { timeoutMs: 10_000, message: 'Redis back' });
  await trails[0]?.record({ tokenId: null, action: 'token.revoke', target: null, status: 401, code: 'ERR_UNAUTHENTICATED' });
  assert.deepEqual(errors, []);
  const after = await trails[1]?.read({ afterSeq: 299, limit: 10 }) ?? [];
  assert.deepEqual(after.map((e) => [e.seq, e.action, e.code]), [[300, 'function.create', undefined], [301, 'token.revoke', 'ERR_UNAUTHENTICATED']], 'acknowledged entries survived the kill -9 of Redis, and the seq goes on');
});
