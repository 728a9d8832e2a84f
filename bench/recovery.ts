/**
 * bench:recovery — `kill -9` of the control plane under load, then its restart.
 *
 * Starts the real control plane, data plane and one process emulating W workers, creates S
 * sandboxes (minScale 10 on S/10 functions) and two functions at zero, and runs a steady warm load
 * (C concurrent clients invoking the warm functions through the data plane). Then it kills the
 * control plane with SIGKILL, keeps the load going for the outage, asks for a cold start of the
 * first zero-scale function during it (the invocation waits in the data plane's queue), restarts
 * the control plane (same port and store) and reports, from the instant of the restart:
 *
 *   listening       the new process serves its API
 *   reconstructed   it knows all S sandboxes again (rebuilt from the workers' registrations)
 *   queuedColdMs    the cold start asked for during the outage is served
 *   freshColdMs     a cold start asked for at the restart (of the second zero-scale function) is served
 *
 * and the warm invocations sent, succeeded and failed (by code) from the kill until the end.
 *
 * `--scenario worker-failure`: two worker processes of W/2 emulated workers each; `kill -9` of the
 * second under the same warm load, and from the kill:
 *
 *   withdrawn       the data plane routes to none of the dead workers' sandboxes any more
 *   recreated       the control plane has all S sandboxes ready again (on the surviving workers)
 *
 * `--scenario failover`: three control planes on one Redis (redis-server started on a free port),
 * the same workers, sandboxes and warm load; `kill -9` of the leader, and from the kill:
 *
 *   elected         another control plane says it leads (its /healthz), in a higher epoch
 *   reconstructed   the new leader knows all S sandboxes (adopted from the workers' registrations)
 *   coldServed      a cold start asked for at the kill is served
 *
 * `--scenario all` (the default) runs the three, one cluster each, one after the other.
 *
 *   npm run bench:recovery -- [--scenario all|restart|worker-failure|failover] [--workers 100] [--sandboxes 10000] [--outage-ms 2000] [--clients 8]
 *     [--heartbeat-interval-ms 1000] [--json bench/results/recovery.json]
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { memberHeaders, spawnDaemon, startCluster, type Cluster, type DaemonProcess } from '../test/kit/cluster.ts';
import { startRedis } from '../test/kit/redis.ts';
import { waitFor } from '../test/kit/wait-for.ts';

const { values } = parseArgs({
  options: {
    workers: { type: 'string', default: '100' },
    sandboxes: { type: 'string', default: '10000' },
    'outage-ms': { type: 'string', default: '2000' },
    clients: { type: 'string', default: '8' },
    json: { type: 'string', default: 'bench/results/recovery.json' },
    scenario: { type: 'string', default: 'all' },
    'heartbeat-interval-ms': { type: 'string', default: '1000' },
  },
});
const scenario = values.scenario;
if (!['all', 'restart', 'worker-failure', 'failover'].includes(scenario)) throw new Error('--scenario must be all, restart, worker-failure or failover');
const heartbeatMs = Number(values['heartbeat-interval-ms']);
if (!Number.isInteger(heartbeatMs) || heartbeatMs < 50 || heartbeatMs > 10_000) throw new Error('--heartbeat-interval-ms must be in [50, 10000]');
const workers = Number(values.workers);
const sandboxes = Number(values.sandboxes);
const outageMs = Number(values['outage-ms']);
const clients = Number(values.clients);
const PER_FUNCTION = 10;
if (!Number.isInteger(workers) || workers < 1 || workers > 5000) throw new Error('--workers must be in [1, 5000]');
if (!Number.isInteger(sandboxes) || sandboxes < PER_FUNCTION || sandboxes % PER_FUNCTION !== 0) throw new Error(`--sandboxes must be a multiple of ${PER_FUNCTION}`);
if (!Number.isInteger(outageMs) || outageMs < 0) throw new Error('--outage-ms must be a non-negative integer');
if (!Number.isInteger(clients) || clients < 1 || clients > 256) throw new Error('--clients must be in [1, 256]');
const functions = sandboxes / PER_FUNCTION;

/** While true, the warm clients keep invoking. */
let isLoading = false;

const agent = new Agent({ connections: clients + 4, keepAliveTimeout: 30_000 });

