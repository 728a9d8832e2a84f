import assert from 'node:assert/strict';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { buildImage } from '../../src/cli/image/image-builder.ts';
import { execTool } from '../../src/worker/container/exec.ts';
import { assertContainerPrerequisites } from '../../src/worker/container/prerequisites.ts';
import { startCluster, startWorker, ROOT, type WorkerProcess } from '../kit/cluster.ts';

/**
 * A container worker killed with `kill -9` leaves its containers, cgroups, network namespaces,
 * veths, bridge and nft table; a worker started afterwards with a *different* id (sharing the
 * host registry) removes them, and leaves a live worker's alone. Real daemons, crun, ip and nft:
 * root only, as in CI (a missing prerequisite fails here with its fix rather than skipping).
 */

const tagOf = (workerId: string, dataDir: string): string => createHash('sha256').update(`${workerId}\0${path.resolve(dataDir)}`).digest('hex').slice(0, 6);

/** What of the worker with this tag is on the host. */
async function hostObjects(tag: string, dataDir: string): Promise<{ containers: string[]; netns: string[]; cgroupDirs: string[]; bridge: boolean; table: boolean }> {
  const stateRoot = path.join(path.resolve(dataDir), 'container', 'crun');
  const containers = existsSync(stateRoot)
    ? (await execTool('crun', ['--root', stateRoot, 'list', '--quiet']).catch(() => '')).split('\n').filter((l) => l.trim() !== '') : [];
  const netns = (await execTool('ip', ['netns', 'list'])).split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(`baton-${tag}-`));
  const memoryPath = /^\d+:memory:(.*)$/m.exec(await readFile('/proc/self/cgroup', 'utf8'))?.[1] ?? '/';
  const memoryBase = path.join('/sys/fs/cgroup/memory', memoryPath, `baton-${tag}`);
  const cgroupDirs = (await readdir(memoryBase, { withFileTypes: true }).catch(() => [])).filter((e) => e.isDirectory()).map((e) => e.name);
  const bridge = await execTool('ip', ['link', 'show', `bt${tag}`]).then(() => true, () => false);
  const table = await execTool('nft', ['list', 'table', 'inet', `baton_${tag}`]).then(() => true, () => false);
  return { containers, netns, cgroupDirs, bridge, table };
}

test('a worker started with a new id removes what a kill -9ed worker of the host left, and not what a live one owns', async (t) => {
  await assertContainerPrerequisites(execTool, 'crun');
  const registryDir = await mkdtemp(path.join(tmpdir(), 'baton-host-registry-'));
  t.after(() => rm(registryDir, { recursive: true, force: true }));
  const suffix = randomBytes(3).toString('hex');
  const thirds = [randomInt(1, 80), randomInt(80, 160), randomInt(160, 250)];
  const containerFlags = (third: number): string[] => [
    '--runtime', 'container', '--container-subnet', `10.213.${third}.0/24`, '--container-netns-pool', '2', '--host-registry-dir', registryDir, '--cpu-milli', '8000',
  ];
  const deadId = `dead-${suffix}`;
  const cluster = await startCluster({ worker: ['--worker-id', deadId, ...containerFlags(thirds[0] as number)] });
  const others: WorkerProcess[] = [];
  t.after(async () => {
    for (const other of others) await other.daemon.stop();
    await cluster.stop();
  });

  // A container sandbox on the worker that will die.
  const image = await buildImage({ dir: path.join(ROOT, 'examples/hello'), base: 'node', handler: 'index.handler' });
  const put = await fetch(`${cluster.cpUrl}/v1/artifacts`, { method: 'PUT', body: image });
  assert.equal(put.status, 201, await put.clone().text());
  const { digest } = await put.json() as { digest: string };
  const created = await fetch(`${cluster.cpUrl}/v1/functions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'left-behind', runtime: 'container', artifact: digest, handler: 'index.handler', scaling: { maxScale: 1 }, resources: { cpuMilli: 500, memoryMiB: 128 } }),
  });
  assert.equal(created.status, 201, await created.text());
  const invoked = await fetch(`${cluster.dpUrl}/fn/left-behind/`);
  assert.equal(invoked.status, 200, await invoked.text());

  // A live worker of the same host, started after the sandbox was placed.
  const liveId = `live-${suffix}`;
  const liveDir = path.join(cluster.dir, 'live-worker');
  others.push(await startWorker({ workerId: liveId, dataDir: liveDir, controlPlaneUrls: [cluster.cpUrl], args: containerFlags(thirds[1] as number) }));

  const deadDir = path.join(cluster.dir, 'worker');
  const deadTag = tagOf(deadId, deadDir);
  const liveTag = tagOf(liveId, liveDir);
  const before = await hostObjects(deadTag, deadDir);
  assert.equal(before.containers.length, 1, JSON.stringify(before));
  assert.ok(before.netns.length >= 1 && before.cgroupDirs.length >= 1 && before.bridge && before.table, JSON.stringify(before));
  const live = await hostObjects(liveTag, liveDir);
  assert.ok(live.netns.length >= 1 && live.bridge && live.table, JSON.stringify(live));

  await cluster.worker.stop('SIGKILL');
  // Its container outlives it: crun and the sandbox do not die with the worker.
  assert.equal((await hostObjects(deadTag, deadDir)).containers.length, 1);

  const newId = `new-${suffix}`;
  const newDir = path.join(cluster.dir, 'new-worker');
  const fresh = await startWorker({ workerId: newId, dataDir: newDir, controlPlaneUrls: [cluster.cpUrl], args: containerFlags(thirds[2] as number) });
  others.push(fresh);
  const line = await fresh.daemon.waitForLog((l) => l['deadWorkerId'] === deadId, 5_000);
  assert.equal(line['containers'], 1);
  assert.ok(Number(line['netns']) >= 1 && Number(line['cgroups']) >= 1, JSON.stringify(line));

  assert.deepEqual(await hostObjects(deadTag, deadDir), { containers: [], netns: [], cgroupDirs: [], bridge: false, table: false });
  // The live worker's namespaces, bridge and table are all still there, and so is its record.
  assert.deepEqual(await hostObjects(liveTag, liveDir), live);
  assert.ok(fresh.daemon.logs.every((l) => l['deadWorkerId'] !== liveId));
  const records = (await readdir(registryDir)).sort();
  assert.deepEqual(records, [`${liveTag}.json`, `${tagOf(newId, newDir)}.json`].sort());
  // A worker that stops (its sandboxes with it) takes its record away.
  await (others[0] as WorkerProcess).daemon.stop();
  assert.deepEqual(await readdir(registryDir), [`${tagOf(newId, newDir)}.json`]);
});
