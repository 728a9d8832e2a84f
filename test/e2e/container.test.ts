import assert from 'node:assert/strict';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseResultsCsv } from '../../src/loadgen/invitro-csv.ts';
import { execTool } from '../../src/worker/container/exec.ts';
import { assertContainerPrerequisites } from '../../src/worker/container/prerequisites.ts';
import { runCliProcess, ROOT, spawnDaemon, startCluster, type Cluster, type DaemonProcess } from '../kit/cluster.ts';
import { waitFor } from '../kit/wait-for.ts';

/**
 * The core scenario with `runtime: "container"`: the daemons as processes, a worker offering the
 * process and container runtimes at once, images built with `baton image build` and deployed with
 * `baton deploy --image`, invoked through the data plane. Root and crun, as in CI.
 */

let cluster: Cluster;
let restartedWorker: DaemonProcess | undefined;
const workerId = `ctr-${randomBytes(3).toString('hex')}`;
const subnetThird = randomInt(1, 250);
const workerFlags = [
  '--worker-id', workerId, '--runtimes', '["process","container"]', '--container-subnet', `10.213.${subnetThird}.0/24`, '--ready-timeout-ms', '20000',
];
const cli = (...args: string[]) => runCliProcess([...args, '--url', cluster.cpUrl], { BATON_DATAPLANE_URL: cluster.dpUrl });
const images: Record<string, string> = {};

async function api<T>(path: string): Promise<{ status: number; body: T }> {
  const res = await fetch(`${cluster.cpUrl}${path}`);
  return { status: res.status, body: await res.json() as T };
}

