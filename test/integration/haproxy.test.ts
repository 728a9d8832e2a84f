import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BatonClient } from '../../src/cli/client.ts';
import { runCliProcess, spawnDataplane, startCluster, type DaemonProcess } from '../kit/cluster.ts';
import { startHaproxy, waitStablyUp } from '../kit/haproxy.ts';
import { freePort } from '../kit/redis.ts';
import { waitFor } from '../kit/wait-for.ts';

/**
 * Two data planes behind a real HAProxy configured by `baton haproxy-config`: one that dies is
 * taken out while traffic goes on through the other; one that returns is put back and serves
 * again; a rolling restart (SIGTERM, graceful) of both under load loses no invocation.
 */
test('two data planes behind HAProxy: kill one, traffic continues; bring it back, it serves again; a rolling restart under load loses nothing', async (t) => {
  const cluster = await startCluster({ worker: ['--runtime', 'emulated'] });
  const dpPorts = [await freePort(), await freePort()];
  const internalPorts = [await freePort(), await freePort()];
  const startDp = (i: number): DaemonProcess => spawnDataplane({ dataplaneId: `dp-${i}`, controlPlaneUrls: [cluster.cpUrl], port: dpPorts[i] as number, internalPort: internalPorts[i] as number });
  const dps: DaemonProcess[] = [startDp(0), startDp(1)];
  let haproxy: Awaited<ReturnType<typeof startHaproxy>> | undefined;
  t.after(async () => {
    await haproxy?.stop();
    await Promise.all(dps.map((d) => d.stop('SIGKILL')));
    await cluster.stop();
  });
  const client = new BatonClient({ url: cluster.cpUrl });
  t.after(() => client.close());
  await waitFor(async () => (await client.listDataplanes()).filter((d) => d.dataplaneId.startsWith('dp-') && d.state === 'ready').length === 2,
    { timeoutMs: 20_000, message: 'both data planes registered' });
  await client.createFunction({ name: 'f', runtime: 'emulated', scaling: { minScale: 2 } });

  const bind = `127.0.0.1:${await freePort()}`;
  const stats = `127.0.0.1:${await freePort()}`;
  const generated = await runCliProcess(['haproxy-config', '--bind', bind, '--stats', stats, '--check-interval-ms', '200',
    '--dataplane', `127.0.0.1:${dpPorts[0]}`, '--dataplane', `127.0.0.1:${dpPorts[1]}`]);
  assert.equal(generated.code, 0, generated.stderr);
  haproxy = await startHaproxy(generated.stdout, `http://${stats}`);
  const running = haproxy;
  const serverFor = (port: number) => (port === dpPorts[0] ? 'dp1' : 'dp2');
  await waitFor(async () => (await running.servers()).every((s) => s.status === 'UP'), { timeoutMs: 20_000, message: 'both data planes UP in HAProxy' });

  const failures = new Map<string, number>();
  let sent = 0;
  const invoke = async (): Promise<boolean> => {
    sent++;
    try {
      const res = await fetch(`http://${bind}/fn/f/`, { headers: { 'x-baton-exec-ms': '2' }, signal: AbortSignal.timeout(20_000) });
      const text = await res.text();
      if (res.status === 200) return true;
      const code = (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? `HTTP ${res.status} without a code`;
      failures.set(code, (failures.get(code) ?? 0) + 1);
    } catch (err) {
      failures.set((err as Error).name, (failures.get((err as Error).name) ?? 0) + 1);
    }
    return false;
  };
  await waitFor(invoke, { timeoutMs: 15_000, message: 'the first invocation through HAProxy' });
  failures.clear();
  sent = 0;
  for (let i = 0; i < 20; i++) assert.ok(await invoke());
  // f sticks to one data plane (consistent hashing on the function).
  const before = await running.servers();
  const serving = before.filter((s) => s.total > 0);
  assert.equal(serving.length, 1, `one data plane serves f: ${JSON.stringify(before)}`);
  const victim = serving[0]?.name === 'dp1' ? 0 : 1;
  assert.equal(serverFor(dpPorts[victim] as number), serving[0]?.name);

  // kill -9 of the data plane that serves f: the next invocations go to the other one.
  await dps[victim]?.stop('SIGKILL');
  for (let i = 0; i < 20; i++) await invoke();
  await waitFor(async () => (await running.servers()).find((s) => s.name === serving[0]?.name)?.status.startsWith('DOWN'), { timeoutMs: 20_000, message: 'the killed data plane DOWN' });
  for (let i = 0; i < 20; i++) await invoke();
  assert.deepEqual(Object.fromEntries(failures), {}, 'no invocation failed while a data plane was killed');

  // It comes back: HAProxy puts it back and f returns to it.
  dps[victim] = startDp(victim);
  await waitFor(async () => (await running.servers()).every((s) => s.status === 'UP'), { timeoutMs: 30_000, message: 'the returned data plane UP again' });
  const returnedBefore = (await running.servers()).find((s) => s.name === serving[0]?.name)?.total ?? 0;
  await waitFor(async () => {
    await invoke();
    return ((await running.servers()).find((s) => s.name === serving[0]?.name)?.total ?? 0) > returnedBefore;
  }, { timeoutMs: 20_000, message: 'the returned data plane to serve f again' });
  for (let i = 0; i < 10; i++) await invoke();
  assert.deepEqual(Object.fromEntries(failures), {}, 'it served once back: its routing view came with its registration');

  // Rolling restart under load: four concurrent clients while each data plane in turn gets SIGTERM
  // (stop accepting, 503 ERR_SHUTTING_DOWN, drain, exit) and is started again.
  sent = 0;
  let isLoading = true;
  const clients = Array.from({ length: 4 }, async () => {
    while (isLoading) await invoke();
  });
  try {
    for (const i of [0, 1]) {
      await dps[i]?.stop('SIGTERM');
      dps[i] = startDp(i);
      // As an operator rolls: the restarted data plane serves (its routing view came with its
      // registration), and HAProxy has had it UP for five check intervals — a check that failed
      // during the restart may mark it DOWN only now, and the next one must not be stopped then.
      await waitFor(async () => {
        const res = await fetch(`http://127.0.0.1:${dpPorts[i]}/fn/f/`, { signal: AbortSignal.timeout(5_000) }).catch(() => undefined);
        await res?.text();
        return res?.status === 200;
      },
        { timeoutMs: 30_000, message: `dp-${i} serving after its restart` });
      await waitStablyUp(running, `dp-${i} after its restart`);
    }
  } finally {
    isLoading = false;
    await Promise.all(clients);
  }
  process.stdout.write(`rolling restart of two data planes under load: sent ${sent}, failed ${JSON.stringify(Object.fromEntries(failures))}\n`);
  assert.ok(sent > 0);
  assert.deepEqual(Object.fromEntries(failures), {}, 'a rolling restart loses no invocation');
});
