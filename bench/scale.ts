/**
 * bench:scale — memory at cluster scale: 1,000 emulated workers and 10,000 registered functions.
 *
 * Starts the real control plane, data plane and one process emulating W workers (as separate
 * processes), then measures the live heap of the control plane and the data plane (the heap in use
 * as each reports it right after a forced full garbage collection) at three points: empty, with F idle functions
 * registered, and with S sandboxes (minScale 10 on S/10 of the functions, so that per-function
 * scaling state is shared by ten sandboxes, as in a cluster where busy functions have several).
 * Reports bytes per idle function (data plane, control plane) and per sandbox (control plane, data
 * plane endpoint).
 *
 *   npm run bench:scale -- [--workers 1000] [--functions 10000] [--json bench/results/scale.json]
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { startCluster, type Cluster, type DaemonProcess } from '../test/kit/cluster.ts';
import { waitFor } from '../test/kit/wait-for.ts';

const { values } = parseArgs({
  options: {
    workers: { type: 'string', default: '1000' },
    functions: { type: 'string', default: '10000' },
    sandboxes: { type: 'string', default: '10000' },
    json: { type: 'string', default: 'bench/results/scale.json' },
  },
});
const workers = Number(values.workers);
const functions = Number(values.functions);
if (!Number.isInteger(workers) || workers < 1 || workers > 5000) throw new Error('--workers must be in [1, 5000]');
if (!Number.isInteger(functions) || functions < 1 || functions > 100_000) throw new Error('--functions must be in [1, 100000]');
const sandboxes = Number(values.sandboxes);
const PER_FUNCTION = 10;
if (!Number.isInteger(sandboxes) || sandboxes < PER_FUNCTION || sandboxes % PER_FUNCTION !== 0 || sandboxes / PER_FUNCTION > functions) {
  throw new Error(`--sandboxes must be a multiple of ${PER_FUNCTION}, at most ${PER_FUNCTION} × --functions`);
}

/**
 * The live heap: the daemon runs a full garbage collection on SIGUSR2 and reports the heap in use
 * in the same turn (bench/lib/gc-on-signal.mjs, loaded with --expose-gc); the lowest of three
 * such readings. (Reading the daemon's heap gauge over HTTP instead, half a second after the
 * collection, counted the garbage that 1,000 workers' heartbeats make meanwhile: several MB, a
 * few hundred bytes per item either way.)
 */
async function settledHeap(daemon: DaemonProcess): Promise<number> {
  let seq = daemon.logs.filter((line) => line['msg'] === 'heap after gc').length;
  let lowest = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 3; i++, seq++) {
    const reading = daemon.waitForLog((line) => line['msg'] === 'heap after gc' && line['seq'] === seq, 10_000);
    daemon.child.kill('SIGUSR2');
    lowest = Math.min(lowest, Number((await reading)['heapUsedBytes']));
  }
  return lowest;
}

async function forEachFunction(count: number, send: (name: string) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < count) await send(`scale-${next++}`);
  }));
}

async function post(url: string, method: 'POST' | 'PUT', body: unknown): Promise<void> {
  const res = await request(url, { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.body.text();
  if (res.statusCode >= 300) throw new Error(`${method} ${url}: ${res.statusCode} ${text}`);
}

async function main(): Promise<void> {
  process.env['BATON_NODE_ARGS'] = `--expose-gc --import ${new URL('./lib/gc-on-signal.mjs', import.meta.url).pathname}`;
  const cluster: Cluster = await startCluster({
    controlplane: ['--heartbeat-interval-ms', '1000', '--autoscaler-bucket-ms', '1000', '--autoscaler-tick-ms', '2000'],
    worker: ['--emulate', String(workers), '--runtime', 'emulated', '--heartbeat-interval-ms', '1000'],
    dataplane: ['--demand-report-interval-ms', '1000'],
  });
  try {
    await waitFor(async () => (await (await request(`${cluster.cpUrl}/v1/workers`)).body.json() as { workers: unknown[] }).workers.length === workers, { timeoutMs: 60_000, message: 'workers to register' });
    const cp0 = await settledHeap(cluster.controlplane);
    const dp0 = await settledHeap(cluster.dataplane);
    const spec = (name: string, minScale: number) => ({
      name, runtime: 'emulated', scaling: { minScale, maxScale: PER_FUNCTION }, resources: { cpuMilli: 10, memoryMiB: 10 },
    });
    await forEachFunction(functions, (name) => post(`${cluster.cpUrl}/v1/functions`, 'POST', spec(name, 0)));
    const cp1 = await settledHeap(cluster.controlplane);
    const dp1 = await settledHeap(cluster.dataplane);
    await forEachFunction(sandboxes / PER_FUNCTION, (name) => post(`${cluster.cpUrl}/v1/functions/${name}`, 'PUT', spec(name, PER_FUNCTION)));
    await waitFor(async () => {
      const body = await (await request(`${cluster.cpUrl}/metrics`)).body.text();
      const ready = body.split('\n').find((l) => l.startsWith('baton_controlplane_sandboxes{state="ready"}'));
      return Number(ready?.split(' ')[1]) === sandboxes;
    }, { timeoutMs: 300_000, intervalMs: 1000, message: `${sandboxes} ready sandboxes` });
    const cp2 = await settledHeap(cluster.controlplane);
    const dp2 = await settledHeap(cluster.dataplane);
    const result = {
      workers, functions, sandboxes,
      heapBytes: { controlplane: { empty: cp0, idleFunctions: cp1, withSandboxes: cp2 }, dataplane: { empty: dp0, idleFunctions: dp1, withSandboxes: dp2 } },
      dataplaneBytesPerIdleFunction: (dp1 - dp0) / functions,
      controlplaneBytesPerIdleFunction: (cp1 - cp0) / functions,
      controlplaneBytesPerSandbox: (cp2 - cp1) / sandboxes,
      dataplaneBytesPerEndpoint: (dp2 - dp1) / sandboxes,
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    await writeFile(values.json, `${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await cluster.stop();
  }
}

await main();