async function invoke(name: string, path = '/'): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${cluster.dpUrl}/fn/${name}${path}`);
  const text = await res.text();
  return { status: res.status, body: text.length === 0 ? {} : JSON.parse(text) as Record<string, unknown> };
}

interface SandboxView { sandboxId: string; state: string; generation: number; address?: string }
const sandboxesOf = async (name: string) => (await api<{ sandboxes: SandboxView[] }>(`/v1/functions/${name}/sandboxes`)).body.sandboxes;

async function buildImage(name: string, dir: string, flags: string[]): Promise<string> {
  const file = join(cluster.dir, `${name}.tar.gz`);
  const built = await runCliProcess(['image', 'build', dir, '-o', file, ...flags]);
  assert.equal(built.code, 0, built.stderr);
  return file;
}

/** What of this worker is on the host: containers in its crun state, its netns, its cgroups (by its tag, as the worker names them). */
async function hostObjects(): Promise<{ containers: string[]; netns: string[]; cgroupDirs: string[] }> {
  const dataDir = resolve(join(cluster.dir, 'worker'));
  const tag = createHash('sha256').update(`${workerId}\0${dataDir}`).digest('hex').slice(0, 6);
  const stateRoot = join(dataDir, 'container', 'crun');
  const containers = (await execTool('crun', ['--root', stateRoot, 'list', '--quiet']).catch(() => '')).split('\n').filter((l) => l.trim() !== '');
  const netns = (await execTool('ip', ['netns', 'list'])).split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(`baton-${tag}-`));
  const self = await readFile('/proc/self/cgroup', 'utf8');
  const memoryPath = /^\d+:memory:(.*)$/m.exec(self)?.[1] ?? '/';
  const listing = await execTool('find', [join('/sys/fs/cgroup/memory', memoryPath), '-maxdepth', '2', '-type', 'd', '-path', `*baton-${tag}/*`]).catch(() => '');
  return { containers, netns, cgroupDirs: listing.split('\n').filter((l) => l !== '') };
}

before(async () => {
  await assertContainerPrerequisites(execTool, 'crun');
  // Heartbeats may be late on a machine this test keeps busy (images of ~40 MB are built and unpacked).
  cluster = await startCluster({ worker: workerFlags, controlplane: ['--heartbeat-miss-limit', '15'] });
  // One image for every function (it greets, sleeps on ?ms=, allocates on /oom): one build, one unpack.
  const probe = await buildImage('probe', join(ROOT, 'test/fixtures/container-probe'), ['--base', 'node', '--handler', 'index.handler']);
  images['hello'] = probe;
  images['slow'] = probe;
  images['probe'] = probe;
});

after(async () => {
  await restartedWorker?.stop();
  await cluster?.stop();
});

describe('container functions', () => {
  it('serves a cold then a warm invocation from the same container, beside a process function on the same worker', async () => {
    const deployed = await cli('deploy', 'hello-ctr', '--image', images['hello'] as string, '--runtime', 'container');
    assert.equal(deployed.code, 0, deployed.stderr);
    const cold = await invoke('hello-ctr', '/greet');
    assert.equal(cold.status, 200, JSON.stringify(cold.body));
    const warm = await invoke('hello-ctr', '/greet');
    assert.equal(warm.body['sandboxId'], cold.body['sandboxId']);
    // In a user namespace of its own (the worker's default where the kernel allows): it is uid
    // 64000 in there, host uid 164000 outside.
    const probe = await invoke('hello-ctr', `/probe?file=/nonexistent&port=9&bridge=10.213.${subnetThird}.1`);
    assert.equal(probe.body['uid'], 64_000);
    assert.deepEqual(probe.body['uidMap'], [0, 100_000, 65_536]);
    // The sandbox that served (the autoscaler may have started another meanwhile, not yet addressed).
    const sandboxes = await sandboxesOf('hello-ctr');
    const sandbox = sandboxes.find((s) => s.sandboxId === cold.body['sandboxId']);
    assert.match(sandbox?.address ?? '', new RegExp(`^10\\.213\\.${subnetThird}\\.\\d+:8080$`), `served from its own network namespace (sandboxes: ${JSON.stringify(sandboxes)})`);
    const processFn = await cli('deploy', 'hello-proc', '--dir', join(ROOT, 'examples/hello'), '--handler', 'index.handler');
    assert.equal(processFn.code, 0, processFn.stderr);
    assert.equal((await invoke('hello-proc')).status, 200);
    const described = await api<{ recentColdStarts: { sandboxId: string }[] }>('/v1/functions/hello-ctr');
    assert.ok(described.body.recentColdStarts.some((c) => c.sandboxId === cold.body['sandboxId']));
    const metrics = await (await fetch(`${cluster.workerUrl}/metrics`)).text();
    for (const phase of ['unpack', 'bundle', 'network', 'start', 'ready']) {
      assert.match(metrics, new RegExp(`baton_worker_cold_start_seconds_count\\{phase="${phase}"\\} [1-9]`), phase);
    }
  });

  it('scales to N containers under N concurrent slow invocations, then back to zero', async () => {
    const n = 3;
    const manifest = join(cluster.dir, 'slow.yaml');
    await writeFile(manifest, [
      'name: slow-ctr', 'runtime: container', 'handler: index.handler', 'concurrency: 1',
      `scaling: { maxScale: ${n}, targetUtilization: 1, stableWindowMs: 1000, panicWindowMs: 500, scaleToZeroGraceMs: 300 }`,
    ].join('\n'));
    const deployed = await cli('deploy', '-f', manifest, '--image', images['slow'] as string);
    assert.equal(deployed.code, 0, deployed.stderr);
    const results = await Promise.all(Array.from({ length: n }, () => invoke('slow-ctr', '/?ms=2500')));
    for (const r of results) assert.equal(r.status, 200);
    assert.equal(new Set(results.map((r) => r.body['sandboxId'])).size, n);
    await waitFor(async () => (await sandboxesOf('slow-ctr')).length === 0, { timeoutMs: 30_000, message: 'slow-ctr to scale to zero' });
    const ids = results.map((r) => String(r.body['sandboxId']).replace(/[^A-Za-z0-9_.-]/g, '_'));
    await waitFor(async () => {
      const { containers } = await hostObjects();
      return ids.every((id) => !containers.includes(id));
    }, { timeoutMs: 15_000, message: `slow-ctr's containers (${ids.join(', ')}) to go; left: ${(await hostObjects()).containers.join(', ')}` });
  });

  it('re-deploys a container function without failing a request', async () => {
    const deploy = (version: string) => cli('deploy', 'echo-ctr', '--image', images['hello'] as string, '--runtime', 'container', '--min-scale', '2', '--env', `GREETING_VERSION=${version}`);
    assert.equal((await deploy('v1')).code, 0);
    await waitFor(async () => (await sandboxesOf('echo-ctr')).filter((s) => s.state === 'ready').length === 2, { timeoutMs: 30_000, message: 'two ready sandboxes' });
    let isLoading = true;
    const statuses: number[] = [];
    const versions = new Set<unknown>();
    const load = (async () => {
      while (isLoading) {
        for (const r of await Promise.all([invoke('echo-ctr'), invoke('echo-ctr')])) {
          statuses.push(r.status);
          versions.add(r.body['version']);
        }
      }
    })();
    assert.equal((await deploy('v2')).code, 0);
    await waitFor(async () => {
      const sandboxes = await sandboxesOf('echo-ctr');
      return sandboxes.length === 2 && sandboxes.every((s) => s.generation === 2 && s.state === 'ready');
    }, { timeoutMs: 30_000, message: 'only generation-2 sandboxes' });
    const last = await invoke('echo-ctr');
    isLoading = false;
    await load;
    assert.equal(last.body['version'], 'v2');
    assert.deepEqual([...new Set(statuses)], [200], 'every invocation during the update succeeded');
    assert.ok(versions.has('v1') && versions.has('v2'));
    assert.equal((await cli('delete', 'echo-ctr')).code, 0);
  });

  it('reports an OOM-killed container with reason oom in describe and in the worker metrics', async () => {
    // 128 MiB: Node starts well inside it even on a busy machine, and /oom allocates without end.
    const deployed = await cli('deploy', 'oom-ctr', '--image', images['probe'] as string, '--runtime', 'container', '--memory', '128');
    assert.equal(deployed.code, 0, deployed.stderr);
    const first = await invoke('oom-ctr', '/');
    assert.equal(first.status, 200, JSON.stringify(first.body));
    await invoke('oom-ctr', '/oom');
    await waitFor(async () => (await api<{ recentFailures: { reason: string }[] }>('/v1/functions/oom-ctr')).body.recentFailures.some((f) => f.reason === 'oom'),
      { timeoutMs: 15_000, message: 'an oom failure in describe' });
    const metrics = await (await fetch(`${cluster.workerUrl}/metrics`)).text();
    assert.match(metrics, /baton_worker_sandbox_failures_total\{reason="oom",runtime="container"\} [1-9]/);
    const described = await cli('describe', 'oom-ctr');
    assert.match(described.stdout, /recent sandbox failures[\s\S]*oom/);
    assert.equal((await cli('delete', 'oom-ctr')).code, 0);
  });

  it('baton loadgen run --deploy --runtime container replays into containers of the trace function\'s image, and removes them', async () => {
    const out = join(cluster.dir, 'loadgen-ctr.csv');
    const result = await cli('loadgen', 'run', '--rps', '4', '--seconds', '2', '--exec-ms', '10', '--function', 'lg-ctr', '--deploy', '--runtime', 'container',
      '--target', cluster.dpUrl, '--timeout-ms', '30000', '--format', 'baton', '-o', out);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /deployed 1 functions \(runtime container\)/);
    const { records } = parseResultsCsv(await readFile(out, 'utf8'));
    assert.equal(records.length, 8);
    for (let i = 0; i < records.length; i++) {
      assert.equal(records.status[i], 200, `row ${i}: ${records.errorCodes[records.errorIndex[i] ?? 0]}`);
      assert.ok((records.execUs[i] ?? 0) >= 10_000, `row ${i}: ExecutionTime ${records.execUs[i]}`);
    }
    assert.match(result.stderr, /deleted 1 functions/);
    assert.equal((await api('/v1/functions/lg-ctr')).status, 404);
  });

  it('a worker restarted after kill -9 leaves no container, namespace or cgroup of the previous run', async () => {
    await waitFor(async () => (await hostObjects()).containers.length >= 1, { message: 'a running container' });
    const before = await hostObjects();
    await cluster.worker.stop('SIGKILL');
    const stillThere = await hostObjects();
    assert.ok(stillThere.containers.length >= 1, 'the kill left the containers running');
    restartedWorker = spawnDaemon('worker', ['--port', '0', '--data-dir', join(cluster.dir, 'worker'), '--control-plane-url', cluster.cpUrl, '--heartbeat-interval-ms', '200', ...workerFlags]);
    await restartedWorker.waitForLog((l) => l['msg'] === 'worker started', 30_000);
    const now = await hostObjects();
    assert.deepEqual(now.containers, [], 'no container of the previous run');
    for (const name of before.netns) assert.ok(!now.netns.includes(name), `namespace ${name} of the previous run is gone`);
    for (const dir of before.cgroupDirs) assert.ok(!now.cgroupDirs.includes(dir), `cgroup ${dir} of the previous run is gone`);
    // The cluster works on: hello-ctr gets a new container on the restarted worker.
    let last: unknown;
    await waitFor(async () => {
      const res = await invoke('hello-ctr');
      last = res;
      return res.status === 200;
    }, { timeoutMs: 30_000, message: 'hello-ctr served again' }).catch(async (err: unknown) => {
      throw new Error(`${err instanceof Error ? err.message : String(err)}; last answer ${JSON.stringify(last)}; sandboxes ${JSON.stringify(await sandboxesOf('hello-ctr'))}`);
    });
  });
});
