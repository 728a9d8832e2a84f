import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { Agent, request } from 'undici';
import { controlPlaneConfigSchema } from '../../src/controlplane/config.ts';
import { startControlPlane } from '../../src/controlplane/main.ts';
import { parseDataplaneConfig } from '../../src/dataplane/config.ts';
import { tempDirSync } from '../kit/temp-dir.ts';
import { startDataplane } from '../../src/dataplane/main.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { parseWorkerConfig } from '../../src/worker/config.ts';
import { startWorker } from '../../src/worker/main.ts';
import { waitFor } from '../kit/wait-for.ts';

/**
 * Churn at small cluster scale: 50 emulated workers, 500 functions scaled up and down at the same
 * time. After each phase the control plane, the data plane and the workers must hold exactly the
 * same sandboxes — no endpoint on a data plane that no worker runs, and no sandbox on a worker that
 * is not routed or being drained.
 */

const WORKERS = 50;
const FUNCTIONS = 500;

test(`${FUNCTIONS} functions on ${WORKERS} emulated workers scale up and down and every view agrees`, async (t) => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'baton-churn-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const controlPlane = await startControlPlane(controlPlaneConfigSchema.parse({ authMode: 'none',
    port: 0, dataDir, heartbeatIntervalMs: 200, autoscalerBucketMs: 100, autoscalerTickMs: 200, logLevel: 'silent',
  }), { logger: silentLogger() });
  t.after(() => controlPlane.close());
  const dataplane = await startDataplane(parseDataplaneConfig({
    port: 0, internalPort: 0, dataDir: tempDirSync('baton-dp-'), dataplaneId: 'dp-churn', controlPlaneUrl: controlPlane.url, heartbeatIntervalMs: 200, demandReportIntervalMs: 100, logLevel: 'silent',
  }), { logger: silentLogger() });
  t.after(() => dataplane.close());
  const worker = await startWorker(parseWorkerConfig({
    port: 0, workerId: 'churn', controlPlaneUrl: controlPlane.url, emulate: WORKERS, cpuMilli: 100_000, memoryMiB: 100_000,
    emulatedCreateLatency: 'uniform:1-20', randomSeed: 11, heartbeatIntervalMs: 200, logLevel: 'silent',
  }), { logger: silentLogger() });
  t.after(() => worker.close());

  const client = new Agent({ connections: 256 });
  t.after(() => client.close());
  const json = async <T>(url: string, init: { method?: 'GET' | 'POST'; body?: unknown } = {}): Promise<T> => {
    const res = await request(url, {
      dispatcher: client, method: init.method ?? 'GET',
      ...(init.body === undefined ? {} : { body: JSON.stringify(init.body), headers: { 'content-type': 'application/json' } }),
    });
    return await res.body.json() as T;
  };

  await waitFor(async () => (await json<{ workers: { state: string }[] }>(`${controlPlane.url}/v1/workers`)).workers.filter((w) => w.state === 'ready').length === WORKERS,
    { message: `${WORKERS} workers` });
  const names = Array.from({ length: FUNCTIONS }, (_, i) => `f-${i}`);
  for (const name of names) {
    await json(`${controlPlane.url}/v1/functions`, { method: 'POST', body: {
      name, runtime: 'emulated', concurrency: 1, resources: { cpuMilli: 10, memoryMiB: 10 },
      scaling: { maxScale: 3, targetUtilization: 1, stableWindowMs: 1000, panicWindowMs: 500, scaleToZeroGraceMs: 0 },
    } });
  }
  await waitFor(async () => (await json<{ functions: unknown[] }>(`${dataplane.url}/internal/v1/routing`)).functions.length === FUNCTIONS,
    { message: 'the data plane to know every function' });

  const views = async () => {
    const cp = new Map<string, string>();
    const functions = (await json<{ functions: { spec: { name: string } }[] }>(`${controlPlane.url}/v1/functions`)).functions;
    let starting = 0;
    for (const fn of functions) {
      for (const s of (await json<{ sandboxes: { sandboxId: string; state: string }[] }>(`${controlPlane.url}/v1/functions/${fn.spec.name}/sandboxes`)).sandboxes) {
        if (s.state === 'starting') starting++;
        else cp.set(s.sandboxId, fn.spec.name);
      }
    }
    const dp = new Map((await json<{ endpoints: { sandboxId: string; function: string }[] }>(`${dataplane.url}/internal/v1/routing`)).endpoints.map((e) => [e.sandboxId, e.function]));
    const onWorkers = new Map<string, string>();
    for (const w of worker.workers) {
      for (const s of (await json<{ sandboxes: { sandboxId: string; function: string; state: string }[] }>(`${w.url}/internal/v1/sandboxes`)).sandboxes) {
        if (s.state === 'ready') onWorkers.set(s.sandboxId, s.function);
      }
    }
    return { cp, dp, onWorkers, starting };
  };
  const agree = (v: Awaited<ReturnType<typeof views>>) => v.starting === 0
    && [...v.cp].every(([id, fn]) => v.dp.get(id) === fn && v.onWorkers.get(id) === fn)
    && v.cp.size === v.dp.size && v.cp.size === v.onWorkers.size;

  // Up: three overlapping invocations per function, all at once.
  const invoke = async (name: string) => {
    const res = await request(`${dataplane.proxyUrl}/fn/${name}/`, { dispatcher: client, headers: { 'x-baton-exec-ms': '300' } });
    await res.body.dump();
    return res.statusCode;
  };
  const statuses = await Promise.all(names.flatMap((name) => [invoke(name), invoke(name), invoke(name)]));
  assert.deepEqual([...new Set(statuses)], [200], 'every invocation succeeded');
  const metrics = await (await request(`${controlPlane.url}/metrics`, { dispatcher: client })).body.text();
  const coldStarts = metrics.split('\n').filter((l) => l.startsWith('baton_controlplane_cold_starts_total{')).reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
  assert.ok(coldStarts >= FUNCTIONS, `every function scaled up from zero (${coldStarts} cold starts)`);
  // Mid-churn (some functions still scaling down), the views converge.
  await waitFor(async () => agree(await views()), { timeoutMs: 20_000, message: 'the three views to agree after scaling up' });

  // Down: with no more demand, every function drains back to zero everywhere.
  const down = await waitFor(async () => {
    const v = await views();
    return agree(v) && v.cp.size === 0 ? v : undefined;
  }, { timeoutMs: 30_000, intervalMs: 250, message: 'every function to scale to zero in every view' });
  assert.equal(down.dp.size, 0);
  assert.equal(down.onWorkers.size, 0);
});