async function post(url: string, body: unknown): Promise<void> {
  const res = await request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), dispatcher: agent });
  const text = await res.body.text();
  if (res.statusCode >= 300) throw new Error(`POST ${url}: ${res.statusCode} ${text}`);
}

async function readySandboxes(cpUrl: string): Promise<number> {
  const body = await (await request(`${cpUrl}/metrics`, { dispatcher: agent, headersTimeout: 2_000 })).body.text();
  const line = body.split('\n').find((l) => l.startsWith('baton_controlplane_sandboxes{state="ready"}'));
  return Number(line?.split(' ')[1] ?? 0);
}

/** One invocation; `undefined` when it succeeded, else its error code. */
async function invoke(dpUrl: string, fn: string, timeoutMs = 30_000): Promise<string | undefined> {
  try {
    const res = await request(`${dpUrl}/fn/${fn}/`, { headers: { 'x-baton-exec-ms': '1' }, dispatcher: agent, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
    const text = await res.body.text();
    if (res.statusCode === 200) return undefined;
    try {
      return (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? `HTTP ${res.statusCode}`;
    } catch {
      return `HTTP ${res.statusCode}`;
    }
  } catch (err) {
    return (err as { code?: string }).code ?? (err as Error).name;
  }
}

async function restartScenario(): Promise<Record<string, unknown>> {
  const cpFlags = ['--heartbeat-interval-ms', String(heartbeatMs), '--autoscaler-bucket-ms', '1000', '--autoscaler-tick-ms', '2000', '--auth-mode', 'none'];
  const cluster: Cluster = await startCluster({
    controlplane: cpFlags,
    worker: ['--emulate', String(workers), '--runtime', 'emulated', '--heartbeat-interval-ms', String(heartbeatMs)],
    dataplane: ['--demand-report-interval-ms', '1000'],
  });
  try {
    await waitFor(async () => (await (await request(`${cluster.cpUrl}/v1/workers`, { dispatcher: agent })).body.json() as { workers: unknown[] }).workers.length === workers,
      { timeoutMs: 60_000, message: 'workers to register' });
    const spec = (name: string, minScale: number) => ({ name, runtime: 'emulated', scaling: { minScale, maxScale: PER_FUNCTION * 2 }, resources: { cpuMilli: 10, memoryMiB: 10 } });
    let next = 0;
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (next < functions) await post(`${cluster.cpUrl}/v1/functions`, spec(`warm-${next++}`, PER_FUNCTION));
    }));
    await post(`${cluster.cpUrl}/v1/functions`, spec('cold-queued', 0));
    await post(`${cluster.cpUrl}/v1/functions`, spec('cold-fresh', 0));
    await waitFor(async () => (await readySandboxes(cluster.cpUrl)) === sandboxes, { timeoutMs: 600_000, intervalMs: 500, message: `${sandboxes} ready sandboxes` });
    process.stderr.write(`${sandboxes} sandboxes ready over ${workers} workers; warm load with ${clients} clients\n`);

    const warm = { sent: 0, ok: 0, failed: new Map<string, number>() };
    isLoading = true;
    const load = Array.from({ length: clients }, async (_, c) => {
      let i = c;
      while (isLoading) {
        const code = await invoke(cluster.dpUrl, `warm-${(i += clients) % functions}`);
        warm.sent++;
        if (code === undefined) warm.ok++;
        else warm.failed.set(code, (warm.failed.get(code) ?? 0) + 1);
      }
    });
    await new Promise((r) => setTimeout(r, 1_000));
    const warmBefore = { sent: warm.sent, ok: warm.ok };
    warm.sent = 0;
    warm.ok = 0;
    warm.failed.clear();

    await cluster.controlplane.stop('SIGKILL');
    const killedAt = performance.now();
    await new Promise((r) => setTimeout(r, outageMs / 2));
    const queued = invoke(cluster.dpUrl, 'cold-queued').then((code) => ({ code, at: performance.now() }));
    await new Promise((r) => setTimeout(r, outageMs / 2));
    const warmDuringOutage = { sent: warm.sent, ok: warm.ok };

    const restartedAt = performance.now();
    const port = new URL(cluster.cpUrl).port;
    const cpArgs = ['--port', port, '--data-dir', `${cluster.dir}/cp`, ...cpFlags];
    cluster.controlplane = spawnDaemon('controlplane', cpArgs);
    const fresh = (async () => {
      // Asked for as soon as the restart is begun; it waits (or is retried) until the control plane can place it.
      const code = await invoke(cluster.dpUrl, 'cold-fresh');
      return { code, at: performance.now() };
    })();
    await cluster.controlplane.waitForLog((l) => l['msg'] === 'control plane listening', 60_000);
    const listeningAt = performance.now();
    await waitFor(async () => (await readySandboxes(cluster.cpUrl)) >= sandboxes, { timeoutMs: 60_000, intervalMs: 10, message: 'the sandboxes to be rebuilt' });
    const reconstructedAt = performance.now();
    const [queuedCold, freshCold] = await Promise.all([queued, fresh]);
    await new Promise((r) => setTimeout(r, 1_000));
    isLoading = false;
    await Promise.all(load);

    return {
      workers, sandboxes, outageMs, clients, heartbeatIntervalMs: heartbeatMs,
      fromRestartMs: {
        listening: Math.round(listeningAt - restartedAt),
        reconstructed: Math.round(reconstructedAt - restartedAt),
        queuedColdServed: Math.round(queuedCold.at - restartedAt),
        freshColdServed: Math.round(freshCold.at - restartedAt),
      },
      fromListeningMs: {
        reconstructed: Math.round(reconstructedAt - listeningAt),
        queuedColdServed: Math.round(queuedCold.at - listeningAt),
        freshColdServed: Math.round(freshCold.at - listeningAt),
      },
      coldStarts: { queued: queuedCold.code ?? 'ok', fresh: freshCold.code ?? 'ok' },
      warm: {
        beforeKillPerSecond: warmBefore.sent,
        duringOutage: warmDuringOutage,
        fromKillToEnd: { sent: warm.sent, succeeded: warm.ok, failed: Object.fromEntries(warm.failed) },
      },
      outageObservedMs: Math.round(restartedAt - killedAt),
    };
  } finally {
    isLoading = false;
    await cluster.stop();
  }
}


