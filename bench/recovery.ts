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
 *   npm run bench:recovery -- [--workers 100] [--sandboxes 10000] [--outage-ms 2000] [--clients 8] [--json bench/results/recovery.json]
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { spawnDaemon, startCluster, type Cluster } from '../test/kit/cluster.ts';
import { waitFor } from '../test/kit/wait-for.ts';

const { values } = parseArgs({
  options: {
    workers: { type: 'string', default: '100' },
    sandboxes: { type: 'string', default: '10000' },
    'outage-ms': { type: 'string', default: '2000' },
    clients: { type: 'string', default: '8' },
    json: { type: 'string', default: 'bench/results/recovery.json' },
  },
});
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

async function main(): Promise<void> {
  const cpFlags = ['--heartbeat-interval-ms', '1000', '--autoscaler-bucket-ms', '1000', '--autoscaler-tick-ms', '2000'];
  const cluster: Cluster = await startCluster({
    controlplane: cpFlags,
    worker: ['--emulate', String(workers), '--runtime', 'emulated', '--heartbeat-interval-ms', '1000'],
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

    const result = {
      workers, sandboxes, outageMs, clients,
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
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    await writeFile(values.json, `${JSON.stringify(result, null, 2)}\n`);
  } finally {
    isLoading = false;
    await cluster.stop();
    await agent.close();
  }
}

await main();
