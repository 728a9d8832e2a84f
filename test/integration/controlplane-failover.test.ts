import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BatonClient } from '../../src/cli/client.ts';
import { memberHeaders } from '../kit/cluster.ts';
import { startHaCluster, type HaCluster, type HaControlPlane } from '../kit/ha-cluster.ts';
import { invoke, Tally, waitForConvergence, workerSandboxes } from '../kit/load.ts';
import { hasRedis } from '../kit/redis.ts';
import { waitFor } from '../kit/wait-for.ts';

/**
 * Three control planes on one real Redis, one leader: fail-over and fencing with real processes.
 * The worker and the data plane are given every control plane and must find the leader.
 */

/** Views converged for these functions between the cluster's data plane and its worker. */
const converged = (cluster: HaCluster, functions: readonly string[]): Promise<void> =>
  waitForConvergence({ dataplanes: [cluster.dpInternalUrl], workers: [cluster.workerUrl], functions, timeoutMs: 10_000 });

test('kill -9 of the leader among three under warm and cold load: a follower takes over in a higher epoch, zero failed warm invocations, the queued cold starts are served, views converge, no acknowledged registration is lost', { skip: !hasRedis() && 'redis-server is not installed (apt-get install redis-server)' }, async (t) => {
  const cluster = await startHaCluster();
  t.after(() => cluster.stop());
  const { cp: first, epoch: firstEpoch } = await cluster.leader();
  assert.equal(first, cluster.controlPlanes[0], 'the first control plane started leads');
  // Through a follower: management calls are redirected (307) to the leader.
  const follower = cluster.controlPlanes[1] as HaControlPlane;
  const redirected = await fetch(`${follower.url}/v1/functions`, { redirect: 'manual' });
  assert.equal(redirected.status, 307);
  assert.equal(redirected.headers.get('location'), `${first.url}/v1/functions`);
  await redirected.arrayBuffer();

  const client = new BatonClient({ url: first.url });
  t.after(() => client.close());
  const registered = ['warm', 'cold-a', 'cold-b', 'cold-c', 'kept'];
  for (const name of registered) await client.createFunction({ name, runtime: 'emulated' });
  assert.deepEqual(await invoke(cluster.dpUrl, 'warm'), { status: 200 });
  const before = await client.listSandboxes('warm');
  assert.equal(before.length, 1);

  const warm = new Tally();
  let isLoading = true;
  const load = Promise.all(Array.from({ length: 4 }, async () => {
    while (isLoading) warm.add(await invoke(cluster.dpUrl, 'warm'));
  }));
  await waitFor(() => warm.ok >= 20, { timeoutMs: 10_000, message: 'warm load to flow' });

  const killedAt = performance.now();
  await first.daemon.stop('SIGKILL');
  // Cold starts asked for while no control plane leads: they wait in the data plane's queues.
  const colds = ['cold-a', 'cold-b', 'cold-c'].map((fn) => invoke(cluster.dpUrl, fn));
  const survivors = cluster.controlPlanes.slice(1);
  const { cp: second, epoch: secondEpoch } = await cluster.leader(survivors);
  const failoverMs = performance.now() - killedAt;
  assert.ok(secondEpoch > firstEpoch, `the new leader's epoch ${secondEpoch} is above ${firstEpoch}`);
  const cold = new Tally();
  for (const outcome of await Promise.all(colds)) cold.add(outcome);
  // Some more warm load once the new leader has the data plane again, then stop it.
  await second.daemon.waitForLog((l) => l['msg'] === 'data plane registered', 10_000);
  const sentAtTakeover = warm.sent;
  await waitFor(() => warm.sent >= sentAtTakeover + 50, { timeoutMs: 10_000, message: 'warm load after the take-over' });
  isLoading = false;
  await load;
  process.stdout.write(`fail-over in ${Math.round(failoverMs)} ms (epoch ${firstEpoch} → ${secondEpoch}); warm: ${warm}; cold started during the fail-over: ${cold}\n`);
  assert.equal(warm.ok, warm.sent, `every warm invocation succeeded: ${warm}`);
  assert.equal(cold.ok, 3, `the cold starts queued during the fail-over were served: ${cold}`);

  const other = new BatonClient({ url: second.url });
  t.after(() => other.close());
  assert.deepEqual((await other.listFunctions()).map((f) => f.spec.name).sort(), [...registered].sort(), 'every acknowledged registration is there');
  // The new leader adopted the warm sandboxes from the worker — the first one among them — with no duplicate.
  await waitFor(async () => {
    const ids = (await other.listSandboxes('warm')).map((s) => s.sandboxId);
    return ids.includes(before[0]?.sandboxId as string) && new Set(ids).size === ids.length;
  }, { timeoutMs: 10_000, message: 'the warm sandbox adopted by the new leader' });
  await converged(cluster, ['warm', 'cold-a', 'cold-b', 'cold-c']);
  // A function registered with the new leader is served too.
  await other.createFunction({ name: 'after', runtime: 'emulated' });
  assert.deepEqual(await invoke(cluster.dpUrl, 'after'), { status: 200 });
});