/** A cluster the bench spawns itself: control planes (file store, or all on one Redis), worker processes, one data plane. */
interface BenchCluster {
  readonly controlPlanes: { url: string; daemon: DaemonProcess }[];
  readonly workerProcesses: DaemonProcess[];
  readonly dataplane: DaemonProcess;
  readonly dpUrl: string;
  readonly dpInternalUrl: string;
  stop(): Promise<void>;
}

async function startBenchCluster(o: { controlPlanes: number; workerProcesses: { id: string; count: number }[] }): Promise<BenchCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'baton-bench-recovery-'));
  const redis = o.controlPlanes > 1 ? await startRedis() : undefined;
  const started: DaemonProcess[] = [];
  // The bench calls the management API without a token.
  const cpFlags = ['--heartbeat-interval-ms', String(heartbeatMs), '--autoscaler-bucket-ms', '1000', '--autoscaler-tick-ms', '2000', '--auth-mode', 'none',
    ...(redis === undefined ? [] : ['--store', 'redis', '--redis-url', redis.url])];
  const controlPlanes: { url: string; daemon: DaemonProcess }[] = [];
  for (let i = 0; i < o.controlPlanes; i++) {
    const daemon = spawnDaemon('controlplane', ['--port', '0', '--data-dir', join(dir, `cp${i}`), ...cpFlags]);
    started.push(daemon);
    const line = await daemon.waitForLog((l) => l['msg'] === 'control plane listening', 60_000);
    controlPlanes.push({ url: line['url'] as string, daemon });
  }
  const cpUrls = ['--control-plane-urls', JSON.stringify(controlPlanes.map((c) => c.url))];
  const workerProcesses = o.workerProcesses.map((w) => spawnDaemon('worker', ['--port', '0', '--data-dir', join(dir, w.id), '--worker-id', w.id,
    '--emulate', String(w.count), '--runtime', 'emulated', '--heartbeat-interval-ms', String(heartbeatMs), ...cpUrls]));
  const dataplane = spawnDaemon('dataplane', ['--port', '0', '--internal-port', '0', '--data-dir', join(dir, 'dp'), '--demand-report-interval-ms', '1000', ...cpUrls]);
  started.push(...workerProcesses, dataplane);
  const dpLine = await dataplane.waitForLog((l) => l['msg'] === 'data plane started', 60_000);
  return {
    controlPlanes, workerProcesses, dataplane, dpUrl: dpLine['proxyUrl'] as string, dpInternalUrl: dpLine['url'] as string,
    async stop() {
      await Promise.all(started.map((d) => d.stop()));
      await redis?.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Creates the warm functions (S sandboxes) and two at zero through `cpUrl`; resolves once all S are ready. */
async function deploy(cpUrl: string): Promise<void> {
  await waitFor(async () => (await (await request(`${cpUrl}/v1/workers`, { dispatcher: agent })).body.json() as { workers: { state: string }[] }).workers.filter((w) => w.state === 'ready').length === workers,
    { timeoutMs: 60_000, message: 'workers to register' });
  const spec = (name: string, minScale: number) => ({ name, runtime: 'emulated', scaling: { minScale, maxScale: PER_FUNCTION * 2 }, resources: { cpuMilli: 10, memoryMiB: 10 } });
  let next = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < functions) await post(`${cpUrl}/v1/functions`, spec(`warm-${next++}`, PER_FUNCTION));
  }));
  await post(`${cpUrl}/v1/functions`, spec('cold-queued', 0));
  await post(`${cpUrl}/v1/functions`, spec('cold-fresh', 0));
  await waitFor(async () => (await readySandboxes(cpUrl)) === sandboxes, { timeoutMs: 600_000, intervalMs: 500, message: `${sandboxes} ready sandboxes` });
}

