import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { SandboxFunction } from '../../src/api/worker.ts';
import { systemClock } from '../../src/core/clock.ts';
import { BatonError } from '../../src/core/errors.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { ProcessRuntime } from '../../src/worker/process/process-runtime.ts';
import { waitFor } from '../kit/wait-for.ts';

const FIXTURE = fileURLToPath(new URL('../fixtures/echo-event/', import.meta.url)).replace(/\/$/, '');

function fn(code: { handler: string } | { command: string[] }): SandboxFunction {
  return {
    name: 'echo-event', generation: 3, runtime: 'process', artifact: `sha256:${'0'.repeat(64)}`, ...code,
    concurrency: 4, timeoutMs: 5000, env: {}, resources: { cpuMilli: 100, memoryMiB: 128 },
  };
}

async function setup(t: { after(fn: () => Promise<void>): void }, readyTimeoutMs = 10_000): Promise<ProcessRuntime> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'baton-runtime-'));
  const runtime = new ProcessRuntime({
    dataDir, sandboxHost: '127.0.0.1', readyTimeoutMs, stopGraceMs: 1000, logBufferLines: 3, clock: systemClock, logger: silentLogger(),
  });
  await runtime.cleanupLeftovers();
  t.after(async () => {
    await runtime.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  return runtime;
}

test('the handler runner maps requests to payload 2.0 events and results to responses', async (t) => {
  const runtime = await setup(t);
  const started = await runtime.create('echo-1', fn({ handler: 'index.handler' }), FIXTURE, new AbortController().signal);
  const base = `http://${started.address}`;

  const res = await fetch(`${base}/some/path?a=1&a=2&b=x`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', cookie: 'k1=v1; k2=v2', 'x-multi': 'one', 'user-agent': 'test-agent', 'x-request-id': 'req-7' },
    body: JSON.stringify({ hello: 'world' }),
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('x-answer'), '42');
  assert.deepEqual(res.headers.getSetCookie(), ['a=1; Path=/', 'b=2']);
  const { event, context } = await res.json() as { event: Record<string, any>; context: Record<string, any> };
  assert.equal(event['version'], '2.0');
  assert.equal(event['rawPath'], '/some/path');
  assert.equal(event['rawQueryString'], 'a=1&a=2&b=x');
  assert.deepEqual(event['queryStringParameters'], { a: '1,2', b: 'x' });
  assert.deepEqual(event['cookies'], ['k1=v1', 'k2=v2']);
  assert.equal(event['headers']['x-multi'], 'one');
  assert.equal(event['headers']['cookie'], undefined);
  assert.equal(event['body'], '{"hello":"world"}');
  assert.equal(event['isBase64Encoded'], false);
  assert.deepEqual(
    { ...event['requestContext']['http'], sourceIp: undefined },
    { method: 'POST', path: '/some/path', protocol: 'HTTP/1.1', sourceIp: undefined, userAgent: 'test-agent' },
  );
  assert.equal(event['requestContext']['requestId'], 'req-7');
  assert.equal(typeof event['requestContext']['timeEpoch'], 'number');
  assert.equal(context['functionName'], 'echo-event');
  assert.equal(context['awsRequestId'], 'req-7');
  assert.ok(context['remainingMs'] > 0 && context['remainingMs'] <= 5000);

  const binaryIn = await fetch(`${base}/`, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: Buffer.from([1, 2, 3]) });
  const binaryEvent = (await binaryIn.json() as { event: Record<string, unknown> }).event;
  assert.equal(binaryEvent['isBase64Encoded'], true);
  assert.equal(binaryEvent['body'], Buffer.from([1, 2, 3]).toString('base64'));

  const binaryOut = await fetch(`${base}/binary`);
  assert.equal(binaryOut.status, 201);
  assert.equal(binaryOut.headers.get('content-type'), 'application/octet-stream');
  assert.deepEqual([...new Uint8Array(await binaryOut.arrayBuffer())], [0, 1, 2, 255]);

  const nothing = await fetch(`${base}/nothing`);
  assert.equal(nothing.status, 200);
  assert.equal(await nothing.text(), '');

  const value = await fetch(`${base}/value`);
  assert.equal(value.headers.get('content-type'), 'application/json');
  assert.deepEqual(await value.json(), [1, 'two']);
});

test('a command that never listens is killed at the ready timeout', async (t) => {
  const runtime = await setup(t, 200);
  await assert.rejects(
    runtime.create('mute-1', fn({ command: ['/bin/sleep', '30'] }), FIXTURE, new AbortController().signal),
    (err) => err instanceof BatonError && err.code === 'ERR_SANDBOX_START_FAILED' && /not ready within 200 ms/.test(err.message),
  );
  assert.equal(runtime.logs('mute-1', 10), undefined);
});

test('the log buffer keeps the last lines and counts the dropped ones', async (t) => {
  const runtime = await setup(t);
  const script = 'for i in 1 2 3 4 5; do echo line$i; done; exec /usr/bin/python3 -m http.server --bind 127.0.0.1 "$PORT"';
  await runtime.create('chatty-1', fn({ command: ['/bin/sh', '-c', script] }), FIXTURE, new AbortController().signal);
  const logs = await waitFor(() => {
    const current = runtime.logs('chatty-1', 10);
    return current?.lines.some((l) => l.stream === 'stdout' && l.line === 'line5') === true ? current : undefined;
  }, { message: 'line5 in the logs' });
  assert.ok(logs.lines.length <= 3);
  assert.ok(logs.dropped >= 2);
});