test('SIGSTOP of the leader past its lease: a follower takes over; after SIGCONT the old leader steps down, and commands in its epoch are refused by the worker and the data plane', { skip: !hasRedis() && 'redis-server is not installed (apt-get install redis-server)' }, async (t) => {
  // Without a join secret: the test poses as the old leader, whose command tokens it cannot have.
  const cluster = await startHaCluster({ joinSecret: false });
  t.after(() => cluster.stop());
  const { cp: first, epoch: firstEpoch } = await cluster.leader();
  const client = new BatonClient({ url: first.url });
  t.after(() => client.close());
  await client.createFunction({ name: 'warm', runtime: 'emulated' });
  assert.deepEqual(await invoke(cluster.dpUrl, 'warm'), { status: 200 });
  const [sandbox] = await client.listSandboxes('warm');
  assert.ok(sandbox !== undefined);

  first.daemon.child.kill('SIGSTOP');
  const warm = new Tally();
  const { cp: second, epoch: secondEpoch } = await cluster.leader(cluster.controlPlanes.slice(1));
  assert.ok(secondEpoch > firstEpoch);
  // The worker and the data plane heard of the new epoch (registration answer, routing snapshot).
  await waitFor(async () => {
    const [w, d] = await Promise.all([fetch(`${cluster.workerUrl}/healthz`), fetch(`${cluster.dpInternalUrl}/healthz`)]);
    const [wh, dh] = await Promise.all([w.json(), d.json()]) as { leaderEpoch: number }[];
    return wh?.leaderEpoch === secondEpoch && dh?.leaderEpoch === secondEpoch;
  }, { timeoutMs: 10_000, message: 'the worker and the data plane to see the new epoch' });
  for (let i = 0; i < 20; i++) warm.add(await invoke(cluster.dpUrl, 'warm'));

  first.daemon.child.kill('SIGCONT');
  await first.daemon.waitForLog((l) => l['msg'] === 'stepped down' || String(l['msg']).startsWith('stepped down'), 10_000);
  await waitFor(async () => (await cluster.health(first))?.role === 'follower' && (await cluster.health(first))?.leaderUrl === second.url, {
    timeoutMs: 10_000, message: 'the old leader to follow the new one',
  });

  // What the old leader would send in its epoch — a deletion, a routing view without the sandbox —
  // is refused with a code and changes nothing.
  const lateDelete = await fetch(`${cluster.workerUrl}/internal/v1/sandboxes/delete`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sandboxIds: [sandbox.sandboxId], leaderEpoch: firstEpoch }),
  });
  assert.equal(lateDelete.status, 409);
  assert.equal((await lateDelete.json() as { error: { code: string } }).error.code, 'ERR_STALE_EPOCH');
  const lateView = await fetch(`${cluster.dpInternalUrl}/internal/v1/routing`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ kind: 'snapshot', epoch: 'late', version: 1, functions: [], endpoints: [], leaderEpoch: firstEpoch }),
  });
  assert.equal(lateView.status, 409);
  assert.equal((await lateView.json() as { error: { code: string } }).error.code, 'ERR_STALE_EPOCH');
  for (let i = 0; i < 20; i++) warm.add(await invoke(cluster.dpUrl, 'warm'));
  process.stdout.write(`warm invocations across the pause and the refusals: ${warm}\n`);
  assert.equal(warm.ok, warm.sent, `${warm}`);
  assert.deepEqual((await workerSandboxes([cluster.workerUrl])).get('warm'), [sandbox.sandboxId], 'the sandbox still runs');
  await converged(cluster, ['warm']);
  // The old leader stays a follower: exactly one leads, the one that took over.
  assert.equal((await cluster.leader()).cp, second);
});

test('a leader cut off from its store stops acting within its lease; once the store is back it leads again in a higher epoch, rebuilt from the store and the workers', { skip: !hasRedis() && 'redis-server is not installed (apt-get install redis-server)' }, async (t) => {
  const cluster = await startHaCluster({ count: 1 });
  t.after(() => cluster.stop());
  const { cp, epoch } = await cluster.leader();
  const client = new BatonClient({ url: cp.url });
  t.after(() => client.close());
  await client.createFunction({ name: 'warm', runtime: 'emulated' });
  assert.deepEqual(await invoke(cluster.dpUrl, 'warm'), { status: 200 });
  const [sandbox] = await client.listSandboxes('warm');

  await cluster.redis.kill();
  await cp.daemon.waitForLog((l) => String(l['msg']).startsWith('stepped down'), 15_000);
  const health = await cluster.health(cp);
  assert.equal(health?.role, 'follower');
  // A follower acts on nothing: the worker's internal calls are refused with a code naming no leader.
  const refused = await fetch(`${cp.url}/internal/v1/workers/heartbeat`, { method: 'POST', headers: { 'content-type': 'application/json', ...memberHeaders() }, body: JSON.stringify({ workerId: 'w-1' }) });
  assert.equal(refused.status, 503);
  assert.equal((await refused.json() as { error: { code: string } }).error.code, 'ERR_NOT_LEADER');
  // Warm invocations do not need the control plane.
  const warm = new Tally();
  for (let i = 0; i < 20; i++) warm.add(await invoke(cluster.dpUrl, 'warm'));
  assert.equal(warm.ok, warm.sent, `${warm}`);

  await cluster.redis.restart();
  const back = await cluster.leader(undefined, 20_000);
  assert.ok(back.epoch > epoch, `epoch ${back.epoch} above ${epoch}`);
  await waitFor(async () => (await client.listSandboxes('warm')).some((s) => s.sandboxId === sandbox?.sandboxId), { timeoutMs: 10_000, message: 'the sandbox adopted again' });
  await converged(cluster, ['warm']);
});
