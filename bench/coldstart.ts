/**
 * bench:coldstart — cold-start latency through Baton vs the same function process started directly.
 *
 * Starts a real cluster (control plane, data plane, one worker as processes), registers N fresh
 * functions with the code of examples/hello (all at zero), and invokes each once, one at a time:
 * every invocation is a cold start. In the same run, alternating with those, it spawns the same
 * handler runner directly N times (clean environment, same cwd) and times spawn → first 200.
 * Prints p50/p99 of both and the difference, and the per-phase breakdown Baton recorded.
 *
 * With `--runtime container` the worker offers the process and container runtimes; the run
 * measures, alternating, a cold start of a container function (a Node handler image built by
 * `baton image build`), of the same function under the process runtime, and a bare `crun run` of
 * the same bundle (same image base, same config, a prepared network namespace and cgroups) →
 * first 200; plus the container's per-phase breakdown (unpack, bundle, network, start, ready).
 *
 *   npm run bench:coldstart -- [--functions 50] [--runtime process|container] [--json bench/results/coldstart.json]
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { packDirectory, unpackArchive } from '../src/core/archive.ts';
import { percentiles } from '../src/loadgen/analysis.ts';
import { startCluster, ROOT } from '../test/kit/cluster.ts';

const { values } = parseArgs({ options: {
  functions: { type: 'string', default: '50' }, runtime: { type: 'string', default: 'process' }, json: { type: 'string' },
} });
const count = Number(values.functions);
if (!Number.isInteger(count) || count < 1 || count > 500) throw new Error('--functions must be an integer in [1, 500]');
if (values.runtime !== 'process' && values.runtime !== 'container') throw new Error('--runtime must be process or container');
const jsonPath = values.json ?? (values.runtime === 'container' ? 'bench/results/coldstart-container.json' : 'bench/results/coldstart.json');

const RUNNER = join(ROOT, 'src/worker/process/handler-runner.cjs');
const HELLO = join(ROOT, 'examples/hello');

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** Spawn the handler runner the way the worker does, and time spawn → first 200 response. */
async function rawColdStart(artifactDir: string, scratch: string, i: number): Promise<number> {
  const port = await freePort();
  const env = {
    PATH: '/usr/local/bin:/usr/bin:/bin', HOME: scratch, TMPDIR: scratch, PORT: String(port), BATON_HOST: '127.0.0.1',
    BATON_FUNCTION: `raw-${i}`, BATON_SANDBOX_ID: `raw-${i}`, BATON_GENERATION: '1', BATON_TIMEOUT_MS: '60000',
    BATON_MEMORY_MIB: '128', BATON_HANDLER: 'index.handler',
  };
  const started = performance.now();
  const child = spawn(process.execPath, [RUNNER], { cwd: artifactDir, env, stdio: ['ignore', 'ignore', 'ignore', 'pipe'] });
  try {
    for (;;) {
      try {
        const res = await request(`http://127.0.0.1:${port}/`, { reset: true });
        await res.body.text();
        if (res.statusCode === 200) return performance.now() - started;
      } catch {
        await new Promise((r) => setTimeout(r, 1));
      }
      if (performance.now() - started > 10_000) throw new Error('raw function did not answer within 10 s');
    }
  } finally {
    child.kill('SIGKILL');
    await once(child, 'exit');
  }
}