/** Runs `clients` warm clients until `stop()`; counts what they got. */
function warmLoad(dpUrl: string): { sent: number; ok: number; failed: Map<string, number>; stop(): Promise<void> } {
  const tally = { sent: 0, ok: 0, failed: new Map<string, number>() };
  let isOn = true;
  const load = Array.from({ length: clients }, async (_, c) => {
    let i = c;
    while (isOn) {
      const code = await invoke(dpUrl, `warm-${(i += clients) % functions}`);
      tally.sent++;
      if (code === undefined) tally.ok++;
      else tally.failed.set(code, (tally.failed.get(code) ?? 0) + 1);
    }
  });
  return Object.assign(tally, { stop: async () => { isOn = false; await Promise.all(load); } });
}

async function routedEndpoints(dpInternalUrl: string): Promise<{ sandboxId: string; address: string }[]> {
  const view = await (await request(`${dpInternalUrl}/internal/v1/routing`, { dispatcher: agent, headers: memberHeaders() })).body.json() as { endpoints: { sandboxId: string; address: string }[] };
  return view.endpoints;
}

async function workerFailureScenario(): Promise<Record<string, unknown>> {
  const half = Math.floor(workers / 2);
  const cluster = await startBenchCluster({ controlPlanes: 1, workerProcesses: [{ id: 'a', count: workers - half }, { id: 'b', count: half }] });
  try {
    const cpUrl = (cluster.controlPlanes[0] as { url: string }).url;
    await deploy(cpUrl);
    const onB = (await (await request(`${cpUrl}/v1/workers`, { dispatcher: agent })).body.json() as { workers: { workerId: string; url: string; sandboxes: number }[] })
      .workers.filter((w) => w.workerId.startsWith('b-'));
    const sandboxesOnB = onB.reduce((sum, w) => sum + w.sandboxes, 0);
    const sandboxIdsOnB = new Set<string>();
    for (const w of onB) {
      const rows = (await (await request(`${w.url}/internal/v1/sandboxes`, { dispatcher: agent, headers: memberHeaders() })).body.json() as { sandboxes: { sandboxId: string }[] }).sandboxes;
      for (const r of rows) sandboxIdsOnB.add(r.sandboxId);
    }
    process.stderr.write(`${sandboxes} sandboxes ready; ${sandboxesOnB} on the ${onB.length} workers of process b, which is killed\n`);
    const load = warmLoad(cluster.dpUrl);
    await new Promise((r) => setTimeout(r, 1_000));
    await (cluster.workerProcesses[1] as DaemonProcess).stop('SIGKILL');
    const killedAt = performance.now();
    await waitFor(async () => !(await routedEndpoints(cluster.dpInternalUrl)).some((e) => sandboxIdsOnB.has(e.sandboxId)),
      { timeoutMs: 60_000, intervalMs: 50, message: 'the dead workers\' endpoints withdrawn from the data plane' });
    const withdrawnAt = performance.now();
    await waitFor(async () => (await readySandboxes(cpUrl)) >= sandboxes, { timeoutMs: 120_000, intervalMs: 50, message: 'the capacity recreated' });
    const recreatedAt = performance.now();
    await load.stop();
    return {
      workers, sandboxes, clients, heartbeatIntervalMs: heartbeatMs, heartbeatMissLimit: 3, killedWorkers: onB.length, killedSandboxes: sandboxesOnB,
      fromKillMs: { withdrawn: Math.round(withdrawnAt - killedAt), recreated: Math.round(recreatedAt - killedAt) },
      warm: { sent: load.sent, succeeded: load.ok, failed: Object.fromEntries(load.failed) },
    };
  } finally {
    await cluster.stop();
  }
}

