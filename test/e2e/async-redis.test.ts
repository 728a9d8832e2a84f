import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startCluster, runCliProcess, ROOT, type Cluster } from '../kit/cluster.ts';
import { startRedis } from '../kit/redis.ts';
import { waitFor } from '../kit/wait-for.ts';

/** The data plane with `asyncStore: redis`: accepted events survive kill -9 of the data plane and are delivered after its restart. */

let cluster: Cluster;
const cleanups: (() => Promise<void>)[] = [];

before(async () => {
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  cluster = await startCluster({ dataplane: ['--async-store', 'redis', '--async-redis-url', redis.url] });
});

after(async () => {
  await cluster?.stop();
  for (const fn of cleanups.reverse()) await fn();
});

it('delivers every event accepted into Redis after kill -9 of the data plane', async () => {
  const record = join(cluster.dir, 'redis.record');
  // The sandbox appends to it, as the unprivileged user a root worker runs it as.
  await writeFile(record, '');
  await chmod(record, 0o666);
  const manifest = join(cluster.dir, 'r.yaml');
  await writeFile(manifest, `name: viaredis\nhandler: esm.handler\ndir: ${join(ROOT, 'test/fixtures/lambda-handlers')}\nenv:\n  RECORD_FILE: ${record}\nasync:\n  maxConcurrency: 1\n`);
  assert.equal((await runCliProcess(['deploy', '-f', manifest, '--url', cluster.cpUrl])).code, 0);
  const ids: string[] = [];
  for (let i = 0; i < 20; i++) {
    const res = await fetch(`${cluster.dpUrl}/fn/viaredis/`, { method: 'POST', body: JSON.stringify({ sleepMs: 50, i }), headers: { 'content-type': 'application/json', prefer: 'respond-async' } });
    assert.equal(res.status, 202);
    ids.push(res.headers.get('x-baton-invocation-id') as string);
  }
  const lines = async () => (await readFile(record, 'utf8')).split('\n').filter(Boolean);
  await waitFor(async () => (await lines()).length >= 2, { timeoutMs: 90_000, message: 'a first delivery' });
  await cluster.restartDataplane();
  await waitFor(async () => new Set(await lines()).size === 20, { timeoutMs: 120_000, message: 'all 20 delivered after the restart' });
  assert.deepEqual([...new Set(await lines())].sort(), [...ids].sort());
  const first = await (await fetch(`${cluster.dpUrl}/v1/invocations/${ids[0] as string}`)).json() as { state: string };
  assert.equal(first.state, 'succeeded', 'results outlive the restart too');
});
