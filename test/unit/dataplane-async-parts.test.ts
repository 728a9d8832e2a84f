import { test } from 'node:test';
import assert from 'node:assert/strict';
import { scanRequestHeaders } from '../../src/dataplane/forward-headers.ts';
import { lambdaHead } from '../../src/dataplane/lambda/lambda-api.ts';
import { functionErrorType, lambdaServiceError } from '../../src/dataplane/lambda/lambda-errors.ts';
import { isoMicros } from '../../src/dataplane/async/async-api.ts';
import { wallTimePreciseMs } from '../../src/core/clock.ts';

test('invocation times are shown with microseconds, and the precise wall clock follows Date.now()', () => {
  const at = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
  assert.equal(isoMicros(at + 0.9125), '2026-01-02T03:04:05.678912Z');
  assert.equal(isoMicros(at), '2026-01-02T03:04:05.678000Z');
  assert.equal(isoMicros(at + 0.9996), '2026-01-02T03:04:05.678999Z', 'cut, never rounded up into the next millisecond');
  for (let i = 0; i < 1000; i++) {
    const before = Date.now();
    const precise = wallTimePreciseMs();
    const after = Date.now();
    assert.ok(precise >= before - 1 && precise <= after + 2, `${precise} within a millisecond of [${before}, ${after}]`);
  }
});

test('an asynchronous invocation is asked for by X-Baton-Invocation-Type: Event or Prefer: respond-async, and neither is forwarded', () => {
  const byType = scanRequestHeaders(['X-Baton-Invocation-Type', 'Event', 'accept', '*/*'], '1.2.3.4');
  assert.equal(byType.isAsync, true);
  assert.ok(!byType.headers.some((h) => h.toLowerCase() === 'x-baton-invocation-type'));
  const byPrefer = scanRequestHeaders(['Prefer', 'respond-async, wait=5'], undefined);
  assert.equal(byPrefer.isAsync, true);
  assert.ok(!byPrefer.headers.includes('Prefer'));
  const sync = scanRequestHeaders(['x-baton-invocation-type', 'RequestResponse', 'prefer', 'return=minimal'], undefined);
  assert.equal(sync.isAsync, false);
  assert.deepEqual(sync.headers.slice(0, 2), ['prefer', 'return=minimal'], 'another Prefer is forwarded');
  assert.equal(scanRequestHeaders(['expect', '100-continue'], undefined).isAsync, false);
});

test('a command function\'s non-2xx answer becomes Lambda\'s function error; a handler\'s Lambda-shaped answer is kept', () => {
  const headers = ['content-type', 'text/plain'];
  assert.equal(lambdaHead(500, headers), 200);
  assert.deepEqual(headers.slice(2), ['x-amz-function-error', 'Unhandled']);
  const shaped = ['x-amz-function-error', 'Unhandled'];
  assert.equal(lambdaHead(200, shaped), 200);
  assert.deepEqual(shaped, ['x-amz-function-error', 'Unhandled']);
  const fine: string[] = [];
  assert.equal(lambdaHead(204, fine), 204);
  assert.deepEqual(fine, []);
});

test('data-plane errors map to Lambda\'s service errors, or to function errors when the function itself failed', () => {
  assert.deepEqual(lambdaServiceError('ERR_FUNCTION_NOT_FOUND'), { status: 404, type: 'ResourceNotFoundException' });
  assert.deepEqual(lambdaServiceError('ERR_QUEUE_FULL'), { status: 429, type: 'TooManyRequestsException' });
  assert.deepEqual(lambdaServiceError('ERR_ASYNC_QUEUE_FULL'), { status: 429, type: 'TooManyRequestsException' });
  assert.deepEqual(lambdaServiceError('ERR_PAYLOAD_TOO_LARGE'), { status: 413, type: 'RequestTooLargeException' });
  assert.deepEqual(lambdaServiceError('ERR_INVALID_REQUEST'), { status: 400, type: 'InvalidRequestContentException' });
  assert.deepEqual(lambdaServiceError('ERR_SHUTTING_DOWN'), { status: 500, type: 'ServiceException' });
  assert.equal(functionErrorType('ERR_FUNCTION_TIMEOUT'), 'Sandbox.Timedout');
  assert.equal(functionErrorType('ERR_QUEUE_FULL'), undefined);
});
