import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BatonClient } from '../../src/cli/client.ts';
import { packDirectory } from '../../src/core/archive.ts';
import { BatonError } from '../../src/core/errors.ts';
import { memberHeaders, ROOT, runCliProcess, spawnDataplane, startCluster, startWorker, type DaemonProcess, type WorkerProcess } from '../kit/cluster.ts';
import { startControlPlane, startHaCluster, waitForLeader, type HaControlPlane } from '../kit/ha-cluster.ts';
import { hasHaproxy, startHaproxy, waitStablyUp } from '../kit/haproxy.ts';
import { invoke, routedEndpoints, startLoad, waitForConvergence, type Load } from '../kit/load.ts';
import { freePort, hasRedis, startRedis } from '../kit/redis.ts';
import { waitFor } from '../kit/wait-for.ts';

/**
 * Faults injected into real daemons under a steady load of warm and cold invocations. Each test
 * prints what the load got — sent, succeeded, failed by code — and checks that every failure is a
 * coded error (never a hang, a reset or an empty 200), that the data planes' views and the
 * workers' sandboxes converge afterwards, and that no acknowledged registration is lost.
 */

const names = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

/** Stops the load and prints and checks what it got: every failure coded. */
async function finish(load: Load, what: string): Promise<void> {
  await load.stop();
  process.stdout.write(`${what}: warm ${load.warm}; cold ${load.cold}\n`);
  assert.deepEqual(load.warm.uncoded(), [], `every failed warm invocation has a code: ${load.warm}`);
  assert.deepEqual(load.cold.uncoded(), [], `every failed cold invocation has a code: ${load.cold}`);
  assert.ok(load.warm.ok > 0 && load.cold.sent > 0, `the load ran: warm ${load.warm}; cold ${load.cold}`);
}

