import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ERROR_CODES, type ErrorCode } from '../../src/core/errors.ts';
import { GRPC_STATUS, grpcStatusOf, isGrpcContentType, parseGrpcTimeout } from '../../src/dataplane/grpc.ts';
import { parseH2loadOutput } from '../../bench/lib/h2load.ts';

test('grpc-timeout: 1 to 8 digits and a unit, in whole milliseconds rounded up; anything else is malformed', () => {
  assert.equal(parseGrpcTimeout('300m'), 300);
  assert.equal(parseGrpcTimeout('5S'), 5_000);
  assert.equal(parseGrpcTimeout('2M'), 120_000);
  assert.equal(parseGrpcTimeout('1H'), 3_600_000);
  assert.equal(parseGrpcTimeout('1500u'), 2);
  assert.equal(parseGrpcTimeout('1n'), 1);
  assert.equal(parseGrpcTimeout('99999999S'), 99_999_999_000);
  for (const bad of ['', '5', 'S', '5s', '123456789m', '-1m', '1.5S', '5 S', ' 5S']) assert.equal(parseGrpcTimeout(bad), undefined, bad);
});

test('gRPC content types are application/grpc and its +format or ;parameter forms, nothing else', () => {
  for (const yes of ['application/grpc', 'application/grpc+proto', 'application/grpc+json', 'application/grpc;charset=utf-8']) assert.equal(isGrpcContentType(yes), true, yes);
  for (const no of [undefined, '', 'application/json', 'application/grpc-web', 'application/grpcx', 'text/application/grpc', ['application/grpc']]) assert.equal(isGrpcContentType(no), false, String(no));
});

test('Baton\'s codes map to the gRPC statuses docs/errors.md lists; an unlisted one is INTERNAL', () => {
  const expected: Partial<Record<ErrorCode, number>> = {
    ERR_FUNCTION_NOT_FOUND: GRPC_STATUS.NOT_FOUND,
    ERR_DEADLINE_EXCEEDED: GRPC_STATUS.DEADLINE_EXCEEDED,
    ERR_FUNCTION_TIMEOUT: GRPC_STATUS.DEADLINE_EXCEEDED,
    ERR_TOO_MANY_REQUESTS: GRPC_STATUS.RESOURCE_EXHAUSTED,
    ERR_COLD_START_TIMEOUT: GRPC_STATUS.UNAVAILABLE,
    ERR_NO_CAPACITY: GRPC_STATUS.UNAVAILABLE,
    ERR_SHUTTING_DOWN: GRPC_STATUS.UNAVAILABLE,
    ERR_INVALID_REQUEST: GRPC_STATUS.INVALID_ARGUMENT,
    ERR_INTERNAL: GRPC_STATUS.INTERNAL,
    ERR_STALE_EPOCH: GRPC_STATUS.INTERNAL,
  };
  for (const [code, status] of Object.entries(expected)) assert.equal(grpcStatusOf(code as ErrorCode), status, code);
  // Every code maps to some status (none is 0, OK).
  for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) assert.ok(grpcStatusOf(code) > 0, code);
});

test('h2load\'s summary is parsed (bench:proxy\'s h2c table)', () => {
  const text = [
    'finished in 3.00s, 20885.00 req/s, 632.31KB/s',
    'requests: 41770 total, 41770 started, 41770 done, 41768 succeeded, 2 failed, 0 errored, 0 timeout',
    'status codes: 41768 2xx, 0 3xx, 0 4xx, 2 5xx',
    '                     min         max         mean         sd        +/- sd',
    'time for request:      141us     93.79ms       473us      2.38ms    98.90%',
  ].join('\n');
  assert.deepEqual(parseH2loadOutput(text), { requestsPerSecond: 20885, requests: 41770, succeeded: 41768, failed: 2, meanMs: 0.473, maxMs: 93.79 });
  assert.throws(() => parseH2loadOutput('h2load: connection refused'), /not understood/);
});