async function main(): Promise<void> {
  const scratch = await mkdtemp(join(tmpdir(), 'baton-bench-cold-'));
  const artifactDir = join(scratch, 'hello');
  const archive = await packDirectory(HELLO);
  await unpackArchive(archive, artifactDir, { maxPackedBytes: 1 << 26, maxUnpackedBytes: 1 << 28, maxEntries: 10_000 });
  const cluster = await startCluster();
  try {
    const put = await request(`${cluster.cpUrl}/v1/artifacts`, { method: 'PUT', body: archive });
    const { digest } = await put.body.json() as { digest: string };
    const names = Array.from({ length: count + 1 }, (_, i) => `cold-${i}`);
    for (const name of names) {
      const res = await request(`${cluster.cpUrl}/v1/functions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        // maxScale 1 as in Dirigent's cold-start sweep; a small CPU request so that all N fit on one worker.
        body: JSON.stringify({ name, artifact: digest, handler: 'index.handler', scaling: { maxScale: 1 }, resources: { cpuMilli: 10, memoryMiB: 64 } }),
      });
      if (res.statusCode !== 201) throw new Error(`creating ${name}: ${res.statusCode} ${await res.body.text()}`);
      await res.body.dump();
    }
    // Function 0 warms the worker's artifact cache and both runtimes' code paths; it is not counted.
    await invoke(cluster.dpUrl, names[0] as string);
    await rawColdStart(artifactDir, scratch, -1);
    const baton: number[] = [];
    const raw: number[] = [];
    for (let i = 1; i <= count; i++) {
      raw.push(await rawColdStart(artifactDir, scratch, i));
      baton.push(await invoke(cluster.dpUrl, names[i] as string));
    }
    const phases = await breakdowns(cluster.cpUrl, names.slice(1));
    const result = {
      functions: count,
      raw: { p50Ms: p(raw, 50), p99Ms: p(raw, 99) },
      baton: { p50Ms: p(baton, 50), p99Ms: p(baton, 99) },
      addedP50Ms: p(baton, 50) - p(raw, 50),
      phasesP50Ms: Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, p(v, 50)])),
    };
    printTable(result);
    await writeFile(jsonPath, `${JSON.stringify(result, null, 2)}\n`);
    process.stdout.write(`\nwrote ${jsonPath}\n`);
  } finally {
    await cluster.stop();
    await rm(scratch, { recursive: true, force: true });
  }
}

const p = (values: readonly number[], q: number): number => percentiles(values, [q])[0] ?? Number.NaN;

async function invoke(dpUrl: string, name: string): Promise<number> {
  const started = performance.now();
  const res = await request(`${dpUrl}/fn/${name}/`);
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`${name}: ${res.statusCode} ${text}`);
  return performance.now() - started;
}

async function breakdowns(cpUrl: string, names: string[]): Promise<Record<string, number[]>> {
  const phases: Record<string, number[]> = {};
  for (const name of names) {
    const res = await request(`${cpUrl}/v1/functions/${name}`);
    const body = await res.body.json() as { recentColdStarts: { breakdown: Record<string, number> }[] };
    for (const cold of body.recentColdStarts.slice(0, 1)) {
      for (const [phase, ms] of Object.entries(cold.breakdown)) (phases[phase] ??= []).push(ms);
    }
  }
  return phases;
}

function printTable(r: { functions: number; raw: { p50Ms: number; p99Ms: number }; baton: { p50Ms: number; p99Ms: number }; addedP50Ms: number; phasesP50Ms: Record<string, number> }): void {
  const f = (n: number) => n.toFixed(1).padStart(8);
  process.stdout.write(`cold starts: ${r.functions} fresh functions, one invocation each, sequential\n\n`);
  process.stdout.write(`path                          p50 ms   p99 ms\n`);
  process.stdout.write(`raw spawn → first 200       ${f(r.raw.p50Ms)} ${f(r.raw.p99Ms)}\n`);
  process.stdout.write(`through Baton (end to end)  ${f(r.baton.p50Ms)} ${f(r.baton.p99Ms)}\n`);
  process.stdout.write(`added by Baton (p50)        ${f(r.addedP50Ms)}\n\n`);
  process.stdout.write(`Baton's recorded phases (p50 ms): ${Object.entries(r.phasesP50Ms).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}\n`);
}

if (values.runtime === 'container') await mainContainer(count, jsonPath);
else await main();

/** `--runtime container`: container functions, the same function as a process, and bare crun, alternating. */
async function mainContainer(n: number, json: string): Promise<void> {
  const { helloImage, prepareBareCrun } = await import('./lib/coldstart-container.ts');
  const image = await helloImage();
  const bare = await prepareBareCrun(image);
  const third = 1 + Math.floor(Math.random() * 250);
  // A container's cpuMilli is a real quota (10 milli-CPU would take Node seconds to start): both kinds
  // ask for a whole core, and the worker advertises room for all of them.
  const cluster = await startCluster({
    worker: ['--runtimes', '["process","container"]', '--container-subnet', `10.213.${third}.0/24`, '--container-netns-pool', '4', '--cpu-milli', '1000000'],
    controlplane: ['--heartbeat-miss-limit', '15'],
  });
  try {
    const upload = async (bytes: Buffer): Promise<string> => {
      const put = await request(`${cluster.cpUrl}/v1/artifacts`, { method: 'PUT', body: bytes });
      return (await put.body.json() as { digest: string }).digest;
    };
    const imageDigest = await upload(image);
    const processDigest = await upload(await packDirectory(HELLO));
    const register = async (name: string, runtime: string, artifact: string): Promise<void> => {
      const res = await request(`${cluster.cpUrl}/v1/functions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name, runtime, artifact, handler: 'index.handler', scaling: { maxScale: 1 }, resources: { cpuMilli: 1000, memoryMiB: 128 } }),
      });
      if (res.statusCode !== 201) throw new Error(`creating ${name}: ${res.statusCode} ${await res.body.text()}`);
      await res.body.dump();
    };
    const containers = Array.from({ length: n + 1 }, (_, i) => `ctr-${i}`);
    const processes = Array.from({ length: n + 1 }, (_, i) => `proc-${i}`);
    for (let i = 0; i <= n; i++) {
      await register(containers[i] as string, 'container', imageDigest);
      await register(processes[i] as string, 'process', processDigest);
    }
    // Function 0 of each kind warms caches (the image is unpacked here) and is not counted.
    await invoke(cluster.dpUrl, containers[0] as string);
    await invoke(cluster.dpUrl, processes[0] as string);
    await bare.run(-1);
    const warm = await workerPhaseTotals(cluster.workerUrl);
    const ctr: number[] = [];
    const proc: number[] = [];
    const crun: number[] = [];
    for (let i = 1; i <= n; i++) {
      crun.push(await bare.run(i));
      ctr.push(await invoke(cluster.dpUrl, containers[i] as string));
      proc.push(await invoke(cluster.dpUrl, processes[i] as string));
    }
    const totals = await workerPhaseTotals(cluster.workerUrl);
    const phases = Object.fromEntries(Object.entries(totals).map(([phase, t]) => {
      const before = warm[phase] ?? { sum: 0, count: 0 };
      return [phase, t.count > before.count ? ((t.sum - before.sum) / (t.count - before.count)) * 1000 : 0];
    }));
    const result = {
      functions: n,
      bareCrun: { p50Ms: p(crun, 50), p99Ms: p(crun, 99) },
      container: { p50Ms: p(ctr, 50), p99Ms: p(ctr, 99) },
      process: { p50Ms: p(proc, 50), p99Ms: p(proc, 99) },
      containerMinusProcessP50Ms: p(ctr, 50) - p(proc, 50),
      containerPhasesMeanMs: phases,
    };
    const f = (x: number) => x.toFixed(1).padStart(8);
    process.stdout.write(`cold starts: ${n} fresh functions of each kind, one invocation each, alternating\n\n`);
    process.stdout.write(`path                                 p50 ms   p99 ms\n`);
    process.stdout.write(`bare crun run → first 200          ${f(result.bareCrun.p50Ms)} ${f(result.bareCrun.p99Ms)}\n`);
    process.stdout.write(`container function, end to end     ${f(result.container.p50Ms)} ${f(result.container.p99Ms)}\n`);
    process.stdout.write(`process function, end to end       ${f(result.process.p50Ms)} ${f(result.process.p99Ms)}\n`);
    process.stdout.write(`container − process (p50)          ${f(result.containerMinusProcessP50Ms)}\n\n`);
    process.stdout.write(`worker phases, mean ms over the measured creations (start, ready, total: both runtimes): ${Object.entries(phases).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}\n`);
    await writeFile(json, `${JSON.stringify(result, null, 2)}\n`);
    process.stdout.write(`\nwrote ${json}\n`);
  } finally {
    await cluster.stop();
    await bare.close();
  }
}

/** Sum (s) and count per phase of the worker's cold-start histogram. */
async function workerPhaseTotals(workerUrl: string): Promise<Record<string, { sum: number; count: number }>> {
  const text = await (await request(`${workerUrl}/metrics`)).body.text();
  const out: Record<string, { sum: number; count: number }> = {};
  for (const phase of ['unpack', 'bundle', 'network', 'start', 'ready', 'total']) {
    const sum = Number(new RegExp(`baton_worker_cold_start_seconds_sum\\{phase="${phase}"\\} ([0-9.e+-]+)`).exec(text)?.[1] ?? 0);
    const count = Number(new RegExp(`baton_worker_cold_start_seconds_count\\{phase="${phase}"\\} ([0-9]+)`).exec(text)?.[1] ?? 0);
    out[phase] = { sum, count };
  }
  return out;
}