test('kill -9 of a worker under load: its endpoints are withdrawn, capacity is recreated on the other worker, the failures are coded, bounded by the invocations in flight, and none once it is detected; back with the same identity it serves again', async (t) => {
  const cluster = await startCluster({ worker: ['--runtime', 'emulated', '--worker-id', 'w-a', '--cpu-milli', '64000'] });
  t.after(() => cluster.stop());
  const cpUrls = [cluster.cpUrl];
  let victim: WorkerProcess = await startWorker({ workerId: 'w-b', dataDir: join(cluster.dir, 'w-b'), controlPlaneUrls: cpUrls, args: ['--runtime', 'emulated', '--cpu-milli', '64000'] });
  t.after(() => victim.daemon.stop('SIGKILL'));
  const client = new BatonClient({ url: cluster.cpUrl });
  t.after(() => client.close());
  await waitFor(async () => (await client.listWorkers()).filter((w) => w.state === 'ready').length === 2, { timeoutMs: 15_000, message: 'both workers registered' });

  const warm = names('warm', 2);
  const cold = names('cold', 16);
  for (const name of warm) await client.createFunction({ name, runtime: 'emulated', scaling: { minScale: 2, maxScale: 4 } });
  for (const name of cold) await client.createFunction({ name, runtime: 'emulated', scaling: { maxScale: 2 } });
  // Two sandboxes of each warm function, one on each worker (least-allocated placement spreads them).
  await waitFor(async () => {
    const all = (await Promise.all(warm.map((fn) => client.listSandboxes(fn)))).flat().filter((s) => s.state === 'ready');
    return all.length === 4 && all.filter((s) => s.workerId === 'w-b').length === 2;
  }, { timeoutMs: 15_000, message: 'two ready sandboxes of each warm function, one on each worker' });
  const onVictim = (await Promise.all(warm.map((fn) => client.listSandboxes(fn)))).flat().filter((s) => s.workerId === 'w-b').map((s) => s.sandboxId);

  const load = startLoad({ url: () => cluster.dpUrl, warm, warmClients: 4, cold, coldEveryMs: 250 });
  t.after(() => load.stop());
  await load.more(100);

  await victim.daemon.stop('SIGKILL');
  const sentAtKill = load.warm.sent;
  await waitFor(async () => {
    const routed = [...(await routedEndpoints(cluster.dpInternalUrl)).values()].flat();
    return onVictim.every((id) => !routed.includes(id));
  }, { timeoutMs: 10_000, intervalMs: 50, message: 'the dead worker\'s endpoints withdrawn from the data plane' });
  const failedAtWithdrawal = load.warm.failures;
  // Capacity is recreated on the surviving worker: two ready sandboxes of each warm function again.
  await waitFor(async () => {
    const all = (await Promise.all(warm.map((fn) => client.listSandboxes(fn)))).flat().filter((s) => s.state === 'ready');
    return all.length >= 4 && all.every((s) => s.workerId === 'w-a');
  }, { timeoutMs: 15_000, message: 'the warm functions\' capacity recreated on w-a' });
  // Invocations in flight at the withdrawal may still fail; none sent after it.
  await load.more(50);
  const failedAfterSettling = load.warm.failures;
  await load.more(200);
  assert.equal(load.warm.failures, failedAfterSettling, `no warm invocation fails once the dead worker is withdrawn: ${load.warm}`);

  // The worker comes back with the same identity: it registers again and gets sandboxes again.
  victim = await startWorker({ workerId: 'w-b', dataDir: join(cluster.dir, 'w-b'), controlPlaneUrls: cpUrls, args: ['--runtime', 'emulated', '--cpu-milli', '64000'] });
  await waitFor(async () => (await client.listWorkers()).find((w) => w.workerId === 'w-b')?.state === 'ready', { timeoutMs: 15_000, message: 'w-b registered again' });
  await load.more(100);
  await waitFor(() => load.coldPending === 0 && load.cold.sent === cold.length, { timeoutMs: 30_000, message: 'every cold invocation answered' });
  await finish(load, `worker kill -9 (${load.warm.sent - sentAtKill} warm sent after the kill, ${failedAtWithdrawal} failed by the withdrawal)`);
  assert.equal(load.warm.failures, failedAfterSettling);
  // Bounded by the clients, not by the time to detection: each client can lose the invocation it
  // had in flight at the kill, and one sent to each dead endpoint before that endpoint first refused
  // a connection (from then on the data plane sends it nothing).
  assert.ok(load.warm.failures <= 3 * 4, `the failures are bounded: ${load.warm}`);
  assert.equal(load.cold.ok, cold.length, `every cold start was served (those placed on the dead worker again elsewhere): ${load.cold}`);

  await waitForConvergence({ dataplanes: [cluster.dpInternalUrl], workers: [cluster.workerUrl, victim.url], functions: [...warm, ...cold], maxPerFunction: 4 });
  assert.deepEqual((await client.listFunctions()).map((f) => f.spec.name).sort(), [...warm, ...cold].sort(), 'every acknowledged registration is there');
});

