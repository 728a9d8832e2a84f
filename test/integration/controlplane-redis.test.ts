import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BatonClient } from '../../src/cli/client.ts';
import { packDirectory } from '../../src/core/archive.ts';
import { ROOT, runCliProcess, spawnDaemon, type DaemonProcess } from '../kit/cluster.ts';
import { startRedis } from '../kit/redis.ts';

async function startControlPlane(dataDir: string, redisUrl: string): Promise<{ daemon: DaemonProcess; url: string }> {
  const daemon = spawnDaemon('controlplane', ['--port', '0', '--data-dir', dataDir, '--store', 'redis', '--redis-url', redisUrl, '--log-level', 'info', '--auth-mode', 'none']);
  const line = await daemon.waitForLog((l) => l['msg'] === 'control plane listening');
  return { daemon, url: line['url'] as string };
}

test('with store: redis, what one control plane acknowledged — functions and artifact blobs — is read by another, after a kill -9 of the first', async (t) => {
  const redis = await startRedis();
  const dir = await mkdtemp(join(tmpdir(), 'baton-cp-redis-'));
  const daemons: DaemonProcess[] = [];
  t.after(async () => {
    await Promise.all(daemons.map((d) => d.stop('SIGKILL')));
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  });
  const first = await startControlPlane(join(dir, 'a'), redis.url);
  daemons.push(first.daemon);
  const artifact = await packDirectory(join(ROOT, 'examples/hello'));
  const client = new BatonClient({ url: first.url });
  const { digest } = await client.uploadArtifact(artifact);
  await client.createFunction({ name: 'hello', runtime: 'process', artifact: digest, handler: 'index.handler' });
  await client.createFunction({ name: 'emu', runtime: 'emulated' });
  await client.close();
  await first.daemon.stop('SIGKILL');

  // Another control plane with a data dir of its own (empty): everything comes from Redis. It
  // leads once the first one's lease has run out.
  const second = await startControlPlane(join(dir, 'b'), redis.url);
  daemons.push(second.daemon);
  await second.daemon.waitForLog((l) => l['msg'] === 'leading');
  const other = new BatonClient({ url: second.url });
  t.after(() => other.close());
  const functions = await other.listFunctions();
  assert.deepEqual(functions.map((f) => f.spec.name).sort(), ['emu', 'hello']);
  assert.equal(functions.find((f) => f.spec.name === 'hello')?.spec.artifact, digest);
  const res = await fetch(`${second.url}/v1/artifacts/${digest}`);
  assert.equal(res.status, 200);
  assert.ok(Buffer.from(await res.arrayBuffer()).equals(artifact), 'the blob byte for byte');
});

test('with store: redis and no Redis reachable, the control plane does not start and says why', async () => {
  const redis = await startRedis();
  const { url } = redis;
  await redis.stop();
  const dir = await mkdtemp(join(tmpdir(), 'baton-cp-redis-'));
  try {
    const res = await runCliProcess(['controlplane', '--port', '0', '--data-dir', dir, '--store', 'redis', '--redis-url', url, '--log-level', 'silent']);
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, /ERR_UNAVAILABLE|Redis store/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a bad store or redisUrl is a config error naming the key', async () => {
  const bad = await runCliProcess(['controlplane', '--store', 'etcd']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /store/);
  const badUrl = await runCliProcess(['controlplane', '--store', 'redis', '--redis-url', 'http://127.0.0.1:6379']);
  assert.notEqual(badUrl.code, 0);
  assert.match(badUrl.stderr, /redisUrl.*redis:\/\//);
});
