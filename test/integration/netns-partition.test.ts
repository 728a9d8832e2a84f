import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { memberHeaders, spawnDaemon, type DaemonProcess } from '../kit/cluster.ts';
import { canUseNetns, createNetwork, type TestNetwork } from '../kit/netns.ts';
import { waitFor } from '../kit/wait-for.ts';

const run = promisify(execFile);
const skip = canUseNetns() ? false : 'needs root to create network namespaces';

test('the namespace harness: a host per namespace on a bridge, addresses only inside them, no default route; a cut link isolates a host until healed', { skip }, async (t) => {
  const net = await createNetwork(['a', 'b']);
  t.after(() => net.destroy());
  const a = net.host('a');
  const b = net.host('b');
  for (const host of [a, b]) {
    const { stdout } = await run('/usr/sbin/ip', ['-n', host.ns, 'route', 'show', 'default']);
    assert.equal(stdout.trim(), '', `no default route in ${host.ns}`);
  }
  const { stdout: own } = await run('/usr/sbin/ip', ['-o', 'addr', 'show']);
  assert.ok(!own.includes(a.address.split('.').slice(0, 3).join('.') + '.'), 'the test\'s own namespace has no address on the test network');
  const cp = spawnDaemon('controlplane', ['--host', b.address, '--port', '9090', '--data-dir', `/tmp/${b.ns}-cp`, '--log-level', 'info', '--auth-mode', 'none'], { wrap: b.wrap });
  t.after(() => cp.stop('SIGKILL'));
  await cp.waitForLog((l) => l['msg'] === 'control plane listening');
  const client = net.client('a');
  const healthz = `http://${b.address}:9090/healthz`;
  assert.equal((await client.request(healthz)).status, 200, 'a reaches b over the bridge');
  await net.cut('b');
  await assert.rejects(client.request(healthz, { timeoutMs: 500 }), /Timeout|EHOSTUNREACH|ECONNREFUSED/);
  await net.heal('b');
  await waitFor(async () => (await client.request(healthz, { timeoutMs: 500 })).status === 200, { message: 'b reachable again after the heal' });
  await run('rm', ['-rf', `/tmp/${b.ns}-cp`]);
});

interface SandboxRow { sandboxId: string; workerId: string; state: string }