test('kill -9 of a sandbox process under load: the worker reports the exit at once, its endpoint is withdrawn and a new sandbox serves; only the invocations in flight in it fail, with ERR_SANDBOX_FAILED', async (t) => {
  const cluster = await startCluster();
  t.after(() => cluster.stop());
  const client = new BatonClient({ url: cluster.cpUrl });
  t.after(() => client.close());
  const { digest } = await client.uploadArtifact(await packDirectory(join(ROOT, 'examples/hello')));
  const cold = names('cold', 5);
  // Room for a retry on the other sandbox: a connection refused by the dead one goes there.
  await client.createFunction({ name: 'warm', runtime: 'process', artifact: digest, handler: 'index.handler', concurrency: 4, scaling: { minScale: 2, maxScale: 2 } });
  for (const name of cold) await client.createFunction({ name, runtime: 'process', artifact: digest, handler: 'index.handler', scaling: { maxScale: 1 } });
  await waitFor(async () => (await client.listSandboxes('warm')).filter((s) => s.state === 'ready').length === 2, { timeoutMs: 20_000, message: 'two ready sandboxes' });
  const [killed] = (await client.listSandboxes('warm')).map((s) => s.sandboxId);
  const listed = await (await fetch(`${cluster.workerUrl}/internal/v1/sandboxes`, { headers: memberHeaders() })).json() as { sandboxes: { sandboxId: string; pid?: number }[] };
  const pid = listed.sandboxes.find((s) => s.sandboxId === killed)?.pid;
  assert.ok(pid !== undefined, 'the sandbox has a process');

  const clients = 4;
  const load = startLoad({ url: () => cluster.dpUrl, warm: ['warm'], warmClients: clients, cold, coldEveryMs: 400 });
  t.after(() => load.stop());
  await load.more(100);
  process.kill(pid, 'SIGKILL');
  await waitFor(async () => !((await routedEndpoints(cluster.dpInternalUrl)).get('warm') ?? []).includes(killed as string),
    { timeoutMs: 10_000, intervalMs: 25, message: 'the killed sandbox\'s endpoint withdrawn' });
  await waitFor(async () => {
    const now = (await client.listSandboxes('warm')).filter((s) => s.state === 'ready');
    return now.length === 2 && !now.some((s) => s.sandboxId === killed);
  }, { timeoutMs: 20_000, message: 'the killed sandbox replaced' });
  await load.more(200);
  await waitFor(() => load.coldPending === 0 && load.cold.sent === cold.length, { timeoutMs: 30_000, message: 'every cold invocation answered' });
  await finish(load, 'sandbox kill -9');
  assert.ok(load.warm.failures <= clients, `at most one invocation per client was in flight in the killed sandbox: ${load.warm}`);
  assert.deepEqual([...load.warm.failed.keys()].filter((code) => code !== 'ERR_SANDBOX_FAILED'), [], `${load.warm}`);
  assert.equal(load.cold.ok, cold.length, `${load.cold}`);
  await waitForConvergence({ dataplanes: [cluster.dpInternalUrl], workers: [cluster.workerUrl], functions: ['warm', ...cold], maxPerFunction: 2 });
});

test('a Redis restart under load (kill -9, then the same port and data dir, AOF on): warm invocations are served throughout, management writes are refused with a code while it is down and work again after, nothing acknowledged is lost', { skip: !hasRedis() && 'redis-server is not installed (apt-get install redis-server)' }, async (t) => {
  const cluster = await startHaCluster({ worker: ['--cpu-milli', '64000'] });
  t.after(() => cluster.stop());
  const { cp: first, epoch } = await cluster.leader();
  const client = new BatonClient({ url: first.url });
  t.after(() => client.close());
  const cold = names('cold', 10);
  for (const name of ['warm', ...cold]) await client.createFunction({ name, runtime: 'emulated', scaling: { maxScale: 4 } });
  assert.equal((await invoke(cluster.dpUrl, 'warm')).status, 200);

  const load = startLoad({ url: () => cluster.dpUrl, warm: ['warm'], cold, coldEveryMs: 400 });
  t.after(() => load.stop());
  await load.more(100);
  await cluster.redis.kill();
  await first.daemon.waitForLog((l) => String(l['msg']).startsWith('stepped down'), 15_000);
  // No control plane can lead without its store: a write is refused with a code and changes nothing.
  const refused = await client.createFunction({ name: 'during', runtime: 'emulated' }).then(() => undefined, (err: unknown) => err);
  assert.ok(refused instanceof BatonError && ['ERR_NOT_LEADER', 'ERR_UNAVAILABLE'].includes(refused.code), `a coded refusal: ${String(refused)}`);
  const sentWhileDown = load.warm.sent;
  await load.more(100);

  await cluster.redis.restart();
  const back = await cluster.leader(undefined, 20_000);
  assert.ok(back.epoch > epoch, `a new term: epoch ${back.epoch} above ${epoch}`);
  const leaderClient = new BatonClient({ url: back.cp.url });
  t.after(() => leaderClient.close());
  await waitFor(async () => (await leaderClient.createFunction({ name: 'after', runtime: 'emulated' }).then(() => true, () => false)), { timeoutMs: 10_000, message: 'a management write accepted again' });
  assert.equal((await invoke(cluster.dpUrl, 'after')).status, 200);
  await load.more(100);
  await waitFor(() => load.coldPending === 0 && load.cold.sent === cold.length, { timeoutMs: 30_000, message: 'every cold invocation answered' });
  await finish(load, `Redis restart (the write while it was down refused with ${refused.code}; ${load.warm.sent - sentWhileDown} warm sent from then on)`);
  assert.equal(load.warm.failures, 0, `no warm invocation failed: ${load.warm}`);
  assert.equal(load.cold.ok, cold.length, `the cold starts asked for while no control plane led were served after: ${load.cold}`);
  assert.deepEqual((await leaderClient.listFunctions()).map((f) => f.spec.name).sort(), ['after', 'warm', ...cold].sort(), 'every acknowledged registration is there, the refused one is not');
  await waitForConvergence({ dataplanes: [cluster.dpInternalUrl], workers: [cluster.workerUrl], functions: ['warm', 'after', ...cold], maxPerFunction: 4 });
});

