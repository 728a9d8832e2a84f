import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { BatonError, ERROR_CODES, isErrorCode } from '../../src/core/errors.ts';

test('docs/errors.md lists exactly the codes of the registry, with their status and whether they are retryable', async () => {
  const doc = await readFile(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  const rows = [...doc.matchAll(/^\| `(ERR_[A-Z_]+)` \| (\d+) \| (yes|no) \|/gm)].map((m) => [m[1], `${m[2]} ${m[3]}`] as const);
  assert.deepEqual(new Map(rows), new Map(Object.entries(ERROR_CODES).map(([code, v]) => [code, `${v.status} ${v.retryable ? 'yes' : 'no'}`])));
});

test('a BatonError crosses the wire and comes back with its code and details', () => {
  const err = new BatonError('ERR_QUEUE_FULL', 'queue of f is full', { details: { capacity: 3 } });
  const back = BatonError.fromBody(JSON.parse(JSON.stringify(err.toBody())), 'fallback');
  assert.equal(back.code, 'ERR_QUEUE_FULL');
  assert.equal(back.status, 503);
  assert.equal(back.isRetryable, true);
  assert.deepEqual(back.details, { capacity: 3 });
});

test('an unknown error shape becomes ERR_INTERNAL with the fallback message', () => {
  const back = BatonError.fromBody({ error: { code: 'ERR_MADE_UP' } }, 'peer answered 500');
  assert.equal(back.code, 'ERR_INTERNAL');
  assert.equal(back.message, 'peer answered 500');
  assert.equal(isErrorCode('ERR_MADE_UP'), false);
});
