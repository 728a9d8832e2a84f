import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import type { SandboxFunction } from '../../src/api/worker.ts';
import { systemClock } from '../../src/core/clock.ts';
import { createRandom } from '../../src/core/random.ts';
import { controlPlaneConfigSchema } from '../../src/controlplane/config.ts';
import { startControlPlane } from '../../src/controlplane/main.ts';
import { parseDataplaneConfig } from '../../src/dataplane/config.ts';
import { tempDirSync } from '../kit/temp-dir.ts';
import { startDataplane } from '../../src/dataplane/main.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { parseWorkerConfig } from '../../src/worker/config.ts';
import { EmulatedRuntime } from '../../src/worker/emulated/emulated-runtime.ts';
import { createResponder } from '../../src/worker/emulated/http-responder.ts';
import { createInvocationHandler, type EmulatedAnswer } from '../../src/worker/emulated/invocation-handler.ts';
import { parseLatencySpec } from '../../src/worker/emulated/latency-spec.ts';
import { startWorker } from '../../src/worker/main.ts';
import { waitFor } from '../kit/wait-for.ts';

interface WorkerView { workerId: string; url: string; state: string; runtimes: string[]; sandboxes: number; capacity: { cpuMilli: number } }

for (const internalTransport of ['rpc', 'http'] as const) test(`20 emulated workers in one process serve an emulated function through the real planes (internal calls over ${internalTransport})`, async (t) => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'baton-emulated-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const controlPlane = await startControlPlane(controlPlaneConfigSchema.parse({ authMode: 'none',
    port: 0, dataDir, heartbeatIntervalMs: 100, autoscalerBucketMs: 100, autoscalerTickMs: 200, logLevel: 'silent', internalTransport,
  }), { logger: silentLogger() });
  t.after(() => controlPlane.close());
  const dataplane = await startDataplane(parseDataplaneConfig({
    port: 0, internalPort: 0, dataDir: tempDirSync('baton-dp-'), dataplaneId: 'dp-emulated', controlPlaneUrl: controlPlane.url, heartbeatIntervalMs: 100, demandReportIntervalMs: 100, logLevel: 'silent', internalTransport,
  }), { logger: silentLogger() });
  t.after(() => dataplane.close());
  const worker = await startWorker(parseWorkerConfig({
    port: 0, workerId: 'emu', controlPlaneUrl: controlPlane.url, emulate: 20, cpuMilli: 1000, memoryMiB: 1024,
    emulatedCreateLatency: 'uniform:5-15', randomSeed: 7, logLevel: 'silent', internalTransport,
  }), { logger: silentLogger() });
  t.after(() => worker.close());
  const workerIds = worker.workers.map((w) => w.workerId);
  assert.equal(workerIds.length, 20);
  assert.deepEqual(workerIds.slice(0, 2), ['emu-0', 'emu-1']);

  const cp = async <T>(method: string, route: string, body?: unknown): Promise<{ status: number; body: T }> => {
    const res = await fetch(`${controlPlane.url}${route}`, {
      method, ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    });
    return { status: res.status, body: await res.json() as T };
  };
  const listWorkers = async () => (await cp<{ workers: WorkerView[] }>('GET', '/v1/workers')).body.workers;

  // Every logical worker registered on its own, with its own URL and capacity.
  const workers = await waitFor(async () => {
    const listed = await listWorkers();
    return listed.filter((w) => w.state === 'ready').length === 20 ? listed : undefined;
  }, { message: '20 ready workers' });
  assert.deepEqual(workers.map((w) => w.workerId).sort(), [...workerIds].sort());
  assert.ok(workers.every((w) => w.runtimes.join() === 'emulated' && w.capacity.cpuMilli === 1000));
  assert.equal(new Set(workers.map((w) => w.url)).size, 20);

  const created = await cp('POST', '/v1/functions', { name: 'emu', runtime: 'emulated', concurrency: 1, scaling: { maxScale: 60 } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  // An artifact an emulated function names is never fetched, so it need not have been uploaded.
  const withArtifact = await cp('POST', '/v1/functions', { name: 'emu-art', runtime: 'emulated', artifact: `sha256:${'0'.repeat(64)}` });
  assert.equal(withArtifact.status, 201, JSON.stringify(withArtifact.body));

  const invoke = async (execMs: number): Promise<{ status: number; answer: EmulatedAnswer }> => {
    const res = await fetch(`${dataplane.proxyUrl}/fn/emu/`, { headers: { 'x-baton-exec-ms': String(execMs) } });
    return { status: res.status, answer: await res.json() as EmulatedAnswer };
  };
  // The data plane learns of the function asynchronously; until then it answers 404.
  const first = await waitFor(async () => {
    const result = await invoke(50);
    return result.status === 404 ? undefined : result;
  }, { message: 'the first invocation' });
  assert.equal(first.status, 200, JSON.stringify(first.answer));
  assert.equal(first.answer.Status, 'OK');
  assert.equal(first.answer.Function, 'emu');
  assert.ok(workerIds.includes(first.answer.MachineName), first.answer.MachineName);
  assert.ok(first.answer.ExecutionTime >= 50_000, `ExecutionTime ${first.answer.ExecutionTime}`);

  // 30 concurrent invocations, one per sandbox at a time: the sandboxes they get spread over workers.
  const burst = await Promise.all(Array.from({ length: 30 }, () => invoke(300)));
  assert.ok(burst.every((r) => r.status === 200), JSON.stringify(burst.filter((r) => r.status !== 200).slice(0, 2)));
  const machines = new Set(burst.map((r) => r.answer.MachineName));
  assert.ok(machines.size >= 3, `answered by ${[...machines].join(', ')}`);
  assert.ok([...machines].every((m) => workerIds.includes(m)));
  const busy = (await listWorkers()).filter((w) => w.sandboxes > 0);
  assert.ok(busy.length >= 3, `sandboxes on ${busy.map((w) => `${w.workerId}:${w.sandboxes}`).join(', ')}`);

  // A logical worker's internal API answers under its own path, as the control plane calls it.
  const listed = await fetch(`${busy[0]?.url}/internal/v1/sandboxes`).then((r) => r.json()) as { sandboxes: { function: string; state: string }[] };
  assert.ok(listed.sandboxes.length > 0 && listed.sandboxes.every((s) => s.function === 'emu'));

  // Deleting the function deletes its sandboxes on every logical worker.
  assert.equal((await cp('DELETE', '/v1/functions/emu')).status, 200);
  await waitFor(async () => (await listWorkers()).every((w) => w.sandboxes === 0), { message: 'no sandboxes left' });
  const counts = await Promise.all(worker.workers.map(async (w) =>
    ((await fetch(`${w.url}/internal/v1/sandboxes`).then((r) => r.json())) as { sandboxes: unknown[] }).sandboxes.length));
  assert.deepEqual(counts, new Array(20).fill(0));
  // The worker process and the data plane each called the control plane on one stream (rpc), or on none (http).
  const metrics = await fetch(`${controlPlane.url}/metrics`).then((r) => r.text());
  assert.match(metrics, new RegExp(`^baton_controlplane_rpc_connections ${internalTransport === 'rpc' ? 2 : 0}$`, 'm'));
});