test('a rolling restart of every daemon under load — three control planes on Redis, two workers, two data planes behind HAProxy, each stopped with SIGTERM and back before the next — loses no invocation', { skip: (!hasRedis() && 'redis-server is not installed (apt-get install redis-server)') || (!hasHaproxy() && 'haproxy is not installed (apt-get install haproxy)') }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'baton-rolling-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const redis = await startRedis();
  t.after(() => redis.stop());
  const daemons = new Set<DaemonProcess>();
  t.after(() => Promise.all([...daemons].map((d) => d.stop('SIGKILL'))));
  const track = <T extends { daemon: DaemonProcess }>(started: T): T => {
    daemons.add(started.daemon);
    return started;
  };

  const cpPorts = [await freePort(), await freePort(), await freePort()];
  const cpUrls = cpPorts.map((port) => `http://127.0.0.1:${port}`);
  const startCp = async (i: number): Promise<HaControlPlane> => {
    const started = track(startControlPlane({ dataDir: join(dir, `cp${i}`), redisUrl: redis.url, port: cpPorts[i] as number }));
    return started.ready;
  };
  const cps = [await startCp(0)];
  cps.push(await startCp(1), await startCp(2));
  const startW = async (id: string): Promise<WorkerProcess> => track(await startWorker({ workerId: id, dataDir: join(dir, id), controlPlaneUrls: cpUrls, args: ['--runtime', 'emulated', '--cpu-milli', '64000'] }));
  const workers = [await startW('w-a'), await startW('w-b')];
  const dpPorts = [await freePort(), await freePort()];
  const internalPorts = [await freePort(), await freePort()];
  const startDp = (i: number): DaemonProcess => {
    const daemon = spawnDataplane({ dataplaneId: `dp-${i}`, dataDir: join(dir, `dp${i}`), controlPlaneUrls: cpUrls, port: dpPorts[i] as number, internalPort: internalPorts[i] as number });
    daemons.add(daemon);
    return daemon;
  };
  const dps = [startDp(0), startDp(1)];
  const bind = `127.0.0.1:${await freePort()}`;
  const stats = `127.0.0.1:${await freePort()}`;
  const generated = await runCliProcess(['haproxy-config', '--bind', bind, '--stats', stats, '--check-interval-ms', '200',
    '--dataplane', `127.0.0.1:${dpPorts[0]}`, '--dataplane', `127.0.0.1:${dpPorts[1]}`]);
  assert.equal(generated.code, 0, generated.stderr);
  const haproxy = await startHaproxy(generated.stdout, `http://${stats}`);
  t.after(() => haproxy.stop());

  const leaderClient = async (): Promise<BatonClient> => {
    const client = new BatonClient({ url: (await waitForLeader(cps, 20_000)).cp.url });
    t.after(() => client.close());
    return client;
  };
  let client = await leaderClient();
  await waitFor(async () => (await client.listWorkers()).filter((w) => w.state === 'ready').length === 2 && (await client.listDataplanes()).filter((d) => d.state === 'ready').length === 2,
    { timeoutMs: 20_000, message: 'both workers and both data planes registered' });
  const warm = names('warm', 2);
  const cold = names('cold', 40);
  for (const name of warm) await client.createFunction({ name, runtime: 'emulated', concurrency: 4, scaling: { minScale: 2, maxScale: 4 } });
  for (const name of cold) await client.createFunction({ name, runtime: 'emulated', scaling: { maxScale: 2 } });
  await waitStablyUp(haproxy, 'at the start');
  const url = `http://${bind}`;
  for (const fn of warm) await waitFor(async () => (await invoke(url, fn)).status === 200, { timeoutMs: 15_000, message: `${fn} served through HAProxy` });

  const load = startLoad({ url: () => url, warm, cold, coldEveryMs: 600, maxMs: 120_000 });
  t.after(() => load.stop());
  await load.more(100);
  const rolled: string[] = [];
  // Control planes: the leader among them hands over (its lease released on stop) and returns a follower.
  for (let i = 0; i < cps.length; i++) {
    await (cps[i] as HaControlPlane).daemon.stop('SIGTERM');
    cps[i] = await startCp(i);
    await waitForLeader(cps, 20_000);
    await load.more(50);
    rolled.push(`cp${i}`);
  }
  client = await leaderClient();
  // Workers: each has its sandboxes drained (replaced on the other) before it stops, then registers again with the same identity.
  for (let i = 0; i < workers.length; i++) {
    const id = (workers[i] as WorkerProcess).workerId;
    await (workers[i] as WorkerProcess).daemon.stop('SIGTERM');
    workers[i] = await startW(id);
    await waitFor(async () => (await client.listWorkers()).find((w) => w.workerId === id)?.state === 'ready', { timeoutMs: 15_000, message: `${id} registered again` });
    await load.more(50);
    rolled.push(id);
  }
  // Data planes: each refuses new invocations with 503 (HAProxy retries them on the other), drains, exits, and is back UP before the next.
  for (let i = 0; i < dps.length; i++) {
    await (dps[i] as DaemonProcess).stop('SIGTERM');
    dps[i] = startDp(i);
    await waitFor(async () => (await invoke(`http://127.0.0.1:${dpPorts[i]}`, warm[0] as string, { timeoutMs: 5_000 })).status === 200, { timeoutMs: 30_000, message: `dp-${i} serving after its restart` });
    await waitStablyUp(haproxy, `dp-${i} after its restart`);
    await load.more(50);
    rolled.push(`dp-${i}`);
  }
  await waitFor(() => load.coldPending === 0, { timeoutMs: 30_000, message: 'every cold invocation answered' });
  await finish(load, `rolling restart of ${rolled.join(', ')}`);
  assert.equal(load.warm.failures, 0, `a rolling restart loses no warm invocation: ${load.warm}`);
  assert.equal(load.cold.failures, 0, `nor a cold one: ${load.cold}`);

  const dataplanes = (await client.listDataplanes()).filter((d) => d.state === 'ready');
  assert.equal(dataplanes.length, 2);
  await waitForConvergence({ dataplanes: internalPorts.map((port) => `http://127.0.0.1:${port}`), workers: workers.map((w) => w.url), functions: [...warm, ...cold.slice(0, load.cold.sent)], maxPerFunction: 4 });
  assert.deepEqual((await client.listFunctions()).map((f) => f.spec.name).sort(), [...warm, ...cold].sort(), 'every acknowledged registration is there');
});
