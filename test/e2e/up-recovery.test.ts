import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BatonClient } from '../../src/cli/client.ts';
import { startUp } from '../kit/up.ts';
import { waitFor } from '../kit/wait-for.ts';

/**
 * `kill -9` of the control plane under `baton up`: the cluster keeps serving and heals itself.
 * Warm invocations go on through the data plane during the outage, a cold start asked for during
 * it waits in the data plane's queue and is served once the supervisor has restarted the control
 * plane, which rebuilds its sandboxes from the workers.
 */
test('kill -9 of the control plane under baton up: zero failed warm invocations, it comes back by itself, rebuilds its sandboxes, serves the queued cold start', async (t) => {
  const up = await startUp(t, ['--runtime', 'emulated', '--workers', '2']);
  const cpUrl = `http://127.0.0.1:${9090 + up.offset}`;
  const dpUrl = `http://127.0.0.1:${8080 + up.offset}`;
  const client = new BatonClient({ url: cpUrl, dataplaneUrl: dpUrl, token: up.adminToken });
  t.after(() => client.close());
  await client.createFunction({ name: 'cold', runtime: 'emulated' });
  const invoke = async (fn: string): Promise<{ status: number; code?: string }> => {
    try {
      const res = await fetch(`${dpUrl}/fn/${fn}/`, { headers: { 'x-baton-exec-ms': '5' }, signal: AbortSignal.timeout(30_000) });
      const text = await res.text();
      return res.status === 200 ? { status: 200 } : { status: res.status, code: (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? 'no code' };
    } catch (err) {
      return { status: 0, code: (err as Error).name };
    }
  };
  assert.equal((await invoke('hello')).status, 200);
  const before = await client.listSandboxes('hello');
  assert.equal(before.length, 1);

  const cpPid = up.daemonPid('controlplane');
  assert.ok(cpPid !== undefined);
  process.kill(cpPid, 'SIGKILL');
  await waitFor(() => up.output.stderr.includes('exited on SIGKILL'), { message: 'the supervisor to see the control plane die' });
  // A cold start while the control plane is down: it waits in the data plane's queue.
  const queuedCold = invoke('cold');
  const warm = { sent: 0, ok: 0, failed: new Map<string, number>() };
  const isBack = async (): Promise<boolean> => {
    const pid = up.daemonPid('controlplane');
    if (pid === undefined || pid === cpPid) return false;
    try {
      return (await fetch(`${cpUrl}/healthz`, { signal: AbortSignal.timeout(1_000) })).ok;
    } catch {
      return false;
    }
  };
  let sentWhileDown = 0;
  await waitFor(async () => {
    const result = await invoke('hello');
    warm.sent++;
    if (result.status === 200) warm.ok++;
    else warm.failed.set(result.code ?? '?', (warm.failed.get(result.code ?? '?') ?? 0) + 1);
    const back = await isBack();
    if (!back) sentWhileDown++;
    return back;
  }, { timeoutMs: 30_000, intervalMs: 1, message: 'the control plane to be restarted by baton up' });
  process.stdout.write(`warm invocations during the outage: sent ${warm.sent} (${sentWhileDown} while no control plane answered), succeeded ${warm.ok}, failed ${JSON.stringify(Object.fromEntries(warm.failed))}\n`);
  assert.ok(sentWhileDown > 0, 'warm invocations were sent while no control plane answered');
  assert.equal(warm.ok, warm.sent, `failed warm invocations: ${JSON.stringify(Object.fromEntries(warm.failed))}`);
  assert.match(up.output.stderr, /controlplane restarted \(pid \d+, restart 1\)/);

  // The restarted control plane rebuilt its sandboxes from the workers: the same sandbox, no new one.
  await waitFor(async () => {
    const after = await client.listSandboxes('hello');
    return after.length === 1 && after[0]?.sandboxId === before[0]?.sandboxId && after[0]?.state === 'ready';
  }, { timeoutMs: 15_000, message: 'hello\'s sandbox to be rebuilt from the workers' });
  const cold = await queuedCold;
  assert.deepEqual(cold, { status: 200 }, 'the cold start queued during the outage was served after the restart');
  // And a cold start of a function deployed after the restart.
  await client.createFunction({ name: 'after', runtime: 'emulated' });
  assert.deepEqual(await invoke('after'), { status: 200 });
  assert.equal(await up.interrupt(), 0, up.output.stderr.slice(-1000));
});
