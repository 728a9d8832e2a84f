import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { memberHeaders, startCluster, runCliProcess, ROOT, type Cluster } from '../kit/cluster.ts';
import { isAlive } from '../kit/process.ts';
import { waitFor } from '../kit/wait-for.ts';

/**
 * The whole system as a user runs it: the three daemons as processes, functions as real
 * processes, driven through the `baton` CLI and HTTP.
 */

let cluster: Cluster;
const cli = (...args: string[]) => runCliProcess([...args, '--url', cluster.cpUrl], { BATON_DATAPLANE_URL: cluster.dpUrl });

async function api<T>(path: string, init?: RequestInit): Promise<{ status: number; body: T }> {
  const res = await fetch(`${cluster.cpUrl}${path}`, init);
  return { status: res.status, body: await res.json() as T };
}

async function invoke(name: string, path = '/', init?: RequestInit): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${cluster.dpUrl}/fn/${name}${path}`, init);
  const text = await res.text();
  return { status: res.status, body: text.length === 0 ? {} : JSON.parse(text) as Record<string, unknown> };
}

interface SandboxView { sandboxId: string; state: string; generation: number; workerId: string }
const sandboxesOf = async (name: string) => (await api<{ sandboxes: SandboxView[] }>(`/v1/functions/${name}/sandboxes`)).body.sandboxes;
const workerSandboxes = async () => (await (await fetch(`${cluster.workerUrl}/internal/v1/sandboxes`, { headers: memberHeaders() })).json() as { sandboxes: { sandboxId: string; function: string; state: string; pid?: number }[] }).sandboxes;

/**
 * Deploys a handler function of its own for a test (examples/hello's code), so that no test
 * depends on what another deployed before it: each can run alone (`--test-name-pattern`).
 */
async function deployHello(name: string, ...extra: string[]): Promise<void> {
  const res = await cli('deploy', name, '--dir', join(ROOT, 'examples/hello'), '--handler', 'index.handler', ...extra);
  assert.equal(res.code, 0, res.stderr);
}

before(async () => {
  cluster = await startCluster();
});

after(async () => {
  await cluster?.stop();
});

describe('deploy and invoke', () => {
  it('serves a cold then a warm invocation of hello, from the same sandbox', async () => {
    const deployed = await cli('deploy', '-f', join(ROOT, 'examples/hello/baton.yaml'));
    assert.equal(deployed.code, 0, deployed.stderr);
    const cold = await invoke('hello', '/greet?x=1');
    assert.equal(cold.status, 200);
    const warm = await invoke('hello', '/greet?x=2');
    assert.equal(warm.status, 200);
    assert.equal(typeof cold.body['sandboxId'], 'string');
    assert.equal(warm.body['sandboxId'], cold.body['sandboxId']);
    const described = await api<{ recentColdStarts: { sandboxId: string; breakdown: Record<string, number> }[] }>('/v1/functions/hello');
    const coldStart = described.body.recentColdStarts.find((c) => c.sandboxId === cold.body['sandboxId']);
    assert.ok(coldStart !== undefined, 'the first invocation was served by a sandbox created for it');
    for (const phase of ['fetchMs', 'startMs', 'readyMs', 'totalMs', 'controlPlaneMs']) assert.ok((coldStart.breakdown[phase] ?? -1) >= 0, phase);
  });

  it('routes by Host header as well as by path prefix', async () => {
    await deployHello('by-host');
    assert.equal((await invoke('by-host', '/greet')).status, 200);
    // fetch() may not set Host; node:http can.
    const { status, body } = await new Promise<{ status: number; body: string }>((resolveRes, reject) => {
      const req = request(`${cluster.dpUrl}/greet`, { headers: { host: 'by-host.functions.local' } }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => { text += d.toString(); });
        res.on('end', () => resolveRes({ status: res.statusCode ?? 0, body: text }));
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(status, 200);
    assert.equal((JSON.parse(body) as Record<string, unknown>)['path'], '/greet');
  });

  it('answers an unknown function with 404 ERR_FUNCTION_NOT_FOUND', async () => {
    const res = await invoke('no-such-fn');
    assert.equal(res.status, 404);
    assert.equal((res.body['error'] as { code: string }).code, 'ERR_FUNCTION_NOT_FOUND');
  });

  it('refuses an invalid spec with 400 ERR_INVALID_SPEC naming the field, and changes nothing', async () => {
    const before = (await api<{ functions: unknown[] }>('/v1/functions')).body.functions.length;
    const res = await api<{ error: { code: string; details: { issues: { field: string }[] } } }>('/v1/functions', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Bad_Name', artifact: 'sha256:00', handler: 'index.handler', concurrency: 0 }),
    });
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, 'ERR_INVALID_SPEC');
    const fields = res.body.error.details.issues.map((i) => i.field);
    assert.ok(fields.includes('name') && fields.includes('concurrency'), JSON.stringify(fields));
    assert.equal((await api<{ functions: unknown[] }>('/v1/functions')).body.functions.length, before);
  });

  it('refuses at once with 503 ERR_NO_CAPACITY when no worker has room for the function', async () => {
    const deployed = await cli('deploy', 'huge', '--dir', join(ROOT, 'examples/hello'), '--handler', 'index.handler', '--memory', '1048576');
    assert.equal(deployed.code, 0, deployed.stderr);
    const res = await invoke('huge');
    assert.equal(res.status, 503);
    assert.equal((res.body['error'] as { code: string }).code, 'ERR_NO_CAPACITY');
    assert.equal((await cli('delete', 'huge')).code, 0);
  });

  it('runs a Python command function', async () => {
    const deployed = await cli('deploy', '-f', join(ROOT, 'examples/python-echo/baton.yaml'));
    assert.equal(deployed.code, 0, deployed.stderr);
    const res = await invoke('python-echo', '/echo', { method: 'POST', body: 'abc' });
    assert.equal(res.status, 200);
    assert.equal(res.body['method'], 'POST');
  });
});

describe('autoscaling', () => {
  it('scales to N sandboxes under N concurrent slow invocations, then drains back to zero', async () => {
    const n = 4;
    const manifest = join(cluster.dir, 'slow.yaml');
    await writeFile(manifest, [
      'name: slow', `dir: ${join(ROOT, 'examples/slow')}`, 'handler: index.handler', 'concurrency: 1',
      `scaling: { maxScale: ${n}, targetUtilization: 1, stableWindowMs: 1000, panicWindowMs: 500, scaleToZeroGraceMs: 300 }`,
    ].join('\n'));
    const deployed = await cli('deploy', '-f', manifest);
    assert.equal(deployed.code, 0, deployed.stderr);
    const results = await Promise.all(Array.from({ length: n }, () => invoke('slow', '/?ms=2500')));
    for (const r of results) assert.equal(r.status, 200);
    const used = new Set(results.map((r) => r.body['sandboxId']));
    assert.equal(used.size, n, `each of ${n} concurrent invocations ran in its own sandbox`);
    await waitFor(async () => (await sandboxesOf('slow')).length === 0, { timeoutMs: 20_000, message: 'slow to scale to zero' });
    await waitFor(async () => (await workerSandboxes()).every((s) => s.function !== 'slow'), { timeoutMs: 10_000, message: 'worker to delete slow sandboxes' });
  });
});

describe('lifecycle', () => {
  const deployEcho = async (version: string, extra: string[] = []) => {
    const res = await cli('deploy', 'echo', '--dir', join(ROOT, 'examples/hello'), '--handler', 'index.handler', '--env', `GREETING_VERSION=${version}`, ...extra);
    assert.equal(res.code, 0, res.stderr);
  };

  it('re-deploys to new code without failing a request', async () => {
    await deployEcho('v1', ['--min-scale', '2']);
    await waitFor(async () => (await sandboxesOf('echo')).filter((s) => s.state === 'ready').length === 2, { message: 'two ready sandboxes' });
    let isLoading = true;
    const statuses: number[] = [];
    const versions = new Set<unknown>();
    const load = (async () => {
      while (isLoading) {
        const results = await Promise.all([invoke('echo'), invoke('echo')]);
        for (const r of results) {
          statuses.push(r.status);
          versions.add(r.body['version']);
        }
      }
    })();
    await deployEcho('v2', ['--min-scale', '2']);
    await waitFor(async () => {
      const sandboxes = await sandboxesOf('echo');
      return sandboxes.length === 2 && sandboxes.every((s) => s.generation === 2 && s.state === 'ready');
    }, { timeoutMs: 20_000, message: 'only generation-2 sandboxes' });
    const after = await invoke('echo');
    isLoading = false;
    await load;
    assert.equal(after.body['version'], 'v2');
    assert.ok(statuses.length > 0);
    assert.deepEqual([...new Set(statuses)], [200], 'every invocation during the update succeeded');
    assert.ok(versions.has('v1') && versions.has('v2'));
  });

  it('replaces a sandbox whose process is killed', async () => {
    await deployHello('crashy', '--min-scale', '2');
    await waitFor(async () => (await sandboxesOf('crashy')).filter((s) => s.state === 'ready').length === 2, { message: 'two ready sandboxes' });
    const routed = (await sandboxesOf('crashy')).filter((s) => s.state === 'ready').map((s) => s.sandboxId);
    const victim = (await workerSandboxes()).find((s) => s.sandboxId === routed[0]);
    assert.ok(victim?.pid !== undefined, 'a ready sandbox with a process');
    process.kill(victim.pid, 'SIGKILL');
    await waitFor(async () => {
      const now = await sandboxesOf('crashy');
      return now.length === 2 && now.every((s) => s.state === 'ready') && !now.some((s) => s.sandboxId === victim.sandboxId);
    }, { timeoutMs: 15_000, message: 'the killed sandbox to be replaced' });
    assert.equal((await invoke('crashy')).status, 200);
  });

  it('deletes a function with every one of its sandboxes', async () => {
    await deployHello('doomed', '--min-scale', '2');
    await waitFor(async () => (await sandboxesOf('doomed')).filter((s) => s.state === 'ready').length === 2, { message: 'two ready sandboxes' });
    const routed = new Set((await sandboxesOf('doomed')).map((s) => s.sandboxId));
    assert.equal(routed.size, 2);
    const pids = (await workerSandboxes()).filter((s) => s.function === 'doomed' && s.pid !== undefined).map((s) => s.pid as number);
    assert.ok(pids.length >= 2);
    const res = await cli('delete', 'doomed');
    assert.equal(res.code, 0, res.stderr);
    assert.equal((await api('/v1/functions/doomed')).status, 404);
    await waitFor(async () => (await workerSandboxes()).every((s) => s.function !== 'doomed'), { message: 'worker to drop the sandboxes' });
    await waitFor(() => pids.every((pid) => !isAlive(pid)), { message: 'sandbox processes to exit' });
    assert.equal((await invoke('doomed')).status, 404);
  });
});

describe('failures', () => {
  it('keeps acknowledged functions and warm invocations across a control-plane kill -9, and rebuilds its sandboxes from the worker', async () => {
    await deployHello('survivor');
    await deployHello('acknowledged', '--min-scale', '0');
    const first = await invoke('survivor');
    assert.equal(first.status, 200);
    await cluster.controlplane.stop('SIGKILL');
    // The control plane is gone: warm invocations still flow through the data plane.
    const duringOutage = await invoke('survivor');
    assert.equal(duringOutage.status, 200);
    assert.equal(duringOutage.body['sandboxId'], first.body['sandboxId']);
    await cluster.restartControlPlane();
    const functions = await waitFor(async () => (await api<{ functions: { spec: { name: string } }[] }>('/v1/functions')).body.functions.map((f) => f.spec.name));
    assert.ok(functions.includes('survivor') && functions.includes('acknowledged'), JSON.stringify(functions));
    await waitFor(async () => (await sandboxesOf('survivor')).some((s) => s.sandboxId === first.body['sandboxId'] && s.state === 'ready'),
      { timeoutMs: 15_000, message: 'the sandbox to be adopted from the worker' });
    const afterRestart = await invoke('survivor');
    assert.equal(afterRestart.status, 200);
  });

  it('withdraws the sandboxes of a worker that stops heartbeating, and takes it back when it returns', async () => {
    await deployHello('steady');
    assert.equal((await invoke('steady')).status, 200);
    const pid = cluster.worker.child.pid as number;
    process.kill(pid, 'SIGSTOP');
    try {
      await waitFor(async () => (await api<{ workers: { state: string }[] }>('/v1/workers')).body.workers.every((w) => w.state === 'unschedulable'),
        { timeoutMs: 10_000, message: 'worker to be unschedulable' });
      assert.equal((await sandboxesOf('steady')).length, 0);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await waitFor(async () => (await api<{ workers: { state: string }[] }>('/v1/workers')).body.workers.every((w) => w.state === 'ready'),
      { timeoutMs: 10_000, message: 'worker to register again' });
    assert.equal((await invoke('steady')).status, 200);
  });
});

describe('consistency', () => {
  it('carries the calls between the daemons on RPC streams: the worker and the data plane each hold one to the control plane', async () => {
    await waitFor(async () => {
      const text = await (await fetch(`${cluster.cpUrl}/metrics`)).text();
      return /^baton_controlplane_rpc_connections 2$/m.test(text);
    }, { timeoutMs: 5_000, message: 'two RPC connections to the control plane' });
  });

  it('ends with the same sandboxes in the control plane, the data plane and the worker', async () => {
    await deployHello('consistent');
    assert.equal((await invoke('consistent')).status, 200);
    let last: unknown;
    await waitFor(async () => {
      const functions = (await api<{ functions: { spec: { name: string } }[] }>('/v1/functions')).body.functions.map((f) => f.spec.name);
      const cp = new Set<string>();
      for (const name of functions) for (const s of await sandboxesOf(name)) if (s.state !== 'starting') cp.add(s.sandboxId);
      const dpInternal = (await (await fetch(`${cluster.cpUrl}/v1/dataplanes`)).json() as { dataplanes: { url: string }[] }).dataplanes[0]?.url;
      const dpView = await (await fetch(`${dpInternal}/internal/v1/routing`, { headers: memberHeaders() })).json() as { endpoints: { sandboxId: string }[] };
      const dp = new Set(dpView.endpoints.map((e) => e.sandboxId));
      const worker = new Set((await workerSandboxes()).map((s) => s.sandboxId));
      const same = (a: Set<string>, b: Set<string>) => a.size === b.size && [...a].every((x) => b.has(x));
      last = { cp: [...cp].sort(), dp: [...dp].sort(), worker: [...worker].sort() };
      return cp.size > 0 && same(cp, dp) && same(cp, worker);
    }, { timeoutMs: 10_000, message: 'control plane, data plane and worker to agree on the sandboxes' }).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}: ${JSON.stringify(last)}`);
    });
  });
});