test('the emulated invocation listener: execution time headers, function name, bad input', async (t) => {
  const runtime = new EmulatedRuntime({ address: 'unused:0', latency: parseLatencySpec('0'), random: createRandom(1), clock: systemClock });
  const handler = createInvocationHandler({ workerId: 'w-7', runtime, clock: systemClock });
  const server = createResponder(handler.handle);
  const port = await server.listen(0, '127.0.0.1');
  t.after(async () => { handler.close(); await server.close(); });
  const call = (urlPath: string, headers: Record<string, string> = {}) => new Promise<{ status: number; body: Record<string, unknown> }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: urlPath, method: 'POST', headers }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (chunk: string) => { text += chunk; }).on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
    });
    req.on('error', reject);
    req.end('{"some":"payload"}');
  });
  const fn = (name: string): SandboxFunction => ({
    name, generation: 1, runtime: 'emulated', concurrency: 1, timeoutMs: 1000, env: {}, resources: { cpuMilli: 100, memoryMiB: 128 },
  });

  const idle = await call('/');
  assert.deepEqual({ ...idle.body, ExecutionTime: 0 }, { Status: 'OK', Function: '', MachineName: 'w-7', ExecutionTime: 0 });

  await runtime.create('s1', fn('alpha'), '', new AbortController().signal);
  assert.equal((await call('/anything?x=1')).body['Function'], 'alpha', 'the only function here');
  await runtime.create('s2', fn('beta'), '', new AbortController().signal);
  assert.equal((await call('/', { host: 'beta.example.com' })).body['Function'], 'beta');
  assert.equal((await call('/fn/alpha/x', { host: 'beta' })).body['Function'], 'alpha');
  assert.equal((await call('/', { host: 'gamma.example.com' })).body['Function'], '', 'no sandbox of gamma here');

  const waited = await call('/', { 'requested_cpu': '30' });
  assert.ok((waited.body['ExecutionTime'] as number) >= 30_000, JSON.stringify(waited.body));
  const bad = await call('/', { 'x-baton-exec-ms': 'soon' });
  assert.equal(bad.status, 400);
  assert.equal((bad.body['error'] as { code: string }).code, 'ERR_INVALID_REQUEST');
});

