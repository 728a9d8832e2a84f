import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { SandboxFunction } from '../../src/api/worker.ts';
import { systemClock } from '../../src/core/clock.ts';
import { BatonError } from '../../src/core/errors.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { ProcessRuntime } from '../../src/worker/process/process-runtime.ts';

/** The Lambda Runtime API served by the worker beside a real custom runtime written in Python (stdlib only). */

const FIXTURE = fileURLToPath(new URL('../fixtures/lambda-runtime/', import.meta.url)).replace(/\/$/, '');

function fn(env: Record<string, string> = {}): SandboxFunction {
  return {
    name: 'pyrt', generation: 1, runtime: 'process', artifact: `sha256:${'0'.repeat(64)}`, command: ['/usr/bin/python3', 'runtime.py'],
    lambdaRuntimeApi: true, concurrency: 1, timeoutMs: 5000, env, resources: { cpuMilli: 100, memoryMiB: 128 },
  };
}

async function setup(t: TestContext): Promise<ProcessRuntime> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'baton-rtapi-'));
  const runtime = new ProcessRuntime({ dataDir, sandboxHost: '127.0.0.1', readyTimeoutMs: 10_000, stopGraceMs: 1000, logBufferLines: 20, clock: systemClock, logger: silentLogger() });
  await runtime.cleanupLeftovers();
  t.after(async () => {
    await runtime.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  return runtime;
}

test('a custom runtime gets invocations through the Runtime API, with Lambda\'s headers, and answers them', async (t) => {
  const runtime = await setup(t);
  const started = await runtime.create('rt-1', fn(), FIXTURE, new AbortController().signal);
  const base = `http://${started.address}`;
  const before = Date.now();
  const res = await fetch(`${base}/`, { method: 'POST', body: '{"hello":"python"}', headers: { 'x-baton-event-format': 'lambda', 'x-request-id': 'req-42' } });
  assert.equal(res.status, 200);
  const body = await res.json() as { event: unknown; meta: { requestId: string; deadlineMs: number; arn: string; traceId: string; functionName: string }; lang: string };
  assert.equal(body.lang, 'python');
  assert.deepEqual(body.event, { hello: 'python' });
  assert.equal(body.meta.requestId, 'req-42');
  assert.equal(body.meta.arn, 'arn:aws:lambda:local:000000000000:function:pyrt');
  assert.equal(body.meta.functionName, 'pyrt');
  assert.match(body.meta.traceId, /^Root=1-[0-9a-f]+-[0-9a-f]{24};Sampled=0$/);
  assert.ok(body.meta.deadlineMs >= before + 4000 && body.meta.deadlineMs <= Date.now() + 5000, 'the deadline is now + timeoutMs');

  const failed = await fetch(`${base}/`, { method: 'POST', body: '{"fail":"bad input"}', headers: { 'x-baton-event-format': 'lambda' } });
  assert.equal(failed.status, 200);
  assert.equal(failed.headers.get('x-amz-function-error'), 'Unhandled');
  assert.deepEqual(await failed.json(), { errorMessage: 'bad input', errorType: 'ValueError' });

  // A plain HTTP invocation is a function-URL event; a statusCode-shaped result becomes the HTTP answer.
  const http = await fetch(`${base}/some/where?x=1`);
  assert.equal(http.status, 201);
  assert.equal(http.headers.get('x-runtime'), 'python');
  assert.equal(await http.text(), 'path /some/where');

  // Several invocations in a row (queued for the runtime's next polls) each get their own answer.
  const many = await Promise.all([1, 2, 3].map((n) => fetch(`${base}/`, { method: 'POST', body: JSON.stringify({ n }), headers: { 'x-baton-event-format': 'lambda' } }).then((r) => r.json() as Promise<{ event: { n: number } }>)));
  assert.deepEqual(many.map((m) => m.event.n), [1, 2, 3]);
});

test('an init error reported by the runtime fails the sandbox start with its message', async (t) => {
  const runtime = await setup(t);
  await assert.rejects(runtime.create('rt-2', fn({ INIT_FAIL: '1' }), FIXTURE, new AbortController().signal), (err: unknown) => {
    assert.ok(err instanceof BatonError);
    assert.equal(err.code, 'ERR_SANDBOX_START_FAILED');
    assert.match(err.message, /init error: InitError: cannot initialise/);
    return true;
  });
});