test('a partitioned worker under steady load is detected and its sandboxes replaced on the other, every failure coded; after healing the views converge without duplicates', { skip }, async (t) => {
  const net: TestNetwork = await createNetwork(['cp', 'dp', 'w1', 'w2']);
  const daemons: DaemonProcess[] = [];
  t.after(async () => {
    await Promise.all(daemons.map((d) => d.stop('SIGKILL')));
    await net.destroy();
    await run('rm', ['-rf', `/tmp/${net.host('cp').ns}-data`]);
  });
  const dataDir = `/tmp/${net.host('cp').ns}-data`;
  const cpHost = net.host('cp');
  const cpUrl = `http://${cpHost.address}:9090`;
  const cp = spawnDaemon('controlplane', ['--host', cpHost.address, '--port', '9090', '--data-dir', `${dataDir}/cp`,
    '--heartbeat-interval-ms', '200', '--heartbeat-miss-limit', '3', '--autoscaler-bucket-ms', '100', '--autoscaler-tick-ms', '200', '--auth-mode', 'none'], { wrap: cpHost.wrap });
  daemons.push(cp);
  await cp.waitForLog((l) => l['msg'] === 'control plane listening');
  for (const name of ['w1', 'w2']) {
    const host = net.host(name);
    daemons.push(spawnDaemon('worker', ['--host', host.address, '--port', '10010', '--worker-id', name, '--runtime', 'emulated', '--sandbox-host', host.address,
      '--data-dir', `${dataDir}/${name}`, '--control-plane-url', cpUrl, '--heartbeat-interval-ms', '200'], { wrap: host.wrap }));
  }
  const dpHost = net.host('dp');
  daemons.push(spawnDaemon('dataplane', ['--host', dpHost.address, '--port', '8080', '--internal-port', '8081', '--dataplane-id', 'dp',
    '--control-plane-url', cpUrl, '--heartbeat-interval-ms', '200', '--demand-report-interval-ms', '100'], { wrap: dpHost.wrap }));
  // The test's client lives in the data plane's namespace; it reaches every host over the bridge.
  const client = net.client('dp');
  const api = <T>(path: string) => client.json<T>(`${cpUrl}${path}`);
  await waitFor(async () => (await api<{ workers: { state: string }[] }>('/v1/workers')).workers.filter((w) => w.state === 'ready').length === 2,
    { timeoutMs: 20_000, message: 'both workers registered' });
  await waitFor(async () => (await api<{ dataplanes: { state: string }[] }>('/v1/dataplanes')).dataplanes.some((d) => d.state === 'ready'),
    { timeoutMs: 20_000, message: 'the data plane registered' });
  const created = await client.request(`${cpUrl}/v1/functions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'f', runtime: 'emulated', timeoutMs: 3000, scaling: { minScale: 2, stableWindowMs: 2000, panicWindowMs: 1000 }, resources: { cpuMilli: 100, memoryMiB: 64 } }),
  });
  assert.equal(created.status, 201, created.body);
  const sandboxes = async () => (await api<{ sandboxes: SandboxRow[] }>('/v1/functions/f/sandboxes')).sandboxes;
  const ready = await waitFor(async () => {
    const rows = (await sandboxes()).filter((s) => s.state === 'ready');
    return rows.length === 2 && new Set(rows.map((s) => s.workerId)).size === 2 ? rows : undefined;
  }, { timeoutMs: 20_000, message: 'one ready sandbox of f on each worker' });
  const onW1 = ready.find((s) => s.workerId === 'w1')?.sandboxId as string;
  const invoke = () => client.request(`http://${dpHost.address}:8080/fn/f/`, { headers: { 'x-baton-exec-ms': '1' } });
  assert.equal((await invoke()).status, 200);

  // A steady load through the cut and the healing: 4 closed-loop lanes until the views converged.
  const tally = { sent: 0, ok: 0, failed: new Map<string, number>() };
  let isLoading = true;
  const outcomeOf = (res: { status: number; body: string }): string => {
    if (res.status === 200) return res.body === '' ? 'an empty 200' : 'ok';
    try {
      return (JSON.parse(res.body) as { error?: { code?: string } }).error?.code ?? `HTTP ${res.status} without a code`;
    } catch {
      return `HTTP ${res.status} without a code`;
    }
  };
  const lane = async (): Promise<void> => {
    while (isLoading) {
      const outcome = await invoke().then(outcomeOf, () => 'no answer within 10 s');
      tally.sent++;
      if (outcome === 'ok') tally.ok++;
      else tally.failed.set(outcome, (tally.failed.get(outcome) ?? 0) + 1);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const lanes = Promise.all(Array.from({ length: 4 }, lane));
  await new Promise((r) => setTimeout(r, 500));

  await net.cut('w1');
  await waitFor(async () => (await api<{ workers: { workerId: string; state: string }[] }>('/v1/workers')).workers.find((w) => w.workerId === 'w1')?.state === 'unschedulable',
    { timeoutMs: 10_000, message: 'w1 detected as failed' });
  const replaced = await waitFor(async () => {
    const rows = (await sandboxes()).filter((s) => s.state === 'ready');
    return rows.length === 2 && rows.every((s) => s.workerId === 'w2') ? rows : undefined;
  }, { timeoutMs: 15_000, message: 'f\'s capacity recreated on w2' });
  assert.ok(!replaced.some((s) => s.sandboxId === onW1));
  const routing = () => client.json<{ endpoints: { sandboxId: string }[] }>(`http://${dpHost.address}:8081/internal/v1/routing`, { headers: memberHeaders() });
  await waitFor(async () => !(await routing()).endpoints.some((e) => e.sandboxId === onW1), { message: 'w1\'s endpoint withdrawn from the data plane' });
  for (let i = 0; i < 10; i++) assert.equal((await invoke()).status, 200, 'invocations go on through w2');

  await net.heal('w1');
  await waitFor(async () => (await api<{ workers: { workerId: string; state: string }[] }>('/v1/workers')).workers.every((w) => w.state === 'ready'),
    { timeoutMs: 10_000, message: 'w1 back' });
  // The views converge: the control plane, the data plane and the workers hold the same sandboxes,
  // each once, and f is back at its minimum scale.
  await waitFor(async () => {
    const cpIds = (await sandboxes()).filter((s) => s.state !== 'starting').map((s) => s.sandboxId);
    const dpIds = (await routing()).endpoints.map((e) => e.sandboxId);
    const workerIds: string[] = [];
    for (const name of ['w1', 'w2']) {
      const listed = await client.json<{ sandboxes: { sandboxId: string }[] }>(`http://${net.host(name).address}:10010/internal/v1/sandboxes`, { headers: memberHeaders() });
      workerIds.push(...listed.sandboxes.map((s) => s.sandboxId));
    }
    const same = (a: string[], b: string[]) => a.length === b.length && new Set(a).size === a.length && [...a].sort().join() === [...b].sort().join();
    return cpIds.length === 2 && same(cpIds, dpIds) && same(cpIds, workerIds);
  }, { timeoutMs: 30_000, intervalMs: 200, message: 'control plane, data plane and workers to agree on two sandboxes of f, each once' });
  isLoading = false;
  await lanes;
  const failed = Object.fromEntries(tally.failed);
  console.log(`steady load through the cut link: sent ${tally.sent}, succeeded ${tally.ok}, failed ${JSON.stringify(failed)}`);
  assert.ok(tally.ok > 0 && tally.sent > 20, `the load ran: ${JSON.stringify(tally)}`);
  // Only invocations that were on w1's sandbox, or sent to it before its withdrawal, may fail, and
  // every one with a code: never a hang past the function's timeout, never an empty 200.
  for (const code of Object.keys(failed)) assert.ok(['ERR_FUNCTION_TIMEOUT', 'ERR_SANDBOX_FAILED'].includes(code), `failure ${code}: ${JSON.stringify(failed)}`);
  for (let i = 0; i < 10; i++) assert.equal((await invoke()).status, 200, 'served once the views converged');
});
