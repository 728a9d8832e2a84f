import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { controlPlaneConfigSchema } from '../../src/controlplane/config.ts';
import { startControlPlane } from '../../src/controlplane/main.ts';
import { parseDataplaneConfig } from '../../src/dataplane/config.ts';
import { tempDirSync } from '../kit/temp-dir.ts';
import { startDataplane } from '../../src/dataplane/main.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { parseWorkerConfig } from '../../src/worker/config.ts';
import { startWorker } from '../../src/worker/main.ts';
import { waitFor } from '../kit/wait-for.ts';

test('least-recently-used eviction scales down the sandbox the data plane has not used', async (t) => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'baton-lru-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const controlPlane = await startControlPlane(controlPlaneConfigSchema.parse({ authMode: 'none',
    port: 0, dataDir, heartbeatIntervalMs: 200, autoscalerBucketMs: 100, autoscalerTickMs: 200, evictionPolicy: 'least-recently-used', logLevel: 'silent',
  }), { logger: silentLogger() });
  t.after(() => controlPlane.close());
  const dataplane = await startDataplane(parseDataplaneConfig({
    port: 0, internalPort: 0, dataDir: tempDirSync('baton-dp-'), dataplaneId: 'dp-lru', controlPlaneUrl: controlPlane.url, heartbeatIntervalMs: 200, demandReportIntervalMs: 100,
    loadBalancingPolicy: 'least-inflight', logLevel: 'silent',
  }), { logger: silentLogger() });
  t.after(() => dataplane.close());
  const worker = await startWorker(parseWorkerConfig({
    port: 0, workerId: 'lru', controlPlaneUrl: controlPlane.url, runtime: 'emulated', heartbeatIntervalMs: 200, logLevel: 'silent',
  }), { logger: silentLogger() });
  t.after(() => worker.close());
  // The worker must be registered before the first poke, or the control plane answers "no capacity" (a race under load).
  await waitFor(async () => ((await (await request(`${controlPlane.url}/v1/workers`)).body.json()) as { workers: unknown[] }).workers.length === 1, { message: 'the worker to register' });

  const created = await request(`${controlPlane.url}/v1/functions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'lru', runtime: 'emulated', scaling: { maxScale: 2, targetUtilization: 1, stableWindowMs: 1500, panicWindowMs: 300, scaleToZeroGraceMs: 60_000 } }),
  });
  assert.equal(created.statusCode, 201, await created.body.text());
  const invoke = async (execMs: number) => {
    const res = await request(`${dataplane.proxyUrl}/fn/lru/`, { headers: { 'x-baton-exec-ms': String(execMs) } });
    await res.body.dump();
    return res.statusCode;
  };
  const sandboxes = async () => ((await (await request(`${controlPlane.url}/v1/functions/lru/sandboxes`)).body.json()) as { sandboxes: { sandboxId: string; state: string }[] }).sandboxes;
  await waitFor(async () => (await invoke(0)) !== 404, { message: 'the data plane to know the function' });

  // Two overlapping invocations: two sandboxes.
  assert.deepEqual(await Promise.all([invoke(400), invoke(400)]), [200, 200]);
  const both = await waitFor(async () => {
    const listed = await sandboxes();
    return listed.filter((s) => s.state === 'ready').length === 2 ? listed : undefined;
  }, { message: 'two ready sandboxes' });
  // From now on one invocation at a time: least-inflight always picks the same sandbox, so the
  // other one stops being used; once demand falls to one, the autoscaler scales down by one.
  const routing = await (await request(`${dataplane.url}/internal/v1/routing`)).body.json() as { endpoints: { sandboxId: string }[] };
  const busy = routing.endpoints[0]?.sandboxId;
  const idle = both.map((s) => s.sandboxId).find((id) => id !== busy);
  assert.ok(busy !== undefined && idle !== undefined);
  const remaining = await waitFor(async () => {
    await invoke(50);
    const listed = await sandboxes();
    return listed.length === 1 && listed[0]?.state === 'ready' ? listed : undefined;
  }, { timeoutMs: 20_000, intervalMs: 10, message: 'the function to scale down to one sandbox' });
  assert.equal(remaining[0]?.sandboxId, busy, 'the sandbox that kept serving stayed; the unused one was evicted');
});
