import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { controlPlaneConfigSchema } from '../../src/controlplane/config.ts';
import { startControlPlane } from '../../src/controlplane/main.ts';
import { parseDataplaneConfig } from '../../src/dataplane/config.ts';
import { startDataplane } from '../../src/dataplane/main.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { parseWorkerConfig } from '../../src/worker/config.ts';
import type { EmulatedAnswer } from '../../src/worker/emulated/invocation-handler.ts';
import { startWorker } from '../../src/worker/main.ts';
import { waitFor } from '../kit/wait-for.ts';

interface WorkerView { workerId: string; url: string; state: string; runtimes: string[]; sandboxes: number; capacity: { cpuMilli: number } }

test('20 emulated workers in one process serve an emulated function through the real planes', async (t) => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'baton-emulated-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const controlPlane = await startControlPlane(controlPlaneConfigSchema.parse({
    port: 0, dataDir, heartbeatIntervalMs: 100, autoscalerBucketMs: 100, autoscalerTickMs: 200, logLevel: 'silent',
  }), { logger: silentLogger() });
  t.after(() => controlPlane.close());
  const dataplane = await startDataplane(parseDataplaneConfig({
    port: 0, internalPort: 0, dataplaneId: 'dp-emulated', controlPlaneUrl: controlPlane.url, heartbeatIntervalMs: 100, demandReportIntervalMs: 100, logLevel: 'silent',
  }), { logger: silentLogger() });
  t.after(() => dataplane.close());
  const worker = await startWorker(parseWorkerConfig({
    port: 0, workerId: 'emu', controlPlaneUrl: controlPlane.url, emulate: 20, cpuMilli: 1000, memoryMiB: 1024,
    emulatedCreateLatency: 'uniform:5-15', randomSeed: 7, logLevel: 'silent',
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
});
