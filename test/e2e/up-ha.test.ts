import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BatonClient } from '../../src/cli/client.ts';
import { upPorts } from '../../src/cli/daemons.ts';
import { hasHaproxy } from '../kit/haproxy.ts';
import { hasRedis } from '../kit/redis.ts';
import { startUp } from '../kit/up.ts';
import { waitFor } from '../kit/wait-for.ts';

const SHAPE = { controlPlanes: 3, dataPlanes: 2 };
const skip = (!hasRedis() || !hasHaproxy()) && 'needs redis-server and haproxy (apt-get install redis-server haproxy)';

/**
 * `baton up --control-planes 3 --data-planes 2 --store redis`: the HA shape on one machine, with
 * Redis and HAProxy started by it. One control plane leads; `kill -9` of it: another takes over
 * (the supervisor restarts the killed one, which follows), invocations through HAProxy go on.
 */
test('baton up --control-planes 3 --data-planes 2 --store redis: Redis, three control planes with one leader, two data planes behind HAProxy; kill -9 of the leader: a leader in a higher epoch takes over, invocations through HAProxy go on', { skip }, async (t) => {
  const up = await startUp(t, ['--runtime', 'emulated', '--workers', '2', '--control-planes', '3', '--data-planes', '2', '--store', 'redis'], {
    ports: (offset) => {
      const p = upPorts({ offset, ...SHAPE });
      return [...p.controlPlanes.flatMap((c) => [c.port, c.registrationPort]), ...p.dataPlanes.flatMap((d) => [d.port, d.internalPort]), p.redis, p.haproxy];
    },
  });
  const ports = upPorts({ offset: up.offset, ...SHAPE });
  const cpUrls = ports.controlPlanes.map((c) => `http://127.0.0.1:${c.port}`);
  const entry = `http://127.0.0.1:${ports.haproxy}`;
  assert.match(up.output.stdout, new RegExp(`HAProxy +${entry}`));
  assert.match(up.output.stdout, /store +redis:\/\//);
  const roles = async (): Promise<{ role?: string; leaderUrl?: string; epoch?: number }[]> => Promise.all(cpUrls.map(async (url) => {
    try {
      return await (await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1_000) })).json() as { role?: string; leaderUrl?: string; epoch?: number };
    } catch {
      return {};
    }
  }));
  const leaderIndex = async (): Promise<number> => waitFor(async () => {
    const all = await roles();
    const leaders = all.flatMap((h, i) => (h.role === 'leader' ? [i] : []));
    const leader = leaders[0];
    return leaders.length === 1 && all.every((h) => h.leaderUrl === cpUrls[leader as number]) ? (leader as number) + 1 : undefined;
  }, { timeoutMs: 20_000, message: 'one leader named by every control plane' }).then((i) => i - 1);
  const first = await leaderIndex();
  const firstEpoch = (await roles())[first]?.epoch as number;

  const invoke = async (): Promise<number> => {
    try {
      const res = await fetch(`${entry}/fn/hello/`, { headers: { 'x-baton-exec-ms': '2' }, signal: AbortSignal.timeout(20_000) });
      await res.arrayBuffer();
      return res.status;
    } catch {
      return 0;
    }
  };
  assert.equal(await invoke(), 200, 'hello through HAProxy');
  // The CLI's client, pointed at a follower, is redirected to the leader.
  const follower = cpUrls[(first + 1) % cpUrls.length] as string;
  const client = new BatonClient({ url: follower, token: up.adminToken });
  t.after(() => client.close());
  await client.createFunction({ name: 'via-follower', runtime: 'emulated' });
  assert.ok((await client.listFunctions()).some((f) => f.spec.name === 'via-follower'));

  const pid = up.childPid(['controlplane', '--port', String(ports.controlPlanes[first]?.port)]);
  assert.ok(pid !== undefined, 'the leader\'s pid');
  process.kill(pid, 'SIGKILL');
  const statuses = new Map<number, number>();
  let next: number | undefined;
  let seen: unknown[] = [];
  // A leader in a higher epoch: one of the two that kept running, or the killed one, restarted by
  // the supervisor, if it reaches the expired lease first — which one wins is not the point.
  await waitFor(async () => {
    const status = await invoke();
    statuses.set(status, (statuses.get(status) ?? 0) + 1);
    const all = await roles();
    seen = all;
    const leaders = all.flatMap((h, i) => (h.role === 'leader' ? [i] : []));
    next = leaders[0];
    return leaders.length === 1 && (all[next as number]?.epoch ?? 0) > firstEpoch;
  }, { timeoutMs: 30_000, intervalMs: 1, message: 'a control plane to lead in a higher epoch' }).catch((err: Error) => {
    throw new Error(`${err.message}; the control planes said ${JSON.stringify(seen)}; baton up: ${up.output.stderr.slice(-2000)}`);
  });
  process.stdout.write(`invocations through HAProxy while the leader was replaced: ${JSON.stringify(Object.fromEntries(statuses))}\n`);
  assert.deepEqual([...statuses.keys()], [200], 'every invocation through HAProxy succeeded');
  // The killed one is restarted by the supervisor and follows the new leader (or is it).
  await waitFor(async () => (await roles())[first]?.leaderUrl === cpUrls[next as number], { timeoutMs: 30_000, message: 'the restarted control plane to follow' });
  assert.match(up.output.stderr, /controlplane-\d restarted/);
  const leaderClient = new BatonClient({ url: cpUrls[next as number] as string, token: up.adminToken });
  t.after(() => leaderClient.close());
  assert.ok((await leaderClient.listFunctions()).some((f) => f.spec.name === 'via-follower'), 'the registration survived the fail-over');
  // One audit log for the cluster (in Redis): the new leader shows what the first one answered, and its own after.
  await leaderClient.createFunction({ name: 'after-fail-over', runtime: 'emulated' });
  const audited = (await leaderClient.readAudit({ limit: 1000 })).filter((e) => e.action === 'function.create').map((e) => e.target);
  assert.deepEqual(audited.filter((name) => name === 'via-follower' || name === 'after-fail-over'), ['via-follower', 'after-fail-over']);
  assert.equal(await up.interrupt(), 0, up.output.stderr.slice(-1000));
});