async function failoverScenario(): Promise<Record<string, unknown>> {
  const cluster = await startBenchCluster({ controlPlanes: 3, workerProcesses: [{ id: 'w', count: workers }] });
  try {
    const health = async (url: string): Promise<{ role?: string; epoch?: number }> => {
      try {
        return await (await request(`${url}/healthz`, { dispatcher: agent, headersTimeout: 1_000 })).body.json() as { role?: string; epoch?: number };
      } catch {
        return {};
      }
    };
    const [first, ...rest] = cluster.controlPlanes as [{ url: string; daemon: DaemonProcess }, ...{ url: string; daemon: DaemonProcess }[]];
    const firstEpoch = (await health(first.url)).epoch ?? 0;
    await deploy(first.url);
    process.stderr.write(`${sandboxes} sandboxes ready over ${workers} workers, three control planes on Redis; killing the leader\n`);
    const load = warmLoad(cluster.dpUrl);
    await new Promise((r) => setTimeout(r, 1_000));
    await first.daemon.stop('SIGKILL');
    const killedAt = performance.now();
    const cold = invoke(cluster.dpUrl, 'cold-queued').then((code) => ({ code, at: performance.now() }));
    const next = await waitFor(async () => {
      for (const cp of rest) {
        const h = await health(cp.url);
        if (h.role === 'leader' && (h.epoch ?? 0) > firstEpoch) return { cp, epoch: h.epoch };
      }
      return undefined;
    }, { timeoutMs: 60_000, intervalMs: 10, message: 'another control plane to lead' });
    const electedAt = performance.now();
    await waitFor(async () => (await readySandboxes(next.cp.url)) >= sandboxes, { timeoutMs: 60_000, intervalMs: 10, message: 'the new leader to know every sandbox' });
    const reconstructedAt = performance.now();
    const coldServed = await cold;
    await new Promise((r) => setTimeout(r, 1_000));
    await load.stop();
    return {
      workers, sandboxes, clients, heartbeatIntervalMs: heartbeatMs, leaderLeaseMs: 1500, epochs: [firstEpoch, next.epoch],
      fromKillMs: { elected: Math.round(electedAt - killedAt), reconstructed: Math.round(reconstructedAt - killedAt), coldServed: Math.round(coldServed.at - killedAt) },
      coldStart: coldServed.code ?? 'ok',
      warm: { sent: load.sent, succeeded: load.ok, failed: Object.fromEntries(load.failed) },
    };
  } finally {
    await cluster.stop();
  }
}

try {
  const results: Record<string, unknown> = {};
  if (scenario === 'all' || scenario === 'restart') results['restart'] = await restartScenario();
  if (scenario === 'all' || scenario === 'worker-failure') results['workerFailure'] = await workerFailureScenario();
  if (scenario === 'all' || scenario === 'failover') results['failover'] = await failoverScenario();
  process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  await writeFile(values.json, `${JSON.stringify(results, null, 2)}\n`);
} finally {
  await agent.close();
}
