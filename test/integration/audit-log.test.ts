import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { AuditLog } from '../../src/controlplane/audit-log.ts';
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