test('a single emulated worker registers its own URL and the emulated runtime only', async (t) => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'baton-emulated-one-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const controlPlane = await startControlPlane(controlPlaneConfigSchema.parse({ authMode: 'none', port: 0, dataDir, heartbeatIntervalMs: 100, logLevel: 'silent' }), { logger: silentLogger() });
  t.after(() => controlPlane.close());
  const worker = await startWorker(parseWorkerConfig({
    port: 0, workerId: 'solo', controlPlaneUrl: controlPlane.url, runtime: 'emulated', logLevel: 'silent',
  }), { logger: silentLogger() });
  t.after(() => worker.close());
  assert.deepEqual(worker.workers, [{ workerId: 'solo', url: worker.url }]);
  const listed = await waitFor(async () => {
    const { workers } = await fetch(`${controlPlane.url}/v1/workers`).then((r) => r.json()) as { workers: WorkerView[] };
    return workers.length === 1 && workers[0]?.state === 'ready' ? workers[0] : undefined;
  }, { message: 'the worker to register' });
  assert.equal(listed.url, worker.url);
  assert.deepEqual(listed.runtimes, ['emulated']);
});

test('a sandbox not ready within sandboxCreateTimeoutMs is given up, deleted on its worker and asked for again after a back-off', async (t) => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'baton-emulated-slow-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const controlPlane = await startControlPlane(controlPlaneConfigSchema.parse({ authMode: 'none',
    port: 0, dataDir, heartbeatIntervalMs: 100, sandboxCreateTimeoutMs: 200, logLevel: 'silent',
  }), { logger: silentLogger() });
  t.after(() => controlPlane.close());
  // Creation takes 5 s here: every attempt outlives the control plane's 200 ms.
  const worker = await startWorker(parseWorkerConfig({
    port: 0, workerId: 'slow', controlPlaneUrl: controlPlane.url, runtime: 'emulated', emulatedCreateLatency: '5000', logLevel: 'silent',
  }), { logger: silentLogger() });
  t.after(() => worker.close());
  await waitFor(async () => {
    const { workers } = await fetch(`${controlPlane.url}/v1/workers`).then((r) => r.json()) as { workers: WorkerView[] };
    return workers[0]?.state === 'ready' ? true : undefined;
  }, { message: 'the worker to register' });

  const startedAt = Date.now();
  const created = await fetch(`${controlPlane.url}/v1/functions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'slow', runtime: 'emulated', scaling: { minScale: 1 } }),
  });
  assert.equal(created.status, 201);
  const failuresOf = async (): Promise<number> => {
    const text = await fetch(`${controlPlane.url}/metrics`).then((r) => r.text());
    const line = text.split('\n').find((l) => l.startsWith('baton_controlplane_sandbox_failures_total{') && l.includes('function="slow"') && l.includes('code="ERR_SANDBOX_START_FAILED"'));
    return line === undefined ? 0 : Number(line.split(' ').pop());
  };
  // Given up after 200 ms, again after the 100 ms back-off and another 200 ms: two failures in well under the 5 s creation.
  await waitFor(async () => (await failuresOf()) >= 2 ? true : undefined, { message: 'two creations given up', timeoutMs: 4_000 });
  assert.ok(Date.now() - startedAt >= 400, 'each attempt waited its 200 ms');
  // The worker was told to delete each abandoned sandbox: at most the current attempt is left there.
  const { sandboxes } = await fetch(`${worker.url}/internal/v1/sandboxes`).then((r) => r.json()) as { sandboxes: { sandboxId: string; state: string }[] };
  assert.ok(sandboxes.length <= 1, JSON.stringify(sandboxes));
  const { functions } = await fetch(`${controlPlane.url}/v1/functions`).then((r) => r.json()) as { functions: { spec: { name: string }; status: { starting: number; ready: number } }[] };
  assert.equal(functions[0]?.status.ready, 0);
  assert.ok((functions[0]?.status.starting ?? 0) <= 1);
});
